//! The JSONL shape of records for `weir test`, in and out.
//!
//! ```json
//! {"topic": "orders", "partition": 0, "key": "k1", "value": "hello",
//!  "headers": [{"key": "trace", "value": "abc"}], "timestamp": 1700000000000}
//! ```
//!
//! Byte strings are JSON strings when they are valid UTF-8, otherwise `{"base64": "..."}`; a
//! missing or `null` key or value is an absent key or a tombstone. On input only `value` is
//! needed; `topic` defaults to `input`, `partition` to 0, `offset` to the next in the partition.
//! On output `topic` is `null` for the pipeline's default output.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One input line.
#[derive(Debug, Clone, PartialEq)]
pub struct InputRecord {
    pub topic: String,
    pub partition: i32,
    /// Whether the line named its partition (else 0).
    pub partition_given: bool,
    pub offset: Option<i64>,
    pub timestamp: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputLine {
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    partition: Option<i32>,
    #[serde(default)]
    offset: Option<i64>,
    #[serde(default)]
    timestamp: Option<i64>,
    #[serde(default)]
    key: Option<Value>,
    #[serde(default)]
    value: Option<Value>,
    #[serde(default)]
    headers: Vec<HeaderLine>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderLine {
    key: String,
    value: Option<Value>,
}

/// Parses one input line; the error says which field is wrong and how.
impl InputRecord {
    /// This record (key, value, headers, timestamp) for `topic`, partitioned by the caller.
    pub fn to_kafka<'a>(&'a self, topic: &'a str) -> rdkafka::producer::BaseRecord<'a, [u8], [u8]> {
        let mut record = rdkafka::producer::BaseRecord::to(topic);
        if let Some(key) = &self.key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = &self.value {
            record = record.payload(value.as_slice());
        }
        if let Some(ts) = self.timestamp {
            record = record.timestamp(ts);
        }
        if !self.headers.is_empty() {
            let mut headers = rdkafka::message::OwnedHeaders::new_with_capacity(self.headers.len());
            for (k, v) in &self.headers {
                headers = headers.insert(rdkafka::message::Header { key: &String::from_utf8_lossy(k), value: Some(v) });
            }
            record = record.headers(headers);
        }
        record
    }
}

pub fn parse_line(line: &str) -> Result<InputRecord, String> {
    let parsed: InputLine = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let partition = parsed.partition.unwrap_or(0);
    if partition < 0 {
        return Err(format!("partition must not be negative, got {partition}"));
    }
    let mut headers = Vec::with_capacity(parsed.headers.len());
    for h in parsed.headers {
        let value = bytes_field(h.value, "header value")?.unwrap_or_default();
        headers.push((h.key.into_bytes(), value));
    }
    Ok(InputRecord {
        topic: parsed.topic.unwrap_or_else(|| "input".to_owned()),
        partition,
        partition_given: parsed.partition.is_some(),
        offset: parsed.offset,
        timestamp: parsed.timestamp,
        key: bytes_field(parsed.key, "key")?,
        value: bytes_field(parsed.value, "value")?,
        headers,
    })
}

fn bytes_field(value: Option<Value>, field: &str) -> Result<Option<Vec<u8>>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.into_bytes())),
        Some(Value::Object(map)) if map.len() == 1 && map.contains_key("base64") => match &map["base64"] {
            Value::String(b) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .map(Some)
                .map_err(|e| format!("{field}: invalid base64: {e}")),
            _ => Err(format!("{field}: base64 must be a string")),
        },
        Some(other) => Err(format!("{field} must be a string, null or {{\"base64\": ...}}, got {}", kind(&other))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A byte string as JSON: a string when it is UTF-8, else `{"base64": ...}`.
pub fn bytes_value(bytes: Option<&[u8]>) -> Value {
    match bytes {
        None => Value::Null,
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => Value::String(s.to_owned()),
            Err(_) => {
                let mut m = Map::new();
                m.insert("base64".into(), Value::String(base64::engine::general_purpose::STANDARD.encode(b)));
                Value::Object(m)
            }
        },
    }
}

/// One output line.
#[derive(Serialize)]
pub struct OutputLine {
    pub topic: Option<String>,
    pub key: Value,
    pub value: Value,
    pub headers: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
}

impl OutputLine {
    pub fn from_output(o: &crate::record::OutputRef<'_>) -> Self {
        let headers = o
            .headers()
            .map(|(k, v)| {
                let mut m = Map::new();
                m.insert("key".into(), Value::String(String::from_utf8_lossy(k).into_owned()));
                m.insert("value".into(), bytes_value(Some(v)));
                Value::Object(m)
            })
            .collect();
        Self {
            topic: o.topic().map(str::to_owned),
            key: bytes_value(o.key()),
            value: bytes_value(o.value()),
            headers,
            timestamp: o.timestamp(),
        }
    }
}

#[cfg(test)]
mod test {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

        /// `weir test`'s input is untrusted: any line parses or is refused, never a panic.
        #[test]
        fn any_line_parses_or_is_refused_never_a_panic(line in any::<String>()) {
            let _ = parse_line(&line);
        }

        /// Lines that are JSON objects with fields of every shape.
        #[test]
        fn any_record_shaped_object_parses_or_is_refused(
            key in prop_oneof![Just("null".to_owned()), any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap_or_default()), Just(r#"{"base64": "!!"}"#.to_owned()), Just("7".to_owned())],
            value in prop_oneof![Just("null".to_owned()), any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap_or_default()), Just(r#"{"base64": "aGk="}"#.to_owned()), Just("[1]".to_owned())],
            extra in prop_oneof![Just(String::new()), Just(r#","timestamp": -5"#.to_owned()), Just(r#","headers": [["a", 1]]"#.to_owned()), Just(r#","partition": 1e9"#.to_owned())],
        ) {
            let _ = parse_line(&format!(r#"{{"key": {key}, "value": {value}{extra}}}"#));
        }
    }

    #[test]
    fn a_line_with_only_a_value_gets_the_defaults() {
        let r = parse_line(r#"{"value": "hi"}"#).unwrap();
        assert_eq!((r.topic.as_str(), r.partition, r.key, r.value), ("input", 0, None, Some(b"hi".to_vec())));
    }

    #[test]
    fn base64_fields_decode_to_bytes_and_encode_back() {
        let r = parse_line(r#"{"value": {"base64": "/wA="}, "headers": [{"key": "h", "value": "v"}]}"#).unwrap();
        assert_eq!(r.value.as_deref(), Some(&[0xff, 0][..]));
        assert_eq!(bytes_value(r.value.as_deref()), serde_json::json!({"base64": "/wA="}));
        assert_eq!(r.headers, [(b"h".to_vec(), b"v".to_vec())]);
    }

    #[test]
    fn wrong_types_and_unknown_fields_are_named() {
        assert!(parse_line(r#"{"value": 5}"#).unwrap_err().contains("value must be a string"));
        assert!(parse_line(r#"{"valeu": "x"}"#).unwrap_err().contains("valeu"));
        assert!(parse_line(r#"{"value": "x""#).is_err());
    }
}
