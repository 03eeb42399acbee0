//! The per-hub half of signal handling: one [`Listener`] per hub and signal, alive while
//! something on that hub (a handler, a waiting greenlet) subscribes to the signal.
//!
//! A listener owns a self-pipe (a Unix socket pair). signal-hook's action, run inside the
//! OS signal handler on whatever thread the kernel picked, only writes a byte to its write
//! end; nothing else happens in the signal handler. The read end is registered with the
//! hub, and the listener's *dispatcher* greenlet waits on it: when bytes come it drains
//! them, then counts one delivery, wakes the greenlets in [`wait`](super::wait) and spawns
//! one greenlet per handler, in the order the handlers were added. Signals that arrive
//! before the dispatcher drained the pipe are one delivery (the kernel coalesces pending
//! signals of a kind the same way).
//!
//! ```text
//!   kernel ─▶ signal-hook's handler ─▶ conditional default (no listener: default action)
//!                                  └─▶ one pipe write per listener (per hub)
//!   hub: dispatcher greenlet ◀─ read end readable ─ drain ─▶ wake waiters, spawn handlers
//! ```
//!
//! # Invariant
//!
//! A listener is in its hub's table exactly while `subscribers > 0`. Its dispatcher holds
//! an `Rc` to it and the pipe's read end; when the last subscriber leaves, the listener is
//! removed from the table and its dispatcher is killed, which drops both, and the
//! listener's [`Hook`] unregisters the pipe action.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::{self, Read};
use std::os::raw::c_int;
use std::os::unix::net::UnixStream;
use std::rc::Rc;

use signal_hook::SigId;
use verdant_hub::io::Green;
use verdant_hub::park::WaitList;
use verdant_hub::{Builder, Greenlet};

use super::default;

thread_local! {
    /// This hub's listeners, by signal.
    static LISTENERS: RefCell<HashMap<c_int, Rc<Listener>>> = RefCell::new(HashMap::new());
}

/// A handler callback: run in a new greenlet at every delivery.
pub(super) type Callback = Rc<dyn Fn()>;

/// One hub's subscription to one signal.
pub(super) struct Listener {
    signal: c_int,
    /// Handlers in the order they were added, with their ids.
    handlers: RefCell<Vec<(u64, Callback)>>,
    next_handler: Cell<u64>,
    /// Deliveries so far: a waiter compares it with the count it started from.
    deliveries: Cell<u64>,
    /// Greenlets in `signal::wait`.
    waiters: WaitList,
    /// Handlers and waits subscribed.
    subscribers: Cell<usize>,
    /// `None` once the listener is closed.
    dispatcher: RefCell<Option<Greenlet<()>>>,
    _hook: Hook,
}

/// A pipe action registered with signal-hook; unregistered (its write end closed) on drop.
struct Hook {
    signal: c_int,
    id: SigId,
}

impl Drop for Hook {
    fn drop(&mut self) {
        signal_hook::low_level::unregister(self.id);
        default::remove_listener(self.signal);
    }
}

/// A handler's or a waiter's hold on its hub's listener of one signal.
pub(super) struct Subscription(Rc<Listener>);

impl Subscription {
    /// Subscribes to `signal` on this thread's hub, opening its listener if needed.
    pub(super) fn new(signal: c_int) -> io::Result<Subscription> {
        let existing = LISTENERS.with(|listeners| listeners.borrow().get(&signal).cloned());
        let listener = match existing {
            Some(listener) => listener,
            None => open(signal)?,
        };
        listener.subscribers.set(listener.subscribers.get() + 1);
        Ok(Subscription(listener))
    }

    pub(super) fn listener(&self) -> &Listener {
        &self.0
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let left = self.0.subscribers.get() - 1;
        self.0.subscribers.set(left);
        if left == 0 {
            close(&self.0);
        }
    }
}

impl Listener {
    /// The signal listened to.
    pub(super) fn signal(&self) -> c_int {
        self.signal
    }

    /// How many times the signal was delivered to this hub so far.
    pub(super) fn deliveries(&self) -> u64 {
        self.deliveries.get()
    }

    /// Where greenlets waiting for the next delivery leave their wakers.
    pub(super) fn waiters(&self) -> &WaitList {
        &self.waiters
    }

    /// Adds a handler after the others; returns its id.
    pub(super) fn add_handler(&self, callback: Callback) -> u64 {
        let id = self.next_handler.get();
        self.next_handler.set(id + 1);
        self.handlers.borrow_mut().push((id, callback));
        id
    }

    /// Removes a handler; a delivery already under way still runs it.
    pub(super) fn remove_handler(&self, id: u64) {
        self.handlers.borrow_mut().retain(|(handler, _)| *handler != id);
    }

    /// One delivery: wake the waiters, spawn every handler (never inside the dispatcher,
    /// so a blocking or panicking handler cannot stop the next delivery).
    fn deliver(&self) {
        self.deliveries.set(self.deliveries.get() + 1);
        self.waiters.notify_all();
        let handlers: Vec<Callback> =
            self.handlers.borrow().iter().map(|(_, callback)| callback.clone()).collect();
        for callback in handlers {
            verdant_hub::spawn(move || callback());
        }
    }
}

/// Opens this hub's listener of `signal`: a pipe action with signal-hook, and a dispatcher.
fn open(signal: c_int) -> io::Result<Rc<Listener>> {
    default::add_listener(signal)?;
    let pair = UnixStream::pair();
    let registered = pair.and_then(|(reader, writer)| {
        let id = signal_hook::low_level::pipe::register(signal, writer)?;
        Ok((reader, id))
    });
    let (reader, id) = match registered {
        Ok(registered) => registered,
        Err(err) => {
            default::remove_listener(signal);
            return Err(err);
        }
    };
    let hook = Hook { signal, id };
    let reader = Green::new(reader)?;
    let listener = Rc::new(Listener {
        signal,
        handlers: RefCell::new(Vec::new()),
        next_handler: Cell::new(0),
        deliveries: Cell::new(0),
        waiters: WaitList::new(),
        subscribers: Cell::new(0),
        dispatcher: RefCell::new(None),
        _hook: hook,
    });
    let dispatched = listener.clone();
    let dispatcher = Builder::new()
        .name(format!("{} dispatcher", default::name(signal)))
        .spawn(move || dispatch(&dispatched, &reader))?;
    *listener.dispatcher.borrow_mut() = Some(dispatcher);
    LISTENERS.with(|listeners| listeners.borrow_mut().insert(signal, listener.clone()));
    Ok(listener)
}

/// The last subscriber left: forget the listener and end its dispatcher, which drops the
/// last `Rc` to it (and with it the pipe action) once it has unwound.
fn close(listener: &Listener) {
    let _ = LISTENERS.try_with(|listeners| listeners.borrow_mut().remove(&listener.signal));
    if let Some(dispatcher) = listener.dispatcher.borrow_mut().take() {
        dispatcher.kill_nowait();
    }
}

/// The dispatcher's loop: drain the pipe (the read parks until it is readable), deliver.
/// signal-hook's writes are drained before the delivery, so a signal that comes while the
/// handlers are being spawned makes the pipe readable again (its module docs' order).
fn dispatch(listener: &Listener, reader: &Green<UnixStream>) {
    let mut bytes = [0u8; 64];
    loop {
        match reader.read_with(|mut pipe| pipe.read(&mut bytes)) {
            Ok(0) => return, // the write end is closed: unregistered
            Ok(_) => listener.deliver(),
            Err(err) => {
                let name = default::name(listener.signal);
                verdant_hub::report::report(format!(
                    "verdant: the {name} listener stopped: reading its self-pipe failed: {err}"
                ));
                return;
            }
        }
    }
}
