//! Scheduling hints for threads that answer people rather than move records.
//!
//! Linux's fair scheduler (EEVDF, since 6.6) runs the thread with the earliest virtual deadline,
//! its start plus its slice, and lets a running thread finish its slice before a woken one runs,
//! unless the woken one asked for a shorter slice (6.12 and later). With the default slice (1.4
//! ms on two cores), a query arriving while the pipelines and the broker keep both cores busy
//! waited a slice or more for its thread. A short slice changes no priority or share of the CPU:
//! the thread gets the same time in shorter turns, is picked sooner, and a wake-up may preempt.

/// `struct sched_attr` of `sched_setattr(2)`, first version (56 bytes).
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

const SCHED_OTHER: u32 = 0;

/// Asks the kernel to run the calling thread in turns of `slice` (it clamps to 0.1 to 100 ms),
/// keeping its policy (`SCHED_OTHER`) and nice value. Kernels before 6.12 ignore the slice; an
/// error (a seccomp filter, an old kernel without the call) leaves the thread as it was.
pub fn short_turns(slice: std::time::Duration) -> std::io::Result<()> {
    // SAFETY: getpriority reads the calling thread's nice value; errno is reset first because
    // -1 is also a valid nice value.
    let nice = unsafe {
        *libc::__errno_location() = 0;
        libc::getpriority(libc::PRIO_PROCESS, 0)
    };
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: SCHED_OTHER,
        nice,
        runtime: u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX),
        ..SchedAttr::default()
    };
    // SAFETY: `attr` is a valid, fully initialised sched_attr of the size it declares; pid 0 is
    // the calling thread.
    match unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0u32) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_asking_for_short_turns_keeps_its_policy_and_nice_value() {
        let thread = std::thread::spawn(|| {
            short_turns(std::time::Duration::from_micros(100))?;
            // SAFETY: sched_getscheduler reads the calling thread's policy.
            let policy = unsafe { libc::sched_getscheduler(0) };
            // SAFETY: as in short_turns.
            let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            let sched = std::fs::read_to_string("/proc/thread-self/sched")?;
            Ok::<_, std::io::Error>((policy, nice, sched))
        });
        let (policy, nice, sched) =
            thread.join().unwrap_or_else(|_| panic!("the thread panicked")).unwrap_or_else(|e| {
                panic!("sched_setattr: {e}");
            });
        assert_eq!(policy, libc::SCHED_OTHER);
        assert_eq!(nice, 0);
        let slice = sched.lines().find_map(|l| l.strip_prefix("se.slice")).map(|v| v.trim_start_matches([' ', ':']));
        assert_eq!(slice, Some("100000"), "{sched}");
    }
}
