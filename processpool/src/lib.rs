//! A pool of worker processes with the `processing.Pool` API (the ancestor of Python's
//! `multiprocessing.Pool`), for work that must be isolated from the caller: code that may
//! crash, leak, or is not thread-safe. Waiting for a result blocks only the calling
//! greenlet: the workers' sockets are registered in the hub's event loop.
//!
//! ```no_run
//! use verdant_processpool::ProcessPool;
//!
//! fn collatz_steps(mut n: u64) -> u32 {
//!     let mut steps = 0;
//!     while n != 1 {
//!         n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
//!         steps += 1;
//!     }
//!     steps
//! }
//!
//! fn main() {
//!     verdant_processpool::worker_main(); // first: a worker process leaves main here
//!
//!     let pool = ProcessPool::new(None).unwrap(); // one worker per CPU
//!     let steps = pool.map(collatz_steps, 1..=10_000, Some(500)).unwrap();
//!     assert_eq!(steps[26], 111); // 27 takes 111 steps
//! }
//! ```
//!
//! * Workers are this program's own binary, re-executed (never `fork`ed from a process that
//!   may have threads); [`worker_main`] at the top of `main` is where they leave to serve.
//! * Tasks are plain functions `fn(A) -> R` (not closures) with serde-serializable `A` and
//!   `R`, encoded with postcard. A function is named by its distance from an anchor in
//!   the executable, which address-space randomization does not change; a worker whose
//!   binary differs from the parent's is refused at the handshake.
//! * A panic in a task reaches its caller as [`TaskError::Panicked`], with the file and
//!   line where it happened (and the worker's backtrace under `RUST_BACKTRACE`); the
//!   worker survives.
//!   A worker that dies (a crash, `abort`, `kill -9`), stalls in the middle of a frame or
//!   stops reading fails the task it was running with [`TaskError::WorkerDied`] and is
//!   replaced; the tasks it had not started run elsewhere (a task runs at most once).
//!   No caller waits forever.
//! * A task queued behind a long one moves to a worker that becomes idle.
//!
//! | module | what it holds |
//! |---|---|
//! | `pool.rs` | [`ProcessPool`]: the queue, and the greenlets that feed and supervise workers |
//! | `process.rs` | starting a worker, the handshake, frames within the bound, how it ended |
//! | `startup.rs` | when failed start-ups break the pool |
//! | `gate.rs` | the word a worker shares with the pool: each task started or taken back, once |
//! | `worker.rs` | the worker side: [`worker_main`] and its task loop |
//! | `function.rs` | naming functions across processes; the typed trampolines |
//! | `frame.rs` | the wire format: length-prefixed frames |
//! | `probe.rs` | the message of a value that cannot be serialized |
//! | `result.rs` | [`ApplyResult`] and [`IMap`] |
//! | `input.rs` | an `imap`'s input, read lazily as its results are read |
//! | `error.rs` | [`TaskError`], [`MapError`], and the errors of waiting |

#![doc(test(attr(deny(warnings))))]

mod error;
mod frame;
mod function;
mod gate;
mod input;
mod pool;
mod probe;
mod process;
mod result;
mod startup;
mod worker;

pub use error::{GetError, MapError, NotReady, StillRunning, TaskError, Timeout, WorkerPanic};
pub use pool::{Builder, DEFAULT_FRAME_TIMEOUT, IMAP_WINDOW_PER_PROCESS, ProcessPool};
#[allow(deprecated)]
pub use result::{ApplyResult, AsyncResult, IMap};
pub use worker::worker_main;

#[doc(hidden)]
pub use function::TEST_IDENTITY_SALT_ENV;
#[doc(hidden)]
pub use process::TEST_LAUNCH_TOKENS_ENV;
#[doc(hidden)]
pub use worker::TEST_DIE_BEFORE_HELLO_ENV;
