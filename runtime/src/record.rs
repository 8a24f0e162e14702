//! Records on their way into a guest ([`Batch`]) and back out ([`Outputs`]).
//!
//! Both sides use the columnar encoding of `wit/processor.wit`: packed little-endian number
//! columns and one byte buffer per batch. A [`Batch`] is reusable: [`Batch::clear`] keeps its buffers, so a
//! steady-state pipeline allocates nothing per batch on the host side.

use crate::contract::weir::processor::types as wit;

pub use weir_abi::ABSENT;
use weir_abi::{append, bytes, column, HEADER_STRIDE, OUTPUT_STRIDE, RECORD_STRIDE};

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
        let first_header = (w.headers.len() / (4 * HEADER_STRIDE)) as u32;
        let [key_at, key_len] = append(&mut w.data, key);
        let [value_at, value_len] = append(&mut w.data, value);
        for (name, value) in headers {
            let [name_at, name_len] = append(&mut w.data, Some(name));
            let [value_at, value_len] = append(&mut w.data, Some(value));
            column::push_u32s(&mut w.headers, &[name_at, name_len, value_at, value_len]);
        }
        let header_count = (w.headers.len() / (4 * HEADER_STRIDE)) as u32 - first_header;
        column::push_i64(&mut w.offsets, offset);
        column::push_i64(&mut w.timestamps, timestamp.unwrap_or(-1));
        column::push_u32s(&mut w.records, &[key_at, key_len, value_at, value_len, first_header, header_count]);
    }

    pub fn len(&self) -> usize {
        self.wit.offsets.len() / 8
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
        column::i64_at(&self.wit.offsets, i)
    }

    fn columns(&self, i: usize) -> Option<[u32; RECORD_STRIDE]> {
        column::u32s(&self.wit.records, i)
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
        column::i64_at(&self.wit.timestamps, i).filter(|&t| t >= 0)
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

fn headers<'a>(
    columns: &'a [u8],
    data: &'a [u8],
    first: usize,
    count: usize,
) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
    (first..first.saturating_add(count))
        .map_while(move |h| column::u32s::<HEADER_STRIDE>(columns, h))
        .map(move |h| (bytes(data, h[0], h[1]).unwrap_or_default(), bytes(data, h[2], h[3]).unwrap_or_default()))
}

/// What a guest produced for a batch, checked: every byte range and header range is in bounds,
/// the columns agree in length, and every output answers a record of the batch.
#[derive(Debug)]
pub struct Outputs {
    wit: wit::Outputs,
}

/// What one record, and one batch, may produce: outputs past these are the record's fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLimits {
    /// The outputs the pipeline configures (a record the module does not route goes to
    /// `default`); `None` takes any name (`weir test`).
    pub names: Option<std::sync::Arc<std::collections::BTreeSet<String>>>,
    /// Largest output (key, value and headers), in bytes: the producer's `message.max.bytes`,
    /// past which Kafka would refuse it.
    pub max_record_bytes: usize,
    /// Most outputs that answer one record.
    pub max_per_record: usize,
    /// Most output bytes of one batch.
    pub max_batch_bytes: usize,
}

impl Default for OutputLimits {
    fn default() -> Self {
        Self {
            names: None,
            max_record_bytes: crate::config::DEFAULT_MESSAGE_MAX_BYTES,
            max_per_record: crate::config::DEFAULT_MAX_OUTPUTS_PER_RECORD,
            max_batch_bytes: crate::config::DEFAULT_MAX_OUTPUT_BYTES_PER_BATCH,
        }
    }
}

/// What Kafka counts of a record besides its key, value and headers (its batch framing).
pub(crate) const RECORD_OVERHEAD: usize = 70;

impl Outputs {
    /// Checks the guest's answer against the batch it answers and the limits. The error names
    /// the record at fault where one is (the input record the output answers) and says how.
    pub(crate) fn check(
        wit: wit::Outputs,
        batch_len: usize,
        limits: &OutputLimits,
    ) -> Result<Self, (Option<usize>, String)> {
        let n = wit.sources.len() / 4;
        let whole = wit.sources.len().is_multiple_of(4) && wit.headers.len().is_multiple_of(4 * HEADER_STRIDE);
        if !whole || wit.records.len() != n * OUTPUT_STRIDE * 4 || wit.timestamps.len() != n * 8 {
            return Err((None, format!(
                "output columns disagree: {} bytes of sources, {} of timestamps, {} of record numbers, {} of header numbers",
                wit.sources.len(), wit.timestamps.len(), wit.records.len(), wit.headers.len()
            )));
        }
        let in_bounds = |at: u32, len: u32| len == ABSENT || bytes(&wit.data, at, len).is_some();
        let header_count = wit.headers.len() / (4 * HEADER_STRIDE);
        let bad_header = (0..header_count)
            .filter_map(|h| column::u32s::<HEADER_STRIDE>(&wit.headers, h))
            .position(|h| !(in_bounds(h[0], h[1]) && in_bounds(h[2], h[3])) || h[1] == ABSENT || h[3] == ABSENT);
        if let Some(h) = bad_header {
            return Err((None, format!("header {h} points outside the output data")));
        }
        let length = |at: u32, len: u32| if len == ABSENT || at == ABSENT { 0 } else { len as usize };
        let mut per_record: Vec<usize> = Vec::new();
        let mut batch_bytes = 0usize;
        for i in 0..n {
            let (Some(c), Some([source])) =
                (column::u32s::<OUTPUT_STRIDE>(&wit.records, i), column::u32s::<1>(&wit.sources, i))
            else {
                return Err((None, format!("output {i} is cut short")));
            };
            let record = source as usize;
            if record >= batch_len {
                return Err((None, format!("output {i} answers record {source} of a batch of {batch_len}")));
            }
            if !(in_bounds(c[0], c[1]) && in_bounds(c[2], c[3]) && in_bounds(c[4], c[5])) {
                return Err((Some(record), format!("output {i} points outside the output data")));
            }
            if (c[6] as usize).saturating_add(c[7] as usize) > header_count {
                return Err((Some(record), format!("output {i} names headers beyond the list")));
            }
            let topic = bytes(&wit.data, c[0], c[1]);
            let Ok(name) = std::str::from_utf8(topic.unwrap_or(b"default")) else {
                return Err((Some(record), format!("output {i} names a topic that is not UTF-8")));
            };
            if let Some(names) = limits.names.as_ref().filter(|names| !names.contains(name)) {
                let known: Vec<&str> = names.iter().map(String::as_str).collect();
                return Err((
                    Some(record),
                    format!(
                        "output {i} is routed to `{name}`, which the pipeline does not configure (outputs: {})",
                        if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                    ),
                ));
            }
            let header_bytes: usize = (c[6] as usize..(c[6] + c[7]) as usize)
                .filter_map(|h| column::u32s::<HEADER_STRIDE>(&wit.headers, h))
                .map(|h| length(h[0], h[1]) + length(h[2], h[3]))
                .sum();
            let size = length(c[2], c[3]) + length(c[4], c[5]) + header_bytes + RECORD_OVERHEAD;
            if size > limits.max_record_bytes {
                return Err((
                    Some(record),
                    format!(
                        "output {i} is {size} bytes, more than the producer's message.max.bytes ({}); \
                         Kafka would refuse it",
                        limits.max_record_bytes
                    ),
                ));
            }
            if per_record.len() <= record {
                per_record.resize(record + 1, 0);
            }
            per_record[record] += 1;
            if per_record[record] > limits.max_per_record {
                return Err((
                    Some(record),
                    format!("the record has more than {} outputs (max_outputs_per_record)", limits.max_per_record),
                ));
            }
            batch_bytes += size;
            if batch_bytes > limits.max_batch_bytes {
                return Err((
                    Some(record),
                    format!(
                        "the batch's outputs pass {} bytes here (max_output_bytes_per_batch)",
                        limits.max_batch_bytes
                    ),
                ));
            }
        }
        Ok(Self { wit })
    }

    pub fn len(&self) -> usize {
        self.wit.sources.len() / 4
    }

    pub fn is_empty(&self) -> bool {
        self.wit.sources.is_empty()
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = OutputRef<'_>> {
        // Every row is there: `check` saw the column lengths agree.
        (0..self.len()).map(move |index| OutputRef {
            all: &self.wit,
            index,
            row: column::u32s(&self.wit.records, index).unwrap_or_default(),
        })
    }
}

/// One output record, borrowed from [`Outputs`].
#[derive(Debug, Clone, Copy)]
pub struct OutputRef<'a> {
    all: &'a wit::Outputs,
    index: usize,
    row: [u32; OUTPUT_STRIDE],
}

impl<'a> OutputRef<'a> {
    fn column(&self, c: usize) -> u32 {
        self.row[c]
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
        column::i64_at(&self.all.timestamps, self.index).filter(|&t| t >= 0)
    }

    /// Index in the batch of the record this output answers.
    pub fn source(&self) -> usize {
        column::u32s::<1>(&self.all.sources, self.index).map_or(0, |[s]| s as usize)
    }

    pub fn headers(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        headers(&self.all.headers, &self.all.data, self.column(6) as usize, self.column(7) as usize)
    }
}

#[cfg(test)]
mod test {
    use proptest::prelude::*;
    use weir_abi::column;

    use super::*;

    /// Outputs answering records `sources`, each with a key and a value of `value_len` bytes.
    fn outputs(sources: &[u32], value_len: usize) -> wit::Outputs {
        let mut o =
            wit::Outputs { records: vec![], sources: vec![], timestamps: vec![], headers: vec![], data: vec![] };
        for &source in sources {
            let key = append(&mut o.data, Some(b"k"));
            let value = append(&mut o.data, Some(&vec![b'v'; value_len]));
            column::push_u32s(&mut o.records, &[ABSENT, ABSENT, key[0], key[1], value[0], value[1], 0, 0]);
            column::push_u32s(&mut o.sources, &[source]);
            column::push_i64(&mut o.timestamps, -1);
        }
        o
    }

    #[test]
    fn an_output_over_the_producers_limit_is_the_fault_of_the_record_it_answers() {
        let limits = OutputLimits { max_record_bytes: 1_000, ..OutputLimits::default() };
        let (record, why) = Outputs::check(outputs(&[0, 2], 2_000), 3, &limits).err().unwrap();
        assert_eq!(record, Some(0));
        assert!(why.contains("message.max.bytes (1000)"), "{why}");
        assert!(Outputs::check(outputs(&[0, 2], 500), 3, &limits).is_ok());
    }

    #[test]
    fn too_many_outputs_for_one_record_and_too_many_bytes_for_a_batch_name_the_record() {
        let limits = OutputLimits { max_per_record: 2, ..OutputLimits::default() };
        let (record, why) = Outputs::check(outputs(&[0, 1, 1, 1], 1), 2, &limits).err().unwrap();
        assert_eq!((record, why.contains("more than 2 outputs")), (Some(1), true), "{why}");
        let limits = OutputLimits { max_batch_bytes: 600, ..OutputLimits::default() };
        let (record, why) = Outputs::check(outputs(&[0, 1, 2], 200), 3, &limits).err().unwrap();
        assert_eq!((record, why.contains("max_output_bytes_per_batch")), (Some(2), true), "{why}");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

        /// The columns a guest returns are untrusted: any bytes give outputs or an error, never
        /// a panic, and what passes can be read whole.
        #[test]
        fn any_output_columns_are_accepted_or_refused_never_a_panic(
            records in proptest::collection::vec(any::<u8>(), 0..200),
            sources in proptest::collection::vec(any::<u8>(), 0..40),
            timestamps in proptest::collection::vec(any::<u8>(), 0..80),
            headers in proptest::collection::vec(any::<u8>(), 0..80),
            data in proptest::collection::vec(any::<u8>(), 0..64),
            batch_len in 0usize..8,
        ) {
            let wit = wit::Outputs { records, sources, timestamps, headers, data };
            if let Ok(outputs) = Outputs::check(wit, batch_len, &OutputLimits::default()) {
                for o in outputs.iter() {
                    let _ = (o.topic(), o.key(), o.value(), o.timestamp(), o.source(), o.headers().count());
                }
            }
        }

        /// Well-formed columns whose numbers point anywhere.
        #[test]
        fn output_rows_pointing_anywhere_are_accepted_or_refused_never_a_panic(
            rows in proptest::collection::vec((proptest::array::uniform8(any::<u32>()), any::<u32>()), 0..6),
            data in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut wit = wit::Outputs { records: vec![], sources: vec![], timestamps: vec![], headers: vec![], data };
            for (row, source) in &rows {
                let row: Vec<u32> = row.iter().map(|n| if n % 3 == 0 { ABSENT } else { n % 80 }).collect();
                column::push_u32s(&mut wit.records, &row);
                column::push_u32s(&mut wit.sources, &[source % 4]);
                column::push_i64(&mut wit.timestamps, -1);
            }
            if let Ok(outputs) = Outputs::check(wit, 3, &OutputLimits::default()) {
                for o in outputs.iter() {
                    let _ = (o.topic(), o.key(), o.value(), o.headers().count());
                }
            }
        }
    }
}
