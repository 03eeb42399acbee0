//! Greenlets: spawning them, and the handles that join, inspect, link and kill them.
//!
//! A greenlet's memory is one `Rc` allocation ([`Body`]) holding the scheduler's [`Core`],
//! the body closure until it runs, and the value after. The hub sees it as
//! `TaskRef`, the user as [`Greenlet<T>`] (typed) or [`GreenletRef`] (untyped).
//!
//! The value lives in the [`Outcome`] state machine every result type shares: read with
//! `get` (a clone, as often as asked) or moved out once with `take`.

use std::cell::RefCell;
use std::convert::Infallible;
use std::fmt;
use std::io;
use std::ops::Deref;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::NonNull;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::cell::Outcome;
use crate::config::StackMode;
use crate::error::{GreenletError, catch_panic, panic_message};
use crate::hub::TimerAction;
use crate::hub::with_hub;
use crate::park;
use crate::stack::checked_stack_size;
use crate::stats::Stats;
use crate::task::{Core, Interrupt, Kind, LinkCallback, LinkHook, StackKind, State, Task, TaskRef};
use crate::wait_for::WaitFor;

/// The typed half of a greenlet: its body before it runs, its value after.
#[repr(C)]
struct Body<T, F> {
    core: Core,
    /// The body and the value share one cell, as they never exist at once: every
    /// greenlet pays for each byte here (see `Core`).
    stage: RefCell<Stage<T, F>>,
}

/// Where a greenlet's typed half is in its life.
enum Stage<T, F> {
    /// Not started: the body.
    Unrun(F),
    /// Started: pending until the body returns, then the value, then (after a `take`)
    /// taken. How a greenlet *failed* is kept in its `Core`, where untyped handles read
    /// it; so it is never `Failed` here.
    Ran(Outcome<T, Infallible>),
}

impl<T, F> Body<T, F> {
    /// Moves the body out to run or drop it (`None` once it was). The caller drops it,
    /// after this borrow ended: its destructor may run any code.
    fn take_body(&self) -> Option<F> {
        let mut stage = self.stage.borrow_mut();
        if let Stage::Ran(_) = &*stage {
            return None;
        }
        match std::mem::replace(&mut *stage, Stage::Ran(Outcome::Pending)) {
            Stage::Unrun(body) => Some(body),
            Stage::Ran(_) => unreachable!("checked above"),
        }
    }
}

// SAFETY: `Body` is `#[repr(C)]` and `core` is its first field.
unsafe impl<T, F: FnOnce() -> T> Task for Body<T, F> {
    fn run(&self) {
        let body = self.take_body().expect("a greenlet body runs once");
        let outcome = match catch_unwind(AssertUnwindSafe(body)) {
            Ok(value) => {
                // A kill still pending here was reported by a wait that must not unwind
                // (`park::park_until_quietly`, a libc hook under C frames) and cut that
                // wait short: the body's return is the delivery point, and the value is
                // dropped, as an unwind would have dropped it.
                if self.core.interrupt.get() == Some(Interrupt::Kill) {
                    drop(value);
                    Err(GreenletError::Killed)
                } else {
                    *self.stage.borrow_mut() = Stage::Ran(Outcome::Value(value));
                    Ok(())
                }
            }
            // The greenlet's top: the one catch that also ends kills (as `Killed`).
            Err(payload) => Err(GreenletError::from_unwind(payload)),
        };
        finish(&self.core, outcome);
    }

    fn abort(&self, error: GreenletError) {
        drop(self.take_body());
        finish(&self.core, Err(error));
    }
}

/// What a typed handle needs beyond [`Task`]: the value.
trait TypedTask<T>: Task {
    /// A clone of what became of the value (`Pending` until the body returned).
    fn read(&self) -> Outcome<T, Infallible>
    where
        T: Clone;

    /// Moves the value out, leaving `Taken` (`Pending` until the body returned).
    fn take_value(&self) -> Outcome<T, Infallible>;
}

impl<T> dyn TypedTask<T> {
    /// The scheduler-facing state, without a virtual call.
    #[inline]
    fn core(&self) -> &Core {
        (self as &dyn Task).core()
    }
}

impl<T, F: FnOnce() -> T> TypedTask<T> for Body<T, F> {
    fn read(&self) -> Outcome<T, Infallible>
    where
        T: Clone,
    {
        match &*self.stage.borrow() {
            Stage::Ran(outcome) => outcome.clone(),
            Stage::Unrun(_) => Outcome::Pending,
        }
    }

    fn take_value(&self) -> Outcome<T, Infallible> {
        match &mut *self.stage.borrow_mut() {
            Stage::Ran(outcome) => outcome.take(),
            Stage::Unrun(_) => Outcome::Pending,
        }
    }
}

/// Records a greenlet's outcome, wakes its joiners and runs its link callbacks (in the
/// context that finished it: its own coroutine, or the killer for one that never started).
fn finish(core: &Core, outcome: Result<(), GreenletError>) {
    core.set_outcome(outcome);
    with_hub(|hub| {
        Stats::bump(&hub.stats().finished);
        hub.observe_finish(core);
    });
    core.interrupt.set(None);
    core.notify_joiners();
    run_links(core);
}

/// Ends a greenlet whose frames the overflow handler discarded: runs on its coroutine's
/// reset stack, in its own context, as its body's end would have. If it was dead already
/// (a link callback overflowed), its outcome stands and the remaining links still run.
pub(crate) fn finish_overflowed(core: &Core) {
    let error = GreenletError::StackOverflow {
        name: core.name().map(str::to_string),
        id: core.id,
        stack_size: core.stack_size(),
    };
    if core.is_dead() {
        let who = core.describe();
        crate::report::report(format!("verdant: a link callback of {who} was cut short: {error}"));
        run_links(core);
    } else {
        finish(core, Err(error));
    }
}

/// Runs a dead greenlet's link callbacks that have not run yet.
fn run_links(core: &Core) {
    // One at a time: a callback may unlink a later one, which then never runs.
    while let Some((_, link)) = core.pop_link() {
        let run = || match link {
            LinkCallback::Call(callback) => callback(),
            LinkCallback::Hook(hook, token) => {
                if let Some(hook) = hook.upgrade() {
                    hook.finished(token);
                }
            }
        };
        if let Err(payload) = catch_panic(run) {
            crate::report::report(format!(
                "verdant: a link callback of {} panicked: {}",
                core.describe(),
                panic_message(&*payload)
            ));
        }
    }
}

/// Configures a greenlet before spawning it: its name and stack size.
///
/// Unlike [`spawn`], [`Builder::spawn`] allocates the stack right away, so running out of
/// stacks is an error returned here rather than a failure of the greenlet later.
///
/// ```
/// let g = verdant_hub::Builder::new()
///     .name("worker")
///     .stack_size(64 * 1024)
///     .spawn(|| 6 * 7)
///     .unwrap();
/// assert_eq!(g.name(), Some("worker"));
/// assert_eq!(g.get(), Ok(42));
/// ```
#[derive(Debug, Default, Clone)]
pub struct Builder {
    name: Option<String>,
    stack_size: Option<usize>,
}

impl Builder {
    /// A builder with no name and the hub's default stack size.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Names the greenlet (shown by `Debug`, in deadlock and overflow messages).
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        self.name = Some(name.into());
        self
    }

    /// Usable stack size in bytes, between 16 KiB and 1 GiB, rounded up to whole pages.
    ///
    /// A greenlet that goes deeper than its stack ends with
    /// [`GreenletError::StackOverflow`] (naming it, its size and this setting), and the
    /// rest of the process goes on. Its frames are discarded **without running their
    /// destructors**: what they held is leaked (memory, fds, a held `RefCell` borrow or
    /// mutex guard); a `verdant_sync::Lock` or `RLock` it held is released for its waiters
    /// and marked poisoned. An overflow inside C code, during an unwind or under
    /// [`block_on`](crate::block_on) still aborts the process. See "Stack overflow" in
    /// `docs/hub.md`.
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = Some(bytes);
        self
    }

    /// Creates the greenlet, reserves its stack and schedules it to start.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if the stack size is out of range; `OutOfMemory` if the greenlet
    /// needs a guarded stack of its own (an explicit stack size, or
    /// [`StackMode::Guarded`]) and none can be had (the message names the limit: the
    /// hub's `max_stacks`, or `vm.max_map_count`).
    #[track_caller]
    pub fn spawn<F, T>(self, f: F) -> io::Result<Greenlet<T>>
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        let size = self.stack_size.map(checked_stack_size).transpose()?;
        let greenlet: Greenlet<T> =
            Greenlet::create(self.name.map(String::into_boxed_str), size, f);
        let core = greenlet.typed().core();
        if core.stack_kind() == StackKind::Guarded {
            let stack = with_hub(|hub| hub.stacks().take(core.stack_size()))?;
            core.reserve_stack(stack);
        }
        greenlet.start();
        Ok(greenlet)
    }
}

/// Spawns a greenlet running `f`. It starts once the spawner blocks or yields, after the
/// greenlets already waiting to run.
///
/// Dropping the handle detaches the greenlet; it runs on.
///
/// # Panics
///
/// In [`StackMode::Guarded`] (not the default), if no stack can be had for it right now
/// (every free stack is taken and a limit is reached), with a message naming the limit.
/// [`Builder::spawn`] returns that as an error. In the default
/// [`StackMode::Adaptive`], a greenlet that finds no guarded stack runs on a shared one.
///
/// ```
/// let g = verdant_hub::spawn(|| "hello from a greenlet".len());
/// assert_eq!(g.get(), Ok(21));
/// ```
#[track_caller]
pub fn spawn<F, T>(f: F) -> Greenlet<T>
where
    F: FnOnce() -> T + 'static,
    T: 'static,
{
    let greenlet: Greenlet<T> = Greenlet::new(f);
    let core = greenlet.typed().core();
    if core.stack_kind() == StackKind::Guarded
        && let Err(err) = with_hub(|hub| hub.stacks().check_can_take(core.stack_size()))
    {
        panic!("verdant::spawn: {err}");
    }
    greenlet.start();
    greenlet
}

/// The stack kind a greenlet without an explicit stack size gets in `mode`.
fn stack_kind_of(mode: StackMode) -> StackKind {
    match mode {
        StackMode::Adaptive => StackKind::Either,
        StackMode::Guarded => StackKind::Guarded,
        StackMode::Shared => StackKind::Shared,
    }
}

/// Spawns a greenlet that starts after `delay` (gevent's `spawn_later`).
#[track_caller]
pub fn spawn_later<F, T>(delay: Duration, f: F) -> Greenlet<T>
where
    F: FnOnce() -> T + 'static,
    T: 'static,
{
    let greenlet = Greenlet::new(f);
    greenlet.start_later(delay);
    greenlet
}

/// A handle to the running greenlet, or to the main code if no greenlet is running.
pub fn current() -> GreenletRef {
    with_hub(|hub| GreenletRef { task: hub.current_task() })
}

/// Identifies a link callback, for [`GreenletRef::unlink`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LinkId(u64);

/// A handle to a greenlet whose body returns `T`.
///
/// It is a [`GreenletRef`] that also knows the type of the greenlet's value: the methods
/// that need `T` ([`get`](Greenlet::get), [`take`](Greenlet::take), [`link`](Greenlet::link)) and those that start
/// the greenlet are here; the others (`join`, `kill`, `ready`, `error`, ...) are
/// [`GreenletRef`]'s, reached through `Deref`.
///
/// Cheap to clone (all clones name the same greenlet) and `!Send`: a greenlet belongs to
/// the hub of the thread that spawned it.
///
/// ```
/// let g = verdant_hub::spawn(|| 6 * 7);
/// g.join(); // GreenletRef's, through Deref
/// assert!(g.successful());
/// assert_eq!(g.get(), Ok(42)); // typed: Greenlet<i32>'s own
/// ```
///
/// ```compile_fail,E0277
/// fn assert_send<T: Send>() {}
/// assert_send::<verdant_hub::Greenlet<u32>>();
/// ```
///
/// ```compile_fail,E0277
/// fn assert_sync<T: Sync>() {}
/// assert_sync::<verdant_hub::Greenlet<u32>>();
/// ```
pub struct Greenlet<T> {
    /// The untyped handle, which the common methods are on.
    greenlet: GreenletRef,
    /// The same greenlet, seen with the type of its value.
    ///
    /// # Invariant
    ///
    /// Points at the task `greenlet` refers to, whose count `greenlet` holds: valid for
    /// as long as `self` is. (A second counted pointer would cost every handle 16 bytes
    /// and every clone a second count.) Derived from a reference, it covers the task
    /// only, not `Rc`'s counts before it: never turn it into a counted reference
    /// ([`TaskRef::clone_from_ptr`] takes `greenlet`'s pointer, not this one).
    typed: NonNull<dyn TypedTask<T>>,
}

impl<T: 'static> Greenlet<T> {
    /// Creates a greenlet that does not run until [`start`](Greenlet::start) is called
    /// (gevent's `Greenlet(run)`).
    #[track_caller]
    pub fn new<F>(f: F) -> Greenlet<T>
    where
        F: FnOnce() -> T + 'static,
    {
        Greenlet::create(None, None, f)
    }

    /// Creates the greenlet. `stack_size` is an explicit size (which always means a guarded
    /// stack of its own), or `None` for the hub's configured size and stack mode.
    #[track_caller]
    fn create<F>(name: Option<Box<str>>, stack_size: Option<usize>, f: F) -> Greenlet<T>
    where
        F: FnOnce() -> T + 'static,
    {
        let spawned_at = std::panic::Location::caller();
        let (id, stack_size, stack_kind) = with_hub(|hub| {
            Stats::bump(&hub.stats().spawned);
            let config = hub.config();
            let (size, kind) = match stack_size {
                Some(size) => (size, StackKind::Guarded),
                None => (config.stack_size, stack_kind_of(config.stack_mode)),
            };
            (hub.next_id(), size, kind)
        });
        // Built in place: a greenlet is a few hundred bytes, and building it on the stack
        // and moving it into the allocation showed up as memcpy in pool maps.
        let mut rc = Rc::<Body<T, F>>::new_uninit();
        let slot = Rc::get_mut(&mut rc).expect("a new Rc is unique").as_mut_ptr();
        // SAFETY: `slot` points to the uninitialised `Body` of the new, unique `Rc`; each
        // field is written exactly once below, so the `Body` is fully initialised before
        // `assume_init`.
        let body = unsafe {
            std::ptr::addr_of_mut!((*slot).core).write(Core::new(
                id,
                name,
                Kind::Greenlet,
                stack_size,
                stack_kind,
                spawned_at,
            ));
            std::ptr::addr_of_mut!((*slot).stage).write(RefCell::new(Stage::Unrun(f)));
            rc.assume_init()
        };
        let typed = NonNull::from(&*body as &dyn TypedTask<T>);
        let greenlet = GreenletRef { task: TaskRef::new(body) };
        with_hub(|hub| hub.observe_spawn(&greenlet.task));
        Greenlet { greenlet, typed }
    }

    /// The greenlet, seen with the type of its value.
    fn typed(&self) -> &(dyn TypedTask<T> + 'static) {
        // SAFETY: by the invariant of `typed`, `self.greenlet` keeps the task alive.
        unsafe { self.typed.as_ref() }
    }

    /// Schedules the greenlet to run (FIFO, once the caller blocks or yields). Starting a
    /// greenlet twice, or a dead one, does nothing.
    pub fn start(&self) {
        let core = self.typed().core();
        if core.scheduled.replace(true) || core.is_dead() {
            return;
        }
        with_hub(|hub| hub.schedule(self.greenlet.task.clone()));
    }

    /// Schedules the greenlet to run after `delay`.
    pub fn start_later(&self, delay: Duration) {
        let core = self.typed().core();
        if core.scheduled.replace(true) || core.is_dead() {
            return;
        }
        let at = Instant::now() + delay;
        let timer =
            with_hub(|hub| hub.add_timer(at, TimerAction::Start(self.greenlet.task.clone())));
        core.set_start_timer(timer);
    }

    /// Waits until the greenlet is dead, then returns a clone of its value (gevent's
    /// `get()`): every call, on any clone of the handle, gets the value again. A panic or
    /// kill is reported on every call. For a value that is not `Clone`, see
    /// [`take`](Greenlet::take).
    ///
    /// ```
    /// let g = verdant_hub::spawn(|| "twice".to_string());
    /// assert_eq!(g.get().as_deref(), Ok("twice"));
    /// assert_eq!(g.get().as_deref(), Ok("twice"));
    /// ```
    pub fn get(&self) -> Result<T, GreenletError>
    where
        T: Clone,
    {
        self.greenlet.join();
        self.failure()?;
        Greenlet::<T>::value_of(self.typed().read())
    }

    /// Waits until the greenlet is dead, then moves its value out. The value can be taken
    /// once: later `take`s and `get`s (on any clone) return [`GreenletError::Taken`]. A
    /// panic or kill is reported on every call.
    ///
    /// ```
    /// use verdant_hub::GreenletError;
    ///
    /// let g = verdant_hub::spawn(|| Box::new(42)); // any type, Clone or not
    /// assert_eq!(g.take(), Ok(Box::new(42)));
    /// assert_eq!(g.take(), Err(GreenletError::Taken));
    /// ```
    pub fn take(&self) -> Result<T, GreenletError> {
        self.greenlet.join();
        self.failure()?;
        Greenlet::<T>::value_of(self.typed().take_value())
    }

    /// A clone of the value if the greenlet is dead and succeeded (and the value was not
    /// taken); `None` otherwise, without waiting (gevent's `value`).
    ///
    /// ```
    /// let g = verdant_hub::spawn(|| 6 * 7);
    /// assert_eq!(g.value(), None); // not run yet
    /// g.join();
    /// assert_eq!(g.value(), Some(42));
    /// ```
    pub fn value(&self) -> Option<T>
    where
        T: Clone,
    {
        match self.typed().read() {
            Outcome::Value(value) => Some(value),
            _ => None,
        }
    }

    /// The error of a dead greenlet that failed.
    fn failure(&self) -> Result<(), GreenletError> {
        self.typed().core().outcome().unwrap_or(Ok(()))
    }

    /// The value read from a greenlet that is dead and did not fail.
    fn value_of(read: Outcome<T, Infallible>) -> Result<T, GreenletError> {
        match read {
            Outcome::Value(value) => Ok(value),
            Outcome::Taken => Err(GreenletError::Taken),
            Outcome::Pending => unreachable!("a greenlet that succeeded stored its value"),
        }
    }

    /// Registers `callback` to run once, right after the greenlet dies (whatever the
    /// outcome). It runs in the greenlet's own context after its body, or, for a greenlet
    /// killed before it started, in the killer's. If the greenlet is already dead, the
    /// callback runs now. A panic in a callback is printed and does not affect others.
    ///
    /// The callback gets the handle: it reads the value like anyone else (`get` leaves it
    /// for the next reader). To copy the outcome into a `verdant_sync::AsyncResult`
    /// (gevent's `greenlet.link(async_result)`), link its `link_target()`.
    ///
    /// Links run one at a time, in the order they were added; one that is running may
    /// [`unlink`](GreenletRef::unlink) a later one, which then does not run (as in gevent).
    ///
    /// ```
    /// use std::cell::Cell;
    /// use std::rc::Rc;
    ///
    /// let g = verdant_hub::spawn(|| 6 * 7);
    /// let seen = Rc::new(Cell::new(0));
    /// let s = seen.clone();
    /// g.link(move |g| s.set(g.get().unwrap()));
    /// assert_eq!(g.get(), Ok(42)); // the link ran first, and did not use the value up
    /// assert_eq!(seen.get(), 42);
    /// ```
    pub fn link(&self, callback: impl FnOnce(&Greenlet<T>) + 'static) -> LinkId {
        let me = self.clone();
        self.greenlet.add_link(Box::new(move || callback(&me)))
    }

    /// Like [`link`](Greenlet::link), but the callback runs only if the greenlet succeeded
    /// (gevent's `link_value`). Unlinked like any link, with the id it returns.
    ///
    /// ```
    /// use std::cell::Cell;
    /// use std::rc::Rc;
    ///
    /// let called = Rc::new(Cell::new(0));
    /// let ok = verdant_hub::spawn(|| 1);
    /// let bad = verdant_hub::spawn(|| -> i32 { panic!("no value") });
    /// for g in [&ok, &bad] {
    ///     let called = called.clone();
    ///     g.link_value(move |g| called.set(called.get() + g.get().unwrap()));
    /// }
    /// verdant_hub::joinall(&[&ok, &bad], verdant_hub::WaitFor::all());
    /// assert_eq!(called.get(), 1); // only `ok`'s ran
    /// ```
    pub fn link_value(&self, callback: impl FnOnce(&Greenlet<T>) + 'static) -> LinkId {
        self.link(move |g| {
            if g.successful() {
                callback(g);
            }
        })
    }

    /// Like [`link`](Greenlet::link), but the callback runs only if the greenlet failed:
    /// panicked, was killed or could not start (gevent's `link_exception`).
    pub fn link_exception(&self, callback: impl FnOnce(&Greenlet<T>) + 'static) -> LinkId {
        self.link(move |g| {
            if !g.successful() {
                callback(g);
            }
        })
    }

    /// An untyped handle to the same greenlet.
    pub fn as_ref(&self) -> GreenletRef {
        self.greenlet.clone()
    }
}

impl<T> Deref for Greenlet<T> {
    type Target = GreenletRef;

    /// The untyped handle: `join`, `kill`, `ready`, `error` and the other methods that do
    /// not need the value's type.
    fn deref(&self) -> &GreenletRef {
        &self.greenlet
    }
}

impl<T> Clone for Greenlet<T> {
    fn clone(&self) -> Self {
        Greenlet { greenlet: self.greenlet.clone(), typed: self.typed }
    }
}

impl<T> fmt::Debug for Greenlet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_core(self.greenlet.task.core(), f)
    }
}

/// An untyped handle to a greenlet (or to the main code, from [`current`]): what every
/// handle can do without knowing the type of the greenlet's value. A [`Greenlet<T>`]
/// derefs to one, so these methods work on both.
///
/// ```compile_fail,E0277
/// fn assert_send<T: Send>() {}
/// assert_send::<verdant_hub::GreenletRef>();
/// ```
#[derive(Clone)]
pub struct GreenletRef {
    task: TaskRef,
}

impl GreenletRef {
    /// Id of the greenlet, unique within its hub (the main code is 0).
    pub fn id(&self) -> u64 {
        self.task.core().id
    }

    /// The name given with [`Builder::name`], if any.
    pub fn name(&self) -> Option<&str> {
        self.task.core().name()
    }

    /// Whether the greenlet is dead: its body returned, panicked or was killed.
    pub fn ready(&self) -> bool {
        self.task.core().is_dead()
    }

    /// Whether the greenlet is dead and its body returned normally.
    pub fn successful(&self) -> bool {
        self.task.core().succeeded()
    }

    /// Whether the greenlet was scheduled to start (by `spawn`, `start` or `start_later`).
    pub fn started(&self) -> bool {
        self.task.core().scheduled.get()
    }

    /// The error the greenlet died with, if it is dead and did not succeed.
    pub fn error(&self) -> Option<GreenletError> {
        self.task.core().outcome().and_then(Result::err)
    }

    /// Waits until the greenlet is dead.
    ///
    /// # Panics
    ///
    /// When a greenlet joins itself, and (from the main code) on deadlock.
    pub fn join(&self) {
        join_until(&self.task, None);
    }

    /// Waits at most `timeout` for the greenlet to die. Returns whether it is dead.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        join_until(&self.task, Instant::now().checked_add(timeout))
    }

    /// Kills the greenlet and waits until it is dead, i.e. its cleanup has run (gevent's
    /// `kill()`, `block=True`). From the greenlet itself, it unwinds at once.
    ///
    /// The greenlet unwinds from its current blocking point, running its destructors, and
    /// ends as [`GreenletError::Killed`]. A greenlet that has not started never runs;
    /// killing a dead greenlet does nothing. A kill that arrives while the target is
    /// already unwinding (it blocks inside a destructor) waits until that unwinding is
    /// over: cleanup is never cut short.
    ///
    /// ```
    /// let g = verdant_hub::spawn(|| verdant_hub::sleep(std::time::Duration::from_secs(3600)));
    /// verdant_hub::yield_now(); // it sleeps now
    /// g.kill();
    /// assert_eq!(g.error(), Some(verdant_hub::GreenletError::Killed));
    /// ```
    ///
    /// # Limits
    ///
    /// * A kill is an unwind. The target's own `std::panic::catch_unwind` around the
    ///   blocking point swallows it, and the greenlet lives on (like Python code catching
    ///   `GreenletExit`). Catch panics with [`catch_panic`](crate::catch_panic), which lets
    ///   kills and timeouts through; every catch in verdant does.
    /// * Built with `panic = "abort"`, there is no unwinding: a kill or a `with_timeout`
    ///   expiry aborts the process.
    /// * A greenlet that computes without ever blocking is not interrupted: the kill waits
    ///   for its next blocking point.
    pub fn kill(&self) {
        self.kill_until(None);
    }

    /// Kills the greenlet without waiting for it to die (gevent's `kill(block=False)`):
    /// it unwinds when it next runs. A greenlet that had not started is dead at once.
    pub fn kill_nowait(&self) {
        kill_task(&self.task);
    }

    /// Kills the greenlet and waits at most `timeout` for it to die (gevent's
    /// `kill(timeout=t)`). Returns whether it is dead.
    pub fn kill_timeout(&self, timeout: Duration) -> bool {
        self.kill_until(Instant::now().checked_add(timeout))
    }

    fn kill_until(&self, deadline: Option<Instant>) -> bool {
        kill_task(&self.task);
        if !with_hub(|hub| hub.is_current(self.task.core())) {
            join_until(&self.task, deadline);
        }
        self.task.core().is_dead()
    }

    /// Removes a link callback that has not run yet. Returns whether it was removed.
    pub fn unlink(&self, id: LinkId) -> bool {
        self.task.core().remove_link(id.0)
    }

    /// Whether this handle stands for the thread's main code rather than a greenlet.
    pub fn is_main(&self) -> bool {
        self.task.core().is_main()
    }

    /// Like [`Greenlet::link`], for an untyped handle.
    pub fn link(&self, callback: impl FnOnce(&GreenletRef) + 'static) -> LinkId {
        let me = self.clone();
        self.add_link(Box::new(move || callback(&me)))
    }

    /// Registers `waker` to be woken when this greenlet dies: what `join` is built on, and
    /// what lets other crates wait on greenlets (`verdant::sync::wait`). A greenlet that
    /// is dead already wakes nobody: check [`ready`](Self::ready) first, as `join` does.
    pub fn add_joiner(&self, waker: park::Waker) {
        self.task.core().add_joiner(waker);
    }

    fn add_link(&self, callback: Box<dyn FnOnce()>) -> LinkId {
        let id = with_hub(|hub| hub.next_id());
        let core = self.task.core();
        if core.is_dead() {
            callback();
        } else {
            core.add_link(id, LinkCallback::Call(callback));
        }
        LinkId(id)
    }

    /// Links a shared hook: when this greenlet dies, `hook.finished` is told which
    /// greenlet it was and the `token` given here (if the hook is still alive). Unlike
    /// [`link`](GreenletRef::link) this allocates nothing per greenlet, which is what
    /// groups with many members want. If the greenlet is already dead, the hook is called
    /// now.
    pub fn link_hook(&self, hook: std::rc::Weak<dyn LinkHook>, token: usize) -> LinkId {
        let id = with_hub(|hub| hub.next_id());
        let core = self.task.core();
        if core.is_dead() {
            if let Some(hook) = hook.upgrade() {
                hook.finished(token);
            }
        } else {
            core.add_link(id, LinkCallback::Hook(hook, token));
        }
        LinkId(id)
    }
}

impl PartialEq for GreenletRef {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.task.core(), other.task.core())
    }
}

impl Eq for GreenletRef {}

impl fmt::Debug for GreenletRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_core(self.task.core(), f)
    }
}

fn debug_core(core: &Core, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let mut d = f.debug_struct("Greenlet");
    d.field("id", &core.id);
    if let Some(name) = core.name() {
        d.field("name", &name);
    }
    d.field("state", &core.state());
    match core.outcome() {
        None => d.field("dead", &false),
        Some(outcome) => d.field("outcome", &outcome),
    };
    d.finish()
}

/// Anything that names a greenlet: a typed or untyped handle.
pub trait AsGreenlet {
    /// An untyped handle to the greenlet.
    fn as_greenlet(&self) -> GreenletRef;
}

impl<T: 'static> AsGreenlet for Greenlet<T> {
    fn as_greenlet(&self) -> GreenletRef {
        self.as_ref()
    }
}

impl AsGreenlet for GreenletRef {
    fn as_greenlet(&self) -> GreenletRef {
        self.clone()
    }
}

/// So that a list of borrowed handles (`&[&a, &b]`) can be joined or killed.
impl<G: AsGreenlet + ?Sized> AsGreenlet for &G {
    fn as_greenlet(&self) -> GreenletRef {
        (**self).as_greenlet()
    }
}

/// Waits for the greenlets to die (gevent's `joinall(greenlets, timeout, count)`): all of
/// them, or the first [`WaitFor::count`], giving up after [`WaitFor::timeout`]. Returns the
/// indices of the greenlets that are dead, in the order they died (those found dead at
/// the same look in index order). Failures are not raised: see [`joinall_raising`].
///
/// ```
/// use verdant_hub::{WaitFor, joinall, spawn};
/// let gs: Vec<_> = (0..3).map(|i| spawn(move || i)).collect();
/// assert_eq!(joinall(&gs, WaitFor::all()), [0, 1, 2]);
/// assert!(gs.iter().all(|g| g.successful()));
/// ```
///
/// # Panics
///
/// When a greenlet waits for itself, and (from the main code) on deadlock.
pub fn joinall<'a, G: AsGreenlet + 'a>(
    greenlets: impl IntoIterator<Item = &'a G>,
    wait: WaitFor,
) -> Vec<usize> {
    let tasks = tasks_of(greenlets);
    join_in_order(&tasks, wait, |_| Ok(())).unwrap_or_else(|never: Infallible| match never {})
}

/// Like [`joinall`], but stops at the first greenlet that died of a failure, in the order
/// they died, and returns its error (gevent's `joinall(..., raise_error=True)`).
///
/// ```
/// use verdant_hub::{GreenletError, WaitFor, joinall_raising, spawn};
/// let ok = spawn(|| 1);
/// let bad = spawn(|| -> i32 { panic!("second") });
/// let error = joinall_raising(&[ok, bad], WaitFor::all()).unwrap_err();
/// assert!(matches!(error, GreenletError::Panicked(p) if p.message() == "second"));
/// ```
pub fn joinall_raising<'a, G: AsGreenlet + 'a>(
    greenlets: impl IntoIterator<Item = &'a G>,
    wait: WaitFor,
) -> Result<Vec<usize>, GreenletError> {
    let tasks = tasks_of(greenlets);
    join_in_order(&tasks, wait, |task| task.core().outcome().unwrap_or(Ok(())))
}

/// Kills every greenlet, then waits until all are dead (gevent's `killall`, `block=True`).
/// A greenlet killing a group it belongs to does not wait for itself.
pub fn killall<'a, G: AsGreenlet + 'a>(greenlets: impl IntoIterator<Item = &'a G>) {
    killall_until(tasks_of(greenlets), None);
}

/// Kills every greenlet without waiting for them to die (`killall(block=False)`).
pub fn killall_nowait<'a, G: AsGreenlet + 'a>(greenlets: impl IntoIterator<Item = &'a G>) {
    tasks_of(greenlets).iter().for_each(kill_task);
}

/// Kills every greenlet and waits at most `timeout` for all of them to die
/// (`killall(timeout=t)`). Returns whether all are dead.
pub fn killall_timeout<'a, G: AsGreenlet + 'a>(
    greenlets: impl IntoIterator<Item = &'a G>,
    timeout: Duration,
) -> bool {
    killall_until(tasks_of(greenlets), Instant::now().checked_add(timeout))
}

fn killall_until(tasks: Vec<TaskRef>, deadline: Option<Instant>) -> bool {
    tasks.iter().for_each(kill_task);
    let me = with_hub(|hub| hub.current_task());
    let mut others = tasks.iter().filter(|task| !TaskRef::ptr_eq(task, &me));
    others.all(|task| join_until(task, deadline))
}

fn tasks_of<'a, G: AsGreenlet + 'a>(greenlets: impl IntoIterator<Item = &'a G>) -> Vec<TaskRef> {
    greenlets.into_iter().map(|g| g.as_greenlet().task).collect()
}

/// Waits for `wait.count` of `tasks` to die, recording each in the order it died, and
/// stops early with the error `check` returns for one of them.
fn join_in_order<E>(
    tasks: &[TaskRef],
    wait: WaitFor,
    mut check: impl FnMut(&TaskRef) -> Result<(), E>,
) -> Result<Vec<usize>, E> {
    let (wanted, deadline) = (wait.wanted(tasks.len()), wait.deadline());
    let mut done = Vec::with_capacity(wanted);
    let mut seen = vec![false; tasks.len()];
    loop {
        for (i, task) in tasks.iter().enumerate() {
            if done.len() < wanted && !seen[i] && task.core().is_dead() {
                seen[i] = true;
                check(task)?;
                done.push(i);
            }
        }
        if done.len() >= wanted {
            return Ok(done);
        }
        let pending = || tasks.iter().zip(&seen).filter(|(_, seen)| !**seen);
        let register = |waker: park::Waker| {
            for (task, _) in pending() {
                refuse_self_join(task.core());
                task.core().add_joiner(waker.clone());
            }
        };
        let reason = &"the end of some of several greenlets (joinall)";
        if !park::wait_until(reason, deadline, register, || {
            pending().any(|(t, _)| t.core().is_dead())
        }) {
            return Ok(done);
        }
    }
}

fn refuse_self_join(core: &Core) {
    if with_hub(|hub| hub.is_current(core)) {
        panic!("verdant: {} tried to join itself, which would never return", core.describe());
    }
}

/// Waits until `task` is dead or `deadline` passes; returns whether it is dead.
fn join_until(task: &TaskRef, deadline: Option<Instant>) -> bool {
    let core = task.core();
    let register = |waker| {
        refuse_self_join(core);
        core.add_joiner(waker);
    };
    park::wait_until(&JoinReason(core), deadline, register, || core.is_dead())
}

/// What a `join` waits on, for deadlock reports (formatted only if one is made).
struct JoinReason<'a>(&'a Core);

impl fmt::Display for JoinReason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the end of {} (join)", self.0.describe())
    }
}

/// Delivers a kill to `task`, as described on [`GreenletRef::kill`].
fn kill_task(task: &TaskRef) {
    let core = task.core();
    if core.is_dead() || core.is_main() {
        return;
    }
    match core.state() {
        State::New => {
            core.set_state(State::Done);
            if let Some(stack) = core.take_reserved_stack() {
                with_hub(|hub| hub.stacks().give_back(stack));
            }
            if let Some(timer) = core.take_start_timer() {
                with_hub(|hub| hub.cancel_timer(timer));
            }
            task.abort(GreenletError::Killed);
        }
        State::Running => {
            core.post_interrupt(Interrupt::Kill);
            with_hub(|hub| hub.raise_pending_interrupt());
        }
        State::Ready | State::Parked => with_hub(|hub| hub.interrupt(task, Interrupt::Kill)),
        State::Done => {}
    }
}
