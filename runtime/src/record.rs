//! Records on their way into a guest ([`Batch`]) and back out ([`Outputs`]).
//!
//! Both sides use the columnar encoding of `wit/processor.wit`: integer columns and one byte
//! buffer per batch. A [`Batch`] is reusable: [`Batch::clear`] keeps its buffers, so a
//! steady-state pipeline allocates nothing per batch on the host side.

use crate::engine::bindings::weir::processor::types as wit;

/// Marks an absent byte string (no key, or a tombstone) in a length column.
pub const ABSENT: u32 = u32::MAX;
/// Numbers per record in `batch.records`.
const RECORD_STRIDE: usize = 6;
/// Numbers per output in `outputs.records`.
const OUTPUT_STRIDE: usize = 8;
/// Numbers per header in `headers`.
const HEADER_STRIDE: usize = 4;

/// A batch of records from one partition of one input, ready to hand to a guest.
#[derive(Debug)]
pub struct Batch {
    pub(crate) wit: wit::Batch,
}

impl Batch {
    /// An empty batch for `topic`/`partition`, read as the input named `input`.
    pub fn new(input: &str, topic: &str, partition: i32) -> Self {
        Self {
            wit: wit::Batch {
                input: input.to_owned(),
                topic: topic.to_owned(),
                partition,
                offsets: Vec::new(),
                timestamps: Vec::new(),
                records: Vec::new(),
                headers: Vec::new(),
                data: Vec::new(),
            },
        }
    }

    /// Empties the batch, keeping its buffers, and retargets it.
    pub fn reset(&mut self, input: &str, topic: &str, partition: i32) {
        self.clear();
        if self.wit.input != input {
            input.clone_into(&mut self.wit.input);
        }
        if self.wit.topic != topic {
            topic.clone_into(&mut self.wit.topic);
        }
        self.wit.partition = partition;
    }

    /// Empties the batch, keeping its buffers.
    pub fn clear(&mut self) {
        let w = &mut self.wit;
        w.offsets.clear();
        w.timestamps.clear();
        w.records.clear();
        w.headers.clear();
        w.data.clear();
    }

    /// Appends a record.
    pub fn push<'h>(
        &mut self,
        offset: i64,
        timestamp: Option<i64>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
    ) {
        let w = &mut self.wit;
        let first_header = (w.headers.len() / HEADER_STRIDE) as u32;
        let [key_at, key_len] = append(&mut w.data, key);
        let [value_at, value_len] = append(&mut w.data, value);
        for (name, value) in headers {
            let [name_at, name_len] = append(&mut w.data, Some(name));
            let [value_at, value_len] = append(&mut w.data, Some(value));
            w.headers.extend_from_slice(&[name_at, name_len, value_at, value_len]);
        }
        let header_count = (w.headers.len() / HEADER_STRIDE) as u32 - first_header;
        w.offsets.push(offset);
        w.timestamps.push(timestamp.unwrap_or(-1));
        w.records.extend_from_slice(&[key_at, key_len, value_at, value_len, first_header, header_count]);
    }

    pub fn len(&self) -> usize {
        self.wit.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.wit.offsets.is_empty()
    }

    pub fn topic(&self) -> &str {
        &self.wit.topic
    }

    pub fn partition(&self) -> i32 {
        self.wit.partition
    }

    /// The offset of record `i`.
    pub fn offset(&self, i: usize) -> Option<i64> {
        self.wit.offsets.get(i).copied()
    }

    fn columns(&self, i: usize) -> Option<&[u32]> {
        self.wit.records.get(i * RECORD_STRIDE..(i + 1) * RECORD_STRIDE)
    }

    /// The key of record `i`.
    pub fn key(&self, i: usize) -> Option<&[u8]> {
        let c = self.columns(i)?;
        bytes(&self.wit.data, c[0], c[1])
    }

    /// The value of record `i`.
    pub fn value(&self, i: usize) -> Option<&[u8]> {
        let c = self.columns(i)?;
        bytes(&self.wit.data, c[2], c[3])
    }

    /// The timestamp of record `i`.
    pub fn timestamp(&self, i: usize) -> Option<i64> {
        self.wit.timestamps.get(i).copied().filter(|&t| t >= 0)
    }

    /// The headers of record `i`.
    pub fn headers(&self, i: usize) -> impl Iterator<Item = (&[u8], &[u8])> {
        let (first, count) = self.columns(i).map_or((0, 0), |c| (c[4] as usize, c[5] as usize));
        headers(&self.wit.headers, &self.wit.data, first, count)
    }

    /// A copy of record `i` alone, as a batch of one.
    pub(crate) fn single(&self, i: usize) -> Batch {
        let mut one = Batch::new(&self.wit.input, &self.wit.topic, self.wit.partition);
        if let Some(offset) = self.offset(i) {
            one.push(offset, self.timestamp(i), self.key(i), self.value(i), self.headers(i));
        }
        one
    }
}

/// Appends `bytes` to `data`, returning its offset and length (or [`ABSENT`]).
fn append(data: &mut Vec<u8>, bytes: Option<&[u8]>) -> [u32; 2] {
    match bytes {
        None => [0, ABSENT],
        Some(b) => {
            let at = data.len() as u32;
            data.extend_from_slice(b);
            [at, b.len() as u32]
        }
    }
}

/// The bytes at `at..at+len` of `data`; `None` when absent or out of bounds.
fn bytes(data: &[u8], at: u32, len: u32) -> Option<&[u8]> {
    if len == ABSENT {
        return None;
    }
    data.get(at as usize..(at as usize).checked_add(len as usize)?)
}

fn headers<'a>(columns: &'a [u32], data: &'a [u8], first: usize, count: usize) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
    columns
        .get(first * HEADER_STRIDE..(first + count) * HEADER_STRIDE)
        .unwrap_or_default()
        .chunks_exact(HEADER_STRIDE)
        .map(move |h| (bytes(data, h[0], h[1]).unwrap_or_default(), bytes(data, h[2], h[3]).unwrap_or_default()))
}

/// What a guest produced for a batch, checked: every byte range and header range is in bounds,
/// the columns agree in length, and every output answers a record of the batch.
#[derive(Debug)]
pub struct Outputs {
    wit: wit::Outputs,
}

impl Outputs {
    /// Checks the guest's answer against the batch it answers. The error says which output is
    /// malformed and how.
    pub(crate) fn check(wit: wit::Outputs, batch_len: usize) -> Result<Self, (usize, String)> {
        let n = wit.sources.len();
        if wit.records.len() != n * OUTPUT_STRIDE || wit.timestamps.len() != n || !wit.headers.len().is_multiple_of(HEADER_STRIDE) {
            return Err((0, format!(
                "output columns disagree: {} sources, {} timestamps, {} record numbers, {} header numbers",
                n, wit.timestamps.len(), wit.records.len(), wit.headers.len()
            )));
        }
        let in_bounds = |at: u32, len: u32| len == ABSENT || bytes(&wit.data, at, len).is_some();
        if let Some(h) = wit.headers.chunks_exact(HEADER_STRIDE).position(|h| !(in_bounds(h[0], h[1]) && in_bounds(h[2], h[3])) || h[1] == ABSENT || h[3] == ABSENT) {
            return Err((0, format!("header {h} points outside the output data")));
        }
        let header_count = wit.headers.len() / HEADER_STRIDE;
        for (i, c) in wit.records.chunks_exact(OUTPUT_STRIDE).enumerate() {
            if !(in_bounds(c[0], c[1]) && in_bounds(c[2], c[3]) && in_bounds(c[4], c[5])) {
                return Err((i, format!("output {i} points outside the output data")));
            }
            if (c[6] as usize).saturating_add(c[7] as usize) > header_count {
                return Err((i, format!("output {i} names headers beyond the list")));
            }
            if wit.sources[i] as usize >= batch_len {
                return Err((i, format!("output {i} answers record {} of a batch of {batch_len}", wit.sources[i])));
            }
            if bytes(&wit.data, c[0], c[1]).is_some_and(|t| std::str::from_utf8(t).is_err()) {
                return Err((i, format!("output {i} names a topic that is not UTF-8")));
            }
        }
        Ok(Self { wit })
    }

    pub fn len(&self) -> usize {
        self.wit.sources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.wit.sources.is_empty()
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = OutputRef<'_>> {
        (0..self.len()).map(move |index| OutputRef { all: &self.wit, index })
    }
}

/// One output record, borrowed from [`Outputs`].
#[derive(Debug, Clone, Copy)]
pub struct OutputRef<'a> {
    all: &'a wit::Outputs,
    index: usize,
}

impl<'a> OutputRef<'a> {
    fn column(&self, c: usize) -> u32 {
        self.all.records[self.index * OUTPUT_STRIDE + c]
    }

    fn bytes(&self, c: usize) -> Option<&'a [u8]> {
        bytes(&self.all.data, self.column(c), self.column(c + 1))
    }

    /// The output's topic name, or `None` for the default output.
    pub fn topic(&self) -> Option<&'a str> {
        // UTF-8: checked by `Outputs::check`.
        self.bytes(0).map(|b| std::str::from_utf8(b).unwrap_or_default())
    }

    pub fn key(&self) -> Option<&'a [u8]> {
        self.bytes(2)
    }

    pub fn value(&self) -> Option<&'a [u8]> {
        self.bytes(4)
    }

    /// The timestamp the guest set, if any.
    pub fn timestamp(&self) -> Option<i64> {
        Some(self.all.timestamps[self.index]).filter(|&t| t >= 0)
    }

    /// Index in the batch of the record this output answers.
    pub fn source(&self) -> usize {
        self.all.sources[self.index] as usize
    }

    pub fn headers(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        headers(&self.all.headers, &self.all.data, self.column(6) as usize, self.column(7) as usize)
    }
}
