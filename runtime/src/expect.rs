//! `weir test --expect FILE`: a run's outputs against the JSONL file of those it should produce,
//! as a readable diff: outputs missing, extra and changed, each with the expected file's line
//! and the input lines it came from.
//!
//! Lines are compared as JSON, not as text: fields in any order, `topic` absent or `null` for
//! the default output, `headers` absent or `[]`. Two orders:
//! - `exact` (the default): the outputs in the order `weir test` writes them, which is the
//!   input's order (records of one partition keep theirs, as Kafka keeps them);
//! - `sorted`: as a set, for processors whose output order does not matter.

use std::path::Path;

use anyhow::{bail, Context};
use serde_json::{Map, Value};
use similar::{capture_diff_slices, Algorithm, DiffOp};

use crate::jsonl::OutputLine;
use crate::testrun::Origin;

/// How outputs are matched to the expected lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Order {
    /// In the order written: the input's order.
    Exact,
    /// As a set: each output matches an expected line, in any order.
    Sorted,
}

/// An expected line: its line number in the file, and its canonical text.
#[derive(Debug, Clone)]
pub struct Expected {
    pub line: usize,
    pub text: String,
}

/// An output of the run: its canonical text, and where it came from.
#[derive(Debug, Clone)]
pub struct Actual {
    pub text: String,
    pub origin: Origin,
}

impl Actual {
    pub fn of(line: &OutputLine, origin: Origin) -> anyhow::Result<Self> {
        Ok(Self { text: canonical(serde_json::to_value(line)?)?, origin })
    }
}

/// One difference between the outputs and the expected file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// An expected line no output matched.
    Missing { line: usize, text: String },
    /// An output no expected line matched.
    Extra { text: String, origin: Origin },
    /// An output where another was expected.
    Changed { line: usize, expected: String, got: String, origin: Origin },
}

/// Reads the expected outputs: one JSON object per non-blank line.
pub fn load(path: &Path) -> anyhow::Result<Vec<Expected>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut lines = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: Value =
            serde_json::from_str(line).with_context(|| format!("{}:{}: not a JSON object", path.display(), n + 1))?;
        let text = canonical(value).with_context(|| format!("{}:{}", path.display(), n + 1))?;
        lines.push(Expected { line: n + 1, text });
    }
    Ok(lines)
}

/// An output line's JSON, written one way: `topic`, `key`, `value`, `headers`, then
/// `timestamp` when there is one, with `null` and `[]` filled in for fields left out.
fn canonical(value: Value) -> anyhow::Result<String> {
    let Value::Object(mut fields) = value else { bail!("an output line is a JSON object") };
    let mut out: Vec<(&str, Value)> = Vec::new();
    for name in ["topic", "key", "value"] {
        out.push((name, sorted(fields.remove(name).unwrap_or(Value::Null))));
    }
    out.push(("headers", sorted(fields.remove("headers").unwrap_or(Value::Array(Vec::new())))));
    if let Some(timestamp) = fields.remove("timestamp").filter(|t| !t.is_null()) {
        out.push(("timestamp", timestamp));
    }
    if let Some(name) = fields.keys().next() {
        bail!("unknown field `{name}` (an output line has topic, key, value, headers and timestamp)");
    }
    let parts: Vec<String> = out.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    Ok(format!("{{{}}}", parts.join(",")))
}

/// `value` with every object's fields in name order (a map keeps the order they are put in, or
/// sorts them itself).
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(fields) => {
            let mut pairs: Vec<(String, Value)> = fields.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(pairs.into_iter().collect::<Map<String, Value>>())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// The differences between `actual` and `expected`, in `order`.
pub fn compare(expected: &[Expected], actual: &[Actual], order: Order) -> Vec<Difference> {
    match order {
        Order::Exact => in_order(expected, actual),
        Order::Sorted => {
            let mut expected = expected.to_vec();
            let mut actual = actual.to_vec();
            expected.sort_by(|a, b| a.text.cmp(&b.text));
            actual.sort_by(|a, b| a.text.cmp(&b.text));
            in_order(&expected, &actual)
        }
    }
}

/// The shortest edit from `expected` to `actual`: a line replaced is a change (in pairs), the
/// rest missing or extra.
fn in_order(expected: &[Expected], actual: &[Actual]) -> Vec<Difference> {
    let old: Vec<&str> = expected.iter().map(|e| e.text.as_str()).collect();
    let new: Vec<&str> = actual.iter().map(|a| a.text.as_str()).collect();
    let missing = |e: &Expected| Difference::Missing { line: e.line, text: e.text.clone() };
    let extra = |a: &Actual| Difference::Extra { text: a.text.clone(), origin: a.origin };
    let mut differences = Vec::new();
    for op in capture_diff_slices(Algorithm::Myers, &old, &new) {
        match op {
            DiffOp::Equal { .. } => {}
            DiffOp::Delete { old_index, old_len, .. } => {
                differences.extend(expected[old_index..old_index + old_len].iter().map(missing));
            }
            DiffOp::Insert { new_index, new_len, .. } => {
                differences.extend(actual[new_index..new_index + new_len].iter().map(extra));
            }
            DiffOp::Replace { old_index, old_len, new_index, new_len } => {
                let (gone, came) = (&expected[old_index..old_index + old_len], &actual[new_index..new_index + new_len]);
                for (e, a) in gone.iter().zip(came) {
                    differences.push(Difference::Changed {
                        line: e.line,
                        expected: e.text.clone(),
                        got: a.text.clone(),
                        origin: a.origin,
                    });
                }
                differences.extend(gone.iter().skip(came.len()).map(missing));
                differences.extend(came.iter().skip(gone.len()).map(extra));
            }
        }
    }
    differences
}

/// The differences as a reader sees them, after a line that counts them.
pub fn render(file: &Path, outputs: usize, expected: usize, differences: &[Difference]) -> String {
    let file = file.display();
    let mut text = format!(
        "{} difference{} between the {outputs} outputs and the {expected} lines of {file}:\n",
        differences.len(),
        if differences.len() == 1 { "" } else { "s" }
    );
    for d in differences {
        match d {
            Difference::Missing { line, text: t } => {
                text.push_str(&format!("  missing  {file}:{line}\n           {t}\n"));
            }
            Difference::Extra { text: t, origin } => {
                text.push_str(&format!("  extra    output from {origin}\n           {t}\n"));
            }
            Difference::Changed { line, expected, got, origin } => {
                text.push_str(&format!(
                    "  changed  {file}:{line}, output from {origin}\n    expected {expected}\n    got      {got}\n"
                ));
            }
        }
    }
    text
}

#[cfg(test)]
mod test {
    use super::*;

    fn expected(lines: &[&str]) -> Vec<Expected> {
        lines.iter().enumerate().map(|(i, l)| Expected { line: i + 1, text: canonical_of(l) }).collect()
    }

    fn actual(lines: &[&str]) -> Vec<Actual> {
        let origin = |i: usize| Origin { first_line: i + 1, last_line: i + 1, partition: 0 };
        lines.iter().enumerate().map(|(i, l)| Actual { text: canonical_of(l), origin: origin(i) }).collect()
    }

    fn canonical_of(line: &str) -> String {
        canonical(serde_json::from_str(line).unwrap_or(Value::Null)).unwrap_or_default()
    }

    #[test]
    fn lines_match_as_json_whatever_their_field_order_and_left_out_defaults() {
        let a = canonical_of(r#"{"value": "1", "key": "a"}"#);
        let b = canonical_of(r#"{"topic": null, "key": "a", "value": "1", "headers": [], "timestamp": null}"#);
        assert_eq!(a, b);
        assert_eq!(a, r#"{"topic":null,"key":"a","value":"1","headers":[]}"#);
        assert!(canonical(serde_json::json!({"key": "a", "vaule": "1"})).unwrap_err().to_string().contains("vaule"));
    }

    #[test]
    fn a_changed_a_missing_and_an_extra_output_are_each_named_with_their_lines() {
        let e = expected(&[r#"{"key":"a","value":"1"}"#, r#"{"key":"b","value":"1"}"#, r#"{"key":"c","value":"1"}"#]);
        let a = actual(&[r#"{"key":"a","value":"1"}"#, r#"{"key":"b","value":"2"}"#, r#"{"key":"d","value":"1"}"#]);
        let differences = compare(&e, &a, Order::Exact);
        assert_eq!(differences.len(), 2, "{differences:?}");
        assert!(matches!(&differences[0], Difference::Changed { line: 2, origin, .. } if origin.first_line == 2));
        assert!(matches!(&differences[1], Difference::Changed { line: 3, .. }));

        let a = actual(&[r#"{"key":"a","value":"1"}"#, r#"{"key":"c","value":"1"}"#, r#"{"key":"e","value":"1"}"#]);
        let differences = compare(&e, &a, Order::Exact);
        assert_eq!(
            differences,
            vec![
                Difference::Missing { line: 2, text: e[1].text.clone() },
                Difference::Extra { text: a[2].text.clone(), origin: a[2].origin },
            ]
        );
        let shown = render(Path::new("expected.jsonl"), 3, 3, &differences);
        assert!(shown.starts_with("2 differences between the 3 outputs and the 3 lines of expected.jsonl"), "{shown}");
        assert!(shown.contains("missing  expected.jsonl:2"), "{shown}");
        assert!(shown.contains("extra    output from input line 3 (partition 0)"), "{shown}");
    }

    #[test]
    fn sorted_order_ignores_the_order_but_not_the_count() {
        let e = expected(&[r#"{"key":"a"}"#, r#"{"key":"b"}"#, r#"{"key":"b"}"#]);
        let a = actual(&[r#"{"key":"b"}"#, r#"{"key":"a"}"#]);
        assert!(compare(&e, &a, Order::Exact).len() >= 2, "in exact order these differ");
        let differences = compare(&e, &a, Order::Sorted);
        assert!(matches!(differences.as_slice(), [Difference::Missing { .. }]), "{differences:?}");
        let a = actual(&[r#"{"key":"b"}"#, r#"{"key":"a"}"#, r#"{"key":"b"}"#]);
        assert!(compare(&e, &a, Order::Sorted).is_empty());
    }
}
