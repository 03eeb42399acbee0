//! [`block_on`]: async Rust inside a greenlet.
//!
//! `block_on(future)` polls the future on the calling greenlet's own stack and parks the
//! greenlet between polls, until the future's [`std::task::Waker`] fires. The other
//! greenlets of the hub run meanwhile, exactly as during any other blocking call; a kill
//! or a `with_timeout` expiry unwinds out of `block_on`, dropping the future.
//!
//! # The waker
//!
//! Each call shares one `Signal` (behind an `Arc`) with every `std::task::Waker` the
//! future keeps:
//!
//! ```text
//!   Signal ─ woken:  AtomicBool    set by a wake; cleared by block_on before it polls
//!          ─ wakers: AtomicUsize   live Waker clones (the one lent to poll is not counted),
//!                                  and whether the call has ended (DETACHED)
//!          ─ waiter: Hub { inbox, parked: the park::Waker of the wait in progress }
//!                  | Thread(std::thread::Thread)       (a thread without a hub)
//! ```
//!
//! A wake sets `woken`; only the wake that turns it from `false` to `true` delivers
//! anything, so N wakes between two polls cost one delivery:
//!
//! * **from the hub's own thread** (another greenlet, the future itself, a timer of the
//!   hub): it takes `parked` and wakes the greenlet directly. One atomic swap, a few loads
//!   and stores, no syscall, no inbox. The thread is recognised by its hub's inbox: the
//!   signal keeps that inbox alive, so no other hub can have one at the same address.
//! * **from another thread**: it pushes the signal onto the hub's inbox (the cross-thread
//!   door of `inbox.rs`: one mutex, an eventfd write only if the hub sleeps), and the hub
//!   wakes the greenlet when it drains its inbox.
//! * **for a thread without a hub**: `Thread::unpark`, like `futures::executor::block_on`.
//!
//! `wakers` makes the deadlock check exact. The first clone counts as outstanding
//! cross-thread work (as a [`RemoteWaker`](crate::RemoteWaker) does), and dropping the
//! last one ends it: while the future keeps a `Waker`, a main code that waits on it
//! blocks rather than report a deadlock; once every `Waker` is gone nothing can ever wake
//! the future, and the main code gets the deadlock report instead of hanging. (A greenlet
//! in that state simply waits forever, as it would on an event nobody sets; a kill still
//! ends it.) When the call ends, the signal is *detached*: clones that outlive the call
//! (a channel keeps the last waker registered with it) stop counting as outstanding work,
//! or they would keep the hub from ever reporting a deadlock and make it spin for
//! cross-thread work that cannot come; their wakes are ignored. Count and flag share one
//! atomic word, so exactly one of "the last drop" and "the end of the call" ends the
//! outstanding work.
//!
//! # Why no wake is lost
//!
//! `block_on` clears `woken` (with an acquiring swap, when it is set), polls, and then parks only if
//! `woken` is still clear. A wake that comes before the swap in `woken`'s modification
//! order is seen by the swap, which also makes the wake's writes visible to the poll. A
//! wake after it finds `woken` clear, so it delivers: if it comes before the check after
//! the poll, `block_on` does not park (it yields once and polls again); if after, the
//! greenlet is parked by the time the delivery reaches it, since a same-thread wake cannot
//! run between the check and the park, and an inbox message is handled by the hub's loop,
//! which runs only while the greenlet is switched out.
//!
//! # Cost
//!
//! A same-thread wake: one atomic swap, a comparison of inboxes, and the park waker's
//! wake. A cross-thread wake: one inbox push (see `inbox.rs`). A call reuses the previous
//! call's signal when no waker of it is left, so a future that is ready at once costs a
//! thread-local take and put and one poll; when the future keeps a waker past the call
//! (channels keep the last one registered), that waker keeps the signal, and the next call
//! allocates a new one.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
use std::thread::{self, Thread};

use crate::hub::{has_hub, with_existing_hub, with_hub};
use crate::inbox::{Inbox, Message};
use crate::park;

/// Runs `future` to completion inside the calling greenlet and returns its output.
///
/// The greenlet parks until the future's `Waker` fires, and the hub runs the other
/// greenlets meanwhile. Wakes may come from anywhere: another greenlet, the future itself,
/// or another thread (through the hub's cross-thread door). This works for futures that
/// do not need a particular runtime's reactor: channels (`futures`, `async-channel`),
/// `async-io`'s timers and sockets (its reactor runs on a thread of its own), the
/// `JoinHandle` of a task spawned on some runtime. For crates tied to tokio's reactor, see
/// `verdant::compat::tokio`.
///
/// * **Blocking.** Polling happens on the greenlet's own stack. A future that blocks
///   *the greenlet* inside `poll` (a green socket call, `sleep`) only parks it; other
///   greenlets run.
/// * **Panics.** A panic in `poll` unwinds out of `block_on`: in a greenlet its outcome is
///   `Panicked` with the future's message.
/// * **Kill and timeout.** A kill or `with_timeout` expiry unwinds out of `block_on` at its
///   park, and the future is dropped.
/// * **Deadlock.** Called from the thread's main code, if the future is pending and every
///   `Waker` it was given has been dropped (and nothing else can run), `block_on` panics
///   with the hub's deadlock message instead of hanging.
/// * **Threads without a hub.** On a thread that has no hub (it never used verdant),
///   `block_on` parks the OS thread between polls, like `futures::executor::block_on`,
///   and creates no hub; the dropped-wakers case panics there too. If a poll makes a hub
///   (the future spawns a greenlet), the call goes on as on a hub.
///
/// ```
/// use std::sync::mpsc;
/// use std::task::Poll;
///
/// // A future that is ready once another thread has run: it hands its Waker over.
/// let (tx, rx) = mpsc::channel::<std::task::Waker>();
/// std::thread::spawn(move || rx.recv().unwrap().wake());
/// let mut asked = false;
/// let answer = verdant_hub::block_on(std::future::poll_fn(move |cx| {
///     if asked {
///         return Poll::Ready(42);
///     }
///     asked = true;
///     tx.send(cx.waker().clone()).unwrap();
///     Poll::Pending
/// }));
/// assert_eq!(answer, 42);
/// ```
pub fn block_on<F: Future>(future: F) -> F::Output {
    if on_shared_stack() {
        // While this greenlet is parked its stack's memory holds other greenlets' frames,
        // but a pinned future's address may be in use by other threads (an intrusive
        // waiter list, as tokio's `Notify` keeps): pin it on the heap instead.
        return on_hub(Box::pin(future).as_mut());
    }
    // Declared before the future, so dropped after it: covers every poll and the drop.
    let _pinned = PinnedOnStack::enter();
    let future = pin!(future);
    if has_hub() { on_hub(future) } else { on_thread(future) }
}

/// Whether the caller is a greenlet running on a shared stack.
fn on_shared_stack() -> bool {
    with_existing_hub(|hub| hub.current_core().on_shared_stack()).unwrap_or(false)
}

/// Counts a `block_on` of the running greenlet while it lives (see `Core::pinned`): a
/// pinned future on a greenlet's stack must be dropped before its memory is reused, so an
/// overflow under it aborts instead of ending just the greenlet (`overflow.rs`).
struct PinnedOnStack(bool);

impl PinnedOnStack {
    fn enter() -> PinnedOnStack {
        let counted = with_existing_hub(|hub| {
            let core = hub.current_core();
            core.pinned.set(core.pinned.get().saturating_add(1));
        });
        PinnedOnStack(counted.is_some())
    }
}

impl Drop for PinnedOnStack {
    fn drop(&mut self) {
        if self.0 {
            // The same task runs now as at `enter`: `block_on` never moves between them.
            with_existing_hub(|hub| {
                let core = hub.current_core();
                if core.pinned.get() < u8::MAX {
                    core.pinned.set(core.pinned.get() - 1);
                }
            });
        }
    }
}

/// `block_on` for the main code or a greenlet of this thread's hub.
fn on_hub<F: Future + ?Sized>(mut future: Pin<&mut F>) -> F::Output {
    let lease = Lease::take();
    let signal = lease.signal();
    let waker = lent_waker(signal);
    let mut cx = Context::from_waker(&waker);
    loop {
        // Clear `woken` with an acquiring swap (see "Why no wake is lost"). A plain load
        // first: the swap is needed only when a wake came.
        if signal.woken.load(Ordering::Relaxed) {
            signal.woken.swap(false, Ordering::Acquire);
        }
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        if signal.woken.load(Ordering::Acquire) {
            // Woken during the poll (often by the future itself, to let others run).
            crate::yield_now();
            continue;
        }
        // SAFETY: `on_hub` runs on the hub's thread.
        unsafe { signal.set_parked(Some(park::waker())) };
        park::park(&Waiting(signal));
        // SAFETY: as above. The waker (if still there) belongs to an ended wait.
        unsafe { signal.set_parked(None) };
    }
}

/// `block_on` for a thread without a hub: park the OS thread between polls.
fn on_thread<F: Future + ?Sized>(mut future: Pin<&mut F>) -> F::Output {
    let signal = Arc::new(Signal::new(Waiter::Thread(thread::current())));
    let _detach = Detach(&signal);
    let waker = lent_waker(&signal);
    let mut cx = Context::from_waker(&waker);
    loop {
        signal.woken.swap(false, Ordering::Acquire);
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        if has_hub() {
            // The poll made a hub (it spawned a greenlet, used a green socket): from now on
            // the hub must wait, or its greenlets would never run. A future wakes only the
            // waker of its latest poll, so the wakers handed out so far do not matter.
            return on_hub(future);
        }
        while !signal.woken.load(Ordering::Acquire) {
            // The last waker's drop unparks this thread. A wake by value sets `woken`
            // before it counts its waker out, so `woken` is read after `wakers`.
            if signal.clones() == 0 && !signal.woken.load(Ordering::Acquire) {
                panic!(
                    "verdant: deadlock: block_on, on a thread without a hub, waits on a future \
                     whose Wakers were all dropped: nothing can ever wake it"
                );
            }
            thread::park();
        }
    }
}

/// What one `block_on` call shares with the future's wakers (see the module docs).
pub(crate) struct Signal {
    /// Set by a wake; cleared by `block_on` before each poll.
    woken: AtomicBool,
    /// Live `Waker`s made by cloning (the one lent to `poll` is borrowed and not counted),
    /// plus [`DETACHED`] once the call has ended.
    ///
    /// # Invariant
    ///
    /// While not detached, the signal holds one piece of its hub's outstanding work
    /// exactly when the count is non-zero. Whoever moves the word from "holds" to "does
    /// not" (the last drop, or the detach) ends it; whoever moves it back (the first clone)
    /// begins it.
    wakers: AtomicUsize,
    /// Who waits, and how to reach it.
    waiter: Waiter,
}

/// Who a [`Signal`] wakes.
enum Waiter {
    /// The main code or a greenlet of a hub.
    Hub {
        /// The hub's inbox: the way in from other threads, and the mark of its thread.
        inbox: Arc<Inbox>,
        /// The waker of the wait `block_on` is parked in, if it is parked.
        ///
        /// # Invariant
        ///
        /// Only read or written on the thread of the hub `inbox` belongs to, and `None`
        /// whenever no `block_on` call holds this signal (see `unsafe impl Send`).
        parked: Cell<Option<park::Waker>>,
    },
    /// A thread without a hub, parked in `block_on`.
    Thread(Thread),
}

// SAFETY: every field is `Send + Sync` except `parked` (a `Cell` of an `Rc`-based waker).
// By its invariant, `parked` is only touched on its hub's thread: by `block_on` itself,
// and by `wake_parked`, which runs either in a wake that found itself on that thread
// (checked by comparing inboxes) or in that hub's inbox drain. And it is `None` whenever
// the signal could be dropped elsewhere: a `block_on` call holds a strong reference for
// its whole duration and empties `parked` before letting go of it (in `Lease::drop`, so
// also on unwind); a call that never ends because its thread exited with its greenlet
// suspended never lets go at all (`Hub::drop` leaks abandoned greenlets' stacks), so the
// signal is then never dropped.
// SAFETY: so `parked` is only ever touched on its hub's thread, as argued above.
unsafe impl Send for Signal {}
// SAFETY: as for `Send`: the only field that is not `Sync` is never shared across threads.
unsafe impl Sync for Signal {}

/// The flag of [`Signal::wakers`] that says the `block_on` call has ended.
const DETACHED: usize = 1 << (usize::BITS - 1);

impl Signal {
    fn new(waiter: Waiter) -> Signal {
        Signal { woken: AtomicBool::new(false), wakers: AtomicUsize::new(0), waiter }
    }

    /// Wakes whoever waits in `block_on` (see the module docs for the three paths).
    fn wake(self: &Arc<Signal>) {
        if self.wakers.load(Ordering::Relaxed) & DETACHED != 0 {
            return; // the call has ended: nobody waits
        }
        if self.woken.swap(true, Ordering::AcqRel) {
            return; // already woken since the last poll: that wake delivers
        }
        match &self.waiter {
            Waiter::Hub { inbox, .. } => {
                let here = with_existing_hub(|hub| Arc::ptr_eq(hub.remote().inbox(), inbox));
                if here == Some(true) {
                    // SAFETY: this is the thread of the hub `inbox` belongs to.
                    unsafe { self.wake_parked() };
                } else {
                    // A hub that is gone wakes no one: the message is dropped.
                    let _ = inbox.push(Message::WakeBlockOn(self.clone()));
                }
            }
            Waiter::Thread(thread) => thread.unpark(),
        }
    }

    /// Wakes the greenlet if it is parked in `block_on` now.
    ///
    /// # Safety
    ///
    /// Must be called on the thread of the hub this signal's inbox belongs to.
    pub(crate) unsafe fn wake_parked(&self) {
        // SAFETY: the caller guarantees we are on the hub's thread.
        if let Some(waker) = unsafe { self.set_parked(None) } {
            waker.wake();
        }
    }

    /// Replaces the parked waker; returns the previous one.
    ///
    /// # Safety
    ///
    /// Must be called on the thread of the hub this signal's inbox belongs to.
    unsafe fn set_parked(&self, waker: Option<park::Waker>) -> Option<park::Waker> {
        match &self.waiter {
            Waiter::Hub { parked, .. } => parked.replace(waker),
            Waiter::Thread(_) => None,
        }
    }

    /// Live clones (whether or not the call has ended).
    fn clones(&self) -> usize {
        self.wakers.load(Ordering::Acquire) & !DETACHED
    }

    /// A `Waker` was cloned: while the call goes on, the first one counts as outstanding
    /// cross-thread work.
    fn waker_made(&self) {
        if self.wakers.fetch_add(1, Ordering::Relaxed) == 0 {
            if let Waiter::Hub { inbox, .. } = &self.waiter {
                inbox.begin_one();
            }
        }
    }

    /// A `Waker` was dropped (after its wake, if it woke): while the call goes on, the
    /// last one ends the outstanding work, and wakes a waiting thread so it notices.
    fn waker_dropped(&self) {
        if self.wakers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.nothing_left();
        }
    }

    /// The call has ended: clones that are still alive stop counting as outstanding work.
    fn detach(&self) {
        let before = self.wakers.fetch_or(DETACHED, Ordering::AcqRel);
        if before != 0 && before & DETACHED == 0 {
            if let Waiter::Hub { inbox, .. } = &self.waiter {
                inbox.finish_one(); // (a thread's own call has ended: nothing to unpark)
            }
        }
    }

    /// Nothing can wake the call any more: end its outstanding work, or unpark its thread
    /// so that it notices.
    fn nothing_left(&self) {
        match &self.waiter {
            Waiter::Hub { inbox, .. } => inbox.finish_one(),
            Waiter::Thread(thread) => thread.unpark(),
        }
    }
}

/// What a main code parked in `block_on` waits on, for the deadlock message.
struct Waiting<'a>(&'a Signal);

impl fmt::Display for Waiting<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.clones() == 0 {
            f.write_str("a future in block_on whose Wakers were all dropped")
        } else {
            f.write_str("a future in block_on")
        }
    }
}

// ----- the std Waker ---------------------------------------------------------------------

/// The vtable of every `Waker` a `block_on` call makes: the data pointer is an
/// `Arc<Signal>`'s, and each `Waker` but the lent one owns a strong reference.
static VTABLE: RawWakerVTable =
    RawWakerVTable::new(clone_waker, wake_waker, wake_waker_by_ref, drop_waker);

/// The `Waker` lent to `poll`: it borrows `signal` (owns no reference and must never be
/// dropped, hence `ManuallyDrop`); its clones are real, counted wakers.
fn lent_waker(signal: &Arc<Signal>) -> ManuallyDrop<Waker> {
    let data = Arc::as_ptr(signal).cast::<()>();
    // SAFETY: the vtable's functions uphold `RawWaker`'s contract for `data`: it points to
    // a live `Signal` as long as this borrowed waker can be used (the caller holds
    // `signal` for longer than it uses the `Context` built on it), and every clone takes
    // its own strong reference. `Signal` is `Send + Sync`, so the wakers may go anywhere.
    ManuallyDrop::new(unsafe { Waker::from_raw(RawWaker::new(data, &VTABLE)) })
}

/// # Safety
///
/// `data` comes from a waker of [`VTABLE`], so it points to a live `Arc<Signal>`.
unsafe fn clone_waker(data: *const ()) -> RawWaker {
    let signal = data.cast::<Signal>();
    // SAFETY: `data` is a live `Arc<Signal>` pointer (the waker being cloned keeps it
    // alive); the new waker owns the reference taken here.
    unsafe { Arc::increment_strong_count(signal) };
    // SAFETY: as above.
    unsafe { &*signal }.waker_made();
    RawWaker::new(data, &VTABLE)
}

/// # Safety
///
/// `data` comes from an owned (cloned) waker of [`VTABLE`], whose reference it consumes.
unsafe fn wake_waker(data: *const ()) {
    // SAFETY: this waker owns one strong reference, given back here.
    let signal = unsafe { Arc::from_raw(data.cast::<Signal>()) };
    signal.wake();
    signal.waker_dropped();
}

/// # Safety
///
/// `data` comes from a waker of [`VTABLE`] that is still alive.
unsafe fn wake_waker_by_ref(data: *const ()) {
    // SAFETY: the waker keeps the `Arc` alive for this call; `ManuallyDrop` leaves its
    // reference where it is.
    let signal = ManuallyDrop::new(unsafe { Arc::from_raw(data.cast::<Signal>()) });
    signal.wake();
}

/// # Safety
///
/// `data` comes from an owned (cloned) waker of [`VTABLE`], whose reference it consumes.
unsafe fn drop_waker(data: *const ()) {
    // SAFETY: this waker owns one strong reference, given back here.
    let signal = unsafe { Arc::from_raw(data.cast::<Signal>()) };
    signal.waker_dropped();
}

// ----- one signal per thread, reused ----------------------------------------------------

thread_local! {
    /// The signal of this thread's last finished `block_on` whose wakers are all gone:
    /// the next call reuses it instead of allocating.
    static SPARE: Cell<Option<Arc<Signal>>> = const { Cell::new(None) };
}

/// A hub signal held by one `block_on` call; emptied, and kept for the next call if no
/// waker of it is left, when the call ends (returns or unwinds).
struct Lease(Option<Arc<Signal>>);

impl Lease {
    /// This thread's spare signal, or a new one.
    fn take() -> Lease {
        let spare = SPARE.try_with(Cell::take).ok().flatten();
        Lease(Some(spare.unwrap_or_else(|| {
            let inbox = with_hub(|hub| hub.remote().inbox().clone());
            Arc::new(Signal::new(Waiter::Hub { inbox, parked: Cell::new(None) }))
        })))
    }

    fn signal(&self) -> &Arc<Signal> {
        self.0.as_ref().expect("a lease holds its signal until dropped")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(mut signal) = self.0.take() else { return };
        // SAFETY: a lease lives in `on_hub`, on the hub's thread.
        drop(unsafe { signal.set_parked(None) });
        // Unique: no waker of this call is left (so no outstanding work to end), and none
        // can be made any more (the lent one lived only during the polls): the next call
        // may reuse it. Otherwise the surviving wakers must stop counting.
        match Arc::get_mut(&mut signal) {
            Some(unique) => {
                *unique.woken.get_mut() = false;
                let _ = SPARE.try_with(|spare| spare.set(Some(signal)));
            }
            None => signal.detach(),
        }
    }
}

/// Detaches a thread's signal when its `block_on` call ends (returns or unwinds).
struct Detach<'a>(&'a Signal);

impl Drop for Detach<'_> {
    fn drop(&mut self) {
        self.0.detach();
    }
}
