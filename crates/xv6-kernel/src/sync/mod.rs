//! Layer 2, sync: spin locks, sleep locks, and waiting on a channel (imports only `arch`).
//!
//! Sleeping needs a scheduler, which lives two layers up in `proc`; this layer says what it needs
//! from one (`wait::Scheduler`) and `proc` installs itself at boot, so that the file system,
//! pipes and drivers wait without importing the process table.

pub mod sleeplock;
pub mod spinlock;
pub mod wait;
