//! Synchronisation between greenlets: events, async results, semaphores and locks,
//! queues and channels, and waiting on several things at once (gevent's `gevent.event`,
//! `gevent.lock` and `gevent.queue`).
//!
//! Every primitive here is built on the hub's single waiter mechanism
//! ([`park`](verdant_hub::park): a `Waker` per wait, `WaitList`s of them), and on nothing
//! else of the hub: this crate sees only the hub's public API, so the compiler checks that
//! rule. Each blocking method is a blocking point: kills and timeouts reach it, it has a
//! `_timeout` form, and from the thread's main code a wait that nothing can ever end is
//! reported as a deadlock.
//!
//! All types are cheap to clone (clones share the same primitive) and `!Send`: they belong
//! to the hub of the thread that made them.
//!
//! ```compile_fail,E0277
//! fn assert_send<T: Send>() {}
//! assert_send::<verdant_sync::Queue<u8>>();
//! ```
//!
//! | type | gevent | what it does |
//! |---|---|---|
//! | [`Event`] | `Event` | a flag; `wait` until it is set |
//! | [`AsyncResult`] | `AsyncResult` | a value or error to come; every waiter gets a copy |
//! | [`Semaphore`], [`BoundedSemaphore`] | same | `n` permits, FIFO hand-off |
//! | [`Lock`], [`RLock`] | same | mutual exclusion around blocking code |
//! | [`Queue`], [`LifoQueue`], [`PriorityQueue`], [`JoinableQueue`] | same | items between greenlets |
//! | [`Channel`] | `Channel` | a put waits until a getter takes the item |
//! | [`wait`], [`iwait`] | `gevent.wait`, `gevent.iwait` | wait on several [`Waitable`]s |

mod channel;
mod event;
mod queue;
mod semaphore;
mod wait;

pub use channel::Channel;
pub use event::{AsyncResult, Event};
pub use queue::{
    GetError, JoinableQueue, LifoQueue, PriorityQueue, PutError, Queue, TaskDoneError,
};
pub use semaphore::{
    BoundedSemaphore, BoundedSemaphoreGuard, Lock, LockGuard, RLock, RLockGuard, ReleaseError,
    Semaphore, SemaphoreGuard,
};
pub use wait::{IWait, Waitable, iwait, wait};
