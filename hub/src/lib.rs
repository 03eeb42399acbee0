//! The verdant hub: greenlets — stackful coroutines — scheduled cooperatively on a
//! per-thread [mio] event loop, in the style of gevent.
//!
//! Code in a greenlet reads as plain blocking code. Every blocking call (`sleep`, `join`,
//! waiting for I/O, a lock, a queue) only suspends the calling greenlet while the hub runs
//! the others, so thousands of them share one OS thread.
//!
//! ```
//! use std::time::Duration;
//! use verdant_hub::{sleep, spawn};
//!
//! let greeters: Vec<_> = ["hub", "greenlet", "world"]
//!     .into_iter()
//!     .enumerate()
//!     .map(|(i, who)| {
//!         spawn(move || {
//!             sleep(Duration::from_millis(10 * (3 - i as u64))); // the last one wakes first
//!             format!("hello, {who}")
//!         })
//!     })
//!     .collect();
//! let greetings: Vec<String> = greeters.iter().map(|g| g.get().unwrap()).collect();
//! assert_eq!(greetings, ["hello, hub", "hello, greenlet", "hello, world"]);
//! ```
//!
//! # Where things are
//!
//! Three layers; imports only point down. The synchronisation primitives (events, locks,
//! queues, `wait`/`iwait`) live in their own crate, `verdant-sync`, built only on this
//! crate's public API: [`park`], the running greenlet's id and joiner registration.
//!
//! | layer | module | what it owns |
//! |---|---|---|
//! | API | `greenlet.rs` | spawning, and the [`Greenlet`] handle: join, get, kill, link |
//! | | [`park`] | the one waiter mechanism every blocking call is built on |
//! | | [`cell`] | results that arrive later: [`cell::Outcome`] and the cells that wait on it |
//! | | `time.rs`, `timeout.rs` | [`sleep`], [`yield_now`], [`with_timeout`] |
//! | | [`io`] | [`io::Registration`], [`io::wait_readable`], [`io::Green`] (a non-blocking socket or pipe whose calls park the greenlet) |
//! | | `remote.rs` | the handles other threads hold: [`RemoteHandle`], [`RemoteWaker`] |
//! | | `block_on.rs` | [`block_on`]: a `Future` run inside a greenlet, and the `std::task::Waker` that wakes it |
//! | the loop | `hub.rs` | **the scheduler**: the per-thread hub and its loop (start here) |
//! | subsystems | `stacks.rs` (`stack.rs`, `shared_stack.rs`) | every stack a greenlet runs on, under one policy |
//! | | `timer.rs` | the timer wheel |
//! | | `io/driver.rs` | the mio poll and the readiness of every registered fd |
//! | | `inbox.rs` (`door.rs`) | the cross-thread door: the inbox, the wakers lent to other threads, and the sleeping/queued handshake (loom-checked) |
//! | | `overflow.rs`, `stats.rs`, [`report`] | a stack overflow ends its greenlet, counters, error lines that never block |
//! | | `monitor.rs` | the blocked-hub monitor: a thread that notices a greenlet holding its hub too long |
//! | | `runinfo.rs`, [`trace`] | seeing the scheduler: [`dump`] lists the live greenlets, a trace records a timeline |
//! | vocabulary | `task/` | a greenlet's scheduler state, its life cycle, wakers, the run queue |
//! | | `error.rs`, `config.rs` | [`GreenletError`], [`HubConfig`] |
//!
//! # Rules worth knowing
//!
//! * One hub per OS thread, created on first use. Greenlets and the handles to them are
//!   `!Send`: they stay on the thread that spawned them.
//! * A spawned greenlet does not run until its spawner blocks or yields; then ready
//!   greenlets run first-in first-out.
//! * A panic in a greenlet never takes down the hub; it reaches whoever joins it.
//! * Kills and timeouts arrive at the target's next blocking point, as an unwind.
//! * If the thread's main code waits and nothing can ever wake it, the wait panics with a
//!   message that names what it waited on, instead of hanging.
//!
//! [mio]: https://docs.rs/mio

#![doc(test(attr(deny(warnings))))]

mod block_on;
pub mod cell;
mod config;
mod door;
mod error;
mod greenlet;
mod hub;
mod inbox;
pub mod io;
mod monitor;
mod overflow;
pub mod park;
mod remote;
pub mod report;
mod runinfo;
mod shared_stack;
mod stack;
mod stacks;
mod stats;
mod task;
mod time;
mod timeout;
mod timer;
pub mod trace;
mod wait_for;

pub use block_on::block_on;
pub use config::{HubConfig, StackMode};
pub use error::{GreenletError, Panic, catch_panic, panic_message};
pub use greenlet::{
    AsGreenlet, Builder, Greenlet, GreenletRef, LinkId, current, joinall, joinall_raising, killall,
    killall_nowait, killall_timeout, spawn, spawn_later,
};
pub use hub::{config, configure, has_hub, in_greenlet, join_hub, join_hub_timeout, stats};
pub use monitor::{BlockedGreenlet, BlockingReport, MAX_BLOCKING_TIME_ENV, set_blocking_reporter};
pub use remote::{HubGone, RemoteHandle, RemoteWaker, WorkGuard, remote_handle};
pub use runinfo::{GreenletInfo, GreenletState, RunInfo, TRACK_GREENLETS_ENV, dump};
pub use stack::{
    DEFAULT_STACK_SIZE, MAX_STACK_SIZE, MIN_STACK_SIZE, guarded_stacks_mapped, max_map_count,
    process_stack_limit,
};
pub use stats::HubStats;
pub use task::LinkHook;
pub use time::{sleep, sleep_unref, sleep_until, yield_now};
pub use timeout::{Timeout, TimeoutTimer, with_timeout};
pub use wait_for::WaitFor;
