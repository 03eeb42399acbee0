//! A `Send + Sync` [`Event`]: a flag that greenlets on any hub and plain threads wait for.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::waiters::{Wait, WaitQueue, Wakes};
use parking_lot::Mutex;

/// A flag that greenlets on any hub and plain threads can wait for (gevent's `Event`,
/// shared across threads). Cloning gives another handle to the same event.
///
/// `set()` wakes everyone waiting at that moment, wherever they wait; each of them returns
/// `true` from its wait even if [`clear`](Event::clear) comes before it runs.
///
/// It is not a [`Waitable`](crate::Waitable): `wait`/`iwait` leave their waker with
/// everything they watch until it becomes ready, and a shared event may never be set: the
/// waker, which its hub counts as cross-thread work to come, would keep that hub's
/// `join_hub` waiting. Wait for it in a greenlet of its own instead.
///
/// ```
/// use verdant_sync::shared::Event;
///
/// let go = Event::new();
/// let g = go.clone();
/// let thread = std::thread::spawn(move || {
///     let greenlet = verdant_hub::spawn({
///         let g = g.clone();
///         move || g.wait() // a greenlet on this thread's hub
///     });
///     g.wait(); // the hub's main code: the hub runs while it waits
///     greenlet.get().unwrap();
/// });
/// go.set(); // from this thread, which has no hub
/// thread.join().unwrap();
/// assert!(go.is_set());
/// ```
#[derive(Clone, Default)]
pub struct Event {
    inner: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    flag: bool,
    waiters: WaitQueue,
}

impl Event {
    /// A new, unset event.
    pub fn new() -> Event {
        Event::default()
    }

    /// Sets the flag and wakes everyone waiting now, on every hub and thread.
    pub fn set(&self) {
        let mut wakes = Wakes::default();
        {
            let mut state = self.inner.lock();
            state.flag = true;
            wakes.extend(state.waiters.notify_all());
        }
        wakes.fire(&self.inner);
    }

    /// Resets the flag; later waits block until the next `set`.
    pub fn clear(&self) {
        self.inner.lock().flag = false;
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.inner.lock().flag
    }

    /// Waits until the flag is set (returns at once if it is). In a greenlet only the
    /// greenlet waits; a thread without a hub blocks.
    pub fn wait(&self) {
        self.wait_until(None);
    }

    /// Waits at most `timeout`. Returns whether the event was set (by then, or during).
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Instant::now().checked_add(timeout))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        let wait = Wait {
            lock: &self.inner,
            queue: |state: &mut State| &mut state.waiters,
            pass_on: |_, _| {}, // every waiter was notified: nobody to pass it to
            reason: &"shared::Event::wait()",
            deadline,
        };
        wait.run(|state, notified, _| (notified || state.flag).then_some(())).is_some()
    }

    /// Greenlets and threads waiting now.
    pub fn waiting(&self) -> usize {
        self.inner.lock().waiters.len()
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.lock();
        f.debug_struct("shared::Event")
            .field("set", &state.flag)
            .field("waiting", &state.waiters.len())
            .finish()
    }
}
