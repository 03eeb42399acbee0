//! The life-cycle states of a task and the edges between them.
//!
//! ```text
//!            start()                pop                   park()
//!   New ──────────────▶ (queued) ─────────▶ Running ─────────────────▶ Parked
//!    │                                       │  ▲  ▲                      │
//!    │ kill before start                     │  │  └──── pop ◀── Ready ◀──┘ wake / kill / timeout
//!    ▼                                       │  └─────── pop ◀── Ready ◀── yield_now()
//!   Done ◀───────────────────────────────────┘ body returned, links ran, stack recycled
//! ```
//!
//! Every change of state goes through [`Core::set_state`](super::Core::set_state), which
//! checks (in debug builds) that it is one of these edges.

use super::Kind;

/// Where a greenlet is in its life. Exactly one of these at any time.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum State {
    /// Created; the body has not run and no stack is attached (unless [`Builder`] reserved
    /// one). It may be in the ready queue (started), held by a timer (`start_later`), or
    /// nowhere yet (`Greenlet::new`). Moves to `Running` when the loop pops it, or to
    /// `Done` if it is killed first.
    ///
    /// [`Builder`]: crate::Builder
    New,
    /// In the ready queue, waiting for the loop to pop it. Moves only to `Running`.
    Ready,
    /// Executing now. At most one greenlet of a hub, or the hub's main code, is `Running`.
    /// Moves to `Ready` (yield), `Parked` (a blocking call), or `Done` (body finished).
    Running,
    /// Suspended inside a blocking call. A [`Waker`](crate::park::Waker) of the current
    /// epoch, an interrupt (kill or timeout) or a spurious retry moves it to `Ready`.
    Parked,
    /// The coroutine returned and its stack went back to the pool. Final.
    Done,
}

impl State {
    /// Whether a task of `kind` may move from `self` to `next`: the edges of the diagram
    /// in the module docs. The main code has one more: a deadlock report returns it from
    /// `Parked` to `Running` without a wake-up (its wait fails with a panic).
    pub(crate) fn may_become(self, next: State, kind: Kind) -> bool {
        use State::*;
        let greenlet_edge = matches!(
            (self, next),
            (New, Running) // first run
                | (New, Done) // killed before it started, or no stack to start on
                | (Ready, Running) // popped from the ready queue
                | (Running, Ready) // yield_now
                | (Running, Parked) // a blocking call
                | (Running, Done) // the body returned
                | (Parked, Ready) // woken, killed or timed out
        );
        greenlet_edge || (kind == Kind::Main && (self, next) == (Parked, Running))
    }
}
