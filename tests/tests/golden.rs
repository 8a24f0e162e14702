//! Every example through `weir test`, output compared line by line with `tests/golden/`.

#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]
use std::path::Path;

use weir_tests::{golden, guest, polyglot_cache, polyglot_guest, weir};

fn assert_golden(example: &str) {
    let cache = tempfile::tempdir().unwrap();
    assert_golden_of(example, &guest(example), cache.path());
}

/// The Python or JS `example` gives, byte for byte, what the Rust one gives.
fn assert_same_as_rust(language: &str, example: &str) {
    assert_golden_of(example, &polyglot_guest(language, example), &polyglot_cache());
}

fn assert_golden_of(example: &str, module: &Path, cache: &Path) {
    let input = golden(&format!("{example}.input.jsonl"));
    let run = weir(&["test", "--module", module.to_str().unwrap(), "--input", input.to_str().unwrap()], cache);
    let expected = std::fs::read_to_string(golden(&format!("{example}.expected.jsonl"))).unwrap();
    assert!(run.ok, "{example}: {:?}", run.error);
    let got: Vec<&str> = run.stdout.lines().collect();
    let want: Vec<&str> = expected.lines().collect();
    assert_eq!(got, want, "{example}: outputs differ from tests/golden/{example}.expected.jsonl");
}

#[test]
fn uppercase_uppercases_values_and_keeps_keys_headers_and_bytes() {
    assert_golden("uppercase");
}

#[test]
fn filter_json_keeps_only_json_values() {
    assert_golden("filter-json");
}

#[test]
fn route_by_key_sends_each_record_to_the_output_its_key_names() {
    assert_golden("route-by-key");
}

#[test]
fn word_count_emits_running_counts_per_partition() {
    assert_golden("word-count");
}

/// The example's own pipeline file, beside the two stages it names, over sentences from two
/// partitions: every word is counted once over both, as the repartition hop sends it to one.
#[test]
fn the_two_stage_word_count_counts_each_word_over_all_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-examples/word-count");
    std::fs::copy(example.join("pipeline.toml"), dir.path().join("pipeline.toml")).unwrap();
    std::fs::copy(guest("word-split"), dir.path().join("split.wasm")).unwrap();
    std::fs::copy(guest("word-count"), dir.path().join("count.wasm")).unwrap();
    let (pipeline, input) = (dir.path().join("pipeline.toml"), golden("word-count-stages.input.jsonl"));
    let run = weir(&["test", "--pipeline", pipeline.to_str().unwrap(), "--input", input.to_str().unwrap()], dir.path());
    assert!(run.ok, "{:?}", run.error);
    let expected = std::fs::read_to_string(golden("word-count-stages.expected.jsonl")).unwrap();
    assert_eq!(run.stdout.lines().collect::<Vec<_>>(), expected.lines().collect::<Vec<_>>());
}

#[test]
fn orders_enrich_joins_each_order_with_the_latest_customer_of_the_table() {
    let cache = tempfile::tempdir().unwrap();
    let (input, table) = (golden("orders-enrich.input.jsonl"), golden("orders-enrich.customers.jsonl"));
    let module = guest("orders-enrich");
    let table_arg = format!("customers={}", table.display());
    let args = ["test", "-m", module.to_str().unwrap(), "-i", input.to_str().unwrap(), "--table", &table_arg];
    let run = weir(&args, cache.path());
    let expected = std::fs::read_to_string(golden("orders-enrich.expected.jsonl")).unwrap();
    assert_eq!(run.stdout.lines().collect::<Vec<_>>(), expected.lines().collect::<Vec<_>>(), "{:?}", run.error);
}

#[test]
fn a_lookup_in_a_table_that_is_not_declared_fails_naming_the_declared_ones() {
    let cache = tempfile::tempdir().unwrap();
    let input = golden("orders-enrich.input.jsonl");
    let module = guest("orders-enrich");
    let run = weir(&["test", "-m", module.to_str().unwrap(), "-i", input.to_str().unwrap()], cache.path());
    let error = run.failure();
    assert!(error.contains("no table named `customers`") && error.contains("offset 0"), "{error}");
}

#[test]
fn windowed_count_emits_each_window_once_when_it_closes_and_leaves_out_later_records() {
    assert_golden("windowed-count");
}

#[test]
fn windowed_count_gives_the_same_windows_whatever_the_batch_size() {
    assert_same_for_batch_sizes_1_and_1000("windowed-count");
}

#[test]
fn python_windowed_count_outputs_the_same_bytes_as_rust() {
    assert_same_as_rust("python", "windowed-count");
}

#[test]
fn orders_notify_confirms_paid_orders_and_reports_unpaid_ones_when_their_window_closes() {
    assert_golden("orders-notify");
}

#[test]
fn orders_notify_gives_the_same_emails_whatever_the_batch_size() {
    assert_same_for_batch_sizes_1_and_1000("orders-notify");
}

#[test]
fn python_and_javascript_orders_notify_join_like_the_rust_one() {
    assert_same_as_rust("python", "orders-notify");
    assert_same_as_rust("js", "orders-notify");
}

#[test]
fn javascript_windowed_count_outputs_the_same_bytes_as_rust() {
    assert_same_as_rust("js", "windowed-count");
}

#[test]
fn python_uppercase_outputs_the_same_bytes_as_rust() {
    assert_same_as_rust("python", "uppercase");
}

#[test]
fn python_word_count_outputs_the_same_bytes_as_rust() {
    assert_same_as_rust("python", "word-count");
}

#[test]
fn javascript_uppercase_outputs_the_same_bytes_as_rust() {
    assert_same_as_rust("js", "uppercase");
}

#[test]
fn javascript_word_count_outputs_the_same_bytes_as_rust() {
    assert_same_as_rust("js", "word-count");
}

#[test]
fn go_typescript_and_c_examples_output_the_same_bytes_as_rust() {
    for language in ["go", "ts", "c"] {
        for example in ["word-count", "uppercase", "orders-notify"] {
            assert_same_as_rust(language, example);
        }
    }
}

#[test]
fn the_cpp_word_count_outputs_the_same_bytes_as_rust() {
    assert_same_as_rust("cpp", "word-count");
}

#[test]
fn the_word_count_in_every_language_counts_unicode_text_byte_for_byte_as_rust() {
    // Accents, scripts without case, Cyrillic and Greek case, emoji, tabs, a no-break and an
    // ideographic space, a newline: split on Unicode whitespace and lowercased alike everywhere.
    let cache = tempfile::tempdir().unwrap();
    assert_golden_of("word-count-unicode", &guest("word-count"), cache.path());
    for language in ["python", "js", "ts", "go", "c", "cpp"] {
        assert_golden_of("word-count-unicode", &polyglot_guest(language, "word-count"), &polyglot_cache());
    }
}

#[test]
fn go_orders_notify_gives_the_same_emails_whatever_the_batch_size() {
    let input = golden("orders-notify.input.jsonl");
    let module = polyglot_guest("go", "orders-notify");
    let run = |size: &str| {
        let args = ["test", "-m", module.to_str().unwrap(), "-i", input.to_str().unwrap(), "--batch-size", size];
        weir(&args, &polyglot_cache())
    };
    let (one, many) = (run("1"), run("1000"));
    assert!(one.ok && many.ok, "{:?} {:?}", one.error, many.error);
    assert_eq!(one.stdout, many.stdout);
}

#[test]
fn python_and_javascript_read_the_state_rust_wrote() {
    // One state directory, three languages: the counts run on, since all store JSON. The
    // store is named after the component's file, so each goes under the same name.
    let dir = tempfile::tempdir().unwrap();
    let input = weir_tests::write_lines(dir.path(), "in.jsonl", &[r#"{"value": "tick"}"#]);
    let state = dir.path().join("state");
    let builds = [
        ("rust", guest("word-count")),
        ("python", polyglot_guest("python", "word-count")),
        ("js", polyglot_guest("js", "word-count")),
    ];
    let counts: Vec<String> = builds
        .iter()
        .map(|(language, built)| {
            let module = dir.path().join(language).join("word-count.wasm");
            std::fs::create_dir(module.parent().unwrap()).unwrap();
            std::fs::copy(built, &module).unwrap();
            let args = [
                "test",
                "-m",
                module.to_str().unwrap(),
                "-i",
                input.to_str().unwrap(),
                "--state-dir",
                state.to_str().unwrap(),
            ];
            let lines = weir(&args, &polyglot_cache()).lines();
            lines[0]["value"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(counts, ["1", "2", "3"]);
}

#[test]
fn word_counts_continue_across_runs_with_a_state_directory() {
    let dir = tempfile::tempdir().unwrap();
    let input = weir_tests::write_lines(dir.path(), "in.jsonl", &[r#"{"value": "tick tock"}"#, r#"{"value": "tick"}"#]);
    let state = dir.path().join("state");
    let module = guest("word-count");
    let args =
        ["test", "-m", module.to_str().unwrap(), "-i", input.to_str().unwrap(), "--state-dir", state.to_str().unwrap()];
    let first = weir(&args, dir.path()).lines();
    let second = weir(&args, dir.path()).lines();
    let counts =
        |lines: &[serde_json::Value]| lines.iter().map(|l| format!("{}={}", l["key"], l["value"])).collect::<Vec<_>>();
    assert_eq!(counts(&first), [r#""tick"="1""#, r#""tock"="1""#, r#""tick"="2""#]);
    assert_eq!(counts(&second), [r#""tick"="3""#, r#""tock"="2""#, r#""tick"="4""#]);
}

#[test]
fn outputs_do_not_depend_on_the_batch_size() {
    assert_same_for_batch_sizes_1_and_1000("word-count");
}

/// `example` on its golden input gives the same outputs one record per call as 1000 per call.
fn assert_same_for_batch_sizes_1_and_1000(example: &str) {
    let cache = tempfile::tempdir().unwrap();
    let input = golden(&format!("{example}.input.jsonl"));
    let module = guest(example);
    let run = |size: &str| {
        weir(
            &["test", "-m", module.to_str().unwrap(), "-i", input.to_str().unwrap(), "--batch-size", size],
            cache.path(),
        )
    };
    assert_eq!(run("1").stdout, run("1000").stdout);
}

#[test]
fn inspect_names_the_world_and_version_of_a_processor() {
    let cache = tempfile::tempdir().unwrap();
    let run = weir(&["inspect", guest("word-count").to_str().unwrap()], cache.path());
    assert!(run.ok, "{:?}", run.error);
    assert!(run.stdout.contains("world:   weir:processor/timed-processor, version 0.2.1"), "{}", run.stdout);
    assert!(run.stdout.contains("imports: weir:processor/state@0.2.1"), "{}", run.stdout);
    assert!(run.stdout.contains("valid:   yes"), "{}", run.stdout);
}

#[test]
fn weir_test_expect_passes_each_example_against_its_golden_file() {
    let cache = tempfile::tempdir().unwrap();
    for example in ["uppercase", "word-count", "windowed-count", "route-by-key"] {
        let (input, expected) =
            (golden(&format!("{example}.input.jsonl")), golden(&format!("{example}.expected.jsonl")));
        let module = guest(example);
        let args = ["test", "-m", module.to_str().unwrap(), "-i", input.to_str().unwrap()];
        let run = weir(&[&args[..], &["--expect", expected.to_str().unwrap()]].concat(), cache.path());
        assert!(run.ok, "{example}: {:?}\n{}", run.error, run.stdout);
        let lines = std::fs::read_to_string(&expected).unwrap().lines().count();
        assert_eq!(run.stdout.trim(), format!("{lines} outputs match {}", expected.display()));
    }
}

#[test]
fn weir_test_expect_names_each_changed_missing_and_extra_output_with_its_lines_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let input = golden("uppercase.input.jsonl");
    let golden_lines: Vec<String> =
        std::fs::read_to_string(golden("uppercase.expected.jsonl")).unwrap().lines().map(str::to_owned).collect();
    // Line 2 changed (its fields reordered too, which alone is no difference), line 4 left out,
    // and a line that no input makes added at the end.
    let mut lines = golden_lines.clone();
    lines[1] = r#"{"value": "WEIR RUNS JAVA", "key": "user-2"}"#.to_owned();
    lines.remove(3);
    lines.push(r#"{"key": "ghost", "value": "BOO"}"#.to_owned());
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let expected = weir_tests::write_lines(dir.path(), "expected.jsonl", &refs);
    let module = guest("uppercase");
    let (m, i, e) = (module.to_str().unwrap(), input.to_str().unwrap(), expected.to_str().unwrap());
    let run = weir(&["test", "-m", m, "-i", i, "--expect", e], dir.path());
    assert!(!run.ok && run.error.is_none(), "a difference fails the run: {:?}", run.error);
    let shown = run.stdout;
    let file = expected.display();
    assert!(shown.starts_with(&format!("3 differences between the {} outputs", golden_lines.len())), "{shown}");
    assert!(shown.contains(&format!("changed  {file}:2, output from input line 2 (partition 0)")), "{shown}");
    assert!(
        shown.contains(r#"expected {"topic":null,"key":"user-2","value":"WEIR RUNS JAVA","headers":[]}"#),
        "{shown}"
    );
    assert!(
        shown.contains(r#"got      {"topic":null,"key":"user-2","value":"WEIR RUNS WASM","headers":[]}"#),
        "{shown}"
    );
    assert!(shown.contains("extra    output from input line 4 (partition 0)"), "{shown}");
    assert!(shown.contains(&format!("missing  {file}:{}", lines.len())), "{shown}");

    // --update rewrites the file with what the run gives, and then it matches.
    let run = weir(&["test", "-m", m, "-i", i, "--expect", e, "--update"], dir.path());
    assert!(run.ok, "{:?}", run.error);
    assert_eq!(std::fs::read_to_string(&expected).unwrap().lines().collect::<Vec<_>>(), golden_lines);
    assert!(weir(&["test", "-m", m, "-i", i, "--expect", e], dir.path()).ok);
}

#[test]
fn weir_test_expect_in_sorted_order_accepts_the_outputs_in_any_order() {
    let dir = tempfile::tempdir().unwrap();
    let input = golden("uppercase.input.jsonl");
    let mut lines: Vec<String> =
        std::fs::read_to_string(golden("uppercase.expected.jsonl")).unwrap().lines().map(str::to_owned).collect();
    lines.reverse();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let expected = weir_tests::write_lines(dir.path(), "reversed.jsonl", &refs);
    let module = guest("uppercase");
    let (m, i, e) = (module.to_str().unwrap(), input.to_str().unwrap(), expected.to_str().unwrap());
    assert!(!weir(&["test", "-m", m, "-i", i, "--expect", e], dir.path()).ok, "in exact order they differ");
    let run = weir(&["test", "-m", m, "-i", i, "--expect", e, "--order", "sorted"], dir.path());
    assert!(run.ok, "{:?}\n{}", run.error, run.stdout);
}

#[test]
fn weir_prints_shell_completions_and_a_man_page_naming_every_command() {
    let cache = tempfile::tempdir().unwrap();
    let commands =
        ["new", "demo", "build", "test", "run", "serve", "deploy", "ps", "status", "logs", "undeploy", "topic"];
    for shell in ["bash", "zsh", "fish"] {
        let run = weir(&["completions", shell], cache.path());
        assert!(run.ok, "{shell}: {:?}", run.error);
        for command in commands {
            assert!(run.stdout.contains(command), "{shell} completions lack `{command}`");
        }
    }
    assert!(weir(&["completions", "tcsh"], cache.path()).failure().contains("tcsh"));
    let man = weir(&["man"], cache.path());
    assert!(man.ok && man.stdout.starts_with(".ie") && man.stdout.contains(".TH weir 1"), "{}", man.stdout);
    for command in commands {
        assert!(man.stdout.contains(&format!("weir\\-{command}(1)")), "the man page lacks `{command}`");
    }
}

#[test]
fn weir_help_lists_the_commands_in_the_order_a_newcomer_uses_them() {
    let mut help = Vec::new();
    let shown = weir_runtime::cli::run_from(["weir", "--help"], &mut help);
    // clap answers --help with an "error" that carries the text.
    let text = match shown {
        Err(e) => e.to_string(),
        Ok(_) => String::from_utf8_lossy(&help).into_owned(),
    };
    let at = |c: &str| text.find(&format!("\n  {c} ")).unwrap_or_else(|| panic!("`{c}` not in:\n{text}"));
    let order = ["new", "demo", "build", "test", "run", "serve", "deploy", "ps", "status", "logs"];
    assert!(order.windows(2).all(|w| at(w[0]) < at(w[1])), "{text}");
}
