//! Waking a hub from other threads: the inbox, [`RemoteHandle`] and [`RemoteWaker`].
//!
//! Other threads never touch a hub's greenlets. They push a [`Message`] onto the hub's
//! inbox (a mutex-protected `Vec`) and, only when the push turned the inbox from empty to
//! non-empty *and* the hub is asleep in `epoll_wait`, write the hub's eventfd (mio's
//! `Waker`), which is registered in the hub's `poll`. The hub drains the whole inbox at
//! every turn boundary and whenever the eventfd wakes its `poll`. So N completions that
//! arrive while the hub is busy (or spinning, see `hub.rs`) cost no eventfd write at all,
//! and N that arrive while it sleeps cost one.
//!
//! ```text
//!   worker thread                      inbox (Mutex<Vec>)           hub thread
//!   push(msg) ─ was empty and hub asleep? ─yes─▶ eventfd write ──▶ epoll_wait returns
//!        │                                                 │
//!        └──────── no: nothing else to do                  └─▶ take the whole Vec,
//!                                                              run/wake each message
//! ```
//!
//! Outstanding cross-thread work (a live [`RemoteWaker`], a [`WorkGuard`]) keeps the hub's
//! deadlock check from firing: something may still arrive.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;

use crate::hub::with_hub;
use crate::io::{IoDriver, WAKE_TOKEN};
use crate::park;

/// What another thread can ask a hub to do.
pub(crate) enum Message {
    /// Run this closure on the hub's thread, between greenlets. It must not block.
    Job(Box<dyn FnOnce() + Send>),
    /// Wake the waker lent out under this key.
    Wake(usize),
    /// The waker lent out under this key was dropped unused: forget it.
    Release(usize),
    /// Only wakes the hub so that it re-checks whether it can still be woken.
    Nop,
}

/// The hub's end of the cross-thread channel.
pub(crate) struct Inbox {
    queue: Mutex<Vec<Message>>,
    /// Whether `queue` is non-empty; lets the hub skip the lock when nothing came.
    queued: AtomicBool,
    /// Whether the hub is (about to be) blocked in `epoll_wait`. Posters write the eventfd
    /// only then: a hub that is running or spinning sees `queued` by itself.
    ///
    /// The hub stores `sleeping` and then loads `queued` (and `outstanding`); a poster
    /// stores `queued` (or decrements `outstanding`) and then loads `sleeping`, all
    /// `SeqCst`, so at least one side sees the other's store: either the hub does not
    /// sleep, or the poster wakes it.
    sleeping: AtomicBool,
    /// Set when the hub's thread ends; later posts fail.
    closed: AtomicBool,
    waker: mio::Waker,
    wake_writes: AtomicU64,
    /// Live remote wakers and work guards: sources of future messages.
    outstanding: AtomicUsize,
}

impl Inbox {
    pub(crate) fn new(io: &IoDriver) -> io::Result<Inbox> {
        Ok(Inbox {
            queue: Mutex::new(Vec::new()),
            queued: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            waker: io.new_waker(WAKE_TOKEN)?,
            wake_writes: AtomicU64::new(0),
            outstanding: AtomicUsize::new(0),
        })
    }

    /// Queues a message. Writes the eventfd only if the queue was empty and the hub is
    /// asleep in `epoll_wait` (see `sleeping`). Returns the message if the hub is gone.
    fn push(&self, message: Message) -> Result<(), Message> {
        let was_empty = {
            let mut queue = self.queue.lock();
            if self.closed.load(Ordering::Relaxed) {
                return Err(message);
            }
            let was_empty = queue.is_empty();
            queue.push(message);
            self.queued.store(true, Ordering::SeqCst);
            was_empty
        };
        if was_empty && self.sleeping.load(Ordering::SeqCst) {
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
        self.sleeping.store(true, Ordering::SeqCst);
        if self.queued.load(Ordering::SeqCst) {
            self.sleeping.store(false, Ordering::Relaxed);
            return false;
        }
        true
    }

    pub(crate) fn wake_up(&self) {
        self.sleeping.store(false, Ordering::Relaxed);
    }

    /// Pieces of cross-thread work announced and not finished.
    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::SeqCst)
    }

    /// Whether a message is queued (one atomic load: checked at every turn boundary).
    #[inline]
    pub(crate) fn has_messages(&self) -> bool {
        self.queued.load(Ordering::Acquire)
    }

    /// Swaps the queue's contents into `out` (which must be empty). Returns whether
    /// anything was taken.
    pub(crate) fn take_all(&self, out: &mut Vec<Message>) -> bool {
        if !self.queued.load(Ordering::Acquire) {
            return false;
        }
        let mut queue = self.queue.lock();
        self.queued.store(false, Ordering::Relaxed);
        std::mem::swap(&mut *queue, out);
        !out.is_empty()
    }

    /// Whether a message is queued or may still arrive.
    pub(crate) fn may_receive(&self) -> bool {
        // Senders queue their message before they stop counting as outstanding, so
        // reading `outstanding` first cannot miss a message sent by the last of them.
        self.outstanding.load(Ordering::SeqCst) > 0 || self.queued.load(Ordering::SeqCst)
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
    fn finish_one(&self) {
        if self.outstanding.fetch_sub(1, Ordering::SeqCst) == 1
            && self.sleeping.load(Ordering::SeqCst)
        {
            // An asleep hub has an empty inbox, so this push writes the eventfd.
            let _ = self.push(Message::Nop);
        }
    }
}

/// The error of posting to a hub whose thread has ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HubGone;

impl fmt::Display for HubGone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the hub's thread has ended")
    }
}

impl std::error::Error for HubGone {}

/// A `Send + Sync` handle through which any thread can post work to one hub and wake it.
///
/// Get one on the hub's thread with [`remote_handle`], then move it anywhere.
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
///
/// let hub = verdant_hub::remote_handle();
/// let done = Arc::new(AtomicBool::new(false));
/// let seen = done.clone();
/// let work = hub.begin_work(); // the hub must not call this a deadlock meanwhile
/// std::thread::spawn(move || {
///     hub.post(move || seen.store(true, Ordering::SeqCst)).unwrap();
///     drop(work);
/// });
/// while !done.load(Ordering::SeqCst) {
///     verdant_hub::sleep(std::time::Duration::from_millis(1));
/// }
/// ```
#[derive(Clone)]
pub struct RemoteHandle {
    inbox: Arc<Inbox>,
}

/// A handle to this thread's hub that other threads can use.
pub fn remote_handle() -> RemoteHandle {
    with_hub(|hub| RemoteHandle { inbox: hub.inbox.clone() })
}

impl RemoteHandle {
    /// Runs `job` on the hub's thread, between greenlets, at the hub's next turn. The job
    /// must not block (it may wake greenlets, spawn greenlets, set flags). A panic in it is
    /// printed and does not stop the hub.
    pub fn post(&self, job: impl FnOnce() + Send + 'static) -> Result<(), HubGone> {
        self.inbox.push(Message::Job(Box::new(job))).map_err(|_| HubGone)
    }

    /// Counts one piece of outstanding work until the returned guard is dropped. While any
    /// is outstanding, a hub whose main code waits will block instead of reporting a
    /// deadlock, since a post may still come.
    pub fn begin_work(&self) -> WorkGuard {
        self.inbox.outstanding.fetch_add(1, Ordering::Relaxed);
        WorkGuard { inbox: self.inbox.clone() }
    }

    /// How many times the hub's eventfd was written: only when the hub was asleep in
    /// `epoll_wait` and its inbox empty. Lets tests and benches see the coalescing.
    pub fn wake_writes(&self) -> u64 {
        self.inbox.wake_writes()
    }
}

impl fmt::Debug for RemoteHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteHandle")
            .field("wake_writes", &self.wake_writes())
            .field("outstanding", &self.inbox.outstanding.load(Ordering::Relaxed))
            .finish()
    }
}

/// Outstanding work announced with [`RemoteHandle::begin_work`]; dropping it ends it.
#[must_use = "the work counts as outstanding only while the guard lives"]
pub struct WorkGuard {
    inbox: Arc<Inbox>,
}

impl Drop for WorkGuard {
    fn drop(&mut self) {
        self.inbox.finish_one();
    }
}

impl fmt::Debug for WorkGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WorkGuard")
    }
}

/// Wakes one parked greenlet from any thread. `Send + Sync`, used once.
///
/// Made on the hub's thread from a [`Waker`](park::Waker). Until it is used or dropped it
/// counts as outstanding work, so the hub keeps waiting for it rather than report a
/// deadlock.
///
/// ```
/// use verdant_hub::park;
///
/// let remote = verdant_hub::RemoteWaker::new(park::waker());
/// std::thread::spawn(move || remote.wake());
/// park::park(&"a wake-up from another thread");
/// ```
pub struct RemoteWaker {
    inbox: Arc<Inbox>,
    key: usize,
    used: bool,
}

impl RemoteWaker {
    /// Lends `waker` to other threads.
    pub fn new(waker: park::Waker) -> RemoteWaker {
        with_hub(|hub| {
            let key = hub.remote_wakers.borrow_mut().insert(waker);
            hub.inbox.outstanding.fetch_add(1, Ordering::Relaxed);
            RemoteWaker { inbox: hub.inbox.clone(), key, used: false }
        })
    }

    /// Wakes the greenlet (through the hub's inbox). Returns [`HubGone`] if the hub's
    /// thread has ended.
    pub fn wake(mut self) -> Result<(), HubGone> {
        self.used = true;
        let result = self.inbox.push(Message::Wake(self.key)).map_err(|_| HubGone);
        self.inbox.finish_one();
        result
    }
}

impl Drop for RemoteWaker {
    fn drop(&mut self) {
        if !self.used {
            let _ = self.inbox.push(Message::Release(self.key));
            self.inbox.finish_one();
        }
    }
}

impl fmt::Debug for RemoteWaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteWaker").field("key", &self.key).finish()
    }
}
