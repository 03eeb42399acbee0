//! Why a task produced no value, and the errors of waiting for one.

use std::fmt;
use std::ops::Range;

/// Why a task produced no value.
///
/// ```
/// use verdant_processpool::TaskError;
///
/// let err = TaskError::Panicked("index out of bounds".into());
/// assert_eq!(err.to_string(), "the task panicked: index out of bounds");
/// ```
///
/// A panic in a worker also says where it happened (see [`WorkerPanic`]):
/// `the task panicked at src/main.rs:12:9: index out of bounds`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskError {
    /// The function panicked in the worker: the message, where, and the worker's
    /// backtrace if `RUST_BACKTRACE` asked for one. The worker survives.
    Panicked(WorkerPanic),
    /// The worker process died while running the task (a crash, `abort`, a kill from
    /// outside, `exit`), or was killed for an unreadable or stalled frame; how it ended.
    /// The pool replaced it.
    WorkerDied(String),
    /// The argument or the result could not be serialized or deserialized (or the
    /// function cannot be called in a worker); what went wrong.
    Serialization(String),
    /// The pool's first worker start-up failed (it ended before its hello, its
    /// initializer failed, it runs another binary), or 5 start-ups failed in a row later:
    /// the pool is broken and fails every task with this error.
    PoolBroken(String),
    /// The pool was terminated (or dropped) before the task finished.
    Terminated,
    /// The input iterator of an `imap` panicked (the panic message): it comes after the
    /// results of the items before, and ends the iteration.
    InputPanicked(String),
    /// The pool was closed or terminated before the task was submitted.
    NotRunning,
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Panicked(panic) => write!(f, "the task {panic}"),
            TaskError::WorkerDied(how) => write!(f, "the worker process died: {how}"),
            TaskError::Serialization(what) => write!(f, "serialization failed: {what}"),
            TaskError::PoolBroken(why) => write!(f, "the process pool is broken: {why}"),
            TaskError::Terminated => f.write_str("the process pool was terminated"),
            TaskError::InputPanicked(message) => {
                write!(f, "the input iterator panicked: {message}")
            }
            TaskError::NotRunning => f.write_str("the process pool is not running (closed)"),
        }
    }
}

impl std::error::Error for TaskError {}

/// A panic in a worker process, as its caller sees it: the panic message, the file, line
/// and column where it happened, and the worker's backtrace when `RUST_BACKTRACE` is set
/// (in the pool's environment, which the workers inherit). multiprocessing attaches the
/// worker's traceback the same way (`RemoteTraceback`).
///
/// It dereferences to the message; two are equal when their messages are (as
/// [`verdant_hub::Panic`]).
///
/// ```
/// use verdant_processpool::WorkerPanic;
///
/// let panic = WorkerPanic::from("boom");
/// assert_eq!(panic.message(), "boom");
/// assert!(panic.contains("oo")); // a `str`
/// assert_eq!(panic.location(), None); // made here, not caught in a worker
/// assert_eq!(panic.to_string(), "panicked: boom");
/// ```
#[derive(Clone, Debug, Eq)]
pub struct WorkerPanic {
    message: String,
    location: Option<String>,
    backtrace: Option<String>,
}

impl WorkerPanic {
    /// A panic with its message, where it happened, and the backtrace.
    pub(crate) fn new(
        message: String,
        location: Option<String>,
        backtrace: Option<String>,
    ) -> Self {
        WorkerPanic { message, location, backtrace }
    }

    /// The panic message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// `file:line:column` of the panic in the worker, when it was caught there.
    pub fn location(&self) -> Option<&str> {
        self.location.as_deref()
    }

    /// The worker's backtrace, when `RUST_BACKTRACE` (or `RUST_LIB_BACKTRACE`) enabled
    /// one.
    pub fn backtrace(&self) -> Option<&str> {
        self.backtrace.as_deref()
    }
}

impl From<&str> for WorkerPanic {
    fn from(message: &str) -> Self {
        WorkerPanic::new(message.to_string(), None, None)
    }
}

impl From<String> for WorkerPanic {
    fn from(message: String) -> Self {
        WorkerPanic::new(message, None, None)
    }
}

impl PartialEq for WorkerPanic {
    fn eq(&self, other: &Self) -> bool {
        self.message == other.message
    }
}

impl std::ops::Deref for WorkerPanic {
    type Target = str;

    fn deref(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for WorkerPanic {
    /// `panicked at src/lib.rs:3:5: message`, then the worker's backtrace if there is one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(location) => write!(f, "panicked at {location}: {}", self.message)?,
            None => write!(f, "panicked: {}", self.message)?,
        }
        match &self.backtrace {
            Some(backtrace) => write!(f, "\nworker backtrace:\n{backtrace}"),
            None => Ok(()),
        }
    }
}

/// A failed `map`: the first failed chunk, by position. Every chunk had finished when it
/// was reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapError {
    /// The positions (in the input) of the items of the failed chunk.
    pub items: Range<usize>,
    /// Why the chunk failed.
    pub error: TaskError,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "items {}..{}: {}", self.items.start, self.items.end, self.error)
    }
}

impl std::error::Error for MapError {}

/// Why [`ApplyResult::get`](crate::ApplyResult::get) returned no value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GetError<E = TaskError> {
    /// The timeout passed first (processing's `TimeoutError`); the task goes on.
    Timeout,
    /// The task failed.
    Failed(E),
    /// The value was already moved out by an earlier `take`.
    Taken,
}

impl<E: fmt::Display> fmt::Display for GetError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetError::Timeout => f.write_str("timed out waiting for the result"),
            GetError::Failed(error) => error.fmt(f),
            GetError::Taken => f.write_str("the value was already taken by an earlier take()"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for GetError<E> {}

/// [`ApplyResult::successful`](crate::ApplyResult::successful) was asked before the result
/// was ready (processing raises `AssertionError`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotReady;

impl fmt::Display for NotReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the result is not ready")
    }
}

impl std::error::Error for NotReady {}

/// The wait of [`IMap::next_timeout`](crate::IMap::next_timeout) timed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeout;

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timed out waiting for the next result")
    }
}

impl std::error::Error for Timeout {}

/// [`ProcessPool::join`](crate::ProcessPool::join) was called on a running pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StillRunning;

impl fmt::Display for StillRunning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("join() needs close() or terminate() first: the pool is still running")
    }
}

impl std::error::Error for StillRunning {}
