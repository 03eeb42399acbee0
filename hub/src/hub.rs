//! The scheduler: one hub per OS thread, and the loop that runs its greenlets.
//!
//! # One turn of the loop
//!
//! ```text
//!            ┌────────────────────────────── turn boundary ─────────────────────────────┐
//!            │ 1. retry postponed interrupts   2. drain the cross-thread inbox          │
//!            │ 3. poll I/O with a zero timeout (only if some greenlet waits for I/O)    │
//!            │ 4. fire every timer that is due                                          │
//!            └──────────────────────────────────────┬───────────────────────────────────┘
//!                                                   ▼
//!   run the greenlets that were ready at the boundary, FIFO, each until it blocks/yields
//!                                                   │
//!                     ready queue empty? ───────────┴── yes: wait_for_work — block in
//!                                                          poll() until the next timer,
//!                                                          I/O or a cross-thread wake;
//!                                                          or report a deadlock
//! ```
//!
//! Counting the turn's greenlets at its boundary keeps the order rules simple: a greenlet
//! made ready during a turn (spawned, woken, or yielding) runs in a later turn, after
//! everything that was already waiting, and I/O and timers are looked at between turns,
//! so busy greenlets and I/O never starve each other. The loop blocks in `poll` only when
//! nothing at all is ready.
//!
//! # Who runs the loop
//!
//! There is no scheduler thread and no scheduler coroutine. The loop runs on the thread's
//! own stack, inside whatever blocking call the thread's main code made: `join`, `sleep`,
//! `yield_now`... The main code is itself an entry of the ready queue (a [`MainTask`]), so
//! when it is woken it is queued FIFO like any greenlet, and when the loop pops it the
//! loop simply returns into the blocking call that started it. Greenlets, by contrast,
//! block by suspending their coroutine, which returns control to the loop.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::panic::resume_unwind;
use std::ptr::NonNull;
use std::rc::Rc;
use std::time::{Duration, Instant};

use corosensei::{Coroutine, CoroutineResult};

use crate::config::HubConfig;
use crate::error::{GreenletError, KillUnwind, TimeoutUnwind};
use crate::inbox::Remote;
use crate::io::IoDriver;
use crate::monitor::{self, Watch};
use crate::overflow;
use crate::runinfo::{self, Tracker};
use crate::shared_stack;
use crate::stack::checked_stack_size;
use crate::stacks::Stacks;
use crate::stats::{HubStats, Stats};
use crate::task::{
    Core, Interrupt, Kind, MainTask, RunQueue, StackKind, State, Task, TaskRef, Waker,
};
use crate::timer::{TimerKey, Timers};
use crate::trace::{self, Recorder};

thread_local! {
    /// Owns this thread's hub: created on first use, dropped at thread exit.
    static HUB: Hub = Hub::new();

    /// A copy of `HUB`'s address, for the fast path of [`with_hub`].
    ///
    /// # Invariant
    ///
    /// Null, or the address of this thread's live `HUB`. Set on first use; cleared at the
    /// start of `Hub::drop`, before the hub stops being valid.
    static HUB_ADDRESS: Cell<*const Hub> = const { Cell::new(std::ptr::null()) };
}

/// Whether this thread has a hub already (without creating one).
pub fn has_hub() -> bool {
    HUB_ADDRESS.try_with(|address| !address.get().is_null()).unwrap_or(false)
}

/// Whether the calling code runs in a greenlet (not in a thread's main code, not in a
/// thread without a hub). Never creates a hub; a couple of loads.
///
/// ```
/// assert!(!verdant_hub::in_greenlet());
/// assert!(verdant_hub::spawn(verdant_hub::in_greenlet).get().unwrap());
/// ```
#[inline]
pub fn in_greenlet() -> bool {
    let address = HUB_ADDRESS.try_with(Cell::get).unwrap_or(std::ptr::null());
    // SAFETY: by the invariant of `HUB_ADDRESS`, a non-null address is this thread's live
    // hub.
    !address.is_null() && unsafe { &*address }.current.get().is_some()
}

/// Runs `f` with this thread's hub, creating the hub on first use.
///
/// The fast path is one thread-local load: a lazily initialised thread-local would check
/// its state and, not being inlined, add a call whose `ret` mispredicts after every
/// switch back into a greenlet.
#[inline(always)]
pub(crate) fn with_hub<R>(f: impl FnOnce(&Hub) -> R) -> R {
    let address = HUB_ADDRESS.with(Cell::get);
    if address.is_null() {
        return with_new_hub(f);
    }
    // SAFETY: by the invariant of `HUB_ADDRESS`, a non-null address is this thread's live
    // hub, which stays valid until the thread exits.
    f(unsafe { &*address })
}

#[cold]
#[inline(never)]
fn with_new_hub<R>(f: impl FnOnce(&Hub) -> R) -> R {
    HUB.with(|hub| {
        // The hub is in its final place now: publish it (and its run queue, for wakers).
        HUB_ADDRESS.with(|address| address.set(hub));
        hub.run_queue.publish();
        if let Some(threshold) = hub.config.borrow().max_blocking_time {
            hub.watch.set_threshold(Some(threshold), hub.remote_handle());
        }
        trace::start_from_env();
        hub.sync_trace(); // also turns on tracking if configured
        f(hub)
    })
}

/// Like [`with_hub`], but does nothing once the hub has been destroyed (thread exit).
/// Used on paths that destructors can reach.
pub(crate) fn try_with_hub<R>(f: impl FnOnce(&Hub) -> R) -> Option<R> {
    let address = HUB_ADDRESS.try_with(Cell::get).ok()?;
    if address.is_null() {
        return HUB.try_with(f).ok();
    }
    // SAFETY: as in `with_hub`.
    Some(f(unsafe { &*address }))
}

/// Like [`with_hub`], but never creates a hub: `None` on a thread that has none (yet, or
/// any more). Used by code that may run on any thread, such as a `block_on` waker.
#[inline]
pub(crate) fn with_existing_hub<R>(f: impl FnOnce(&Hub) -> R) -> Option<R> {
    let address = HUB_ADDRESS.try_with(Cell::get).ok()?;
    if address.is_null() {
        return None;
    }
    // SAFETY: by the invariant of `HUB_ADDRESS`, a non-null address is this thread's live
    // hub.
    Some(f(unsafe { &*address }))
}

/// Why the main code's wait can never end.
pub(crate) struct Deadlock;

/// What a timer does when it fires.
pub(crate) enum TimerAction {
    /// Wake a parked greenlet (sleep, `*_timeout` waits).
    Wake(Waker),
    /// Deliver an interrupt (a `with_timeout` expiry) to a greenlet.
    Interrupt(TaskRef, Interrupt),
    /// Put a greenlet created by `spawn_later` into the run queue.
    Start(TaskRef),
}

/// One thread's scheduler: the loop's own state, and the subsystems it drives.
///
/// Every field is private. The API modules (`greenlet.rs`, `park.rs`, `time.rs`,
/// `timeout.rs`, `io`, `remote.rs`) reach the hub through [`with_hub`] and use the verbs
/// below; each subsystem keeps its own state behind its own verbs.
pub(crate) struct Hub {
    /// Ready tasks, turn by turn (`task/run_queue.rs`).
    run_queue: RunQueue,
    /// The greenlet running now; `None` while the main code or the loop itself runs.
    ///
    /// # Invariant
    ///
    /// When `Some`, it is the task pointer of a `TaskRef` that [`Hub::resume`] holds for
    /// as long as the pointer is set, so it is always valid to dereference and to turn
    /// into a new reference with [`TaskRef::clone_from_ptr`].
    current: Cell<Option<NonNull<dyn Task>>>,
    /// The task that stands for the thread's main code.
    main: TaskRef,
    /// True while the loop's own code runs (between greenlets), where blocking is a bug.
    in_loop: Cell<bool>,
    /// Greenlets whose interrupt could not be raised yet (an unwind was in progress).
    postponed: RefCell<Vec<TaskRef>>,
    /// Whether `postponed` is non-empty (checked at every turn boundary).
    has_postponed: Cell<bool>,
    /// Deadlines and what happens at them (`timer.rs`).
    timers: Timers<TimerAction>,
    /// The mio poll and every registered fd (`io/driver.rs`).
    io: IoDriver,
    /// The cross-thread door: inbox and lent wakers (`inbox.rs`).
    remote: Remote,
    /// Guarded and shared stacks (`stacks.rs`).
    stacks: Stacks,
    /// The settings; `stacks` keeps a copy of its limits.
    config: RefCell<HubConfig>,
    /// The loop's counters.
    stats: Stats,
    /// The switch counter and the loop's phase, as the blocked-hub monitor sees them
    /// (`monitor.rs`).
    watch: Watch,
    /// The next greenlet (or link) id.
    next_id: Cell<u64>,
    /// How many of the live timers are *unref'd*: they do not keep the hub busy, so
    /// neither [`join_hub`] nor the deadlock check waits for them (gevent's `ref=False`).
    unref_timers: Cell<usize>,
    /// Whether something watches this hub's switches: `tracker` is on or `recorder`
    /// records. The one flag the switch path reads for both.
    observed: Cell<bool>,
    /// The live greenlets, when tracked (`runinfo.rs`).
    tracker: Tracker,
    /// This hub's part of a trace being recorded (`trace.rs`).
    recorder: Recorder,
    /// The reason the running task last gave for stopping, formatted (only while
    /// `observed`). A `Cell` taken while formatting: the formatting runs on the greenlet's
    /// stack, and an overflow there must not leave anything of the hub's borrowed.
    stop_reason: Cell<String>,
}

impl Hub {
    fn new() -> Hub {
        overflow::install_handler();
        let io = IoDriver::new().unwrap_or_else(|err| {
            panic!("verdant: cannot create this thread's hub: its mio event loop failed: {err}")
        });
        let remote = Remote::new(&io).unwrap_or_else(|err| {
            panic!("verdant: cannot create this thread's hub: its wake eventfd failed: {err}")
        });
        let config = HubConfig {
            max_blocking_time: monitor::threshold_from_env(),
            track_greenlets: runinfo::tracking_from_env(),
            ..HubConfig::default()
        };
        let main = TaskRef::new(Rc::new(MainTask {
            core: Core::new(
                0,
                None,
                Kind::Main,
                0,
                StackKind::Guarded,
                std::panic::Location::caller(),
            ),
        }));
        Hub {
            run_queue: RunQueue::new(),
            current: Cell::new(None),
            main,
            in_loop: Cell::new(false),
            postponed: RefCell::new(Vec::new()),
            has_postponed: Cell::new(false),
            timers: Timers::new(),
            io,
            remote,
            stacks: Stacks::new(&config),
            config: RefCell::new(config),
            stats: Stats::default(),
            watch: Watch::default(),
            next_id: Cell::new(1),
            unref_timers: Cell::new(0),
            observed: Cell::new(false),
            tracker: Tracker::new(),
            recorder: Recorder::new(),
            stop_reason: Cell::new(String::new()),
        }
    }

    // ----- verbs for the API modules ---------------------------------------------------

    /// A fresh id for a greenlet or a link.
    pub(crate) fn next_id(&self) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        id
    }

    /// The I/O driver, for registrations.
    pub(crate) fn io(&self) -> &IoDriver {
        &self.io
    }

    /// A handle other threads can post jobs through.
    pub(crate) fn remote_handle(&self) -> crate::RemoteHandle {
        crate::remote::RemoteHandle::new(self.remote.inbox().clone())
    }

    /// The cross-thread door, for remote handles and wakers.
    pub(crate) fn remote(&self) -> &Remote {
        &self.remote
    }

    /// The stacks, for spawning.
    pub(crate) fn stacks(&self) -> &Stacks {
        &self.stacks
    }

    /// The loop's counters, for greenlets being spawned and finishing.
    pub(crate) fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The settings.
    pub(crate) fn config(&self) -> HubConfig {
        self.config.borrow().clone()
    }

    /// Replaces the settings (already validated).
    fn set_config(&self, config: HubConfig) {
        self.stacks.set_limits(&config);
        if config.max_blocking_time != self.config.borrow().max_blocking_time {
            self.watch.set_threshold(config.max_blocking_time, self.remote_handle());
        }
        let track = config.track_greenlets;
        *self.config.borrow_mut() = config;
        self.set_tracking(track || self.recorder.recording());
    }

    // ----- observing: run information and traces --------------------------------------

    /// The live-greenlet list, for `dump`.
    pub(crate) fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// Turns the live-greenlet list on or off (the main code is listed too).
    fn set_tracking(&self, on: bool) {
        if on != self.tracker.is_on() {
            self.tracker.set_on(on);
            if on {
                self.tracker.add(&self.main);
            }
        }
        self.observed.set(self.tracker.is_on() || self.recorder.recording());
    }

    /// Follows the process-wide trace (started or stopped since this hub last looked).
    pub(crate) fn sync_trace(&self) {
        let recording = self.recorder.sync();
        self.set_tracking(recording || self.config.borrow().track_greenlets);
    }

    /// The trace is being stopped: ends the open slices and hands everything over.
    pub(crate) fn close_trace(&self) {
        let core = self.current_core();
        self.recorder.close((core.id, core.name()));
    }

    /// A greenlet was created.
    #[inline]
    pub(crate) fn observe_spawn(&self, task: &TaskRef) {
        if self.observed.get() {
            self.tracker.add(task);
        }
    }

    /// A greenlet died.
    #[inline]
    pub(crate) fn observe_finish(&self, core: &Core) {
        if self.observed.get() {
            self.tracker.forget(core.id);
        }
    }

    /// The running task is about to stop: remember why (formatted once, for both; the
    /// list and the trace are updated in `observe_stop`, on the loop's stack).
    #[cold]
    #[inline(never)]
    fn observe_switch_out(&self, to: State, reason: &dyn fmt::Display) {
        use std::fmt::Write as _;
        let mut text = self.stop_reason.take();
        text.clear();
        if to == State::Ready {
            text.push_str("yield");
        } else {
            let _ = write!(text, "{reason}");
        }
        self.stop_reason.set(text);
    }

    /// The loop is about to resume `core`'s task.
    #[cold]
    #[inline(never)]
    fn observe_resume(&self, core: &Core) {
        self.tracker.resumed(core.id);
        self.recorder.resumed(core.id, core.name());
    }

    /// `core`'s task stopped running (it parked, yielded, or ended).
    #[cold]
    #[inline(never)]
    fn observe_stop(&self, core: &Core) {
        let reason = self.stop_reason.take();
        let name = core.name();
        match core.state() {
            State::Done => {
                let how = match core.outcome() {
                    Some(Ok(())) | None => "finished".to_string(),
                    Some(Err(err)) => format!("ended: {err}"),
                };
                self.recorder.stopped(core.id, name, &how, true);
            }
            state => {
                if state == State::Parked {
                    self.tracker.parked(core.id, &reason);
                }
                self.recorder.stopped(core.id, name, &reason, false);
            }
        }
        self.stop_reason.set(reason);
    }

    /// Calls `action` at `deadline` (never earlier).
    pub(crate) fn add_timer(&self, deadline: Instant, action: TimerAction) -> TimerKey {
        self.timers.insert(deadline, action)
    }

    /// Counts one more unref'd timer until the guard is dropped. The caller keeps a timer
    /// live for as long as it holds the guard (or is itself ready to run).
    pub(crate) fn unref_timer(&self) -> UnrefTimer {
        self.unref_timers.set(self.unref_timers.get() + 1);
        UnrefTimer(())
    }

    /// Whether some timer that keeps the hub busy is pending.
    fn has_ref_timers(&self) -> bool {
        self.timers.len() > self.unref_timers.get()
    }

    /// Whether a timer has neither fired nor been cancelled.
    pub(crate) fn timer_pending(&self, key: TimerKey) -> bool {
        self.timers.is_pending(key)
    }

    /// Cancels a timer; returns whether it had not fired yet.
    pub(crate) fn cancel_timer(&self, key: TimerKey) -> bool {
        self.timers.cancel(key)
    }

    /// The task that is running: a greenlet, or the main code.
    #[inline(always)]
    pub(crate) fn current_task(&self) -> TaskRef {
        match self.current.get() {
            // SAFETY: by the invariant of `current`, `running` is the task pointer of a
            // live `TaskRef` (the one `resume` holds).
            Some(running) => unsafe { TaskRef::clone_from_ptr(running) },
            None => self.main.clone(),
        }
    }

    /// The `Core` of the running task, without touching reference counts.
    #[inline(always)]
    pub(crate) fn current_core(&self) -> &Core {
        match self.current.get() {
            // SAFETY: by the invariant of `current` the task is alive now. The reference is
            // only used by the running greenlet's own code (park, yield), and a greenlet's
            // task outlives its code: its coroutine holds a `TaskRef` to it until it returns.
            Some(running) => unsafe { running.as_ref() }.core(),
            None => self.main.core(),
        }
    }

    /// Whether `core` is the one running now.
    pub(crate) fn is_current(&self, core: &Core) -> bool {
        std::ptr::eq(self.current_core(), core)
    }

    /// Appends a task to the run queue. The caller has set its state (or it is `New`).
    #[inline(always)]
    pub(crate) fn schedule(&self, task: TaskRef) {
        self.run_queue.push(task);
    }

    /// Makes a parked task ready whatever epoch it waits in (kills, timeouts, retries).
    pub(crate) fn force_wake(&self, task: &TaskRef) {
        let core = task.core();
        if core.state() == State::Parked {
            core.set_state(State::Ready);
            self.schedule(task.clone());
        }
    }

    /// Posts an interrupt to a task that is not running and makes it ready to receive it.
    pub(crate) fn interrupt(&self, task: &TaskRef, interrupt: Interrupt) {
        task.core().post_interrupt(interrupt);
        self.force_wake(task);
    }

    // ----- blocking: what every blocking call comes down to -----------------------------

    /// Suspends the running task until a waker of its current epoch (or an interrupt)
    /// makes it ready again. Raises a pending interrupt before and after.
    #[inline(always)]
    pub(crate) fn park_current(&self, reason: &dyn fmt::Display) {
        self.raise_pending_interrupt();
        let core = self.current_core();
        self.switch_out(core, State::Parked, reason);
        core.end_epoch();
        self.raise_pending_interrupt();
    }

    /// Like [`park_current`](Hub::park_current), but a kill or timeout neither unwinds
    /// nor is consumed: returns `true` if one is pending (before or after parking), and it
    /// stays pending for the next blocking point that may unwind.
    pub(crate) fn park_current_quietly(&self, reason: &dyn fmt::Display) -> bool {
        let core = self.current_core();
        if core.interrupt.is_pending() {
            return true;
        }
        self.switch_out(core, State::Parked, reason);
        core.end_epoch();
        core.interrupt.is_pending()
    }

    /// Sends the running task to the back of the run queue and runs the others.
    #[inline(always)]
    pub(crate) fn yield_current(&self) {
        self.raise_pending_interrupt();
        let core = self.current_core();
        self.switch_out(core, State::Ready, &"yield_now()");
        core.end_epoch();
        self.raise_pending_interrupt();
    }

    /// Leaves the running task, moving it to `to` (`Parked`, or `Ready` and queued): a
    /// greenlet suspends its coroutine; the main code runs the loop until it is popped
    /// again.
    ///
    /// Inlined all the way into `yield_now`/`park`: after a stack switch every `ret`
    /// mispredicts (the CPU's return-stack buffer holds the other stack's frames), so each
    /// call level between user code and the switch costs about 15 cycles per switch.
    #[inline(always)]
    fn switch_out(&self, core: &Core, to: State, reason: &dyn fmt::Display) {
        if core.is_main() {
            return self.run_loop_for_main(core, to, reason);
        }
        if self.observed.get() {
            self.observe_switch_out(to, reason);
        }
        // A yield (`to == Ready`) is queued by `resume` once the coroutine is back on the
        // loop's stack: it moves the `Rc` it holds into the queue, where queueing here
        // would take a new reference and `resume` would drop its own.
        core.set_state(to);
        if !core.on_shared_stack() {
            let yielder = core.yielder.get();
            // SAFETY: `core` is the running greenlet, so its coroutine has started and not
            // returned, and we are executing on its stack: the yielder invariant holds.
            unsafe { (*yielder).suspend(()) };
        } else {
            // SAFETY: as above.
            unsafe { shared_stack::suspend_recording_sp(core.yielder.get(), &core.suspended_sp) };
        }
    }

    /// The main code blocks: run the loop until it is popped from the run queue again.
    /// From code the loop itself runs (a cross-thread job), blocking is refused before the
    /// main code's state changes.
    #[inline(never)]
    fn run_loop_for_main(&self, core: &Core, to: State, reason: &dyn fmt::Display) {
        if self.in_loop.get() {
            panic!(
                "verdant: a blocking call ({reason}) was made from code the hub runs between \
                 greenlets (a cross-thread job or a callback); such code must not block: \
                 spawn a greenlet for the blocking part"
            );
        }
        core.set_state(to);
        if to == State::Ready {
            self.schedule(self.main.clone());
        }
        if self.observed.get() {
            self.observe_switch_out(to, reason);
            self.observe_stop(core);
        }
        let ran = self.run_until_main_runs();
        if self.observed.get() {
            self.observe_resume(core);
        }
        if let Err(Deadlock) = ran {
            core.set_state(State::Running);
            core.end_epoch();
            panic!(
                "verdant: deadlock: the main code waits on {reason}, but nothing can ever \
                 wake it: no greenlet is ready to run, no timer is pending, no greenlet waits \
                 for I/O, and no cross-thread work is outstanding (gevent's LoopExit)"
            );
        }
    }

    /// Raises the running task's pending interrupt as an unwind, if it is safe to do so
    /// now; otherwise remembers the task so the loop retries once no unwind is in progress.
    #[inline]
    pub(crate) fn raise_pending_interrupt(&self) {
        if self.current_core().interrupt.is_pending() {
            self.raise_pending_interrupt_slow();
        }
    }

    #[cold]
    #[inline(never)]
    fn raise_pending_interrupt_slow(&self) {
        let core = self.current_core();
        let Some(interrupt) = core.interrupt.get() else { return };
        if !interrupt.deliverable_now() {
            let task = self.current_task();
            let mut postponed = self.postponed.borrow_mut();
            if !postponed.iter().any(|t| TaskRef::ptr_eq(t, &task)) {
                postponed.push(task);
            }
            self.has_postponed.set(true);
            return;
        }
        core.interrupt.set(None);
        match interrupt {
            Interrupt::Kill => resume_unwind(Box::new(KillUnwind)),
            Interrupt::Timeout { id, .. } => resume_unwind(Box::new(TimeoutUnwind(id))),
        }
    }

    /// The main code runs the loop until the hub has nothing left to do (no greenlet
    /// ready, no timer but unref'd ones, no I/O wait, no cross-thread work): returns
    /// `true`; or until `deadline`: returns `false`.
    fn join(&self, deadline: Option<Instant>) -> bool {
        let core = self.current_core();
        assert!(
            core.is_main() && !self.in_loop.get(),
            "verdant: join_hub() waits for every greenlet, so only the thread's main code \
             can call it (gevent's hub.join())"
        );
        let _unref = deadline.map(|_| self.unref_timer());
        let timer = deadline.map(|at| {
            core.wake_timer_fired.set(false);
            let timer = self.add_timer(at, TimerAction::Wake(Waker::new(self.main.clone())));
            CancelOnDrop(timer)
        });
        core.set_state(State::Parked);
        let ran = self.run_until_main_runs();
        core.end_epoch();
        if ran.is_err() {
            core.set_state(State::Running);
        }
        drop(timer); // keys name one timer: cancelling one that fired does nothing
        self.raise_pending_interrupt(); // woken by a with_timeout expiry
        ran.is_err()
    }

    // ----- the loop --------------------------------------------------------------------

    /// Runs greenlets until the main code is popped from the ready queue. Called only by
    /// the main code, from a blocking call, after it marked itself `Parked` or `Ready`.
    fn run_until_main_runs(&self) -> Result<(), Deadlock> {
        self.in_loop.set(true);
        let entry = 0u8;
        self.watch.enter_loop(std::ptr::addr_of!(entry) as usize);
        let _leave = LeaveLoop(self);
        loop {
            let Some(task) = self.next_ready() else {
                self.wait_for_work()?;
                continue;
            };
            let core = task.core();
            if core.is_main() {
                core.set_state(State::Running);
                return Ok(());
            }
            if core.state() != State::Done {
                self.resume(task);
            }
        }
    }

    /// Pops the next task of the current turn, opening a new turn when the last one ran out.
    #[inline]
    fn next_ready(&self) -> Option<TaskRef> {
        if let Some(task) = self.run_queue.pop() {
            return Some(task);
        }
        self.turn_boundary();
        self.run_queue.open_turn()
    }

    /// Between two turns: retry postponed interrupts, drain the inbox, poll I/O without
    /// blocking (only if someone waits for I/O), fire due timers. Each check is one load;
    /// the work, when there is some, happens out of line.
    #[inline]
    fn turn_boundary(&self) {
        Stats::bump(&self.stats.turns);
        if self.recorder.out_of_date() {
            self.sync_trace();
        }
        if self.has_postponed.get() {
            self.retry_postponed();
        }
        if self.remote.has_messages() {
            self.drain_inbox();
        }
        if self.io.waiters() > 0 {
            self.poll_io(Some(Duration::ZERO));
        }
        if !self.timers.is_empty() {
            self.fire_timers();
        }
    }

    /// Nothing is ready: block until something can run, or report that nothing ever can.
    ///
    /// While the hub waits only for other threads (outstanding cross-thread work, no
    /// greenlet waiting for I/O), it first spins for up to `HubConfig::spin`, checking its
    /// inbox: waking an idle core through the eventfd costs tens of microseconds here,
    /// more than most thread-pool tasks take. It never spins when no work is outstanding.
    fn wait_for_work(&self) -> Result<(), Deadlock> {
        loop {
            if !self.timers.is_empty() {
                self.fire_timers();
            }
            if self.remote.has_messages() {
                self.drain_inbox();
            }
            if !self.run_queue.is_empty() {
                return Ok(());
            }
            let next_timer = self.timers.next_deadline();
            if !self.has_ref_timers() && self.io.waiters() == 0 && !self.remote.may_receive() {
                return Err(Deadlock);
            }
            if self.remote.outstanding() > 0
                && self.io.waiters() == 0
                && self.spin_for_inbox(next_timer)
            {
                continue;
            }
            if !self.remote.fall_asleep() {
                continue;
            }
            // Asleep now: re-check what may have ended between the check above and here.
            if !self.has_ref_timers() && self.io.waiters() == 0 && !self.remote.may_receive() {
                self.remote.wake_up();
                return Err(Deadlock);
            }
            let timeout = next_timer.map(|at| at.saturating_duration_since(Instant::now()));
            if self.observed.get() {
                self.recorder.flush(); // going idle: a good moment to hand events over
            }
            self.watch.set_idle(true);
            self.poll_io(timeout);
            self.watch.set_idle(false);
            self.remote.wake_up();
        }
    }

    /// Spins until a cross-thread message arrives (returns `true`), the spin budget is
    /// used up, or the next timer is due (`false`).
    #[cold]
    fn spin_for_inbox(&self, next_timer: Option<Instant>) -> bool {
        let spin = self.config.borrow().spin;
        if spin.is_zero() {
            return false;
        }
        let started = Instant::now();
        let mut until = started + spin;
        if let Some(timer) = next_timer {
            until = until.min(timer);
        }
        Stats::bump(&self.stats.spins);
        loop {
            for _ in 0..64 {
                if self.remote.has_messages() {
                    return true;
                }
                std::hint::spin_loop();
            }
            if Instant::now() >= until {
                return false;
            }
        }
    }

    /// Runs one greenlet until it blocks, yields or finishes.
    fn resume(&self, task: TaskRef) {
        let core = task.core();
        if core.state() == State::New {
            if let Err(err) = self.create_coroutine(&task) {
                core.set_state(State::Done);
                task.abort(GreenletError::NoStack(err.to_string()));
                return;
            }
        } else if core.on_shared_stack() {
            self.stacks.make_resident(&task);
        }
        if self.observed.get() {
            self.observe_resume(core);
        }
        core.set_state(State::Running);
        self.current.set(Some(task.as_ptr()));
        self.in_loop.set(false);
        self.watch.count_switch();
        overflow::publish_running(core);
        let result = {
            let mut coroutine = core.coroutine.borrow_mut();
            coroutine.as_mut().expect("a started greenlet has a coroutine").resume(())
        };
        self.in_loop.set(true);
        self.current.set(None);
        // Nothing ran between its suspend and here: `Ready` means it yielded (`switch_out`).
        let yielded = match result {
            CoroutineResult::Return(()) => {
                let coroutine = core.coroutine.borrow_mut().take().expect("returned coroutine");
                core.set_state(State::Done);
                self.stacks.detach(&task, coroutine.into_stack());
                false
            }
            CoroutineResult::Yield(()) => core.state() == State::Ready,
        };
        if self.observed.get() {
            self.observe_stop(core);
        }
        if yielded {
            self.schedule(task);
        }
    }

    /// Runs what other threads posted (and records it when tracing).
    fn drain_inbox(&self) {
        if !self.recorder.recording() {
            return self.remote.drain();
        }
        let (_, before) = self.remote.counts();
        self.remote.drain();
        let (_, after) = self.remote.counts();
        if after > before {
            let what = format!("{} cross-thread message(s)", after - before);
            self.recorder.loop_event("cross-thread", what);
        }
    }

    /// Gives a greenlet that runs for the first time its stack and coroutine.
    fn create_coroutine(&self, task: &TaskRef) -> io::Result<()> {
        let stack = self.stacks.attach(task)?;
        let me = task.clone();
        let coroutine = Coroutine::with_stack(stack, move |yielder, ()| {
            me.core().yielder.set(yielder);
            me.run();
        });
        task.core().trap.set(Some(coroutine.trap_handler()));
        *task.core().coroutine.borrow_mut() = Some(coroutine);
        Ok(())
    }

    /// Ends the running greenlet after a stack overflow. The overflow handler made its
    /// coroutine call this on its own stack, reset: the frames that overflowed are gone,
    /// their destructors unrun (see `overflow.rs`). The greenlet then ends the normal way
    /// for an error outcome: outcome, joiners, links, and its coroutine returns to
    /// [`Hub::resume`], which recycles the stack.
    pub(crate) fn end_overflowed(&self) {
        let task = self.current_task();
        let core = task.core();
        if let Some(what) = self.bookkeeping_in_use(core) {
            overflow::abort_after_return(core, what);
        }
        // The coroutine's closure (`me` in `create_coroutine`) held a strong count on the
        // discarded frames; nothing will ever drop it, so give it back here.
        // SAFETY: that count was taken by `create_coroutine` and is owned by frames that
        // no longer exist; `task` above and the `TaskRef` that `resume` holds keep the greenlet
        // alive past this decrement.
        unsafe { task.release_lost_count() };
        crate::greenlet::finish_overflowed(core);
    }

    /// Which part of the hub's own state, if any, the discarded frames left in use (a
    /// `RefCell` borrowed by hub code that was running on the greenlet's stack when it
    /// overflowed). Nothing is borrowed across a switch, so anything found here was left
    /// behind, and the hub cannot go on with it.
    fn bookkeeping_in_use(&self, core: &Core) -> Option<&'static str> {
        let checks: [(&'static str, bool); 10] = [
            ("its run queue", self.run_queue.in_use()),
            ("its stacks", self.stacks.in_use_by_code()),
            ("its timers", self.timers.in_use()),
            ("its postponed interrupts", self.postponed.try_borrow_mut().is_err()),
            ("its settings", self.config.try_borrow_mut().is_err()),
            ("its cross-thread door", self.remote.in_use()),
            ("its I/O driver", self.io.in_use()),
            ("its trace recorder", self.recorder.in_use()),
            ("its live-greenlet list", self.tracker.in_use()),
            ("the greenlet's own links and joiners", core.cold_in_use()),
        ];
        checks.into_iter().find(|(_, in_use)| *in_use).map(|(what, _)| what)
    }

    #[cold]
    fn retry_postponed(&self) {
        if std::thread::panicking() {
            return;
        }
        self.has_postponed.set(false);
        let postponed = std::mem::take(&mut *self.postponed.borrow_mut());
        for task in &postponed {
            self.force_wake(task);
        }
    }

    #[inline(never)]
    fn fire_timers(&self) {
        let now = Instant::now();
        let mut fired = 0u64;
        loop {
            let action = self.timers.pop_expired(now);
            let Some(action) = action else { break };
            fired += 1;
            Stats::bump(&self.stats.timers_fired);
            match action {
                TimerAction::Wake(waker) => {
                    waker.core().wake_timer_fired.set(true);
                    waker.wake();
                }
                TimerAction::Interrupt(task, interrupt) => self.interrupt(&task, interrupt),
                TimerAction::Start(task) => {
                    if task.core().state() == State::New {
                        self.schedule(task);
                    }
                }
            }
        }
        if fired > 0 && self.recorder.recording() {
            self.recorder.loop_event("timer", format!("{fired} timer(s) fired"));
        }
    }

    fn poll_io(&self, timeout: Option<Duration>) {
        let counter = if timeout == Some(Duration::ZERO) {
            &self.stats.polls_nonblocking
        } else {
            &self.stats.polls_blocking
        };
        Stats::bump(counter);
        if !self.recorder.recording() {
            return self.io.poll(timeout, None);
        }
        let mut ready = String::new();
        self.io.poll(timeout, Some(&mut ready));
        if !ready.is_empty() {
            self.recorder.loop_event("io", format!("ready: {ready}"));
        }
    }
}

/// One unref'd timer, counted until dropped (see [`Hub::unref_timer`]).
pub(crate) struct UnrefTimer(());

impl Drop for UnrefTimer {
    fn drop(&mut self) {
        try_with_hub(|hub| hub.unref_timers.set(hub.unref_timers.get() - 1));
    }
}

/// Cancels a timer when dropped.
struct CancelOnDrop(TimerKey);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        try_with_hub(|hub| hub.cancel_timer(self.0));
    }
}

/// Clears `in_loop` (and tells the monitor) when the loop returns or unwinds.
struct LeaveLoop<'a>(&'a Hub);

impl Drop for LeaveLoop<'_> {
    fn drop(&mut self) {
        self.0.in_loop.set(false);
        self.0.watch.leave_loop();
    }
}

impl Drop for Hub {
    /// The thread is exiting. Greenlets that never finished are abandoned: they are never
    /// resumed, their destructors never run and their memory is leaked (like daemon threads
    /// at process exit). Running their code now would be unsound: it could touch
    /// thread-locals that are already gone.
    fn drop(&mut self) {
        self.watch.unwatch();
        self.recorder.close((self.main.core().id, None));
        let _ = HUB_ADDRESS.try_with(|address| address.set(std::ptr::null()));
        self.run_queue.withdraw();
        self.remote.abandon();
        std::mem::forget(self.run_queue.drain());
        std::mem::forget(self.timers.drain());
        std::mem::forget(std::mem::take(&mut *self.postponed.borrow_mut()));
        self.io.abandon_waiters();
        self.stacks.abandon();
    }
}

/// Waits until the hub has nothing left to do: every greenlet finished or blocked on
/// something only another greenlet could end, no timer pending (a `spawn_later` greenlet
/// or a sleep counts; one made with [`sleep_unref`](crate::sleep_unref) does not), no
/// greenlet waiting for I/O, no cross-thread work outstanding (gevent's `gevent.wait()`
/// with no objects, `get_hub().join()`). Returns `true`; it can be called again, and the
/// hub stays usable.
///
/// ```
/// let g = verdant_hub::spawn_later(std::time::Duration::from_millis(1), || 5);
/// assert!(verdant_hub::join_hub()); // waited for the timer, then for the greenlet
/// assert_eq!(g.value(), Some(5));
/// ```
///
/// # Panics
///
/// From a greenlet: it would wait for itself. Only the thread's main code can call it.
pub fn join_hub() -> bool {
    with_hub(|hub| hub.join(None))
}

/// Like [`join_hub`], giving up after `timeout`: returns whether the hub ran out of work
/// by then (gevent's `gevent.wait(timeout=t)`).
pub fn join_hub_timeout(timeout: Duration) -> bool {
    with_hub(|hub| hub.join(Instant::now().checked_add(timeout)))
}

/// This thread's hub settings.
pub fn config() -> HubConfig {
    with_hub(Hub::config)
}

/// Changes this thread's hub settings. The stack size is validated (16 KiB to 1 GiB) and
/// rounded up to whole pages; on error nothing changes.
pub fn configure(change: impl FnOnce(&mut HubConfig)) -> io::Result<()> {
    let mut next = config();
    change(&mut next);
    next.stack_size = checked_stack_size(next.stack_size)?;
    with_hub(|hub| hub.set_config(next));
    Ok(())
}

/// This thread's hub counters.
pub fn stats() -> HubStats {
    with_hub(|hub| {
        let s = &hub.stats;
        let (inbox_batches, inbox_messages) = hub.remote.counts();
        HubStats {
            spawned: s.spawned.get(),
            finished: s.finished.get(),
            switches: hub.watch.switches(),
            blocking_reports: hub.watch.reports(),
            turns: s.turns.get(),
            polls_nonblocking: s.polls_nonblocking.get(),
            polls_blocking: s.polls_blocking.get(),
            timers_fired: s.timers_fired.get(),
            inbox_batches,
            inbox_messages,
            wake_writes: hub.remote.wake_writes(),
            spins: s.spins.get(),
            stacks_in_use: hub.stacks.in_use(),
            stacks_free: hub.stacks.free_count(),
            timers_pending: hub.timers.len(),
            shared_stacks: hub.stacks.shared_count(),
            shared_bytes_copied: hub.stacks.shared_bytes_copied(),
        }
    })
}
