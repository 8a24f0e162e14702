//! A processor that misbehaves on request, for the bad-input tests: the value `panic` traps,
//! `loop` never returns, `alloc` allocates without bound, `reject` returns an error, `big`
//! answers with 2 MiB (more than Kafka takes by default), `timer`
//! sets a timer (event time 0) whose handler panics, `reserved` writes to a state key reserved
//! for weir, `recurse` recurses without bound, `connect ADDR` opens a TCP connection and `read
//! PATH` reads a file (weir gives no network and no directories: both are rejected with the
//! error the guest got); `sleep MS` sleeps, `hoard` writes 256 MiB of state in 64 KiB values
//! (held by the host until the commit), and `bigstate` writes a 2 MiB state value (more than a changelog record may be); `log N`
//! logs N info lines, prints one to stdout and one to stderr, and `flood` logs 20,000 lines;
//! every record writes to state first; anything else passes through.
use weir_sdk::timers::{self, Clock, Timer};
use weir_sdk::{log, processor, state, Error, Output, Record};

#[processor(config = ["note"], on_timer = misbehave_later)]
pub fn misbehave(record: &Record) -> Result<Output, Error> {
    state::put(format!("seen/{}", record.offset()), &true)?;
    match record.value_str()? {
        "panic" => panic!("asked to panic at offset {}", record.offset()),
        "loop" => loop {
            std::hint::black_box(record.offset());
        },
        "alloc" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "reject" => Err(Error::msg("asked to reject")),
        "big" => Ok(Output::new(vec![b'x'; 2 << 20]).with_key(record.key().unwrap_or_default().to_vec())),
        "timer" => {
            timers::set(Clock::EventTime, 0, "ring");
            Ok(record.forward())
        }
        "reserved" => {
            state::put_bytes(b"\xff\xffweir/timer/e", b"");
            Ok(record.forward())
        }
        "recurse" => Ok(Output::new(dive(record.offset() as u64 + 1, 0).to_string())),
        v if v.starts_with("sleep ") => {
            let ms = v["sleep ".len()..].parse().map_err(|_| Error::msg("sleep takes milliseconds"))?;
            std::thread::sleep(std::time::Duration::from_millis(ms));
            Ok(Output::new("slept"))
        }
        "hoard" => {
            let chunk = vec![7u8; 64 << 10];
            for i in 0..4096 {
                state::put_bytes(format!("hoard/{}/{i}", record.offset()), &chunk);
            }
            Ok(Output::new("hoarded"))
        }
        "bigstate" => {
            state::put_bytes(format!("big/{}", record.offset()), vec![b'x'; 2 << 20]);
            Ok(Output::new("stored"))
        }
        v if v.starts_with("log ") => {
            let n: u32 = v["log ".len()..].parse().map_err(|_| Error::msg("log takes a count"))?;
            for i in 0..n {
                log::info(format!("note {i} of {n} at offset {}", record.offset()));
            }
            println!("printed at offset {}", record.offset());
            eprintln!("complained at offset {}", record.offset());
            Ok(Output::new("logged"))
        }
        "flood" => {
            for i in 0..20_000 {
                log::info(format!("flood line {i}"));
            }
            Ok(Output::new("flooded"))
        }
        v if v.starts_with("connect ") => match std::net::TcpStream::connect(&v["connect ".len()..]) {
            Ok(_) => Ok(Output::new("connected")),
            Err(e) => Err(Error::msg(format!("connect failed: {e}"))),
        },
        v if v.starts_with("read ") => match std::fs::read(&v["read ".len()..]) {
            Ok(bytes) => Ok(Output::new(bytes)),
            Err(e) => Err(Error::msg(format!("read failed: {e}"))),
        },
        _ => Ok(record.forward()),
    }
}

/// Recurses until the stack runs out (the seed matches only at an astronomical depth); the work
/// after each call keeps it from becoming a loop.
fn dive(seed: u64, depth: u64) -> u64 {
    if depth.wrapping_mul(0x9e37_79b9_7f4a_7c15) == seed.wrapping_add(u64::MAX / 3) {
        return depth;
    }
    dive(seed, depth + 1).rotate_left(7) ^ depth
}

pub fn misbehave_later(timer: &Timer) {
    panic!("asked to panic in the timer for {:?}", String::from_utf8_lossy(timer.key()));
}
