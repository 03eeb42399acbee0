//! The state the hub keeps for every greenlet ([`Core`]) and the life cycle it moves through.
//!
//! A greenlet is two things glued together: a *typed* part that the user's handle sees
//! (the body closure and its return value, in `greenlet.rs`) and this *untyped* part that
//! the scheduler sees. The hub only ever holds `TaskRef`, so the ready queue, timers
//! and wait lists never need to know a greenlet's return type.
//!
//! Its life cycle is in [`state`]; how a parked task becomes ready again (a [`Waker`],
//! a [`WaitList`] of them) in [`waker`]; where ready tasks wait for their turn in
//! [`run_queue`]. None of these needs the hub: the loop in `hub.rs` is built on them.
//!
//! *Dead* (what [`Greenlet::ready`](crate::Greenlet::ready) reports) is a different question
//! from [`State::Done`]: a greenlet is dead as soon as its body has produced an outcome; its
//! coroutine may still be running its link callbacks, and only then becomes `Done`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;

use corosensei::trap::CoroutineTrapHandler;
use corosensei::{Coroutine, Yielder};

use crate::error::GreenletError;
use crate::stack::{GuardedStack, Stack};
use crate::timer::TimerKey;

pub(crate) mod run_queue;
mod state;
mod task_ref;
mod waker;

pub(crate) use run_queue::RunQueue;
pub(crate) use state::State;
pub(crate) use task_ref::TaskRef;
pub use waker::{WaitList, Waker};

/// The coroutine type every greenlet runs on: resumed with `()`, suspends with `()`,
/// returns `()` (the body's value goes to the typed part, not through the coroutine).
pub(crate) type GreenCoroutine = Coroutine<(), (), (), Stack>;

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

/// Where a greenlet's pending [`Interrupt`] waits: a `Cell<Option<Interrupt>>` packed
/// into one word (every greenlet has one, and most never use it).
///
/// The word is 0 for none, 1 for a kill, and for a timeout its scope id shifted left by
/// two, with bit 1 set and bit 0 saying whether it was entered during an unwind.
#[derive(Default)]
pub(crate) struct InterruptCell(Cell<u64>);

impl InterruptCell {
    const KILL: u64 = 1;
    const TIMEOUT: u64 = 2;

    #[inline(always)]
    pub(crate) fn get(&self) -> Option<Interrupt> {
        match self.0.get() {
            0 => None,
            InterruptCell::KILL => Some(Interrupt::Kill),
            word => Some(Interrupt::Timeout { id: word >> 2, in_unwind: word & 1 == 1 }),
        }
    }

    /// Whether an interrupt is pending: one load and compare on the switch path.
    #[inline(always)]
    pub(crate) fn is_pending(&self) -> bool {
        self.0.get() != 0
    }

    pub(crate) fn set(&self, interrupt: Option<Interrupt>) {
        self.0.set(match interrupt {
            None => 0,
            Some(Interrupt::Kill) => InterruptCell::KILL,
            Some(Interrupt::Timeout { id, in_unwind }) => {
                assert!(id < 1 << 62, "timeout scope ids stay below 2^62");
                id << 2 | InterruptCell::TIMEOUT | u64::from(in_unwind)
            }
        });
    }
}

/// What runs when a greenlet dies: a callback bound to its handle, or a shared hook told
/// the token it was linked with (no allocation per greenlet; see [`LinkHook`]).
pub(crate) enum LinkCallback {
    Call(Box<dyn FnOnce()>),
    Hook(std::rc::Weak<dyn LinkHook>, usize),
}

/// Something many greenlets can share as their link (see
/// [`GreenletRef::link_hook`](crate::GreenletRef::link_hook)): a group that must forget a
/// member when it dies, without a callback allocated per member.
pub trait LinkHook {
    /// Called once, in the dying greenlet's context, right after it died, with the token
    /// it was linked with (a slot number, say).
    fn finished(&self, token: usize);
}

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
///
/// Every greenlet pays for every byte here (100,000 greenlets × 100 bytes = 10 MB of
/// memory to fault in and cache lines to miss), so rarely used data lives behind the
/// lazily allocated [`Cold`] box and the fields are as narrow as they can be.
pub(crate) struct Core {
    /// Unique within its hub; the main code is 0, greenlets count up from 1.
    pub(crate) id: u64,
    /// Wait epoch. A [`Waker`](crate::park::Waker) records the epoch it was made in and
    /// only wakes the greenlet while the greenlet is parked in that same epoch. Every
    /// return from a suspension ends the epoch, so stale wakers can never wake a later wait.
    pub(crate) epoch: Cell<u64>,
    /// A kill or timeout waiting to be raised at the next blocking point.
    pub(crate) interrupt: InterruptCell,
    /// How it failed, once dead (`dead` says whether it is): 8 bytes where a
    /// `OnceCell<Result<(), Box<_>>>` took 16.
    failure: Cell<Option<Box<GreenletError>>>,
    /// Its name, if given one: a thin pointer, as most greenlets have none. Read by the
    /// monitor's and the overflow reporter's signal handlers, so never behind a `RefCell`.
    name: Option<Box<Box<str>>>,
    /// Where it was created (`spawn`, `Builder::spawn`, `Greenlet::new`): for the
    /// blocked-hub monitor and run information.
    pub(crate) spawned_at: &'static std::panic::Location<'static>,
    /// The first link callback, kept inline: most linked greenlets have exactly one (their
    /// group's; a map's report rides on it), and it should not cost the allocations of the
    /// cold box and a `VecDeque`. (A second inline slot, 40 bytes per greenlet, made W2 and
    /// W6 12-16% slower.)
    ///
    /// # Invariant
    ///
    /// Links run in the order `first_link`, then the cold `links`; the cold `links` are
    /// empty while `first_link` is (the oldest of them moves up when it is taken).
    first_link: Cell<Option<Link>>,
    /// Further link callbacks, join waiters and a reserved stack: allocated only for
    /// greenlets that have them.
    cold: RefCell<Option<Box<Cold>>>,
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
    /// Its stack pointer when it last suspended (shared stacks only).
    pub(crate) suspended_sp: Cell<usize>,
    /// Its live frames while another greenlet occupies its shared stack.
    pub(crate) saved_stack: Cell<crate::shared_stack::SavedBytes>,
    /// The low end of its stack's guard page (for the overflow handler).
    pub(crate) guard_low: Cell<usize>,
    /// What the overflow handler needs to make its coroutine return to the hub: set when
    /// the coroutine is created, taken by the handler when it ends the greenlet (so a
    /// second overflow, in its link callbacks, is not ended the same way; see
    /// `overflow.rs`).
    pub(crate) trap: Cell<Option<CoroutineTrapHandler<()>>>,
    /// Requested usable stack size in bytes (at most 1 GiB).
    stack_size: u32,
    /// Which shared stack it is bound to once started, or `u32::MAX`.
    shared_index: Cell<u32>,
    pub(crate) kind: Kind,
    /// Where it is in its life; changed only through [`Core::set_state`].
    state: Cell<State>,
    /// Whether `start`/`start_later` was called (a second call does nothing).
    pub(crate) scheduled: Cell<bool>,
    /// Set once, when the body has produced its outcome (see `failure`).
    dead: Cell<bool>,
    /// Which kind of stack it runs on: fixed at creation, or (adaptive) when it first runs.
    stack_kind: Cell<StackKind>,
    /// Set when the wake timer of the current `park_until` fired, so the wait need not
    /// cancel it (cancelling would touch the timer slab, a cache miss with many timers).
    pub(crate) wake_timer_fired: Cell<bool>,
    /// Set when a primitive handed this parked greenlet what it waited for (a semaphore
    /// permit) along with the wake-up. A greenlet waits for one thing at a time, so one
    /// flag is enough; see [`Waker::grant`](crate::park::Waker::grant).
    pub(crate) granted: Cell<bool>,
    /// How many `block_on` calls of this greenlet hold a pinned future on its stack now
    /// (saturating: 255 stays 255): an overflow then aborts, since pinned memory must not
    /// be reused before its value is dropped.
    pub(crate) pinned: Cell<u8>,
}

/// Which kind of stack a greenlet runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StackKind {
    /// Its own guarded stack.
    Guarded,
    /// One of the hub's shared stacks, swapped in before every resume.
    Shared,
    /// Not decided yet: guarded if one can be had when it first runs, else shared
    /// ([`StackMode::Adaptive`](crate::StackMode::Adaptive)).
    Either,
}

/// A link: its id and what runs.
pub(crate) type Link = (u64, LinkCallback);

/// The parts of a greenlet most never use.
#[derive(Default)]
struct Cold {
    /// Who waits in `join` while it is alive: woken all at once when the outcome is set.
    joiners: WaitList,
    /// Links after the first, in the order they were added; popped one at a time as they
    /// run, so a running callback can still unlink a later one.
    links: VecDeque<Link>,
    /// A stack reserved at spawn time by [`Builder::spawn`](crate::Builder::spawn).
    reserved_stack: Option<GuardedStack>,
    /// The timer that starts a `spawn_later` greenlet: a kill before it fires cancels it,
    /// so that the hub does not stay busy for a greenlet that will never run.
    start_timer: Option<TimerKey>,
}

impl Core {
    #[inline(always)]
    pub(crate) fn new(
        id: u64,
        name: Option<Box<str>>,
        kind: Kind,
        stack_size: usize,
        stack_kind: StackKind,
        spawned_at: &'static std::panic::Location<'static>,
    ) -> Core {
        Core {
            id,
            spawned_at,
            epoch: Cell::new(0),
            interrupt: InterruptCell::default(),
            failure: Cell::new(None),
            name: name.map(Box::new),
            first_link: Cell::new(None),
            cold: RefCell::new(None),
            coroutine: RefCell::new(None),
            yielder: Cell::new(std::ptr::null()),
            suspended_sp: Cell::new(0),
            saved_stack: Cell::new(Default::default()),
            guard_low: Cell::new(0),
            trap: Cell::new(None),
            stack_size: u32::try_from(stack_size).expect("stack sizes are at most 1 GiB"),
            shared_index: Cell::new(u32::MAX),
            kind,
            state: Cell::new(if kind == Kind::Main { State::Running } else { State::New }),
            scheduled: Cell::new(false),
            dead: Cell::new(false),
            stack_kind: Cell::new(stack_kind),
            wake_timer_fired: Cell::new(false),
            granted: Cell::new(false),
            pinned: Cell::new(0),
        }
    }

    /// Which kind of stack it runs on (`Either` until an adaptive greenlet first runs).
    #[inline(always)]
    pub(crate) fn stack_kind(&self) -> StackKind {
        self.stack_kind.get()
    }

    /// Whether it runs on one of the hub's shared stacks.
    #[inline(always)]
    pub(crate) fn on_shared_stack(&self) -> bool {
        self.stack_kind.get() == StackKind::Shared
    }

    /// Settles an adaptive greenlet's stack kind when it first runs.
    pub(crate) fn settle_stack_kind(&self, kind: StackKind) {
        debug_assert!(self.stack_kind.get() == StackKind::Either && kind != StackKind::Either);
        self.stack_kind.set(kind);
    }

    pub(crate) fn is_main(&self) -> bool {
        self.kind == Kind::Main
    }

    /// Where it is in its life.
    #[inline(always)]
    pub(crate) fn state(&self) -> State {
        self.state.get()
    }

    /// Moves it to `next`: the one place states change, checked against the edges of
    /// the life-cycle diagram (see [`State::may_become`]) in debug builds.
    #[inline(always)]
    pub(crate) fn set_state(&self, next: State) {
        debug_assert!(
            self.state.get().may_become(next, self.kind),
            "{}: no edge {:?} -> {:?} in the life cycle",
            self.describe(),
            self.state.get(),
            next
        );
        self.state.set(next);
    }

    /// Dead: the body has produced its outcome (value, panic or kill).
    #[inline]
    pub(crate) fn is_dead(&self) -> bool {
        self.dead.get()
    }

    /// The outcome, once dead.
    pub(crate) fn outcome(&self) -> Option<Result<(), GreenletError>> {
        if !self.dead.get() {
            return None;
        }
        let failure = self.failure.take();
        let outcome = match &failure {
            Some(error) => Err(GreenletError::clone(error)),
            None => Ok(()),
        };
        self.failure.set(failure);
        Some(outcome)
    }

    /// Whether it is dead and its body returned normally.
    pub(crate) fn succeeded(&self) -> bool {
        self.dead.get() && !self.has_failure()
    }

    /// Whether a failure is recorded (without cloning it).
    fn has_failure(&self) -> bool {
        let failure = self.failure.take();
        let failed = failure.is_some();
        self.failure.set(failure);
        failed
    }

    /// Records the outcome (once; later calls are ignored).
    pub(crate) fn set_outcome(&self, outcome: Result<(), GreenletError>) {
        if self.dead.replace(true) {
            return;
        }
        if let Err(error) = outcome {
            self.failure.set(Some(Box::new(error)));
        }
    }

    /// Its name, if it was given one.
    pub(crate) fn name(&self) -> Option<&str> {
        self.name.as_deref().map(|name| &**name)
    }

    pub(crate) fn stack_size(&self) -> usize {
        self.stack_size as usize
    }

    /// The shared stack this greenlet is bound to, if any.
    pub(crate) fn shared_index(&self) -> Option<usize> {
        let index = self.shared_index.get();
        (index != u32::MAX).then_some(index as usize)
    }

    pub(crate) fn set_shared_index(&self, index: usize) {
        self.shared_index.set(u32::try_from(index).expect("fewer than 2^32 shared stacks"));
    }

    fn cold(&self) -> std::cell::RefMut<'_, Cold> {
        std::cell::RefMut::map(self.cold.borrow_mut(), |cold| &mut **cold.get_or_insert_default())
    }

    /// Whether code left its cold part borrowed (see `Hub::end_overflowed`).
    pub(crate) fn cold_in_use(&self) -> bool {
        self.cold.try_borrow_mut().is_err()
    }

    /// Registers a greenlet waiting in `join`.
    pub(crate) fn add_joiner(&self, waker: Waker) {
        self.cold().joiners.push(waker);
    }

    /// Wakes every greenlet waiting in `join`.
    pub(crate) fn notify_joiners(&self) {
        let joiners = match &mut *self.cold.borrow_mut() {
            Some(cold) => std::mem::take(&mut cold.joiners),
            None => return,
        };
        joiners.notify_all();
    }

    pub(crate) fn add_link(&self, id: u64, callback: LinkCallback) {
        let link = (id, callback);
        match self.first_link.take() {
            // By the invariant of `first_link`, no further links either.
            None => self.first_link.set(Some(link)),
            Some(first) => {
                self.first_link.set(Some(first));
                self.cold().links.push_back(link);
            }
        }
    }

    /// Removes a link that has not run; returns whether it was there. The callback is
    /// dropped after the links are let go of (its drop may run any code).
    pub(crate) fn remove_link(&self, id: u64) -> bool {
        let removed = match self.first_link.take() {
            Some(first) if first.0 == id => {
                self.first_link.set(self.pop_further_link());
                Some(first)
            }
            other => {
                self.first_link.set(other);
                let mut cold = self.cold.borrow_mut();
                let links = cold.as_mut().map(|cold| &mut cold.links);
                links.and_then(|links| {
                    let at = links.iter().position(|(link, _)| *link == id)?;
                    links.remove(at)
                })
            }
        };
        removed.is_some()
    }

    /// Takes out the oldest link callback that has not run, to run it. One at a time, so
    /// that a callback that is running can still [`remove_link`](Core::remove_link) a later
    /// one (gevent: a listener unlinked during notification is not called).
    pub(crate) fn pop_link(&self) -> Option<Link> {
        let first = self.first_link.take()?;
        self.first_link.set(self.pop_further_link());
        Some(first)
    }

    /// The oldest link after the first, moving up into `first_link`'s place.
    fn pop_further_link(&self) -> Option<Link> {
        self.cold.borrow_mut().as_mut()?.links.pop_front()
    }

    pub(crate) fn reserve_stack(&self, stack: GuardedStack) {
        self.cold().reserved_stack = Some(stack);
    }

    pub(crate) fn set_start_timer(&self, timer: TimerKey) {
        self.cold().start_timer = Some(timer);
    }

    pub(crate) fn take_start_timer(&self) -> Option<TimerKey> {
        self.cold.borrow_mut().as_mut().and_then(|cold| cold.start_timer.take())
    }

    pub(crate) fn take_reserved_stack(&self) -> Option<GuardedStack> {
        self.cold.borrow_mut().as_mut().and_then(|cold| cold.reserved_stack.take())
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
        match (&self.kind, self.name()) {
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
    /// Runs the greenlet's whole life on its own stack: the body (catching any unwind),
    /// then its end: the outcome recorded, joiners woken, links run. The value itself (if
    /// any) stays in the typed part.
    fn run(&self);

    /// Ends a greenlet that never ran (killed before it started, or no stack to run on):
    /// drops the body unrun and ends it with `error`.
    fn abort(&self, error: GreenletError);
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
    fn run(&self) {
        unreachable!("the main code has no body to run")
    }

    fn abort(&self, _error: GreenletError) {
        unreachable!("the main code cannot be killed")
    }
}

#[cfg(test)]
mod size_tests {
    #[test]
    fn core_stays_small() {
        let size = std::mem::size_of::<super::Core>();
        eprintln!("Core = {size} bytes");
        // 256 until the overflow trap handler (to end an overflowed greenlet alone) and the
        // spawn location (for the blocked-hub monitor) came in; each was worth its bytes.
        // 232 with the interrupt packed into a word, saved-frame sizes in u32s, the
        // outcome a flag and a thin pointer, and the name a thin pointer. On this VM, 48
        // bytes more per greenlet made W2 (100,000 spawned, then joined) ~20% slower:
        // new memory is expensive.
        assert!(size <= 232, "Core grew to {size} bytes: every greenlet pays for it");
    }
}

#[cfg(test)]
mod interrupt_cell_tests {
    use super::{Interrupt, InterruptCell};

    #[test]
    fn every_interrupt_comes_back_as_it_went_in() {
        let cell = InterruptCell::default();
        assert_eq!(cell.get(), None);
        assert!(!cell.is_pending());
        let all = [
            Interrupt::Kill,
            Interrupt::Timeout { id: 0, in_unwind: false },
            Interrupt::Timeout { id: 1, in_unwind: true },
            Interrupt::Timeout { id: (1 << 62) - 1, in_unwind: false },
            Interrupt::Timeout { id: (1 << 62) - 1, in_unwind: true },
        ];
        for interrupt in all {
            cell.set(Some(interrupt));
            assert_eq!(cell.get(), Some(interrupt));
            assert!(cell.is_pending());
        }
        cell.set(None);
        assert_eq!(cell.get(), None);
    }
}
