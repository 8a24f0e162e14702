//! Bad input gets a one-line error that says what and where, and loses nothing.

#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]
use std::path::Path;
use weir_runtime::state::{RocksStore, StateStore};

use weir_tests::{guest, polyglot_cache, polyglot_guest, weir, write_lines};

fn module_arg(name: &str) -> String {
    guest(name).to_string_lossy().into_owned()
}

/// Runs `weir test` on `module` with `lines` as input and extra `args`, returning the error.
fn fails(module: &str, lines: &[&str], args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    fails_with_cache(module, lines, args, dir.path())
}

fn fails_with_cache(module: &str, lines: &[&str], args: &[&str], cache: &Path) -> String {
    let dir = tempfile::tempdir().unwrap();
    let input = write_lines(dir.path(), "in.jsonl", lines);
    let mut argv = vec!["test", "--module", module, "--input", input.to_str().unwrap()];
    argv.extend_from_slice(args);
    let run = weir(&argv, cache);
    let error = run.failure().to_owned();
    assert_eq!(error.lines().count(), 1, "the error is not one line: {error}");
    error
}

/// `weir build` of a folder `broken` under `dir` holding `files` (name and lines each): its
/// error, once it is known that the failed build left no component behind.
fn build_error(dir: &Path, files: &[(&str, &[&str])]) -> String {
    let app = dir.join("broken");
    std::fs::create_dir_all(&app).unwrap();
    for (name, lines) in files {
        write_lines(&app, name, lines);
    }
    let out = dir.join("broken.wasm");
    let run = weir(&["build", app.to_str().unwrap(), "-o", out.to_str().unwrap()], dir);
    let error = run.failure().to_owned();
    assert!(!out.exists(), "a failed build left a component behind");
    error
}

#[test]
fn a_file_that_is_not_wasm_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_lines(dir.path(), "notes.wasm", &["just some text"]);
    let error = fails(path.to_str().unwrap(), &[r#"{"value": "x"}"#], &[]);
    assert!(error.contains("notes.wasm") && error.contains("not a WebAssembly file"), "{error}");
}

#[test]
fn a_core_module_is_refused_as_not_a_component() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("core.wasm");
    std::fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
    let error = fails(path.to_str().unwrap(), &[r#"{"value": "x"}"#], &[]);
    assert!(error.contains("core.wasm") && error.contains("not a component"), "{error}");
}

#[test]
fn a_truncated_component_is_refused_as_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.wasm");
    let bytes = std::fs::read(guest("uppercase")).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let error = fails(path.to_str().unwrap(), &[r#"{"value": "x"}"#], &[]);
    assert!(error.contains("cut.wasm") && error.contains("invalid component"), "{error}");
}

#[test]
fn a_component_for_another_world_is_refused_naming_what_it_exports() {
    let error = fails(&module_arg("not-a-processor"), &[r#"{"value": "x"}"#], &[]);
    assert!(error.contains("built for another world"), "{error}");
    assert!(error.contains("weir:processor/processor@0.2.1") && error.contains("wasi:cli/run"), "{error}");
}

#[test]
fn a_component_for_another_version_of_the_contract_is_refused_naming_both_versions() {
    let error = fails(&module_arg("contract-next"), &[r#"{"value": "x"}"#], &[]);
    assert!(error.contains("contract_next.wasm") && error.contains("processor contract 1.0.0"), "{error}");
    assert!(error.contains("it runs 0.2.x, up to 0.2.1"), "{error}");
}

#[test]
fn a_component_that_imports_what_weir_does_not_give_is_refused_naming_the_import() {
    let error = fails(&module_arg("outsider"), &[r#"{"value": "x"}"#], &[]);
    assert!(error.contains("outsider.wasm") && error.contains("needs imports weir does not provide"), "{error}");
    assert!(error.contains("weir-tests:outside/network"), "{error}");
}

#[test]
fn an_init_that_traps_is_refused_naming_the_module() {
    let error = fails(&module_arg("handmade"), &[r#"{"value": "x"}"#], &["--config", "init=trap"]);
    assert!(error.contains("handmade.wasm: init failed") && error.contains("unreachable"), "{error}");
}

#[test]
fn an_init_that_never_returns_is_stopped_at_the_deadline() {
    let started = std::time::Instant::now();
    let error = fails(&module_arg("handmade"), &[r#"{"value": "x"}"#], &["--config", "init=loop", "--deadline", "200"]);
    assert!(error.contains("handmade.wasm: init failed: it did not return within its deadline of 200 ms"), "{error}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "the deadline did not stop init promptly");
}

#[test]
fn an_init_that_allocates_without_bound_is_stopped_at_the_memory_limit() {
    let args = ["--config", "init=alloc", "--memory-limit", "64"];
    let error = fails(&module_arg("handmade"), &[r#"{"value": "x"}"#], &args);
    assert!(error.contains("handmade.wasm: init failed: it exceeded its memory limit of 64 MiB"), "{error}");
}

#[test]
fn unbounded_recursion_traps_as_a_stack_overflow_at_its_record_and_the_host_carries_on() {
    let error = fails(
        &module_arg("misbehave"),
        &[r#"{"key": "a", "value": "ok"}"#, r#"{"key": "deep", "value": "recurse"}"#],
        &["--batch-size", "2"],
    );
    assert!(error.contains("trapped") && error.contains("call stack exhausted"), "{error}");
    assert!(error.contains("offset 1") && error.contains(r#"key "deep""#), "{error}");
    // The same process runs the module again, as a pipeline restarts the instance.
    let dir = tempfile::tempdir().unwrap();
    let input = write_lines(dir.path(), "in.jsonl", &[r#"{"value": "ok"}"#]);
    assert!(weir(&["test", "-m", &module_arg("misbehave"), "-i", input.to_str().unwrap()], dir.path()).ok);
}

#[test]
fn a_guest_reaches_no_network_and_no_files_and_is_told_so() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secret = write_lines(dir.path(), "secret.txt", &["the host's secret"]);
    let connect = format!(r#"{{"key": "net", "value": "connect {}"}}"#, listener.local_addr().unwrap());
    let error = fails(&module_arg("misbehave"), &[&connect], &[]);
    assert!(
        error.contains("rejected") && error.contains("connect failed") && error.contains(r#"key "net""#),
        "{error}"
    );
    assert!(listener.accept().is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock), "the guest connected");
    let read = format!(r#"{{"key": "file", "value": "read {}"}}"#, secret.display());
    let error = fails(&module_arg("misbehave"), &[&read], &[]);
    assert!(
        error.contains("rejected") && error.contains("read failed") && !error.contains("the host's secret"),
        "{error}"
    );
}

#[test]
fn malformed_output_columns_are_refused_naming_the_record_they_answer() {
    let fine = r#"{"key": "fine", "value": "ok"}"#;
    let error = fails(&module_arg("handmade"), &[fine, r#"{"key": "far", "value": "outside"}"#], &[]);
    assert!(error.contains("malformed outputs") && error.contains("outside the output data"), "{error}");
    assert!(error.contains("offset 1") && error.contains(r#"key "far""#), "{error}");
    let error = fails(&module_arg("handmade"), &[r#"{"key": "hdr", "value": "headers"}"#], &[]);
    assert!(error.contains("names headers beyond the list") && error.contains(r#"key "hdr""#), "{error}");
    let error = fails(&module_arg("handmade"), &[fine, r#"{"value": "ragged"}"#], &["--batch-size", "2"]);
    assert!(error.contains("output columns disagree") && error.contains("offsets 0..=1"), "{error}");
}

#[test]
fn a_trapping_guest_is_reported_with_topic_partition_offset_key_and_panic_message() {
    let error = fails(
        &module_arg("misbehave"),
        &[
            r#"{"key": "fine", "value": "ok"}"#,
            r#"{"key": "also-fine", "value": "ok"}"#,
            r#"{"topic": "orders", "partition": 0, "key": "poison", "value": "panic"}"#,
        ],
        &["--batch-size", "10"],
    );
    assert!(error.contains("trapped"), "{error}");
    assert!(error.contains("module `misbehave`") && error.contains("topic `orders` partition 0"), "{error}");
    assert!(error.contains("offset 0") && error.contains(r#"key "poison""#), "{error}");
    assert!(error.contains("asked to panic at offset 0"), "{error}");
}

#[test]
fn the_record_that_traps_is_found_inside_a_batch() {
    let error = fails(
        &module_arg("misbehave"),
        &[
            r#"{"key": "a", "value": "ok"}"#,
            r#"{"key": "b", "value": "ok"}"#,
            r#"{"key": "c", "value": "panic"}"#,
            r#"{"key": "d", "value": "ok"}"#,
        ],
        &["--batch-size", "4"],
    );
    assert!(error.contains("offset 2") && error.contains(r#"key "c""#), "{error}");
}

#[test]
fn a_guest_that_loops_forever_is_stopped_at_its_deadline() {
    let started = std::time::Instant::now();
    let error = fails(&module_arg("misbehave"), &[r#"{"key": "spin", "value": "loop"}"#], &["--deadline", "200"]);
    assert!(
        error.contains("deadline of 200 ms") && error.contains("offset 0") && error.contains(r#"key "spin""#),
        "{error}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "the deadline did not stop the guest promptly");
}

#[test]
fn a_guest_that_allocates_without_bound_is_stopped_at_its_memory_limit() {
    let error = fails(&module_arg("misbehave"), &[r#"{"key": "hog", "value": "alloc"}"#], &["--memory-limit", "64"]);
    assert!(error.contains("memory limit of 64 MiB") && error.contains(r#"key "hog""#), "{error}");
}

#[test]
fn a_guest_that_sleeps_past_its_deadline_is_stopped_at_the_deadline() {
    let started = std::time::Instant::now();
    let error = fails(&module_arg("misbehave"), &[r#"{"key": "nap", "value": "sleep 60000"}"#], &["--deadline", "300"]);
    assert!(
        error.contains("deadline of 300 ms") && error.contains("offset 0") && error.contains(r#"key "nap""#),
        "{error}"
    );
    // Asleep in the host, the guest was out of the epoch's reach: without a bound on the sleep
    // this took the full minute.
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "the guest slept through its deadline");
}

#[test]
fn a_guest_that_sleeps_within_its_deadline_sleeps_as_asked() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_lines(dir.path(), "in.jsonl", &[r#"{"value": "sleep 20"}"#]);
    let run = weir(&["test", "-m", &module_arg("misbehave"), "-i", input.to_str().unwrap()], dir.path());
    assert_eq!(run.lines()[0]["value"], "slept");
}

#[test]
fn a_batch_too_slow_together_for_its_deadline_is_run_again_in_smaller_batches_losing_nothing() {
    // Each record sleeps 150 ms, within the 400 ms deadline alone; six in one batch take 900.
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..6).map(|i| format!(r#"{{"key": "k{i}", "value": "sleep 150"}}"#)).collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let input = write_lines(dir.path(), "in.jsonl", &lines);
    let argv = [
        "test",
        "-m",
        &module_arg("misbehave"),
        "-i",
        input.to_str().unwrap(),
        "--deadline",
        "400",
        "--batch-size",
        "6",
    ];
    let run = weir(&argv, dir.path());
    let out = run.lines();
    assert_eq!(out.len(), 6, "one output per record: {out:?}");
    assert!(out.iter().all(|o| o["value"] == "slept"), "{out:?}");
}

#[test]
fn a_record_found_at_fault_in_a_failed_batch_is_reported_as_it_fails_alone() {
    // The batch passes its deadline in the third sleep; alone, the last record's output is
    // too big for Kafka: that is the error, at its offset, not the batch's deadline.
    let lines = [
        r#"{"value": "sleep 150"}"#,
        r#"{"value": "sleep 150"}"#,
        r#"{"value": "sleep 150"}"#,
        r#"{"key": "whale", "value": "big"}"#,
    ];
    let error = fails(&module_arg("misbehave"), &lines, &["--deadline", "400", "--batch-size", "4"]);
    assert!(
        error.contains("malformed outputs") && error.contains("offset 3") && error.contains(r#"key "whale""#),
        "{error}"
    );
}

#[test]
fn state_a_guest_hoards_in_the_host_counts_against_its_memory_limit() {
    let error =
        fails(&module_arg("misbehave"), &[r#"{"key": "hoarder", "value": "hoard"}"#], &["--memory-limit", "64"]);
    assert!(error.contains("memory limit of 64 MiB") && error.contains(r#"key "hoarder""#), "{error}");
}

#[test]
fn a_state_value_larger_than_a_changelog_record_may_be_fails_its_record_naming_size_and_limit() {
    let error =
        fails(&module_arg("misbehave"), &[r#"{"value": "fine"}"#, r#"{"key": "whale", "value": "bigstate"}"#], &[]);
    assert!(
        error.contains("offset 1")
            && error.contains(r#"key "whale""#)
            && error.contains("2097152 bytes")
            && error.contains("message.max.bytes (1000000)"),
        "{error}"
    );
}

#[test]
fn a_guest_out_of_fuel_is_stopped_when_fuel_is_metered() {
    let error = fails(&module_arg("misbehave"), &[r#"{"value": "loop"}"#], &["--fuel", "1000000"]);
    assert!(error.contains("ran out of fuel") && error.contains("offset 0"), "{error}");
}

#[test]
fn a_record_the_guest_rejects_is_named_with_the_guests_reason() {
    let error = fails(&module_arg("misbehave"), &[r#"{"value": "ok"}"#, r#"{"key": "bad", "value": "reject"}"#], &[]);
    assert!(error.contains("rejected") && error.contains("offset 1") && error.contains("asked to reject"), "{error}");
}

#[test]
fn a_trap_in_a_timer_handler_names_the_timer_and_its_key() {
    let error = fails(&module_arg("misbehave"), &[r#"{"value": "timer", "timestamp": 5}"#], &[]);
    assert!(error.contains("event-time timer at 0") && error.contains(r#"key "ring""#), "{error}");
    assert!(error.contains("asked to panic in the timer"), "{error}");
}

#[test]
fn a_guest_cannot_touch_the_state_keys_that_hold_its_timers() {
    let error = fails(&module_arg("misbehave"), &[r#"{"value": "reserved"}"#], &[]);
    assert!(error.contains("reserved for weir's timers") && error.contains("offset 0"), "{error}");
}

#[test]
fn a_malformed_input_line_is_named_by_its_line_number() {
    let error = fails(&module_arg("uppercase"), &[r#"{"value": "fine"}"#, "", r#"{"value": 42}"#], &[]);
    assert!(error.contains("in.jsonl:3: malformed record") && error.contains("value must be a string"), "{error}");
    let error = fails(&module_arg("uppercase"), &[r#"{"value": "fine""#], &[]);
    assert!(error.contains("in.jsonl:1: malformed record"), "{error}");
}

#[test]
fn an_unknown_config_key_is_refused_with_its_name() {
    let error = fails(&module_arg("word-count"), &[r#"{"value": "x"}"#], &["--config", "colour=blue"]);
    assert!(error.contains("unknown config key `colour`") && error.contains("takes no configuration"), "{error}");
    let error = fails(&module_arg("misbehave"), &[r#"{"value": "x"}"#], &["--config", "nte=typo"]);
    assert!(error.contains("unknown config key `nte`") && error.contains("accepts: note"), "{error}");
}

#[test]
fn a_config_argument_without_equals_is_refused() {
    let error = fails(&module_arg("misbehave"), &[r#"{"value": "x"}"#], &["--config", "note"]);
    assert!(error.contains("--config expects key=value, got `note`"), "{error}");
}

#[test]
fn a_failed_batch_leaves_the_state_directory_as_the_last_good_batch_left_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let good = [r#"{"value": "ok"}"#, r#"{"value": "ok"}"#];
    let bad = [r#"{"value": "ok"}"#, r#"{"value": "ok"}"#, r#"{"value": "ok"}"#, r#"{"value": "panic"}"#];
    let module = module_arg("misbehave");
    let run = |lines: &[&str]| {
        let input = write_lines(dir.path(), "in.jsonl", lines);
        let args = [
            "test",
            "-m",
            &module,
            "-i",
            input.to_str().unwrap(),
            "--batch-size",
            "2",
            "--state-dir",
            state.to_str().unwrap(),
        ];
        weir(&args, dir.path())
    };
    let failed = run(&bad);
    assert!(failed.failure().contains("offset 3"), "{:?}", failed.error);
    assert_eq!(failed.stdout.lines().count(), 2, "the first batch's outputs were written");

    let keys = || {
        let store = RocksStore::open(&state.join("misbehave").join("partition-0")).unwrap();
        let entries = store.scan(b"", None, 100).unwrap();
        entries.into_iter().map(|(k, _)| String::from_utf8(k).unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(keys(), ["seen/0", "seen/1"], "only the good batch's writes are in the store");
    assert!(run(&good).ok, "the state directory still opens and works");
}

#[test]
fn an_exception_in_python_or_javascript_fails_the_batch_naming_the_record_and_the_exception() {
    let lines = [r#"{"value": "fine"}"#, r#"{"key": "raw", "value": {"base64": "/w=="}}"#];
    let python = polyglot_guest("python", "word-count");
    let error = fails_with_cache(python.to_str().unwrap(), &lines, &[], &polyglot_cache());
    assert!(error.contains("offset 1") && error.contains("\"raw\"") && error.contains("UnicodeDecodeError"), "{error}");
    let js = polyglot_guest("js", "word-count");
    let error = fails_with_cache(js.to_str().unwrap(), &lines, &[], &polyglot_cache());
    assert!(error.contains("offset 1") && error.contains("\"raw\"") && error.contains("TypeError"), "{error}");
}

#[test]
fn python_and_javascript_processors_refuse_unknown_config_keys_by_name() {
    for language in ["python", "js"] {
        let module = polyglot_guest(language, "uppercase");
        let error = fails_with_cache(
            module.to_str().unwrap(),
            &[r#"{"value": "x"}"#],
            &["-c", "colour=blue"],
            &polyglot_cache(),
        );
        assert!(
            error.contains("unknown config key `colour`") && error.contains("takes no configuration"),
            "{language}: {error}"
        );
    }
}

#[test]
fn weir_build_names_the_folder_when_it_holds_no_processor() {
    let dir = tempfile::tempdir().unwrap();
    write_lines(dir.path(), "README.md", &["not code"]);
    let run = weir(&["build", dir.path().to_str().unwrap()], dir.path());
    let error = run.failure();
    assert!(
        error.contains(dir.path().to_str().unwrap())
            && error.contains(
                "no Cargo.toml (Rust), app.py (Python), app.js (JavaScript), app.ts (TypeScript), go.mod (Go), \
                 app.c (C) or app.cpp (C++)"
            ),
        "{error}"
    );
    let missing = dir.path().join("nowhere");
    let run = weir(&["build", missing.to_str().unwrap()], dir.path());
    assert!(run.failure().contains("nowhere: not a folder"), "{:?}", run.error);
}

#[test]
fn weir_build_shows_where_a_python_processor_is_broken() {
    let dir = tempfile::tempdir().unwrap();
    let app: &[&str] = &["from weir import Processor, processor", "", "@processor", "def f(record)", "    return None"];
    let error = build_error(dir.path(), &[("app.py", app)]);
    assert!(error.contains("componentize-py") && error.contains("app.py") && error.contains("SyntaxError"), "{error}");
}

#[test]
fn weir_build_shows_where_a_go_processor_does_not_compile() {
    let dir = tempfile::tempdir().unwrap();
    let go_mod: &[&str] =
        &["module example.com/broken", "", "go 1.24", "", "require github.com/weir-rs/weir/sdk/go v0.1.0"];
    let main: &[&str] = &[
        "package main",
        "",
        "import weir \"github.com/weir-rs/weir/sdk/go\"",
        "",
        "func init() { weir.Register(weir.Processor{Process: nope}) }",
        "",
        "func main() {}",
    ];
    let error = build_error(dir.path(), &[("go.mod", go_mod), ("main.go", main)]);
    assert!(error.contains("go build") && error.contains("main.go:5:") && error.contains("undefined: nope"), "{error}");
}

#[test]
fn weir_build_shows_where_a_c_processor_does_not_compile() {
    let dir = tempfile::tempdir().unwrap();
    let app: &[&str] =
        &["#include \"weir.h\"", "", "int weir_process(const weir_record *record) {", "    return nope(record);", "}"];
    let error = build_error(dir.path(), &[("app.c", app)]);
    assert!(
        error.contains("clang") && error.contains("broken/app.c:4:12: error") && error.contains("'nope'"),
        "{error}"
    );
}

#[test]
fn weir_build_shows_where_a_cpp_processor_does_not_compile_and_that_it_has_no_exceptions() {
    let dir = tempfile::tempdir().unwrap();
    let app: &[&str] = &[
        "#include <string>",
        "#include \"weir.h\"",
        "",
        "extern \"C\" int weir_process(const weir_record *record) {",
        "    std::string s = nope(record);",
        "    return WEIR_OK;",
        "}",
    ];
    let error = build_error(dir.path(), &[("app.cpp", app)]);
    assert!(
        error.contains("clang++") && error.contains("broken/app.cpp:5:21: error") && error.contains("'nope'"),
        "{error}"
    );
    // wasm32-wasi's libc++ has no exceptions: a throw is refused where it is written.
    let app: &[&str] =
        &["#include \"weir.h\"", "", "extern \"C\" int weir_process(const weir_record *) {", "    throw 1;", "}"];
    let error = build_error(dir.path(), &[("app.cpp", app)]);
    assert!(error.contains("broken/app.cpp:4:5: error") && error.contains("exceptions"), "{error}");
}

#[test]
fn weir_build_shows_where_a_typescript_processor_does_not_type_check() {
    // Inside the repository, so weir build finds the tsc and componentize-js `npm ci` installed.
    let dir = tempfile::tempdir_in(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).unwrap();
    let app: &[&str] = &[
        "import * as weir from \"weir\";",
        "export const processor = weir.processor((record: weir.Record) => {",
        "  const n: number = record.text();",
        "  return new weir.Output(String(n));",
        "});",
    ];
    let error = build_error(dir.path(), &[("app.ts", app)]);
    assert!(error.contains("broken/app.ts(3,") && error.contains("TS2322"), "{error}");
}

#[test]
fn weir_build_shows_where_a_javascript_processor_is_broken() {
    // Inside the repository, so weir build finds the componentize-js that `npm ci` installed.
    let dir = tempfile::tempdir_in(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).unwrap();
    let app: &[&str] = &["import * as weir from \"weir\";", "export const processor = weir.processor((record) => {;"];
    let error = build_error(dir.path(), &[("app.js", app)]);
    assert!(error.contains("broken/app.js:") && error.contains("SyntaxError: Unexpected end of input"), "{error}");
}
