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
//! let pool = Pool::new(3); // at most three at once
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
//! [`Group`] and [`Pool`] are one generic type, [`group::Group<L>`] (as std's `HashMap<K,
//! V, S>`), with the limit `L` = [`Unlimited`](group::Unlimited) or
//! [`Limited`](group::Limited); the names are aliases for each. [`GreenPool`] is a pool
//! with eventlet's names: a thin wrapper that derefs to its [`Pool`].
//!
//! | module | holds |
//! |---|---|
//! | [`group`] | [`Group<L>`](group::Group): everything groups and pools share, written once, and in an `impl` of its own what only a pool has; [`PoolFull`] |
//! | `slots.rs` | the resizable count of free places |
//! | `mapping.rs` | **the** map/imap machinery ([`MapIter`], [`MapError`], [`Reporter`]) |
//! | `greenpool.rs` | eventlet's [`GreenPool`] and [`GreenPile`] |

#![doc(test(attr(deny(warnings))))]

mod greenpool;
pub mod group;
mod mapping;
mod slots;

pub use greenpool::{GreenPile, GreenPool, WaitallFromMember};
#[doc(inline)]
pub use group::PoolFull;
pub use mapping::{MapError, MapIter, Order, Reporter, start as start_map};

use verdant_hub::GreenletError;

/// A set of greenlets that leave by themselves when they die (gevent's `Group`): the
/// [generic group](group::Group) without a limit.
pub type Group = group::Group<group::Unlimited>;

/// A group with at most `size` members (gevent's `Pool`): `spawn`, `start` and `add` wait
/// while it is full. The [generic group](group::Group) with a [limit](group::Limited).
pub type Pool = group::Group<group::Limited>;

/// Returns the value of a task, or re-raises its failure in the caller: the panic's own
/// payload for a panic, "killed" for a kill.
pub(crate) fn reraise<T>(outcome: Result<T, GreenletError>) -> T {
    match outcome {
        Ok(value) => value,
        Err(GreenletError::Panicked(panic)) => panic.resume(),
        Err(other) => std::panic::resume_unwind(Box::new(other.to_string())),
    }
}
