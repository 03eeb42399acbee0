//! The cross-thread door of a hub: its inbox, and the wakers it lends to other threads.
//!
//! Other threads never touch a hub's greenlets. They push a [`Message`] onto the hub's
//! inbox (a mutex-protected `Vec`) and, only when the push turned the inbox from empty to
//! non-empty *and* the hub is asleep in `epoll_wait`, write the hub's eventfd (mio's
//! `Waker`), which is registered in the hub's `poll`. The loop drains the whole inbox at
//! every turn boundary and whenever the eventfd wakes its `poll` ([`Remote::drain`]). So N
//! completions that arrive while the hub is busy (or spinning, see `hub.rs`) cost no
//! eventfd write at all, and N that arrive while it sleeps cost one.
//!
//! ```text
//!   worker thread                      inbox (Mutex<Vec>)           hub thread
//!   push(msg) ─ was empty and hub asleep? ─yes─▶ eventfd write ──▶ epoll_wait returns
//!        │                                                 │
//!        └──────── no: nothing else to do                  └─▶ take the whole Vec,
//!                                                              run/wake each message
//! ```
//!
//! # The sleeping/queued handshake
//!
//! Whether a poster writes the eventfd, and whether the hub may block, is decided by the
//! handshake in `door.rs` ([`Door`]): its module docs draw the four interleavings, and its
//! loom model checks them all.
//!
//! Outstanding cross-thread work (a lent waker, a work guard) keeps the hub's deadlock
//! check from firing: something may still arrive.

use std::cell::{Cell, RefCell};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use slab::Slab;

use crate::door::Door;
use crate::error::{catch_panic, panic_message};
use crate::io::{IoDriver, WAKE_TOKEN};
use crate::task::Waker;

/// What another thread can ask a hub to do.
pub(crate) enum Message {
    /// Run this closure on the hub's thread, between greenlets. It must not block.
    Job(Box<dyn FnOnce() + Send>),
    /// Wake the waker lent out under this key.
    Wake(usize),
    /// The waker lent out under this key was dropped unused: forget it.
    Release(usize),
    /// A `block_on` waker fired on another thread: wake its greenlet if it is parked.
    WakeBlockOn(Arc<crate::block_on::Signal>),
    /// Only wakes the hub so that it re-checks whether it can still be woken.
    Nop,
}

/// The hub's end of the cross-thread channel.
pub(crate) struct Inbox {
    queue: Mutex<Vec<Message>>,
    /// The flags that decide who wakes whom (see `door.rs`).
    door: Door,
    /// Set when the hub's thread ends; later posts fail.
    closed: AtomicBool,
    waker: mio::Waker,
    wake_writes: AtomicU64,
}

impl Inbox {
    pub(crate) fn new(io: &IoDriver) -> io::Result<Inbox> {
        Ok(Inbox {
            queue: Mutex::new(Vec::new()),
            door: Door::new(),
            closed: AtomicBool::new(false),
            waker: io.new_waker(WAKE_TOKEN)?,
            wake_writes: AtomicU64::new(0),
        })
    }

    /// Queues a message. Writes the eventfd only if the queue was empty and the hub is
    /// asleep in `epoll_wait` (see `sleeping`). Returns the message if the hub is gone.
    pub(crate) fn push(&self, message: Message) -> Result<(), Message> {
        let was_empty = {
            let mut queue = self.queue.lock();
            if self.closed.load(Ordering::Relaxed) {
                return Err(message);
            }
            let was_empty = queue.is_empty();
            queue.push(message);
            self.door.mark_queued();
            was_empty
        };
        if was_empty && self.door.hub_is_asleep() {
            self.write_eventfd();
        }
        Ok(())
    }

    fn write_eventfd(&self) {
        self.wake_writes.fetch_add(1, Ordering::Relaxed);
        // A failed write means the eventfd counter is saturated: already signalled.
        let _ = self.waker.wake();
    }

    /// The hub is about to block in `epoll_wait`. Returns `false` (and stays awake) if a
    /// message came or the outstanding work ended meanwhile: see `sleeping`.
    pub(crate) fn fall_asleep(&self) -> bool {
        self.door.fall_asleep()
    }

    pub(crate) fn wake_up(&self) {
        self.door.wake_up();
    }

    /// Pieces of cross-thread work announced and not finished.
    pub(crate) fn outstanding(&self) -> usize {
        self.door.outstanding()
    }

    /// Counts one more piece of outstanding work (a lent waker, a work guard): a message
    /// may still come. [`finish_one`](Inbox::finish_one) ends it.
    pub(crate) fn begin_one(&self) {
        self.door.begin_one();
    }

    /// Whether a message is queued (one atomic load: checked at every turn boundary).
    #[inline]
    pub(crate) fn has_messages(&self) -> bool {
        self.door.has_messages()
    }

    /// Swaps the queue's contents into `out` (which must be empty). Returns whether
    /// anything was taken.
    pub(crate) fn take_all(&self, out: &mut Vec<Message>) -> bool {
        if !self.door.has_messages() {
            return false;
        }
        let mut queue = self.queue.lock();
        self.door.clear_queued();
        std::mem::swap(&mut *queue, out);
        !out.is_empty()
    }

    /// Whether a message is queued or may still arrive.
    pub(crate) fn may_receive(&self) -> bool {
        self.door.may_receive()
    }

    pub(crate) fn wake_writes(&self) -> u64 {
        self.wake_writes.load(Ordering::Relaxed)
    }

    pub(crate) fn close(&self) {
        let dropped = {
            let mut queue = self.queue.lock();
            self.closed.store(true, Ordering::Relaxed);
            std::mem::take(&mut *queue)
        };
        // Jobs are `Send` closures meant for a thread that is ending: forget them rather
        // than run foreign destructors during thread-local teardown.
        std::mem::forget(dropped);
    }

    /// One piece of outstanding work ended (after its message, if any, was queued). If it
    /// was the last and the hub is asleep, wake it so it re-checks for a deadlock.
    pub(crate) fn finish_one(&self) {
        if self.door.finish_one() {
            // An asleep hub has an empty inbox, so this push writes the eventfd.
            let _ = self.push(Message::Nop);
        }
    }
}

/// The hub's side of the door: the inbox it shares with other threads, and the wakers it
/// lent them, by key.
pub(crate) struct Remote {
    inbox: Arc<Inbox>,
    /// Wakers lent to other threads as `RemoteWaker`s, by key.
    lent: RefCell<Slab<Waker>>,
    /// A spare buffer swapped with the inbox's queue, so draining does not allocate.
    spare: RefCell<Vec<Message>>,
    /// Times the inbox was found non-empty and drained.
    batches: Cell<u64>,
    /// Messages handled.
    messages: Cell<u64>,
}

impl Remote {
    pub(crate) fn new(io: &IoDriver) -> io::Result<Remote> {
        Ok(Remote {
            inbox: Arc::new(Inbox::new(io)?),
            lent: RefCell::new(Slab::new()),
            spare: RefCell::new(Vec::new()),
            batches: Cell::new(0),
            messages: Cell::new(0),
        })
    }

    /// Whether code left the lent wakers or the spare buffer borrowed (see
    /// `Hub::end_overflowed`).
    pub(crate) fn in_use(&self) -> bool {
        self.lent.try_borrow_mut().is_err() || self.spare.try_borrow_mut().is_err()
    }

    /// The inbox, for handles that other threads hold.
    pub(crate) fn inbox(&self) -> &Arc<Inbox> {
        &self.inbox
    }

    /// Lends `waker` to other threads: returns the key a `Message::Wake` names it by. It
    /// counts as outstanding work until woken or released.
    pub(crate) fn lend(&self, waker: Waker) -> usize {
        let key = self.lent.borrow_mut().insert(waker);
        self.inbox.begin_one();
        key
    }

    /// Runs every message other threads posted since the last drain: jobs run (a panic in
    /// one is reported and the rest go on), lent wakers are woken or forgotten.
    #[inline(never)]
    pub(crate) fn drain(&self) {
        let mut batch = std::mem::take(&mut *self.spare.borrow_mut());
        if !self.inbox.take_all(&mut batch) {
            *self.spare.borrow_mut() = batch;
            return;
        }
        self.batches.set(self.batches.get() + 1);
        self.messages.set(self.messages.get() + batch.len() as u64);
        for message in batch.drain(..) {
            match message {
                Message::Job(job) => {
                    if let Err(payload) = catch_panic(job) {
                        crate::report::report(format!(
                            "verdant: a job posted to the hub from another thread panicked: {}",
                            panic_message(&*payload)
                        ));
                    }
                }
                Message::Wake(key) => {
                    let waker = self.lent.borrow_mut().try_remove(key);
                    if let Some(waker) = waker {
                        waker.wake();
                    }
                }
                Message::Release(key) => {
                    self.lent.borrow_mut().try_remove(key);
                }
                // SAFETY: the drain runs on the hub's thread, and a signal is only ever
                // pushed to the inbox of its own hub.
                Message::WakeBlockOn(signal) => unsafe { signal.wake_parked() },
                Message::Nop => {}
            }
        }
        *self.spare.borrow_mut() = batch;
    }

    /// Times the inbox was drained, and messages handled.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (self.batches.get(), self.messages.get())
    }

    /// The thread is ending: close the door and forget the lent wakers without running
    /// anything.
    pub(crate) fn abandon(&self) {
        self.inbox.close();
        std::mem::forget(std::mem::take(&mut *self.lent.borrow_mut()));
    }
}

impl std::ops::Deref for Remote {
    type Target = Inbox;

    fn deref(&self) -> &Inbox {
        &self.inbox
    }
}
