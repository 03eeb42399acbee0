//! Primitives shared across hubs: `Send + Sync` versions of [`Event`], [`Semaphore`] /
//! [`BoundedSemaphore`] and an MPMC [`channel`], which greenlets on any hub and plain
//! threads can wait on at once.
//!
//! A greenlet that waits parks: its hub keeps running its other greenlets, and the hub's
//! main code waiting runs the hub meanwhile. A thread without a hub blocks natively (it
//! parks). Whether the caller has a hub is [`verdant_hub::has_hub`]: a thread that never
//! used verdant does not get one by waiting here.
//!
//! ```
//! use verdant_sync::shared::{Event, channel};
//!
//! let (tx, rx) = channel::bounded(16);
//! let done = Event::new();
//! let hubs: Vec<_> = (0..2)
//!     .map(|hub| {
//!         let (tx, done) = (tx.clone(), done.clone());
//!         std::thread::spawn(move || {
//!             // Each thread is a hub; its greenlets send.
//!             let senders: Vec<_> = (0..3)
//!                 .map(|g| {
//!                     let tx = tx.clone();
//!                     verdant_hub::spawn(move || tx.send((hub, g)).unwrap())
//!                 })
//!                 .collect();
//!             verdant_hub::joinall(&senders, verdant_hub::WaitFor::all());
//!             done.wait(); // parks the hub's main code, not the other hubs
//!         })
//!     })
//!     .collect();
//! drop(tx);
//! let mut got: Vec<_> = (0..6).map(|_| rx.recv().unwrap()).collect(); // a plain thread
//! got.sort();
//! assert_eq!(got, [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]);
//! done.set();
//! hubs.into_iter().for_each(|h| h.join().unwrap());
//! ```
//!
//! # How waiting works
//!
//! Each primitive is one lock over its state and FIFO queues of waiters (`waiters.rs`). A
//! waiter woken is taken *out* of its queue by whoever woke it, so under the lock it knows
//! whether it was notified. A greenlet is woken through its hub's inbox (a
//! [`RemoteWaker`](verdant_hub::RemoteWaker)): the first wake-up to a sleeping hub writes
//! its eventfd once, later ones coalesce into the same wake. A thread is unparked.
//!
//! # Kills and timeouts lose nothing
//!
//! A `kill()` or `with_timeout` reaches a greenlet parked here like any blocking point.
//! An item is never handed to a receiver: a running receiver takes it under the lock, so
//! a receiver killed after being notified has taken nothing, and it notifies the next
//! receiver on its way out. A semaphore permit *is* handed to its waiter (FIFO): a waiter
//! killed as it is handed one releases it again, to the next waiter.
//!
//! # No false deadlock
//!
//! A hub reports a deadlock when its main code waits and nothing can ever wake it. A
//! greenlet parked here holds a remote waker, which the hub counts as cross-thread work
//! still to come: so while anything waits on a shared primitive, its hub waits too
//! instead of reporting a deadlock. This is also the limit: a wait on a shared primitive
//! that nobody will ever set is a hang, as it would be for a thread.

pub mod channel;
mod event;
pub mod semaphore;
mod waiters;

pub use channel::{Receiver, Sender, bounded, unbounded};
pub use event::Event;

/// A counting semaphore shared across hubs (gevent's `Semaphore`).
pub type Semaphore = semaphore::Semaphore<crate::semaphore::Unbounded>;

/// A shared semaphore that refuses to be released more often than acquired (gevent's
/// `BoundedSemaphore`).
pub type BoundedSemaphore = semaphore::Semaphore<crate::semaphore::Bounded>;

/// Holds a permit of a shared [`Semaphore`].
pub type SemaphoreGuard<'a> = semaphore::SemaphoreGuard<'a, crate::semaphore::Unbounded>;

/// Holds a permit of a shared [`BoundedSemaphore`].
pub type BoundedSemaphoreGuard<'a> = semaphore::SemaphoreGuard<'a, crate::semaphore::Bounded>;
