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
//! to the hub of the thread that made them. The [`shared`] module has `Send + Sync`
//! versions for greenlets on several hubs and plain threads.
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
//! | [`eventlet::Event`] | eventlet's `Event` | a value sent once; `reset` to send again |
//! | [`wait`], [`iwait`] | `gevent.wait`, `gevent.iwait` | wait on several [`Waitable`]s |
//! | [`shared`] | | `Send + Sync` `Event`, semaphores and an MPMC channel, shared by greenlets on every hub and plain threads |

//!
//! # Families
//!
//! gevent's variants of one primitive are one generic type here, like std's
//! `HashMap<K, V, S>`: [`queue::Queue<T, K>`] and [`semaphore::Semaphore<K>`], whose kind
//! parameter picks the variant. The names above are aliases for each kind; use them (the
//! kind must be known for `new` to be found).
//!
//! | alias | is |
//! |---|---|
//! | [`Queue<T>`] | `queue::Queue<T, Fifo>` |
//! | [`LifoQueue<T>`] | `queue::Queue<T, Lifo>` |
//! | [`PriorityQueue<T>`] | `queue::Queue<T, Priority>` |
//! | [`JoinableQueue<T>`] | `queue::Queue<T, Joinable>` |
//! | [`Semaphore`], [`SemaphoreGuard`] | `semaphore::Semaphore<Unbounded>`, its guard |
//! | [`BoundedSemaphore`], [`BoundedSemaphoreGuard`] | `semaphore::Semaphore<Bounded>`, its guard |

mod channel;
mod event;
pub mod eventlet;
pub mod queue;
pub mod semaphore;
pub mod shared;
mod wait;

pub use channel::Channel;
pub use event::{AsyncResult, Event};
#[doc(inline)]
pub use queue::{GetError, PutError, TaskDoneError};
#[doc(inline)]
pub use semaphore::{Lock, LockGuard, RLock, RLockGuard, ReleaseError};
pub use verdant_hub::WaitFor;
pub use wait::{IWait, Waitable, iwait, wait};

/// A first-in first-out queue between greenlets (gevent's `Queue`).
pub type Queue<T> = queue::Queue<T, queue::Fifo>;

/// A last-in first-out queue (gevent's `LifoQueue`).
pub type LifoQueue<T> = queue::Queue<T, queue::Lifo>;

/// A queue that hands out its smallest item first (gevent's `PriorityQueue`).
pub type PriorityQueue<T> = queue::Queue<T, queue::Priority>;

/// A FIFO queue that also counts unfinished work (gevent's `JoinableQueue`).
pub type JoinableQueue<T> = queue::Queue<T, queue::Joinable>;

/// A counting semaphore (gevent's `Semaphore`).
pub type Semaphore = semaphore::Semaphore<semaphore::Unbounded>;

/// A semaphore that refuses to be released more often than acquired (gevent's
/// `BoundedSemaphore`).
pub type BoundedSemaphore = semaphore::Semaphore<semaphore::Bounded>;

/// Holds a permit of a [`Semaphore`].
pub type SemaphoreGuard<'a> = semaphore::SemaphoreGuard<'a, semaphore::Unbounded>;

/// Holds a permit of a [`BoundedSemaphore`].
pub type BoundedSemaphoreGuard<'a> = semaphore::SemaphoreGuard<'a, semaphore::Bounded>;
