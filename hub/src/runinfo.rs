//! Run information (gevent's `print_run_info`, Go's goroutine dump): every live greenlet
//! of a hub, with its name, id, state, what it waits on and where it was spawned, and the
//! hub's counters.
//!
//! ```
//! verdant_hub::configure(|c| c.track_greenlets = true).unwrap();
//! let waiter = verdant_hub::Builder::new()
//!     .name("waiter")
//!     .spawn(|| verdant_hub::sleep(std::time::Duration::from_secs(3600)))
//!     .unwrap();
//! verdant_hub::yield_now(); // let it start and park
//! let info = verdant_hub::dump();
//! let listed = info.greenlets.iter().find(|g| g.id == waiter.id()).unwrap();
//! assert_eq!(listed.name.as_deref(), Some("waiter"));
//! assert_eq!(listed.waits_on.as_deref(), Some("sleep"));
//! println!("{info}"); // one line per greenlet, like Go's goroutine dump
//! waiter.kill();
//! ```
//!
//! A hub only knows which greenlets are alive if it keeps a list, and keeping it costs
//! every spawn, switch and exit a little, so it is opt-in:
//! [`HubConfig::track_greenlets`](crate::HubConfig::track_greenlets), the `VERDANT_TRACK_GREENLETS=1` environment variable, or recording
//! a [`trace`](crate::trace), turns it on. Without it,
//! [`dump`] still gives the counters and says how many greenlets are alive. Greenlets
//! spawned before tracking was turned on are counted but not listed.
//!
//! When the blocked-hub monitor is on, `SIGQUIT` (Ctrl-\\ in a terminal) prints every
//! watched hub's run information to stderr, as the JVM prints its threads, and the process
//! goes on (see `monitor.rs`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::panic::Location;
use std::rc::Weak;
use std::time::{Duration, Instant};

use crate::hub::with_hub;
use crate::stats::HubStats;
use crate::task::{Core, State, Task, TaskRef};
use crate::trace::IdHash;

/// The environment variable that turns tracking on for every hub (`1` or `true`).
pub const TRACK_GREENLETS_ENV: &str = "VERDANT_TRACK_GREENLETS";

/// Whether [`TRACK_GREENLETS_ENV`] asks for tracking.
pub(crate) fn tracking_from_env() -> bool {
    std::env::var(TRACK_GREENLETS_ENV).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// What one hub knows about its live greenlets.
pub(crate) struct Tracker {
    on: Cell<bool>,
    live: RefCell<HashMap<u64, Tracked, IdHash>>,
    /// The list's size at which entries of greenlets gone without finishing (a
    /// `Greenlet::new` never started, then dropped) are pruned.
    prune_at: Cell<usize>,
}

/// The smallest `prune_at`.
const PRUNE_AT_LEAST: usize = 1024;

/// One tracked greenlet.
struct Tracked {
    task: Weak<dyn Task>,
    /// Why it last parked (the buffer is kept for the next park).
    reason: String,
    /// Since when it waits; `None` while it runs or is ready.
    waiting_since: Option<Instant>,
    /// Times the loop resumed it.
    runs: u64,
}

impl Tracker {
    pub(crate) fn new() -> Tracker {
        Tracker {
            on: Cell::new(false),
            live: RefCell::new(HashMap::default()),
            prune_at: Cell::new(PRUNE_AT_LEAST),
        }
    }

    pub(crate) fn is_on(&self) -> bool {
        self.on.get()
    }

    pub(crate) fn set_on(&self, on: bool) {
        self.on.set(on);
        if !on {
            self.live.borrow_mut().clear();
        }
    }

    /// Whether code left the list borrowed (see `Hub::end_overflowed`).
    pub(crate) fn in_use(&self) -> bool {
        self.live.try_borrow_mut().is_err()
    }

    /// A greenlet was created.
    pub(crate) fn add(&self, task: &TaskRef) {
        if self.on.get() {
            let tracked = Tracked {
                task: task.downgrade(),
                reason: String::new(),
                waiting_since: None,
                runs: 0,
            };
            let mut live = self.live.borrow_mut();
            live.insert(task.core().id, tracked);
            if live.len() >= self.prune_at.get() {
                live.retain(|_, tracked| tracked.task.strong_count() > 0);
                self.prune_at.set((2 * live.len()).max(PRUNE_AT_LEAST));
            }
        }
    }

    /// Greenlet `id` parked, waiting on `reason`.
    pub(crate) fn parked(&self, id: u64, reason: &str) {
        if let Some(tracked) = self.live.borrow_mut().get_mut(&id) {
            tracked.reason.clear();
            tracked.reason.push_str(reason);
            tracked.waiting_since = Some(Instant::now());
        }
    }

    /// Greenlet `id` is resumed.
    pub(crate) fn resumed(&self, id: u64) {
        if let Some(tracked) = self.live.borrow_mut().get_mut(&id) {
            tracked.runs += 1;
            tracked.waiting_since = None;
        }
    }

    /// Greenlet `id` died.
    pub(crate) fn forget(&self, id: u64) {
        self.live.borrow_mut().remove(&id);
    }

    /// The tracked greenlets that are alive, by id.
    fn snapshot(&self) -> Vec<GreenletInfo> {
        let now = Instant::now();
        let mut listed: Vec<GreenletInfo> = self
            .live
            .borrow()
            .values()
            .filter_map(|tracked| {
                let task = tracked.task.upgrade()?;
                let core = task.core();
                if core.is_dead() {
                    return None;
                }
                let state = GreenletState::of(core);
                let waits_on = match (tracked.waiting_since, state) {
                    (Some(since), GreenletState::Waiting) => {
                        Some((tracked.reason.clone(), now.saturating_duration_since(since)))
                    }
                    _ => None,
                };
                Some(GreenletInfo {
                    id: core.id,
                    name: core.name().map(str::to_string),
                    state,
                    waiting_for: waits_on.as_ref().map(|(_, d)| *d),
                    waits_on: waits_on.map(|(reason, _)| reason),
                    spawned_at: core.spawned_at,
                    runs: tracked.runs,
                })
            })
            .collect();
        listed.sort_by_key(|g| g.id);
        listed
    }
}

/// Where a greenlet is in its life, as [`dump`] shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GreenletState {
    /// Spawned, not run yet.
    NotStarted,
    /// Waiting for its turn in the run queue.
    Ready,
    /// Running now (it called [`dump`]).
    Running,
    /// Parked in a blocking call.
    Waiting,
}

impl GreenletState {
    fn of(core: &Core) -> GreenletState {
        match core.state() {
            State::New => GreenletState::NotStarted,
            State::Ready => GreenletState::Ready,
            State::Running => GreenletState::Running,
            State::Parked | State::Done => GreenletState::Waiting,
        }
    }
}

impl fmt::Display for GreenletState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GreenletState::NotStarted => "not started",
            GreenletState::Ready => "ready",
            GreenletState::Running => "running",
            GreenletState::Waiting => "waiting",
        })
    }
}

/// One live greenlet, as [`dump`] saw it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct GreenletInfo {
    /// Its id (0 is the thread's main code).
    pub id: u64,
    /// Its name, if it was given one.
    pub name: Option<String>,
    /// Where it is in its life.
    pub state: GreenletState,
    /// What it waits on (the reason its blocking call gave: `sleep`, `Event::wait()`,
    /// `fd 7 to become readable`...), while it waits.
    pub waits_on: Option<String>,
    /// How long it has waited so far.
    pub waiting_for: Option<Duration>,
    /// Where it was spawned.
    pub spawned_at: &'static Location<'static>,
    /// Times the hub resumed it since tracking began.
    pub runs: u64,
}

/// A hub's run information; see [`dump`]. Its `Display` is the printout: a header with the
/// counters, then one line per greenlet.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RunInfo {
    /// The name of the hub's thread (or its id).
    pub thread: String,
    /// The hub's counters.
    pub stats: HubStats,
    /// Whether the hub tracks its greenlets (else `greenlets` is empty).
    pub tracking: bool,
    /// The live greenlets it tracks, by id.
    pub greenlets: Vec<GreenletInfo>,
    /// Live greenlets not listed: spawned before tracking began (or while it was off).
    pub unlisted: u64,
}

impl fmt::Display for RunInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        writeln!(
            f,
            "hub of thread {}: {} greenlets alive ({} spawned, {} finished), {} switches, {} \
             turns, {} timers pending, {} timers fired, {} cross-thread messages",
            self.thread,
            s.spawned - s.finished,
            s.spawned,
            s.finished,
            s.switches,
            s.turns,
            s.timers_pending,
            s.timers_fired,
            s.inbox_messages,
        )?;
        if !self.tracking {
            return writeln!(
                f,
                "  (greenlets are not listed: set HubConfig::track_greenlets to list them)"
            );
        }
        for g in &self.greenlets {
            if g.id == 0 {
                write!(f, "  main code")?;
            } else {
                write!(f, "  greenlet #{}", g.id)?;
            }
            if let Some(name) = &g.name {
                write!(f, " {name:?}")?;
            }
            write!(f, " [{}", g.state)?;
            if let (Some(reason), Some(waited)) = (&g.waits_on, g.waiting_for) {
                write!(f, " on {reason}, {:.3} s", waited.as_secs_f64())?;
            }
            if g.id == 0 {
                writeln!(f, "], resumed {} times", g.runs)?;
            } else {
                writeln!(f, "] spawned at {}, resumed {} times", g.spawned_at, g.runs)?;
            }
        }
        if self.unlisted > 0 {
            writeln!(f, "  and {} greenlets spawned before tracking began", self.unlisted)?;
        }
        Ok(())
    }
}

/// This thread's hub's run information: its counters and every live greenlet it tracks
/// (gevent's `print_run_info`; see the module docs for what "tracks" means).
pub fn dump() -> RunInfo {
    let stats = crate::stats();
    with_hub(|hub| {
        let tracker = hub.tracker();
        let greenlets = if tracker.is_on() { tracker.snapshot() } else { Vec::new() };
        let alive = stats.spawned - stats.finished;
        let thread = std::thread::current();
        RunInfo {
            thread: thread.name().map_or_else(|| format!("{:?}", thread.id()), str::to_string),
            stats,
            tracking: tracker.is_on(),
            unlisted: alive.saturating_sub(greenlets.iter().filter(|g| g.id != 0).count() as u64),
            greenlets,
        }
    })
}
