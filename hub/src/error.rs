//! Errors a greenlet can end with, and how a caught unwind is turned into one.

use std::any::Any;
use std::error::Error;
use std::fmt;

/// Why a greenlet produced no value.
///
/// ```
/// let g = verdant_hub::spawn(|| -> u32 { panic!("boom") });
/// let err = g.get().unwrap_err();
/// assert_eq!(err.to_string(), "panicked: boom");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GreenletError {
    /// The body panicked; the panic message (or a placeholder if the payload was not a
    /// string).
    Panicked(String),
    /// The greenlet was killed (before it started, or at one of its blocking points).
    Killed,
    /// The greenlet could not start because no stack could be allocated for it; the
    /// message names the limit that was hit.
    NoStack(String),
    /// The value was already moved out by an earlier [`get`](crate::Greenlet::get).
    Taken,
}

impl fmt::Display for GreenletError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GreenletError::Panicked(msg) => write!(f, "panicked: {msg}"),
            GreenletError::Killed => f.write_str("killed"),
            GreenletError::NoStack(msg) => write!(f, "could not start: {msg}"),
            GreenletError::Taken => f.write_str("the value was already taken by an earlier get()"),
        }
    }
}

impl Error for GreenletError {}

impl GreenletError {
    /// What a greenlet whose body unwound with `payload` ends as: `Killed` for a kill, or
    /// `Panicked` with the message. For code that catches unwinds inside a greenlet and
    /// wants to report them the way the hub would.
    pub fn from_unwind(payload: &(dyn Any + Send)) -> GreenletError {
        if payload.is::<KillUnwind>() {
            GreenletError::Killed
        } else if payload.is::<TimeoutUnwind>() {
            GreenletError::Panicked("a with_timeout expiry escaped its scope".to_string())
        } else {
            GreenletError::Panicked(panic_message(payload))
        }
    }
}

/// The panic payload a kill unwinds with. Private: only the hub raises and catches it.
pub(crate) struct KillUnwind;

/// The panic payload a `with_timeout` expiry unwinds with, naming its scope.
pub(crate) struct TimeoutUnwind(pub(crate) u64);

/// Turns the payload of a caught unwind into the greenlet's error.
pub(crate) fn classify_unwind(payload: Box<dyn Any + Send>) -> GreenletError {
    GreenletError::from_unwind(&*payload)
}

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
