//! The blocked-hub monitor (gevent's `max_blocking_time`): one thread per process that
//! notices when a greenlet holds its hub too long, and says which greenlet.
//!
//! Cooperative scheduling has one failure nobody sees coming: a greenlet that computes for
//! a second, or calls a blocking function, stops every other greenlet of its hub. The
//! monitor is opt-in ([`HubConfig::max_blocking_time`](crate::HubConfig), or the
//! `VERDANT_MAX_BLOCKING_TIME` environment variable, in seconds as gevent's
//! `GEVENT_MAX_BLOCKING_TIME`). Off, it costs nothing; on, it costs the switch path
//! nothing either: it watches the switch counter every hub keeps anyway.
//!
//! How it works, in three steps:
//!
//! 1. **Watch.** Each watched hub publishes, in its [`Watch`], the switch counter and its
//!    phase: outside the loop (the thread's main code runs), running the loop (a greenlet
//!    or the loop's own code runs), or idle in `epoll_wait`. The phase changes only when
//!    the loop is entered or left and around a blocking poll, never per switch.
//! 2. **Notice.** Every quarter of the threshold the monitor thread samples each watched
//!    hub. A hub that is running, not idle, and has not switched since the previous
//!    samples for longer than its threshold is blocked.
//! 3. **Name.** The monitor sends the hub's thread `SIGURG` (ignored by default, and what
//!    Go uses for the same purpose). The handler runs on that thread, between two
//!    instructions of the blocking code, and looks at the interrupted stack pointer: on
//!    the thread's own stack, the loop itself (or code it called) is busy; elsewhere, the
//!    greenlet the loop last resumed is running, so its `Core` is alive, and the handler
//!    copies its id, name and spawn location into the watch. The monitor thread builds
//!    the [`BlockingReport`] and hands it to the reporter; nothing of that runs on the hub.
//!
//! Each blocking episode is reported once. The default reporter writes one line through
//! [`report`](crate::report), which never blocks; [`set_blocking_reporter`] replaces it.
//! [`HubStats::blocking_reports`](crate::HubStats) counts the reports per hub.
//!
//! The thread's main code between two hub calls is not watched: while it runs, the hub is
//! not running at all.
//!
//! # `SIGQUIT`: run information
//!
//! While the monitor watches a hub, `SIGQUIT` (Ctrl-\\ in a terminal) no longer ends the process:
//! its handler only sets a flag; the monitor thread sees it, posts a job to every watched
//! hub that formats the hub's [`dump`](crate::dump), and writes what comes back to stderr
//! (the monitor thread may block on stderr; no hub does). A hub that is blocked answers
//! once it runs its inbox again; the monitor's blocking report already names the culprit.
//! Once no hub is watched (they ended, or the monitor was turned off), `SIGQUIT` ends the
//! process as it does by default.

use std::cell::Cell;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Once, OnceLock};
use std::time::{Duration, Instant};

use libc::{c_int, c_void, siginfo_t};

use crate::remote::RemoteHandle;
use crate::task::Core;

/// The environment variable that turns the monitor on for every hub: the threshold in
/// seconds (`0.1` is 100 ms), as gevent's `GEVENT_MAX_BLOCKING_TIME`.
pub const MAX_BLOCKING_TIME_ENV: &str = "VERDANT_MAX_BLOCKING_TIME";

/// The longest greenlet name a report carries; longer names are cut.
const NAME_BYTES: usize = 64;

/// How deep below its entry the loop's own frames may reach.
const LOOP_STACK_SPAN: usize = 8 << 20;

/// How long the monitor waits for a probed hub thread to answer.
const PROBE_TIMEOUT: Duration = Duration::from_millis(50);

/// What the hub is doing, as the monitor sees it.
const OUTSIDE: u8 = 0;
const RUNNING: u8 = 1;
const IDLE: u8 = 2;

/// A hub blocked for longer than its threshold: what the monitor saw.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BlockingReport {
    /// The name of the hub's thread (or its id, if it has no name).
    pub thread: String,
    /// The greenlet that held the hub; `None` when the hub's own loop code (a timer
    /// callback, a cross-thread job) was busy, or the greenlet could not be named.
    pub greenlet: Option<BlockedGreenlet>,
    /// How long the hub had not switched when the monitor noticed.
    pub blocked_for: Duration,
    /// The hub's [`max_blocking_time`](crate::HubConfig::max_blocking_time).
    pub threshold: Duration,
}

/// The greenlet named in a [`BlockingReport`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BlockedGreenlet {
    /// Its id ([`GreenletRef::id`](crate::GreenletRef::id)).
    pub id: u64,
    /// Its name, if it has one (cut to 64 bytes).
    pub name: Option<String>,
    /// Where it was spawned (`spawn`, `Builder::spawn`, `Greenlet::new`, ...).
    pub spawned_at: &'static Location<'static>,
}

impl std::fmt::Display for BlockingReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.greenlet {
            Some(g) => {
                write!(f, "verdant: greenlet ")?;
                match &g.name {
                    Some(name) => write!(f, "'{name}' (id {})", g.id)?,
                    None => write!(f, "{}", g.id)?,
                }
                write!(f, ", spawned at {},", g.spawned_at)?;
            }
            None => write!(f, "verdant: the hub's own loop code")?,
        }
        write!(
            f,
            " has blocked the hub of thread '{}' for {} ms (max_blocking_time {} ms): \
             it neither blocked nor yielded",
            self.thread,
            self.blocked_for.as_millis(),
            self.threshold.as_millis()
        )
    }
}

/// Replaces the process-wide reporter of blocked hubs (by default, one line through
/// [`report`](crate::report::report)). It runs on the monitor thread, never on a hub.
///
/// ```
/// verdant_hub::set_blocking_reporter(|report| eprintln!("{report}"));
/// ```
pub fn set_blocking_reporter(reporter: impl Fn(&BlockingReport) + Send + Sync + 'static) {
    *reporter_slot().lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(reporter);
}

type Reporter = Arc<dyn Fn(&BlockingReport) + Send + Sync>;

fn reporter_slot() -> &'static Mutex<Reporter> {
    static REPORTER: OnceLock<Mutex<Reporter>> = OnceLock::new();
    REPORTER.get_or_init(|| Mutex::new(Arc::new(|r| crate::report::report(r.to_string()))))
}

/// The threshold `VERDANT_MAX_BLOCKING_TIME` sets for new hubs, read once. A value that is
/// not a positive number of seconds is reported once and ignored.
pub(crate) fn threshold_from_env() -> Option<Duration> {
    static FROM_ENV: OnceLock<Option<Duration>> = OnceLock::new();
    *FROM_ENV.get_or_init(|| {
        let value = std::env::var(MAX_BLOCKING_TIME_ENV).ok()?;
        match value.trim().parse::<f64>() {
            Ok(seconds) if seconds > 0.0 && seconds.is_finite() => {
                Some(Duration::from_secs_f64(seconds))
            }
            _ => {
                crate::report::report(format!(
                    "verdant: {MAX_BLOCKING_TIME_ENV}={value:?} is not a positive number of \
                     seconds (such as 0.1); the blocked-hub monitor stays off"
                ));
                None
            }
        }
    })
}

/// What one hub shares with the monitor thread. Lives inside the hub (in its
/// thread-local), so the switch counter is bumped with no extra indirection.
#[derive(Default)]
pub(crate) struct Watch {
    /// Times the loop resumed a greenlet (`HubStats::switches`). Only the hub thread
    /// writes it (a relaxed load and store: the same instructions as a `Cell`).
    switches: AtomicU64,
    /// `OUTSIDE`, `RUNNING` or `IDLE`.
    phase: AtomicU8,
    /// Blocking episodes reported for this hub.
    reports: AtomicU64,
    /// Where the loop's frames start: the main code may run on a stack other than the
    /// thread's own (another coroutine library), and the loop then runs there too.
    loop_sp: AtomicUsize,
    /// Whether the monitor watches this hub now.
    watched: AtomicBool,
    /// Filled in by the probe handler on the hub's thread.
    probe: Probe,
}

impl Watch {
    /// Counts one switch.
    #[inline(always)]
    pub(crate) fn count_switch(&self) {
        let n = self.switches.load(Ordering::Relaxed);
        self.switches.store(n + 1, Ordering::Relaxed);
    }

    pub(crate) fn switches(&self) -> u64 {
        self.switches.load(Ordering::Relaxed)
    }

    pub(crate) fn reports(&self) -> u64 {
        self.reports.load(Ordering::Relaxed)
    }

    /// The loop starts running (the main code blocked), with its frames at and below
    /// `sp` (the address of a local of the loop's entry).
    #[inline]
    pub(crate) fn enter_loop(&self, sp: usize) {
        self.loop_sp.store(sp, Ordering::Relaxed);
        self.phase.store(RUNNING, Ordering::Relaxed);
    }

    /// The loop returns to the main code.
    #[inline]
    pub(crate) fn leave_loop(&self) {
        self.phase.store(OUTSIDE, Ordering::Relaxed);
    }

    /// The loop is about to wait in `epoll_wait` (`idle`), or is back from it.
    #[inline]
    pub(crate) fn set_idle(&self, idle: bool) {
        self.phase.store(if idle { IDLE } else { RUNNING }, Ordering::Relaxed);
    }

    /// Starts or stops watching this hub (reachable through `hub`), or changes its
    /// threshold. Called on the hub's thread, with the hub in its final place (its
    /// thread-local).
    pub(crate) fn set_threshold(&self, threshold: Option<Duration>, hub: RemoteHandle) {
        let mut watched = registry();
        watched.entries.retain(|e| !std::ptr::eq(e.watch.0, self));
        WATCHED_HUBS.store(watched.entries.len(), Ordering::Release);
        self.watched.store(false, Ordering::Relaxed);
        let Some(threshold) = threshold else {
            ThreadInfo::withdraw();
            return;
        };
        install_probe_handler();
        install_quit_handler();
        ThreadInfo::publish(self);
        let thread = std::thread::current();
        let name = thread.name().map_or_else(|| format!("{:?}", thread.id()), str::to_string);
        watched.entries.push(Entry {
            watch: WatchPtr(self),
            // SAFETY: pthread_self has no preconditions.
            thread: unsafe { libc::pthread_self() },
            hub,
            name,
            threshold,
            seen: self.switches(),
            since: Instant::now(),
            reported: false,
        });
        WATCHED_HUBS.store(watched.entries.len(), Ordering::Release);
        self.watched.store(true, Ordering::Relaxed);
        drop(watched);
        start_monitor_thread();
        MONITOR.wake.notify_one();
    }

    /// Stops watching (the hub is being destroyed). Once this returns, the monitor thread
    /// no longer touches the watch.
    pub(crate) fn unwatch(&self) {
        if self.watched.load(Ordering::Relaxed) {
            let mut watched = registry();
            watched.entries.retain(|e| !std::ptr::eq(e.watch.0, self));
            WATCHED_HUBS.store(watched.entries.len(), Ordering::Release);
            self.watched.store(false, Ordering::Relaxed);
            drop(watched);
            ThreadInfo::withdraw();
        }
    }
}

/// What the probe handler copies out of the running greenlet's `Core`. Atomics, because
/// another thread reads them after `ready` is set (with release/acquire ordering).
struct Probe {
    /// Set by the monitor before it signals the thread; the handler only answers (and
    /// clears it) when set, so a `SIGURG` meant for someone else is passed on.
    requested: AtomicBool,
    /// Set by the handler when the fields below are filled in.
    ready: AtomicBool,
    /// Whether a greenlet was running (else the loop's own code was).
    in_greenlet: AtomicBool,
    id: AtomicU64,
    name_len: AtomicUsize,
    name: [AtomicU8; NAME_BYTES],
    has_name: AtomicBool,
    spawned_at: AtomicPtr<Location<'static>>,
}

impl Default for Probe {
    fn default() -> Probe {
        Probe {
            requested: AtomicBool::new(false),
            ready: AtomicBool::new(false),
            in_greenlet: AtomicBool::new(false),
            id: AtomicU64::new(0),
            name_len: AtomicUsize::new(0),
            name: std::array::from_fn(|_| AtomicU8::new(0)),
            has_name: AtomicBool::new(false),
            spawned_at: AtomicPtr::new(std::ptr::null_mut()),
        }
    }
}

impl Probe {
    /// Reads the answer (after `ready` was seen set).
    fn read(&self) -> Option<BlockedGreenlet> {
        if !self.in_greenlet.load(Ordering::Relaxed) {
            return None;
        }
        let spawned_at = self.spawned_at.load(Ordering::Relaxed);
        // SAFETY: the handler stored a `&'static Location` (never null when
        // `in_greenlet` is set): it came from a `Core`, which records one at creation.
        let spawned_at: &'static Location<'static> = unsafe { &*spawned_at };
        let name = self.has_name.load(Ordering::Relaxed).then(|| {
            let len = self.name_len.load(Ordering::Relaxed);
            let bytes: Vec<u8> =
                self.name[..len].iter().map(|b| b.load(Ordering::Relaxed)).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        });
        Some(BlockedGreenlet { id: self.id.load(Ordering::Relaxed), name, spawned_at })
    }
}

/// The address of a hub's [`Watch`], as the monitor thread holds it.
///
/// # Invariant
///
/// Valid while its [`Entry`] is in the registry: a hub removes its entry (under the
/// registry's lock) before it is destroyed, and the monitor only dereferences it while
/// holding that lock.
struct WatchPtr(*const Watch);

// SAFETY: the monitor thread only reads the watch's atomics, under the invariant above.
unsafe impl Send for WatchPtr {}

/// One watched hub.
struct Entry {
    watch: WatchPtr,
    thread: libc::pthread_t,
    /// Where `SIGQUIT` posts the job that dumps the hub's run information.
    hub: RemoteHandle,
    name: String,
    threshold: Duration,
    /// The switch count at the last sample where it changed, and when that was.
    seen: u64,
    since: Instant,
    /// Whether the current episode (no switch since `since`) was reported.
    reported: bool,
}

#[derive(Default)]
struct Registry {
    entries: Vec<Entry>,
}

struct Monitor {
    registry: Mutex<Registry>,
    wake: Condvar,
}

static MONITOR: Monitor =
    Monitor { registry: Mutex::new(Registry { entries: Vec::new() }), wake: Condvar::new() };

fn registry() -> MutexGuard<'static, Registry> {
    MONITOR.registry.lock().unwrap_or_else(|e| e.into_inner())
}

fn start_monitor_thread() {
    static START: Once = Once::new();
    START.call_once(|| {
        let started = std::thread::Builder::new().name("verdant-monitor".into()).spawn(monitor);
        if let Err(err) = started {
            crate::report::report(format!(
                "verdant: cannot start the blocked-hub monitor thread: {err}"
            ));
        }
    });
}

/// The monitor thread: samples every watched hub, reports the blocked ones.
fn monitor() {
    loop {
        let mut watched = registry();
        while watched.entries.is_empty() {
            watched = MONITOR.wake.wait(watched).unwrap_or_else(|e| e.into_inner());
        }
        let period = watched.entries.iter().map(|e| e.threshold).min().unwrap_or_default() / 4;
        let period = period.clamp(Duration::from_millis(1), Duration::from_millis(250));
        drop(watched);
        print_run_info(period);
        let reports = sample(&mut registry());
        if !reports.is_empty() {
            let reporter = reporter_slot().lock().unwrap_or_else(|e| e.into_inner()).clone();
            for report in &reports {
                reporter(report);
            }
        }
    }
}

/// Run information that hubs formatted after a `SIGQUIT`, for the monitor thread to print.
static RUN_INFO: Mutex<Option<std::sync::mpsc::Sender<String>>> = Mutex::new(None);

/// Set by the `SIGQUIT` handler.
static QUIT_REQUESTED: AtomicBool = AtomicBool::new(false);

/// How many hubs the monitor watches (the registry's length, readable by the `SIGQUIT`
/// handler, which must not take a lock).
static WATCHED_HUBS: AtomicUsize = AtomicUsize::new(0);

/// Waits `period`, printing the run information hubs send meanwhile; when a `SIGQUIT`
/// arrived, first asks every watched hub for it.
fn print_run_info(period: Duration) {
    thread_local! {
        static RECEIVER: std::cell::RefCell<Option<std::sync::mpsc::Receiver<String>>> =
            const { std::cell::RefCell::new(None) };
    }
    RECEIVER.with(|receiver| {
        let mut receiver = receiver.borrow_mut();
        let receiver = receiver.get_or_insert_with(|| {
            let (sender, receiver) = std::sync::mpsc::channel();
            *RUN_INFO.lock().unwrap_or_else(|e| e.into_inner()) = Some(sender);
            receiver
        });
        if QUIT_REQUESTED.swap(false, Ordering::Acquire) {
            request_run_info();
        }
        let deadline = Instant::now() + period;
        while let Ok(text) =
            receiver.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            use std::io::Write as _;
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
        }
    });
}

/// Posts to every watched hub a job that sends its run information to the monitor.
fn request_run_info() {
    // Copied out first: hubs take the registry's lock (to be watched, or when they end),
    // and stderr may block.
    let hubs: Vec<RemoteHandle> = registry().entries.iter().map(|e| e.hub.clone()).collect();
    let _ = writeln_stderr(&format!(
        "verdant: SIGQUIT: run information of {} watched hub(s) follows",
        hubs.len()
    ));
    for hub in &hubs {
        let _ = hub.post(|| {
            let text = crate::dump().to_string();
            if let Some(sender) = RUN_INFO.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                let _ = sender.send(text);
            }
        });
    }
}

fn writeln_stderr(line: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    writeln!(std::io::stderr().lock(), "{line}")
}

/// Looks at every watched hub once; probes and returns the newly blocked ones.
fn sample(watched: &mut Registry) -> Vec<BlockingReport> {
    let now = Instant::now();
    let mut reports = Vec::new();
    for entry in &mut watched.entries {
        // SAFETY: by the invariant of `WatchPtr`: its entry is registered and we hold
        // the registry's lock.
        let watch = unsafe { &*entry.watch.0 };
        let switches = watch.switches();
        if watch.phase.load(Ordering::Relaxed) != RUNNING || switches != entry.seen {
            entry.seen = switches;
            entry.since = now;
            entry.reported = false;
            continue;
        }
        let blocked_for = now - entry.since;
        if entry.reported || blocked_for < entry.threshold {
            continue;
        }
        entry.reported = true;
        watch.reports.fetch_add(1, Ordering::Relaxed);
        reports.push(BlockingReport {
            thread: entry.name.clone(),
            greenlet: probe(watch, entry.thread),
            blocked_for,
            threshold: entry.threshold,
        });
    }
    reports
}

/// Asks the hub's thread which greenlet runs; `None` if the loop's own code does, or the
/// thread does not answer in time.
fn probe(watch: &Watch, thread: libc::pthread_t) -> Option<BlockedGreenlet> {
    let probe = &watch.probe;
    probe.ready.store(false, Ordering::Relaxed);
    probe.requested.store(true, Ordering::Release);
    // SAFETY: `thread` is the hub's thread, alive: it removes its entry before it exits,
    // and we hold the registry's lock.
    if unsafe { libc::pthread_kill(thread, libc::SIGURG) } != 0 {
        return None;
    }
    let deadline = Instant::now() + PROBE_TIMEOUT;
    while !probe.ready.load(Ordering::Acquire) {
        if Instant::now() >= deadline {
            probe.requested.store(false, Ordering::Relaxed);
            return None;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    probe.read()
}

// ----- on the hub's thread: the probe handler ------------------------------------------

/// What the probe handler needs to know about its thread.
#[derive(Clone, Copy)]
struct ThreadInfo {
    /// This thread's watch, or null.
    watch: *const Watch,
    /// The bounds of the thread's own stack: code running there is not a greenlet's.
    stack_low: usize,
    stack_high: usize,
}

thread_local! {
    static THREAD: Cell<ThreadInfo> = const {
        Cell::new(ThreadInfo { watch: std::ptr::null(), stack_low: 0, stack_high: 0 })
    };
}

impl ThreadInfo {
    /// Records, on the hub's thread, its watch and its own stack's bounds.
    fn publish(watch: &Watch) {
        let (stack_low, stack_high) = own_stack_bounds().unwrap_or((0, 0));
        let info = ThreadInfo { watch, stack_low, stack_high };
        THREAD.with(|t| t.set(info));
    }

    /// Forgets the watch: a `SIGURG` that arrives later is passed on.
    fn withdraw() {
        let _ = THREAD.try_with(|t| t.set(ThreadInfo { watch: std::ptr::null(), ..t.get() }));
    }
}

/// The calling thread's stack, from `pthread_getattr_np`.
fn own_stack_bounds() -> Option<(usize, usize)> {
    // SAFETY: pthread_getattr_np fills the zeroed attr for the calling thread; it is
    // destroyed after use; the out-pointers are valid locals.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr: *mut c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let rc = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        (rc == 0).then(|| (addr as usize, addr as usize + size))
    }
}

struct PreviousAction(libc::sigaction);

// SAFETY: plain data (integers, a mask, a function pointer), written once before the
// handler that reads it is installed, never changed afterwards.
unsafe impl Sync for PreviousAction {}
// SAFETY: as above.
unsafe impl Send for PreviousAction {}

static PREVIOUS: OnceLock<PreviousAction> = OnceLock::new();

fn install_probe_handler() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // SAFETY: sigaction with a zeroed struct is the documented way to set a handler;
        // the handler only reads thread-locals, stores atomics and calls async-signal-safe
        // functions (sigaltstack).
        unsafe {
            let mut previous: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGURG, std::ptr::null(), &mut previous);
            let _ = PREVIOUS.set(PreviousAction(previous));
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_probe as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGURG, &action, std::ptr::null_mut());
        }
    });
}

/// Makes `SIGQUIT` ask for run information instead of ending the process, unless the
/// program handles or ignores `SIGQUIT` itself.
fn install_quit_handler() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // SAFETY: sigaction with a zeroed struct is the documented way to read and set a
        // handler; the handler only stores an atomic.
        unsafe {
            let mut previous: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGQUIT, std::ptr::null(), &mut previous);
            if previous.sa_sigaction != libc::SIG_DFL {
                return; // the program has its own plans for SIGQUIT
            }
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_quit as *const () as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGQUIT, &action, std::ptr::null_mut());
        }
    });
}

extern "C" fn on_quit(signum: c_int) {
    if WATCHED_HUBS.load(Ordering::Acquire) > 0 {
        QUIT_REQUESTED.store(true, Ordering::Release);
        return;
    }
    // No hub is watched any more (all ended, or the monitor was turned off): SIGQUIT does
    // what it does by default again, now and from now on.
    // SAFETY: sigaction and raise are async-signal-safe; a zeroed struct with SIG_DFL is a
    // valid disposition.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(signum, &action, std::ptr::null_mut());
        libc::raise(signum);
    }
}

extern "C" fn on_probe(signum: c_int, info: *mut siginfo_t, context: *mut c_void) {
    let thread = THREAD.try_with(Cell::get).ok();
    let Some(thread) = thread.filter(|t| !t.watch.is_null()) else {
        // SAFETY: forwards the kernel's own arguments to the previous handler.
        return unsafe { forward(signum, info, context) };
    };
    // SAFETY: a non-null `watch` in this thread's `THREAD` is this thread's live hub's
    // watch: it is published before the hub is watched, and the hub lives until the
    // thread exits.
    let watch = unsafe { &*thread.watch };
    if !watch.probe.requested.swap(false, Ordering::Acquire) {
        // SAFETY: as above.
        return unsafe { forward(signum, info, context) };
    }
    // SAFETY: the errno location is this thread's, valid for its lifetime.
    let saved_errno = unsafe { *libc::__errno_location() };
    // SAFETY: `context` is the `ucontext_t` the kernel passed to this SA_SIGINFO handler.
    let sp = unsafe { crate::overflow::registers::pc_and_sp(context) }.map(|(_, sp)| sp);
    let loop_sp = watch.loop_sp.load(Ordering::Relaxed);
    let core = sp
        .filter(|&sp| on_greenlet_stack(sp, &thread, loop_sp))
        .map(|_| crate::overflow::running_core());
    let probe = &watch.probe;
    match core.filter(|c| !c.is_null()) {
        Some(core) => {
            // SAFETY: the interrupted code runs on neither the thread's own stack nor the
            // signal stack, so it runs on the stack of the greenlet the loop resumed last
            // (or one that greenlet switched to): that greenlet is running, and alive.
            let core: &Core = unsafe { &*core };
            probe.id.store(core.id, Ordering::Relaxed);
            let name = core.name().unwrap_or("");
            let len = name.len().min(NAME_BYTES);
            for (slot, byte) in probe.name.iter().zip(&name.as_bytes()[..len]) {
                slot.store(*byte, Ordering::Relaxed);
            }
            probe.name_len.store(len, Ordering::Relaxed);
            probe.has_name.store(core.name().is_some(), Ordering::Relaxed);
            let spawned_at: *const Location<'static> = core.spawned_at;
            probe.spawned_at.store(spawned_at.cast_mut(), Ordering::Relaxed);
            probe.in_greenlet.store(true, Ordering::Relaxed);
        }
        None => probe.in_greenlet.store(false, Ordering::Relaxed),
    }
    probe.ready.store(true, Ordering::Release);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved_errno };
}

/// Whether code interrupted with stack pointer `sp` runs on a greenlet's stack: not on the
/// thread's own stack, not in the 8 MiB below the loop's entry when that is elsewhere (the
/// loop runs on whatever stack the main code runs on), not on its signal stack (a nested
/// handler). When in
/// doubt, it answers no: the report then names no greenlet, which is safe.
fn on_greenlet_stack(sp: usize, thread: &ThreadInfo, loop_sp: usize) -> bool {
    let own_stack = thread.stack_low..thread.stack_high;
    if thread.stack_high == 0 || own_stack.contains(&sp) {
        return false;
    }
    // Only when the loop runs on a foreign stack: greenlet stacks are often mapped right
    // below the thread's own.
    if !own_stack.contains(&loop_sp)
        && (loop_sp.saturating_sub(LOOP_STACK_SPAN)..=loop_sp).contains(&sp)
    {
        return false;
    }
    // SAFETY: sigaltstack with a null new stack only reads the current one into `current`.
    let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `current` is a valid out-pointer.
    if unsafe { libc::sigaltstack(std::ptr::null(), &mut current) } != 0 {
        return false;
    }
    let alt_low = current.ss_sp as usize;
    !(alt_low..alt_low + current.ss_size).contains(&sp)
}

/// Passes a `SIGURG` that was not a probe to whoever handled it before.
///
/// # Safety
///
/// Must be called from the signal handler with the arguments the kernel passed to it.
unsafe fn forward(signum: c_int, info: *mut siginfo_t, context: *mut c_void) {
    let Some(PreviousAction(previous)) = PREVIOUS.get() else { return };
    let handler = previous.sa_sigaction;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        return; // SIGURG's default action is to ignore it
    }
    // SAFETY: our caller's contract; `previous` installed a real handler.
    unsafe { crate::overflow::call_handler(previous, signum, info, context) };
}
