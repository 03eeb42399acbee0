//! Callbacks that must run on a particular hub's thread, triggered from any thread.
//!
//! A completion callback may hold `!Send` things (a map's reporter, a greenlet handle), so
//! it cannot travel to the worker thread. It stays in a thread-local registry on the hub's
//! thread; the worker posts only its key (a `usize`) to that hub's inbox, and the hub runs
//! it there. Until it runs it counts as outstanding work, so the hub does not declare a
//! deadlock while waiting for it.

use std::cell::RefCell;

use slab::Slab;
use verdant_hub::{RemoteHandle, WorkGuard};

thread_local! {
    static CALLBACKS: RefCell<Slab<Box<dyn FnOnce()>>> = RefCell::new(Slab::new());
}

/// A callback parked on its hub's thread, and how to run it from elsewhere. `Send`.
pub(crate) struct LocalCallback {
    hub: RemoteHandle,
    key: usize,
    _work: WorkGuard,
}

impl LocalCallback {
    /// Parks `callback` on this thread (which must have a hub).
    pub(crate) fn new(callback: impl FnOnce() + 'static) -> LocalCallback {
        let hub = verdant_hub::remote_handle();
        let work = hub.begin_work();
        let key = CALLBACKS.with(|c| c.borrow_mut().insert(Box::new(callback)));
        LocalCallback { hub, key, _work: work }
    }

    /// Asks the callback's hub to run it (from any thread). If the hub's thread has
    /// ended, the callback is lost with it.
    pub(crate) fn fire(self) {
        let key = self.key;
        let _ = self.hub.post(move || run(key));
        // `_work` drops here, after the post: the hub never sees the work end first.
    }
}

fn run(key: usize) {
    let callback = CALLBACKS.with(|c| c.borrow_mut().try_remove(key));
    if let Some(callback) = callback {
        callback();
    }
}
