//! Errors a greenlet can end with, how a caught unwind is turned into one, and
//! [`catch_panic`]: the one way library code catches panics without eating kills.

use std::any::Any;
use std::error::Error;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::{Arc, Mutex};

/// Why a greenlet produced no value.
///
/// ```
/// let g = verdant_hub::spawn(|| -> u32 { panic!("boom") });
/// let err = g.get().unwrap_err();
/// assert_eq!(err.to_string(), "panicked: boom");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GreenletError {
    /// The body panicked: the panic's message and its payload (see [`Panic`]).
    Panicked(Panic),
    /// The greenlet was killed (before it started, or at one of its blocking points).
    Killed,
    /// The greenlet could not start because no stack could be allocated for it; the
    /// message names the limit that was hit.
    NoStack(String),
    /// The value was already moved out by an earlier [`take`](crate::Greenlet::take).
    Taken,
    /// The greenlet overflowed its stack: it ran into the guard page below it, and the hub
    /// ended it there. The rest of the process goes on: its joiners, `get`, links and pools
    /// see this outcome as they would see a panic.
    ///
    /// Its frames were discarded **without running their destructors**: whatever they
    /// held is leaked, as with [`std::mem::forget`] (memory, file descriptors, a held
    /// `RefCell` borrow or `std::sync::Mutex` guard stays held). A `verdant_sync::Lock` or
    /// `RLock` it held is released and marked poisoned, so its waiters are not deadlocked.
    /// An overflow that cannot be ended this way (in C code, during an unwind, under a
    /// `block_on`) still aborts the process with a message; see "Stack overflow" in
    /// `docs/hub.md`.
    ///
    /// Give the greenlet a bigger stack with
    /// [`Builder::stack_size`](crate::Builder::stack_size), or raise
    /// [`HubConfig::stack_size`](crate::HubConfig::stack_size) for every greenlet.
    ///
    /// ```
    /// use verdant_hub::{Builder, GreenletError};
    ///
    /// fn deep(n: u64) -> u64 {
    ///     let pad = std::hint::black_box([n; 64]);
    ///     if n == 0 { pad[1] } else { deep(n - 1) + pad[0] }
    /// }
    ///
    /// let g = Builder::new().name("deep").stack_size(16 * 1024).spawn(|| deep(1 << 20)).unwrap();
    /// let Err(GreenletError::StackOverflow { name, id, stack_size }) = g.get() else {
    ///     unreachable!()
    /// };
    /// assert_eq!((name.as_deref(), id, stack_size), (Some("deep"), g.id(), 16 * 1024));
    /// ```
    StackOverflow {
        /// Its name, if it was given one with [`Builder::name`](crate::Builder::name).
        name: Option<String>,
        /// Its id ([`GreenletRef::id`](crate::GreenletRef::id)).
        id: u64,
        /// Its usable stack size in bytes: the size that was too small.
        stack_size: usize,
    },
}

impl fmt::Display for GreenletError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GreenletError::Panicked(panic) => write!(f, "panicked: {panic}"),
            GreenletError::Killed => f.write_str("killed"),
            GreenletError::NoStack(msg) => write!(f, "could not start: {msg}"),
            GreenletError::Taken => f.write_str("the value was already taken by an earlier take()"),
            GreenletError::StackOverflow { name, id, stack_size } => {
                match name {
                    Some(name) => write!(f, "greenlet '{name}' (id {id})")?,
                    None => write!(f, "greenlet {id}")?,
                }
                write!(
                    f,
                    " overflowed its stack of {} KiB (stack overflow: it hit its guard page) \
                     and was ended there; destructors of its frames did not run. Give it a \
                     bigger stack with Builder::stack_size, or raise HubConfig::stack_size",
                    stack_size / 1024
                )
            }
        }
    }
}

impl Error for GreenletError {}

impl GreenletError {
    /// What a greenlet whose body unwound with `payload` ends as: `Killed` for a kill, or
    /// `Panicked` with the payload. For code that catches unwinds inside a greenlet and
    /// wants to report them the way the hub would.
    pub fn from_unwind(payload: Box<dyn Any + Send>) -> GreenletError {
        if payload.is::<KillUnwind>() {
            GreenletError::Killed
        } else if payload.is::<TimeoutUnwind>() {
            GreenletError::Panicked(Panic::from(
                "a timeout expired outside the scope that catches it (with_timeout, TimeoutTimer::catch)",
            ))
        } else {
            GreenletError::Panicked(Panic::new(payload))
        }
    }
}

impl From<GreenletError> for String {
    /// For results whose errors are plain messages (`verdant_sync::AsyncResult<T>`'s
    /// default), such as one a greenlet's outcome is copied into by a link.
    fn from(error: GreenletError) -> String {
        error.to_string()
    }
}

/// A panic a greenlet (or a thread-pool task) ended with: its message, and the payload
/// itself, as `std::thread::JoinHandle::join` keeps it.
///
/// Cheap to clone: clones share the payload, which one of them can take out (to
/// `resume_unwind` it, or downcast it to a custom type). Two panics are equal when their
/// messages are.
///
/// ```
/// use verdant_hub::GreenletError;
///
/// #[derive(Debug, PartialEq)]
/// struct MyPayload(u32);
///
/// let g = verdant_hub::spawn(|| -> u32 { std::panic::panic_any(MyPayload(7)) });
/// let Err(GreenletError::Panicked(panic)) = g.get() else { unreachable!() };
/// let payload = panic.take_payload().unwrap();
/// assert_eq!(payload.downcast_ref::<MyPayload>(), Some(&MyPayload(7)));
/// ```
#[derive(Clone)]
pub struct Panic {
    message: Arc<str>,
    payload: Arc<Mutex<Option<Box<dyn Any + Send>>>>,
}

impl Panic {
    /// A panic with `payload`; its message is [`panic_message`]'s.
    pub fn new(payload: Box<dyn Any + Send>) -> Panic {
        Panic {
            message: panic_message(&*payload).into(),
            payload: Arc::new(Mutex::new(Some(payload))),
        }
    }

    /// The panic's message (a placeholder if the payload was not a string).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Takes the payload out (`None` if a clone took it already).
    pub fn take_payload(&self) -> Option<Box<dyn Any + Send>> {
        self.payload.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Continues the panic in the caller, with the original payload if it is still here
    /// (with the message otherwise).
    pub fn resume(&self) -> ! {
        match self.take_payload() {
            Some(payload) => resume_unwind(payload),
            None => resume_unwind(Box::new(self.message.to_string())),
        }
    }
}

impl From<&str> for Panic {
    /// A panic whose payload is `message` (as `panic!("{message}")` would make).
    fn from(message: &str) -> Panic {
        Panic::new(Box::new(message.to_string()))
    }
}

impl fmt::Display for Panic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Panic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.message, f)
    }
}

impl PartialEq for Panic {
    fn eq(&self, other: &Panic) -> bool {
        self.message == other.message
    }
}

impl Eq for Panic {}

/// Runs `f` and catches a panic in it, but never a kill or a `with_timeout` expiry: those
/// unwinds go on to the greenlet's top (or to their `with_timeout` scope), as they must.
///
/// Kills and timeouts are unwinds, so a plain `catch_unwind` between a blocking point and
/// the greenlet's top would swallow them (the greenlet would survive its kill, like Python
/// code catching `GreenletExit`). Every catch site in verdant goes through this function;
/// code of yours that catches panics inside greenlets should too.
///
/// ```
/// use verdant_hub::{catch_panic, spawn, yield_now, GreenletError};
///
/// let caught = catch_panic(|| panic!("boom")).unwrap_err();
/// assert_eq!(verdant_hub::panic_message(&*caught), "boom");
///
/// let g = spawn(|| {
///     let _ = catch_panic(|| verdant_hub::sleep(std::time::Duration::from_secs(60)));
/// });
/// yield_now();
/// g.kill(); // the kill is not caught by catch_panic: the greenlet ends killed
/// assert_eq!(g.get(), Err(GreenletError::Killed));
/// ```
pub fn catch_panic<R>(f: impl FnOnce() -> R) -> Result<R, Box<dyn Any + Send>> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => Ok(value),
        Err(payload) if payload.is::<KillUnwind>() || payload.is::<TimeoutUnwind>() => {
            resume_unwind(payload)
        }
        Err(payload) => Err(payload),
    }
}

/// The panic payload a kill unwinds with. Private: only the hub raises and catches it.
pub(crate) struct KillUnwind;

/// The panic payload a `with_timeout` expiry unwinds with, naming its scope.
pub(crate) struct TimeoutUnwind(pub(crate) u64);

/// The text of a panic payload: `panic!("...")` produces `&str` or `String`; anything
/// else is described as such. For code that catches unwinds and reports them as the hub
/// does.
///
/// ```
/// let payload = std::panic::catch_unwind(|| panic!("at {}", 42)).unwrap_err();
/// assert_eq!(verdant_hub::panic_message(&*payload), "at 42");
/// ```
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any> (a non-string panic payload)".to_string()
    }
}
