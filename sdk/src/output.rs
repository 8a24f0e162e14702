use crate::bindings::weir::processor::types as wit;
use crate::record::{append, column, HEADER_STRIDE};
use crate::{Error, Record};

/// One record to produce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    pub(crate) topic: Option<String>,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    pub(crate) timestamp: Option<i64>,
    pub(crate) source: Option<u32>,
}

impl Output {
    /// An output with this value and no key, for the default output.
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        Self { value: Some(value.into()), ..Self::default() }
    }

    /// An output with no value: deletes its key from a compacted topic.
    pub fn tombstone() -> Self {
        Self::default()
    }

    /// Key, headers and source of `record`, no value yet.
    pub(crate) fn like(record: &Record<'_>) -> Self {
        Self {
            key: record.key().map(<[u8]>::to_vec),
            headers: record.headers().map(|(n, v)| (n.to_owned(), v.to_vec())).collect(),
            source: Some(record.index() as u32),
            ..Self::default()
        }
    }

    /// Sets the key (outputs are partitioned by key).
    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the value.
    pub fn with_value(mut self, value: impl Into<Vec<u8>>) -> Self {
        self.value = Some(value.into());
        self
    }

    /// Sends this output to the output named `name` instead of the default one.
    pub fn with_topic(mut self, name: impl Into<String>) -> Self {
        self.topic = Some(name.into());
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the timestamp (milliseconds since the Unix epoch); otherwise the input's is used.
    pub fn with_timestamp(mut self, millis: i64) -> Self {
        self.timestamp = Some(millis);
        self
    }

    /// Marks this output as answering `record` (for its timestamp and error reports); per-record
    /// processors do not need this.
    pub fn answering(mut self, record: &Record<'_>) -> Self {
        self.source = Some(record.index() as u32);
        self
    }

    pub fn topic(&self) -> Option<&str> {
        self.topic.as_deref()
    }

    pub fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }

    pub fn value(&self) -> Option<&[u8]> {
        self.value.as_deref()
    }

    pub fn headers(&self) -> &[(String, Vec<u8>)] {
        &self.headers
    }

    pub fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }
}

/// What a processor function may return: zero, one or many outputs, or an error.
pub trait IntoOutputs {
    #[doc(hidden)]
    fn emit(self, sink: &mut OutputSink) -> Result<(), Error>;
}

impl IntoOutputs for Output {
    fn emit(self, sink: &mut OutputSink) -> Result<(), Error> {
        sink.push(self);
        Ok(())
    }
}

impl IntoOutputs for () {
    fn emit(self, _: &mut OutputSink) -> Result<(), Error> {
        Ok(())
    }
}

impl<T: IntoOutputs> IntoOutputs for Option<T> {
    fn emit(self, sink: &mut OutputSink) -> Result<(), Error> {
        self.map_or(Ok(()), |t| t.emit(sink))
    }
}

impl<T: IntoOutputs> IntoOutputs for Vec<T> {
    fn emit(self, sink: &mut OutputSink) -> Result<(), Error> {
        self.into_iter().try_for_each(|t| t.emit(sink))
    }
}

impl<T: IntoOutputs, const N: usize> IntoOutputs for [T; N] {
    fn emit(self, sink: &mut OutputSink) -> Result<(), Error> {
        self.into_iter().try_for_each(|t| t.emit(sink))
    }
}

impl<T: IntoOutputs, E: Into<Error>> IntoOutputs for Result<T, E> {
    fn emit(self, sink: &mut OutputSink) -> Result<(), Error> {
        self.map_err(Into::into)?.emit(sink)
    }
}

/// Collects outputs into the columnar encoding of `wit/processor.wit`.
#[doc(hidden)]
#[derive(Debug)]
pub struct OutputSink {
    out: wit::Outputs,
    /// The record being processed; outputs that name none answer it.
    pub(crate) source: u32,
}

impl OutputSink {
    pub(crate) fn for_batch(batch: &wit::Batch) -> Self {
        let mut sink = Self::with_capacity(batch.offsets.len() / 8);
        sink.out.data.reserve(batch.data.len());
        sink
    }

    /// A sink sized for about `n` outputs.
    pub(crate) fn with_capacity(n: usize) -> Self {
        let out = wit::Outputs {
            records: Vec::with_capacity(n * 8 * 4),
            sources: Vec::with_capacity(n * 4),
            timestamps: Vec::with_capacity(n * 8),
            headers: Vec::new(),
            data: Vec::new(),
        };
        Self { out, source: 0 }
    }

    fn append(&mut self, bytes: Option<&[u8]>) -> [u32; 2] {
        append(&mut self.out.data, bytes)
    }

    pub(crate) fn push(&mut self, o: Output) {
        let first_header = (self.out.headers.len() / (4 * HEADER_STRIDE)) as u32;
        for (name, value) in &o.headers {
            let [name_at, name_len] = self.append(Some(name.as_bytes()));
            let [value_at, value_len] = self.append(Some(value));
            column::push_u32s(&mut self.out.headers, &[name_at, name_len, value_at, value_len]);
        }
        let [topic_at, topic_len] = self.append(o.topic.as_deref().map(str::as_bytes));
        let [key_at, key_len] = self.append(o.key.as_deref());
        let [value_at, value_len] = self.append(o.value.as_deref());
        let header_count = o.headers.len() as u32;
        column::push_u32s(
            &mut self.out.records,
            &[topic_at, topic_len, key_at, key_len, value_at, value_len, first_header, header_count],
        );
        column::push_u32s(&mut self.out.sources, &[o.source.unwrap_or(self.source)]);
        column::push_i64(&mut self.out.timestamps, o.timestamp.unwrap_or(-1));
    }

    pub(crate) fn finish(self) -> wit::Outputs {
        self.out
    }
}
