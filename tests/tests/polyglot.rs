//! Python, JavaScript, TypeScript, Go and C processors in real pipelines, against the real
//! broker: the same exactly-once guarantees as Rust ones, state included.

use weir_tests::kafka::{
    crash_repeatedly, last_counts, produce, read_committed, setup, true_counts, unique, words, LONG, QUIET,
};
use weir_tests::{polyglot_cache, polyglot_guest};

const BIN: &str = env!("CARGO_BIN_EXE_weir-e2e");

#[test]
fn a_python_word_count_stays_exact_across_sigkill_crashes() {
    counts_exactly_once_across_sigkill_crashes("python", 30_000, 5, "");
}

#[test]
fn a_go_word_count_counts_a_million_records_exactly_once_across_sigkill_crashes() {
    // Stock Go's runtime and collector run between the host's calls, never inside them: a
    // collection inside the allocator the host calls would trap ("cannot leave component
    // instance") some tens of thousands of records in.
    counts_exactly_once_across_sigkill_crashes("go", 1_000_000, 4, "batch_size = 2000\n");
}

#[test]
fn a_c_word_count_stays_exact_across_sigkill_crashes() {
    counts_exactly_once_across_sigkill_crashes("c", 100_000, 3, "");
}

/// The `language` word count over `records` words under exactly-once, SIGKILLed `crashes`
/// times meanwhile: one output per word, and every word's last count its true count.
fn counts_exactly_once_across_sigkill_crashes(language: &str, records: usize, crashes: usize, extra: &str) {
    let s = setup(BIN, 2).with_cache(polyglot_cache());
    let app = unique(&format!("{language}-wc"));
    let pipeline = s.pipeline_of(&polyglot_guest(language, "word-count"), &app, extra);
    let input = words(0, records);
    let truth = true_counts(&input);
    let out = crash_repeatedly(&s, &pipeline, input, crashes, records);
    assert_eq!(out.len(), records, "one output per word, exactly once");
    assert_eq!(last_counts(&out), truth, "the last count emitted for every word is its true count");
}

#[test]
fn a_javascript_uppercase_pipeline_uppercases_every_record_once_keeping_keys_and_headers() {
    uppercases_every_record_once("js");
}

#[test]
fn a_typescript_uppercase_pipeline_uppercases_every_record_once_keeping_keys_and_headers() {
    uppercases_every_record_once("ts");
}

/// The `language` uppercase example over 2,000 records with keys and headers.
fn uppercases_every_record_once(language: &str) {
    let s = setup(BIN, 2).with_cache(polyglot_cache());
    let pipeline = s.pipeline_of(&polyglot_guest(language, "uppercase"), &unique(&format!("{language}-up")), "");
    let input: Vec<_> =
        (0..2_000).map(|i| (format!("k{i}"), format!("record {i}"), vec![("n".into(), i.to_string())])).collect();
    produce(&s.bootstrap, &s.input, &input, None);
    let mut weir = s.start(&pipeline, &[]);
    weir.wait_for_log("partitions assigned", LONG);
    let mut out = read_committed(&s.bootstrap, &s.output, 2_000, QUIET, LONG);
    let log = weir.log();
    weir.stop();
    assert_eq!(out.len(), 2_000, "weir's log:\n{log}");
    out.sort_by_key(|r| r.key.as_deref().and_then(|k| k[1..].parse::<u32>().ok()));
    assert_eq!(out.len(), 2_000);
    for (i, r) in out.iter().enumerate() {
        assert_eq!(r.key.as_deref(), Some(format!("k{i}").as_str()));
        assert_eq!(r.value.as_deref(), Some(format!("RECORD {i}").as_str()));
        assert_eq!(r.headers, vec![("n".to_owned(), i.to_string())]);
    }
}
