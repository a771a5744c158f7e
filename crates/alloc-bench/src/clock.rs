//! How the timed loops of the benchmark read the time: this thread's CPU time.
//!
//! A run lasts milliseconds; on the wall clock a run that is preempted (other jobs on a shared
//! machine, the other vCPU's load) counts the time its thread did not run, which made single runs
//! of any allocator up to 3x slower at random. Every allocator of a workload is timed the same
//! way, in rotated order, so the ratios compare like with like. (The fragmentation workload's
//! batches of a few hundred operations keep the wall clock: two system calls per batch would be
//! a visible share of them, and its medians over many batches already drop preempted ones.)

/// Seconds since `start`, a value of [`cpu_time`].
pub fn since(start: f64) -> f64 {
    cpu_time() - start
}

/// This thread's CPU time in seconds (user and system), where the platform has it; the wall
/// clock elsewhere.
#[cfg(unix)]
pub fn cpu_time() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec to write; the clock id is a constant of this platform.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(r, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

#[cfg(not(unix))]
pub fn cpu_time() -> f64 {
    use std::sync::OnceLock;
    static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();
    EPOCH
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs_f64()
}
