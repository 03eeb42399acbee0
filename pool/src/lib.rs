//! Greenlet pools for verdant: gevent's [`Group`] and [`Pool`], eventlet's [`GreenPool`]
//! and [`GreenPile`], and the map/imap machinery they share.
//!
//! A *group* tracks greenlets: each leaves by itself when it dies, and the group can be
//! joined, killed, and used to map work over greenlets. A *pool* is a group with a limit on
//! how many members live at once, which is how you bound concurrency.
//!
//! ```
//! use std::time::Duration;
//! use verdant_pool::Pool;
//!
//! let pool = Pool::new(Some(3)); // at most three at once
//! let lengths = pool.map(
//!     |word: &'static str| {
//!         verdant_hub::sleep(Duration::from_millis(1)); // I/O would go here
//!         word.len()
//!     },
//!     ["green", "threads", "on", "a", "hub"],
//! );
//! assert_eq!(lengths, Ok(vec![5, 7, 2, 1, 3]));
//! ```
//!
//! | module | holds |
//! |---|---|
//! | `group.rs` | [`Group`], [`Pool`], [`PoolFull`], the methods they share |
//! | `slots.rs` | the resizable count of free places |
//! | `mapping.rs` | **the** map/imap machinery ([`MapIter`], [`MapError`], [`Reporter`]) |
//! | `greenpool.rs` | eventlet's [`GreenPool`] and [`GreenPile`] |

#![doc(test(attr(deny(warnings))))]

mod greenpool;
mod group;
mod mapping;
mod slots;

use std::rc::Rc;

pub use greenpool::{GreenPile, GreenPool, WaitallFromMember};
pub use group::{Group, Pool, PoolFull};
pub use mapping::{MapError, MapIter, Order, Reporter, start as start_map};

use verdant_hub::GreenletError;

/// Maps `f` over `items` through the members of `core` (shared by every group type).
pub(crate) fn imap_on<I, A, F, T>(
    core: &Rc<group::Core>,
    f: F,
    items: I,
    order: Order,
    maxsize: Option<usize>,
) -> MapIter<T>
where
    I: IntoIterator<Item = A> + 'static,
    A: 'static,
    F: Fn(A) -> T + 'static,
    T: 'static,
{
    let f = mapping::share(f);
    let spawner = core.clone();
    let (iter, feeder) = mapping::start(
        items,
        move |item, reporter: Reporter<T>| {
            let f = f.clone();
            spawner.spawn(move || reporter.run(|| f(item)));
        },
        order,
        maxsize,
    );
    core.feeders.add(feeder);
    iter
}

/// Returns the value of a task, or re-raises its failure in the caller: the panic's own
/// payload for a panic, "killed" for a kill.
pub(crate) fn reraise<T>(outcome: Result<T, GreenletError>) -> T {
    match outcome {
        Ok(value) => value,
        Err(GreenletError::Panicked(panic)) => panic.resume(),
        Err(other) => std::panic::resume_unwind(Box::new(other.to_string())),
    }
}
