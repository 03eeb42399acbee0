//! Waking a hub from other threads: [`RemoteHandle`], [`RemoteWaker`] and [`WorkGuard`],
//! the handles other threads hold to a hub's inbox (`inbox.rs`, which explains the wake
//! handshake).

use std::fmt;
use std::sync::Arc;

use crate::hub::with_hub;
use crate::inbox::{Inbox, Message};
use crate::park;

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
    with_hub(|hub| hub.remote_handle())
}

impl RemoteHandle {
    pub(crate) fn new(inbox: Arc<Inbox>) -> RemoteHandle {
        RemoteHandle { inbox }
    }

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
        self.inbox.begin_one();
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
            .field("outstanding", &self.inbox.outstanding())
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
            let remote = hub.remote();
            let key = remote.lend(waker);
            RemoteWaker { inbox: remote.inbox().clone(), key, used: false }
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
