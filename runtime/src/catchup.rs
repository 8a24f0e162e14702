//! Reading partitions up to where they ended when the reading began: state restored from its
//! changelog, tables loaded from their topics, dead letters sent back. One loop for the three.
//!
//! Under read_committed a partition's end shows in one of three ways: a record at or past the
//! end, librdkafka's end-of-partition event, or, when the last offsets are transaction markers
//! that no record follows, the consumer's position reaching the end while polls come back empty.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::PipelineConfig;
use crate::kafka::{catch_up, CatchUpCtx};

/// A consumer that reads partitions to their ends.
pub type Reader = BaseConsumer<CatchUpCtx>;

/// Readers that read a topic's partitions side by side. One consumer's fetches are answered one
/// after the other, and in between the broker and the reader wait for each other: reading a
/// million records from four partitions, one consumer read 0.9 to 1.1 million records/s, two
/// consumers of two partitions each 2.2 to 3.4 million, on this machine's two cores.
pub const READERS: usize = 2;

/// Part of a partition to read: from `start` up to, not including, `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub partition: i32,
    pub start: i64,
    pub end: i64,
}

/// A reader; `purpose` names its group (it commits nothing).
///
/// It fetches librdkafka's default size (1 MiB per partition), not more: the broker answers a
/// fetch as a whole, and one 16 MiB fetch per partition held back a restore's first record for
/// 90 to 140 ms while nothing else could run, and made the rest no faster.
pub fn reader(config: &PipelineConfig, purpose: &str) -> anyhow::Result<Reader> {
    let reader = catch_up(config, purpose)
        .set("queued.min.messages", "1000000")
        .create_with_context(CatchUpCtx)
        .map_err(|e| anyhow!("cannot create a Kafka consumer to read {purpose}: {e}"))?;
    Ok(reader)
}

/// `items`, each with a span of `topic` to read, dealt in turn to up to [`READERS`] readers,
/// never more readers than items: `first`, and more made for `purpose`, each assigned the spans
/// of its share. Returns the readers and their shares, in the same order.
pub fn spread<T>(
    config: &PipelineConfig,
    purpose: &str,
    topic: &str,
    first: Reader,
    items: Vec<T>,
    span: impl Fn(&T) -> &Span,
) -> anyhow::Result<(Vec<Reader>, Vec<Vec<T>>)> {
    let hands = READERS.min(items.len());
    let shares = deal(items, hands);
    let mut readers = vec![first];
    while readers.len() < shares.len() {
        readers.push(reader(config, purpose)?);
    }
    for (reader, share) in readers.iter().zip(&shares) {
        assign(reader, topic, share.iter().map(&span))?;
    }
    Ok((readers, shares))
}

/// `items` dealt to `hands` in turn.
fn deal<T>(items: Vec<T>, hands: usize) -> Vec<Vec<T>> {
    let mut dealt: Vec<Vec<T>> = (0..hands.max(1)).map(|_| Vec::new()).collect();
    let hands = dealt.len();
    for (i, item) in items.into_iter().enumerate() {
        dealt[i % hands].push(item);
    }
    dealt
}

/// Assigns `spans` of `topic` to `reader`, each from its start.
pub fn assign<'a>(reader: &Reader, topic: &str, spans: impl IntoIterator<Item = &'a Span>) -> anyhow::Result<()> {
    let mut assignment = TopicPartitionList::new();
    for span in spans {
        assignment.add_partition_offset(topic, span.partition, Offset::Offset(span.start))?;
    }
    reader.assign(&assignment).map_err(|e| anyhow!("cannot read `{topic}`: {e}"))
}

/// Polls `reader` until each of `spans` is read to its end, handing `each` every record the
/// polls return with the index of its span, also records of partitions already at their end
/// (the reader's position is past them: whoever goes on from it must not lose them). Asks `go_on` between polls, and stops when
/// it says no, returning false; `doing` names the reading in the log, every 5 s.
pub fn read_to_end(
    reader: &Reader,
    topic: &str,
    spans: &[Span],
    doing: &str,
    mut each: impl FnMut(Option<usize>, &BorrowedMessage<'_>) -> anyhow::Result<()>,
    mut go_on: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<bool> {
    // Which span a partition number is.
    let mut index = vec![None; spans.iter().map(|s| s.partition as usize + 1).max().unwrap_or(0)];
    for (i, span) in spans.iter().enumerate() {
        index[span.partition as usize] = Some(i);
    }
    let slot = |partition: i32| index.get(partition as usize).copied().flatten();
    let mut done: Vec<bool> = spans.iter().map(|s| s.start >= s.end).collect();
    let mut left = done.iter().filter(|d| !**d).count();
    let mut finish = |i: Option<usize>, left: &mut usize| {
        if i.is_some_and(|i| !std::mem::replace(&mut done[i], true)) {
            *left -= 1;
        }
    };
    let mut logged = Instant::now();
    while left > 0 {
        if !go_on()? {
            return Ok(false);
        }
        match reader.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                let i = slot(m.partition());
                each(i, &m)?;
                finish(i.filter(|i| m.offset() + 1 >= spans[*i].end), &mut left);
            }
            Some(Err(KafkaError::PartitionEOF(p))) => finish(slot(p), &mut left),
            Some(Err(e)) => return Err(anyhow!("reading `{topic}`: {e}")),
            None => {
                for e in reader.position()?.elements() {
                    let i = slot(e.partition()).filter(|i| e.offset().to_raw().is_some_and(|at| at >= spans[*i].end));
                    finish(i, &mut left);
                }
            }
        }
        if logged.elapsed() > Duration::from_secs(5) {
            tracing::info!(topic, partitions_left = left, "{doing}");
            logged = Instant::now();
        }
    }
    Ok(true)
}

/// Runs `read` on each job, each on a thread of its own, while this thread runs `meanwhile`.
/// When one of them fails, the flag they are given is set, so the others can stop early and
/// return what they have; the first error is returned then, `meanwhile`'s before the readers'.
pub fn side_by_side<J: Send, R: Send, M>(
    jobs: Vec<J>,
    read: impl Fn(J, &AtomicBool) -> anyhow::Result<R> + Sync,
    meanwhile: impl FnOnce(&AtomicBool) -> anyhow::Result<M>,
) -> anyhow::Result<(M, Vec<R>)> {
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let mut running = Vec::new();
        for job in jobs {
            let (read, stop) = (&read, &stop);
            let thread = std::thread::Builder::new().name("weir-catch-up".into()).spawn_scoped(scope, move || {
                let result = read(job, stop);
                stop_on_error(stop, &result);
                result
            });
            match thread {
                Ok(thread) => running.push(thread),
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    return Err(anyhow!("cannot start a reader thread: {e}"));
                }
            }
        }
        let mine = meanwhile(&stop);
        stop_on_error(&stop, &mine);
        let mut results = Vec::new();
        let mut first = None;
        for thread in running {
            match thread.join() {
                Ok(Ok(r)) => results.push(r),
                Ok(Err(e)) => first = first.or(Some(e)),
                Err(_) => first = first.or(Some(anyhow!("a reader thread panicked"))),
            }
        }
        let mine = mine?;
        match first {
            Some(e) => Err(e),
            None => Ok((mine, results)),
        }
    })
}

fn stop_on_error<T>(stop: &AtomicBool, result: &anyhow::Result<T>) {
    if result.is_err() {
        stop.store(true, Ordering::Relaxed);
    }
}

/// Closes a reader on a thread of its own: librdkafka took 30 to 130 ms to close a restore's,
/// time a pipeline would otherwise wait before its first record.
pub fn close_aside(reader: Reader) {
    let closing = std::thread::Builder::new().name("weir-close".into()).spawn(move || drop(reader));
    if let Err(e) = closing {
        tracing::debug!("closing a reader on this thread: {e}");
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn items_are_dealt_in_turn_and_never_to_no_hand() {
        assert_eq!(deal(vec![0, 1, 2, 3, 4], 2), [vec![0, 2, 4], vec![1, 3]]);
        assert_eq!(deal(vec![7], 0), [vec![7]]);
        assert_eq!(deal(Vec::<i32>::new(), 2), [Vec::<i32>::new(), Vec::new()]);
    }

    #[test]
    fn a_failing_reader_stops_the_others_and_its_error_is_returned() {
        let result = side_by_side(
            vec![0, 1],
            |job, stop| match job {
                0 => Err(anyhow!("reader 0 failed")),
                _ => {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::yield_now();
                    }
                    Ok(job)
                }
            },
            |_| Ok(()),
        );
        assert_eq!(result.unwrap_err().to_string(), "reader 0 failed");
    }

    #[test]
    fn the_error_of_what_ran_meanwhile_wins_over_a_readers() {
        let result: anyhow::Result<((), Vec<()>)> = side_by_side(
            vec![()],
            |(), stop| {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::yield_now();
                }
                Err(anyhow!("stopped"))
            },
            |_| Err(anyhow!("the writer failed")),
        );
        assert_eq!(result.unwrap_err().to_string(), "the writer failed");
    }

    #[test]
    fn every_readers_result_comes_back_in_order() {
        let (meanwhile, results) = side_by_side(vec![1, 2, 3], |job, _| Ok(job * 10), |_| Ok("done")).unwrap();
        assert_eq!((meanwhile, results), ("done", vec![10, 20, 30]));
    }
}
