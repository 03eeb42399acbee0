//! verdant: green threads for Rust in the style of gevent and eventlet.
//!
//! Write plain blocking code — `sleep(d)`, `greenlet.get()`, reading a socket — and run
//! thousands of such *greenlets* concurrently on one OS thread. Each blocking call only
//! suspends the calling greenlet while the thread's hub runs the others.
//!
//! ```
//! use std::time::Duration;
//!
//! let workers: Vec<_> = (1..=3u64)
//!     .map(|n| verdant::spawn(move || {
//!         verdant::sleep(Duration::from_millis(5 * n)); // all three sleep at the same time
//!         n * n
//!     }))
//!     .collect();
//! let squares: Vec<u64> = workers.iter().map(|g| g.get().unwrap()).collect();
//! assert_eq!(squares, [1, 4, 9]);
//! ```
//!
//! This crate re-exports the others:
//!
//! * the top level and [`hub`]: greenlets, the hub, timers, timeouts ([`verdant_hub`]);
//! * [`sync`]: events, async results, semaphores, locks, queues, channels, `wait`/`iwait`;
//! * [`pool`]: `Group`, `Pool` (gevent), `GreenPool`, `GreenPile` (eventlet) ([`verdant_pool`]);
//! * [`threadpool`]: `ThreadPool`, `ThreadResult`, `ThreadPoolExecutor` ([`verdant_threadpool`]);
//! * [`processpool`]: `ProcessPool`, processing's Pool API over worker processes
//!   ([`verdant_processpool`]);
//! * [`net`]: green `TcpListener`, `TcpStream`, `UdpSocket`, Unix sockets, `lookup_host`;
//! * [`server`]: `StreamServer`, gevent's TCP server with graceful stop;
//! * [`hubs`]: [`Hubs`], many hubs in one process (one per core), each running a closure
//!   as its main code;
//! * [`signal`]: Unix signals: handlers run as greenlets, and a green `wait`;
//! * [`process`]: subprocesses whose waits and pipes park only the calling greenlet;
//! * [`block_on`]: async Rust inside a greenlet (a `Future` run to completion while the
//!   greenlet parks), and with feature `tokio`, `compat::tokio` for futures tied to
//!   tokio's reactor.
//! * `patch` (cargo feature `patch`, Linux/glibc): libc hooks that make unmodified
//!   blocking code — `std::net`, `std::thread::sleep`, C libraries — cooperative inside
//!   greenlets, gevent's `monkey.patch_all()` (crate `verdant-patch`; see `docs/patch.md`).

#![doc(test(attr(deny(warnings))))]

pub use verdant_hub::{
    AsGreenlet, Builder, Greenlet, GreenletError, GreenletRef, LinkId, Panic, Timeout,
    TimeoutTimer, WaitFor, block_on, catch_panic, current, in_greenlet, join_hub, join_hub_timeout,
    joinall, joinall_raising, killall, killall_nowait, killall_timeout, panic_message, sleep,
    sleep_unref, sleep_until, spawn, spawn_later, with_timeout, yield_now,
};

pub use hubs::Hubs;
#[cfg(feature = "patch")]
pub use verdant_patch as patch;
pub use verdant_pool as pool;
pub use verdant_processpool as processpool;
pub use verdant_sync as sync;
pub use verdant_threadpool as threadpool;

#[cfg(feature = "tokio")]
pub mod compat;
pub mod hubs;
pub mod net;
pub mod process;
pub mod server;
pub mod signal;

/// The hub: configuration, statistics, run information and traces, low-level waiting, I/O
/// readiness, cross-thread wake.
pub mod hub {
    pub use verdant_hub::{
        DEFAULT_STACK_SIZE, GreenletInfo, GreenletState, HubConfig, HubGone, HubStats,
        MAX_STACK_SIZE, MIN_STACK_SIZE, RemoteHandle, RemoteWaker, RunInfo, StackMode, WorkGuard,
        config, configure, dump, guarded_stacks_mapped, has_hub, max_map_count,
        process_stack_limit, remote_handle, stats,
    };
    pub use verdant_hub::{cell, io, park, report, trace};
}

/// The examples of `docs/sync.md`, run as doctests so the page cannot go stale.
#[doc = include_str!("../../docs/sync.md")]
#[cfg(doctest)]
pub struct SyncGuideExamples;

/// The example of the README, run as a doctest.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeExamples;

/// The examples of `docs/pools.md`, run as doctests.
#[doc = include_str!("../../docs/pools.md")]
#[cfg(doctest)]
pub struct PoolsGuideExamples;

/// The examples of `docs/threadpool.md`, run as doctests.
#[doc = include_str!("../../docs/threadpool.md")]
#[cfg(doctest)]
pub struct ThreadpoolGuideExamples;

/// The examples of `docs/net.md`, run as doctests.
#[doc = include_str!("../../docs/net.md")]
#[cfg(doctest)]
pub struct NetGuideExamples;

/// The examples of `docs/multicore.md`, run as doctests.
#[doc = include_str!("../../docs/multicore.md")]
#[cfg(doctest)]
pub struct MulticoreGuideExamples;

/// The examples of `docs/signal.md`, run as doctests.
#[doc = include_str!("../../docs/signal.md")]
#[cfg(doctest)]
pub struct SignalGuideExamples;

/// The examples of `docs/process.md`, run as doctests.
#[doc = include_str!("../../docs/process.md")]
#[cfg(doctest)]
pub struct ProcessGuideExamples;

/// The examples of `docs/processpool.md`, compiled as doctests.
#[doc = include_str!("../../docs/processpool.md")]
#[cfg(doctest)]
pub struct ProcesspoolGuideExamples;

/// The example of `docs/patch.md`, compiled as a doctest (not run: it needs servers).
#[doc = include_str!("../../docs/patch.md")]
#[cfg(all(doctest, feature = "patch"))]
pub struct PatchGuideExamples;

/// The ports of `docs/porting.md`, as doctests (the gevent port is compiled, not run: it
/// fetches URLs).
#[doc = include_str!("../../docs/porting.md")]
#[cfg(all(doctest, feature = "patch"))]
pub struct PortingGuideExamples;
