//! `weir demo`: the README's first command, on the embedded mock cluster (no broker needed).

use weir_tests::{golden, guest, weir};

#[test]
fn the_demo_runs_a_pipeline_on_the_embedded_broker_and_prints_every_output() {
    let cache = tempfile::tempdir().unwrap();
    let module = guest("uppercase");
    let input = golden("uppercase.input.jsonl");
    let run = weir(&["demo", "--module", module.to_str().unwrap(), "--input", input.to_str().unwrap()], cache.path());
    let mut values: Vec<String> = run.lines().iter().map(|l| l["value"].to_string()).collect();
    values.sort();
    let mut want: Vec<String> = ["HELLO, WORLD", "WEIR RUNS WASM", "A RECORD WITHOUT A KEY", "ASCII ONLY: STRAßE"]
        .iter()
        .map(|v| format!("\"{v}\""))
        .chain(["null".to_owned(), r#"{"base64":"AAFBQv8="}"#.to_owned()])
        .collect();
    want.sort();
    assert_eq!(values, want);
}
