//! The process-wide half of signal handling: how many listeners (one per hub and signal)
//! each signal has, and what the process does with the signal when it has none.
//!
//! signal-hook installs its own OS handler the first time a signal is registered and never
//! takes it back: once the last action is unregistered, the signal would be *ignored*
//! (a dropped `SIGTERM` handler would leave a process that `kill` cannot stop). So the
//! first time a signal gets a listener, if its disposition was the default one, one more
//! action is registered for it, forever: signal-hook's conditional default, which runs the
//! signal's default action (terminate, stop, ignore...) while the signal has no listener.
//! A signal the process ignored (Rust ignores `SIGPIPE`) or handled some other way keeps
//! that: signal-hook chains a handler it replaced, and ignores the signal otherwise.
//!
//! # Invariant
//!
//! `idle` of a signal is true exactly while its `listeners` count is zero, and it is only
//! written with the table locked. Its conditional-default action is registered before any
//! listener's pipe action, so it runs first.

use std::io;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use signal_hook::low_level::signal_name;

/// One signal's listeners and its "run the default action" flag.
struct Entry {
    signal: c_int,
    listeners: usize,
    /// Read by the conditional-default action in the signal handler; `None` when the
    /// signal's disposition was not the default one (nothing to restore).
    idle: Option<Arc<AtomicBool>>,
}

/// Every signal a listener was ever added for.
static TABLE: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

/// Counts a new listener of `signal`, the first time arranging for its default action to
/// be kept when it has none. Fails with `InvalidInput` for a signal that cannot be
/// handled (`SIGKILL`, `SIGSTOP`, the synchronous faults) or is not a signal number.
pub(super) fn add_listener(signal: c_int) -> io::Result<()> {
    check(signal)?;
    let mut table = TABLE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let index = match table.iter().position(|entry| entry.signal == signal) {
        Some(index) => index,
        None => {
            let idle = keep_default_action(signal)?;
            table.push(Entry { signal, listeners: 0, idle });
            table.len() - 1
        }
    };
    let entry = &mut table[index];
    entry.listeners += 1;
    if let Some(idle) = &entry.idle {
        idle.store(false, Ordering::SeqCst);
    }
    Ok(())
}

/// A listener of `signal` is gone (its pipe action unregistered).
pub(super) fn remove_listener(signal: c_int) {
    let mut table = TABLE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let Some(entry) = table.iter_mut().find(|entry| entry.signal == signal) else { return };
    entry.listeners -= 1;
    if entry.listeners == 0 {
        if let Some(idle) = &entry.idle {
            idle.store(true, Ordering::SeqCst);
        }
    }
}

/// The name of a signal, for messages (`SIGTERM`, or `signal 40`).
pub(super) fn name(signal: c_int) -> String {
    match signal_name(signal) {
        Some(name) => name.to_string(),
        None => format!("signal {signal}"),
    }
}

/// Refuses what signal-hook would panic on or the kernel would refuse.
fn check(signal: c_int) -> io::Result<()> {
    if signal_hook::consts::FORBIDDEN.contains(&signal) {
        let message = format!("{} cannot be handled (the kernel or Rust owns it)", name(signal));
        return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
    }
    disposition_is_default(signal).map(|_| ())
}

/// Registers, if `signal`'s disposition is the default one, the action that runs the
/// default while the returned flag is set. Returns the flag.
fn keep_default_action(signal: c_int) -> io::Result<Option<Arc<AtomicBool>>> {
    if !disposition_is_default(signal)? || signal_name(signal).is_none() {
        return Ok(None);
    }
    let idle = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register_conditional_default(signal, idle.clone())?;
    Ok(Some(idle))
}

/// Whether the process leaves `signal` to its default action (`SIG_DFL`).
fn disposition_is_default(signal: c_int) -> io::Result<bool> {
    // SAFETY: `sigaction` is a plain C struct, for which all-zero bytes are a valid value.
    let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action makes `sigaction` only read the current one into
    // `current`, which lives for the call.
    if unsafe { libc::sigaction(signal, std::ptr::null(), &mut current) } != 0 {
        let message = format!("{signal} is not a signal number this system knows");
        return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
    }
    Ok(current.sa_sigaction == libc::SIG_DFL)
}
