use crate::bindings::weir::processor::types as wit;
use crate::{Error, Output};

/// The records of one call: consecutive records from one partition of one input.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    wit: &'a wit::Batch,
}

impl<'a> Batch<'a> {
    pub(crate) fn new(wit: &'a wit::Batch) -> Self {
        Self { wit }
    }

    /// The name of the input the records came from.
    pub fn input(&self) -> &'a str {
        &self.wit.input
    }

    pub fn topic(&self) -> &'a str {
        &self.wit.topic
    }

    pub fn partition(&self) -> i32 {
        self.wit.partition
    }

    pub fn len(&self) -> usize {
        self.wit.offsets.len() / 8
    }

    pub fn is_empty(&self) -> bool {
        self.wit.offsets.is_empty()
    }

    /// Record `index`, if the batch has it.
    pub fn get(&self, index: usize) -> Option<Record<'a>> {
        Record::new(self.wit, index)
    }

    /// The records in offset order.
    pub fn records(&self) -> impl ExactSizeIterator<Item = Record<'a>> + 'a {
        let batch = self.wit;
        batch.records.chunks_exact(4 * RECORD_STRIDE).enumerate().map(move |(i, row)| Record {
            batch,
            columns: column::row(row),
            index: i as u32,
        })
    }
}

use weir_abi::RECORD_STRIDE;
pub(crate) use weir_abi::{append, bytes, column, HEADER_STRIDE};

/// One input record. Its bytes are borrowed from the batch: no copies.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    batch: &'a wit::Batch,
    columns: [u32; RECORD_STRIDE],
    index: u32,
}

impl<'a> Record<'a> {
    fn new(batch: &'a wit::Batch, index: usize) -> Option<Self> {
        let columns = column::u32s(&batch.records, index)?;
        Some(Record { batch, columns, index: index as u32 })
    }

    /// The name of the input this record came from (its topic unless configured otherwise).
    pub fn input(&self) -> &'a str {
        &self.batch.input
    }

    pub fn topic(&self) -> &'a str {
        &self.batch.topic
    }

    pub fn partition(&self) -> i32 {
        self.batch.partition
    }

    pub fn offset(&self) -> i64 {
        column::i64_at(&self.batch.offsets, self.index()).unwrap_or(-1)
    }

    /// Milliseconds since the Unix epoch, if the record has a timestamp.
    pub fn timestamp(&self) -> Option<i64> {
        column::i64_at(&self.batch.timestamps, self.index()).filter(|&t| t >= 0)
    }

    /// The record's position in its batch.
    pub fn index(&self) -> usize {
        self.index as usize
    }

    /// The key; `None` when the record has none (an empty key is `Some(&[])`).
    pub fn key(&self) -> Option<&'a [u8]> {
        bytes(&self.batch.data, self.columns[0], self.columns[1])
    }

    /// The key as UTF-8, if it has one and it is valid UTF-8.
    pub fn key_str(&self) -> Option<&'a str> {
        self.key().and_then(|k| std::str::from_utf8(k).ok())
    }

    /// The value; `None` for a tombstone.
    pub fn value(&self) -> Option<&'a [u8]> {
        bytes(&self.batch.data, self.columns[2], self.columns[3])
    }

    /// The value as UTF-8, or an error saying why it is not.
    pub fn value_str(&self) -> Result<&'a str, Error> {
        let value = self.value().ok_or_else(|| Error::msg("the record has no value (tombstone)"))?;
        std::str::from_utf8(value).map_err(|e| Error::msg(format!("the value is not UTF-8: {e}")))
    }

    /// The headers, in order; names may repeat.
    pub fn headers(&self) -> Headers<'a> {
        let (first, count) = (self.columns[4] as usize, self.columns[5] as usize);
        let columns = self.batch.headers.get(first * 4 * HEADER_STRIDE..(first + count) * 4 * HEADER_STRIDE);
        Headers { columns: columns.unwrap_or_default().chunks_exact(4 * HEADER_STRIDE), data: &self.batch.data }
    }

    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// An output like this record (same key, headers and timestamp) with the value mapped by
    /// `f`; a tombstone stays a tombstone.
    pub fn map_value(&self, f: impl FnOnce(&'a [u8]) -> Vec<u8>) -> Output {
        let mut out = Output::like(self);
        out.value = self.value().map(f);
        out
    }

    /// An output identical to this record, for the default output.
    pub fn forward(&self) -> Output {
        let mut out = Output::like(self);
        out.value = self.value().map(<[u8]>::to_vec);
        out
    }
}

/// The headers of a record as `(name, value)` pairs. Names are UTF-8 by Kafka convention; a
/// name that is not reads as the empty string.
#[derive(Debug, Clone)]
pub struct Headers<'a> {
    columns: std::slice::ChunksExact<'a, u8>,
    data: &'a [u8],
}

impl<'a> Iterator for Headers<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let h: [u32; HEADER_STRIDE] = column::row(self.columns.next()?);
        let name = bytes(self.data, h[0], h[1]).and_then(|n| std::str::from_utf8(n).ok()).unwrap_or_default();
        Some((name, bytes(self.data, h[2], h[3]).unwrap_or_default()))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.columns.size_hint()
    }
}

impl ExactSizeIterator for Headers<'_> {}
