//! The state the hub keeps for every greenlet ([`Core`]) and the life cycle it moves through.
//!
//! A greenlet is two things glued together: a *typed* part that the user's handle sees
//! (the body closure and its return value, in `greenlet.rs`) and this *untyped* part that
//! the scheduler sees. The hub only ever holds `Rc<dyn Task>`, so the ready queue, timers
//! and wait lists never need to know a greenlet's return type.
//!
//! # Life cycle
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
//! *Dead* (what [`Greenlet::ready`](crate::Greenlet::ready) reports) is a different question
//! from [`State::Done`]: a greenlet is dead as soon as its body has produced an outcome; its
//! coroutine may still be running its link callbacks, and only then becomes `Done`.

use std::cell::{Cell, RefCell};
use std::fmt;

use corosensei::{Coroutine, Yielder};

use crate::error::GreenletError;
use crate::park::WaitList;
use crate::stack::{GuardedStack, Stack};

/// The coroutine type every greenlet runs on: resumed with `()`, suspends with `()`,
/// returns `()` (the body's value goes to the typed part, not through the coroutine).
pub(crate) type GreenCoroutine = Coroutine<(), (), (), Stack>;

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

/// Something that must travel to a greenlet's next blocking point and unwind it there.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Interrupt {
    /// `kill()`: unwind the whole greenlet; it ends as killed.
    Kill,
    /// A `with_timeout` scope expired. `id` names the scope, so nested scopes each catch
    /// only their own expiry. `in_unwind` is true when the scope was entered while the
    /// thread was already unwinding (inside a destructor): raising it then is still safe,
    /// because the scope's own `catch_unwind` sits inside that destructor.
    Timeout { id: u64, in_unwind: bool },
}

impl Interrupt {
    /// Whether `self` should replace `pending` when both want to travel to the same
    /// greenlet. A kill beats any timeout; of two timeouts the outer scope (older, smaller
    /// id) wins, since unwinding to it passes through the inner one anyway.
    fn outranks(self, pending: Interrupt) -> bool {
        match (self, pending) {
            (_, Interrupt::Kill) => false,
            (Interrupt::Kill, _) => true,
            (Interrupt::Timeout { id: new, .. }, Interrupt::Timeout { id: old, .. }) => new < old,
        }
    }

    /// Whether raising this interrupt right now is safe. Raising a new unwind from a
    /// blocking call that runs inside a destructor during unwinding would abort the
    /// process, so a kill waits until no unwind is in progress on this thread.
    pub(crate) fn deliverable_now(self) -> bool {
        match self {
            Interrupt::Kill => !std::thread::panicking(),
            Interrupt::Timeout { in_unwind, .. } => in_unwind || !std::thread::panicking(),
        }
    }
}

/// A link callback, already bound to the handle it will be called with.
pub(crate) type LinkCallback = Box<dyn FnOnce()>;

/// Whether a [`Core`] belongs to a greenlet or stands for the thread's main code.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    /// The code running on the thread's own stack. It has no coroutine: when it blocks,
    /// it runs the hub loop itself until it is popped from the ready queue again.
    Main,
    /// A greenlet with its own coroutine and stack.
    Greenlet,
}

/// The untyped, scheduler-facing state of one greenlet (or of the main code).
pub(crate) struct Core {
    /// Unique within its hub; the main code is 0, greenlets count up from 1.
    pub(crate) id: u64,
    pub(crate) name: Option<Box<str>>,
    pub(crate) kind: Kind,
    pub(crate) state: Cell<State>,
    /// Whether `start`/`start_later` was called (a second call does nothing).
    pub(crate) scheduled: Cell<bool>,
    /// Wait epoch. A [`Waker`](crate::park::Waker) records the epoch it was made in and
    /// only wakes the greenlet while the greenlet is parked in that same epoch. Every
    /// return from a suspension ends the epoch, so stale wakers can never wake a later wait.
    pub(crate) epoch: Cell<u64>,
    /// A kill or timeout waiting to be raised at the next blocking point.
    pub(crate) interrupt: Cell<Option<Interrupt>>,
    /// Set once the body has produced its outcome (the greenlet is dead).
    pub(crate) outcome: RefCell<Option<Result<(), GreenletError>>>,
    /// Who waits in `join`: woken all at once when the outcome is set.
    pub(crate) joiners: WaitList,
    /// Link callbacks, run once, in order, right after the outcome is set.
    pub(crate) links: RefCell<Vec<(u64, LinkCallback)>>,
    /// Requested stack size in bytes (0 = the hub's default).
    pub(crate) stack_size: usize,
    /// A stack reserved at spawn time by [`Builder::spawn`](crate::Builder::spawn).
    pub(crate) reserved_stack: Cell<Option<GuardedStack>>,
    /// Whether this greenlet runs on one of the hub's shared stacks (decided at creation).
    pub(crate) shared: bool,
    /// Which shared stack it is bound to, once it has started.
    pub(crate) shared_index: Cell<Option<usize>>,
    /// Its stack pointer when it last suspended (shared stacks only).
    pub(crate) suspended_sp: Cell<usize>,
    /// Its live frames while another greenlet occupies its shared stack.
    pub(crate) saved_stack: Cell<Vec<u8>>,
    /// The guard page of the stack the coroutine runs on (for the overflow reporter).
    pub(crate) guard: Cell<(usize, usize)>,
    /// The coroutine, created lazily on the first run so that queued-but-unstarted
    /// greenlets cost no stack. Only the hub loop touches it, never while it runs.
    pub(crate) coroutine: RefCell<Option<GreenCoroutine>>,
    /// Points at the coroutine's `Yielder`, which corosensei keeps at a fixed place near
    /// the top of the coroutine's stack.
    ///
    /// # Invariant
    ///
    /// Null until the coroutine first runs; afterwards valid for as long as the
    /// coroutine has not returned. Only dereferenced by code running on that coroutine.
    pub(crate) yielder: Cell<*const Yielder<(), ()>>,
}

impl Core {
    pub(crate) fn new(
        id: u64,
        name: Option<Box<str>>,
        kind: Kind,
        stack_size: usize,
        shared: bool,
    ) -> Core {
        Core {
            id,
            name,
            kind,
            state: Cell::new(if kind == Kind::Main { State::Running } else { State::New }),
            scheduled: Cell::new(false),
            epoch: Cell::new(0),
            interrupt: Cell::new(None),
            outcome: RefCell::new(None),
            joiners: WaitList::new(),
            links: RefCell::new(Vec::new()),
            stack_size,
            reserved_stack: Cell::new(None),
            shared,
            shared_index: Cell::new(None),
            suspended_sp: Cell::new(0),
            saved_stack: Cell::new(Vec::new()),
            guard: Cell::new((0, 0)),
            coroutine: RefCell::new(None),
            yielder: Cell::new(std::ptr::null()),
        }
    }

    pub(crate) fn is_main(&self) -> bool {
        self.kind == Kind::Main
    }

    /// Dead: the body has produced its outcome (value, panic or kill).
    pub(crate) fn is_dead(&self) -> bool {
        self.outcome.borrow().is_some()
    }

    /// Records an interrupt for the next blocking point, keeping the stronger one if one
    /// is already pending (see [`Interrupt::outranks`]).
    pub(crate) fn post_interrupt(&self, interrupt: Interrupt) {
        match self.interrupt.get() {
            Some(pending) if !interrupt.outranks(pending) => {}
            _ => self.interrupt.set(Some(interrupt)),
        }
    }

    /// Ends the current wait epoch: every waker made before this call goes stale.
    pub(crate) fn end_epoch(&self) {
        self.epoch.set(self.epoch.get().wrapping_add(1));
    }

    /// A human name for messages: `greenlet #3 "fetcher"`, or `the main code`.
    pub(crate) fn describe(&self) -> String {
        match (&self.kind, &self.name) {
            (Kind::Main, _) => "the main code".to_string(),
            (Kind::Greenlet, Some(name)) => format!("greenlet #{} {:?}", self.id, name),
            (Kind::Greenlet, None) => format!("greenlet #{}", self.id),
        }
    }
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("state", &self.state.get())
            .field("dead", &self.is_dead())
            .finish()
    }
}

/// What the hub can do with any greenlet, whatever its return type.
///
/// # Safety
///
/// Implementors must be `#[repr(C)]` with a [`Core`] as their first field: the hub reads
/// the `Core` of a `dyn Task` straight from its data pointer (see [`<dyn Task>::core`]),
/// which saves a virtual call on every switch.
pub(crate) unsafe trait Task {
    /// Runs the body once, on the greenlet's own stack, catching any unwind, and returns
    /// its outcome. The value itself (if any) stays in the typed part.
    fn run_body(&self) -> Result<(), GreenletError>;

    /// Drops the body without running it (killed before start, or no stack to run on).
    fn discard_body(&self);
}

impl dyn Task {
    /// The scheduler-facing state of any task.
    #[inline]
    pub(crate) fn core(&self) -> &Core {
        // SAFETY: by the contract of `Task`, the value behind this pointer is `#[repr(C)]`
        // and starts with a `Core`, so its address is the address of that `Core`.
        unsafe { &*(self as *const dyn Task as *const Core) }
    }
}

/// The task that stands for the thread's main code in the ready queue and in wakers.
#[repr(C)]
pub(crate) struct MainTask {
    pub(crate) core: Core,
}

// SAFETY: `MainTask` is `#[repr(C)]` and `core` is its first field.
unsafe impl Task for MainTask {
    fn run_body(&self) -> Result<(), GreenletError> {
        unreachable!("the main code has no body to run")
    }

    fn discard_body(&self) {}
}
