//! Many hubs in one process: [`Hubs`] starts one hub thread per core (or as many as asked),
//! runs a closure as the main code of each, and hands back the results in index order.
//!
//! ```
//! // Four hubs, each with its own greenlets; the results come back in index order.
//! let sums = verdant::Hubs::new(4).run(|index| {
//!     let greenlets: Vec<_> = (0..10u64).map(|n| verdant::spawn(move || n)).collect();
//!     index as u64 * 100 + greenlets.iter().map(|g| g.get().unwrap()).sum::<u64>()
//! });
//! assert_eq!(sums, [45, 145, 245, 345]);
//! ```
//!
//! The model (see `docs/multicore.md`): a hub stays single-threaded and greenlets never
//! move between hubs, so nothing inside one hub needs a lock; a program uses more cores by
//! running more hubs, each serving its own share of the work (for a server, its own
//! `SO_REUSEPORT` listener: [`MultiServer`](crate::server::MultiServer)). What hubs share
//! must be `Send + Sync`.
//!
//! # Panics and failures
//!
//! Each hub's closure runs under `catch_unwind`: a panic ends that hub only. The others go
//! on to the end of their closure, and [`Hubs::try_run`] returns each hub's outcome,
//! `Err(HubError)` naming the index of the hub that failed. [`Hubs::run`] waits for every
//! hub in the same way (like `std::thread::scope`), then panics with every failed hub's
//! index and message. Nothing stops the other hubs for you: if they wait on something the
//! failed hub was to provide, tell them through a shared primitive.
//!
//! # The calling thread
//!
//! It is not one of the hubs: it waits for them. In a greenlet, or in the main code of a
//! thread that has a hub, it waits as any blocking call does (its hub's other greenlets keep
//! running, so one of them can, say, stop a server on the hubs); in a thread without a hub
//! it blocks natively, and no hub is made. The wait is not cut short by a kill: a kill of
//! the waiting greenlet unwinds once every hub has ended, as `std::thread::scope` does.
//!
//! # Lifetime of a hub
//!
//! A hub lives as long as its closure: when the closure returns, its thread ends, and any
//! greenlet still alive on it is dropped with the hub, unrun, as at the end of any thread
//! (join what must finish, or call [`join_hub`](crate::join_hub) last).

mod affinity;
mod countdown;

use std::any::Any;
use std::cell::Cell;
use std::error::Error;
use std::fmt;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::thread;

use verdant_hub::Panic;

pub(crate) use countdown::Countdown;

thread_local! {
    /// This thread's index among the hubs of a [`Hubs`] run (`None` elsewhere).
    static INDEX: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The index of the calling thread's hub in the [`Hubs`] run that started it, or `None`
/// in a thread `Hubs` did not start.
///
/// ```
/// assert_eq!(verdant::hubs::index(), None);
/// assert_eq!(verdant::Hubs::new(2).run(|_| verdant::hubs::index()), [Some(0), Some(1)]);
/// ```
pub fn index() -> Option<usize> {
    INDEX.with(Cell::get)
}

/// Starts hub threads and runs a closure as the main code of each. See the
/// [module docs](self) for the rules.
///
/// * `Hubs::new(n)`: `n` hubs; `0` means one per CPU this process may use
///   ([`std::thread::available_parallelism`], which respects `taskset` and cgroups).
/// * [`pin_to_cores(true)`](Self::pin_to_cores): hub `i` runs only on the `i`-th CPU of the
///   calling thread's affinity mask (wrapping around).
/// * Threads are named `verdant-hub-<index>` (change the prefix with [`name`](Self::name)).
#[derive(Clone, Debug)]
pub struct Hubs {
    count: usize,
    pin: bool,
    name: String,
}

impl Hubs {
    /// `count` hubs, `0` for one per available CPU.
    pub fn new(count: usize) -> Hubs {
        Hubs { count, pin: false, name: "verdant-hub".to_string() }
    }

    /// Pins hub `i` to the `i`-th allowed CPU (off by default). A hub whose thread cannot
    /// be pinned does not run its closure: its outcome is a [`HubError`] saying why.
    pub fn pin_to_cores(mut self, pin: bool) -> Hubs {
        self.pin = pin;
        self
    }

    /// The thread name prefix: threads are named `<prefix>-<index>`.
    pub fn name(mut self, prefix: impl Into<String>) -> Hubs {
        self.name = prefix.into();
        self
    }

    /// How many hubs a run starts (`0` resolved to the number of available CPUs).
    pub fn count(&self) -> usize {
        match self.count {
            0 => thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// Runs `f(index)` as the main code of each hub and returns the results in index
    /// order, once every hub has finished.
    ///
    /// # Panics
    ///
    /// After every hub has finished, if any failed: the message names each failed hub's
    /// index and its panic message. [`try_run`](Self::try_run) returns the outcomes
    /// instead.
    pub fn run<T, F>(self, f: F) -> Vec<T>
    where
        F: Fn(usize) -> T + Sync,
        T: Send,
    {
        let count = self.count();
        let outcomes = self.try_run(f);
        let failures: Vec<String> =
            outcomes.iter().filter_map(|o| o.as_ref().err()).map(HubError::to_string).collect();
        if !failures.is_empty() {
            panic!("{} of {count} hubs failed: {}", failures.len(), failures.join("; "));
        }
        outcomes.into_iter().map(|o| o.unwrap_or_else(|_| unreachable!())).collect()
    }

    /// Like [`run`](Self::run), returning each hub's outcome: its closure's value, or a
    /// [`HubError`] (it panicked, or its thread could not start or be pinned).
    ///
    /// ```
    /// let outcomes = verdant::Hubs::new(3).try_run(|index| {
    ///     if index == 1 {
    ///         panic!("hub 1 gives up");
    ///     }
    ///     index
    /// });
    /// assert_eq!(outcomes[0].as_ref().ok(), Some(&0));
    /// let failed = outcomes[1].as_ref().unwrap_err();
    /// assert_eq!((failed.index(), failed.panic().unwrap().message()), (1, "hub 1 gives up"));
    /// assert_eq!(outcomes[2].as_ref().ok(), Some(&2));
    /// ```
    pub fn try_run<T, F>(self, f: F) -> Vec<Result<T, HubError>>
    where
        F: Fn(usize) -> T + Sync,
        T: Send,
    {
        let plan = self.plan();
        let results = Results::new(plan.len());
        thread::scope(|scope| {
            for (index, cpu) in plan.into_iter().enumerate() {
                let (f, results) = (&f, &results);
                let started = self
                    .thread(index)
                    .spawn_scoped(scope, move || results.finish(index, hub_main(index, cpu, f)));
                if let Err(error) = started {
                    results.finish(index, Err(HubError::not_started(index, error)));
                }
            }
            results.done.wait();
        });
        results.take()
    }

    /// Starts the hubs in the background and returns at once: the `'static` form of
    /// [`try_run`](Self::try_run), for hubs that outlive the caller's frame (a server).
    /// [`HubsHandle::join`] waits for them and returns the outcomes.
    ///
    /// ```
    /// let hubs = verdant::Hubs::new(2).spawn(|index| index * 10);
    /// let outcomes: Vec<usize> = hubs.join().into_iter().map(Result::unwrap).collect();
    /// assert_eq!(outcomes, [0, 10]);
    /// ```
    pub fn spawn<T, F>(self, f: F) -> HubsHandle<T>
    where
        F: Fn(usize) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        self.spawn_noting_failures(f, |_| {})
    }

    /// [`spawn`](Self::spawn), calling `not_started(index)` (on any thread) for each hub
    /// whose closure will never run: its thread could not start or be pinned.
    pub(crate) fn spawn_noting_failures<T, F>(
        self,
        f: F,
        not_started: impl Fn(usize) + Send + Sync + 'static,
    ) -> HubsHandle<T>
    where
        F: Fn(usize) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        let plan = self.plan();
        let mut results = Results::new(plan.len());
        results.not_started = Box::new(not_started);
        let results = Arc::new(results);
        let f = Arc::new(f);
        let mut threads = Vec::with_capacity(plan.len());
        for (index, cpu) in plan.into_iter().enumerate() {
            let (f, shared) = (f.clone(), results.clone());
            match self.thread(index).spawn(move || shared.finish(index, hub_main(index, cpu, &*f)))
            {
                Ok(thread) => threads.push(thread),
                Err(error) => results.finish(index, Err(HubError::not_started(index, error))),
            }
        }
        HubsHandle { results, threads }
    }

    /// For each hub, the CPU to pin it to (if pinning).
    fn plan(&self) -> Vec<Option<Result<usize, Arc<io::Error>>>> {
        let cpus = if self.pin { Some(affinity::allowed_cpus().map_err(Arc::new)) } else { None };
        (0..self.count())
            .map(|index| {
                cpus.as_ref().map(|cpus| match cpus {
                    Ok(cpus) => Ok(cpus[index % cpus.len()]),
                    Err(error) => Err(error.clone()),
                })
            })
            .collect()
    }

    fn thread(&self, index: usize) -> thread::Builder {
        thread::Builder::new().name(format!("{}-{index}", self.name))
    }
}

/// The body of hub `index`'s thread: pin it, then run `f` and catch its panic.
fn hub_main<T>(
    index: usize,
    cpu: Option<Result<usize, Arc<io::Error>>>,
    f: &(impl Fn(usize) -> T + ?Sized),
) -> Result<T, HubError> {
    INDEX.with(|cell| cell.set(Some(index)));
    match cpu {
        None => {}
        Some(Ok(cpu)) => affinity::pin_current_thread(cpu)
            .map_err(|error| HubError::not_started(index, error))?,
        Some(Err(error)) => {
            let error = io::Error::new(error.kind(), format!("could not list CPUs: {error}"));
            return Err(HubError::not_started(index, error));
        }
    }
    catch_unwind(AssertUnwindSafe(|| f(index)))
        .map_err(|payload: Box<dyn Any + Send>| HubError::panicked(index, Panic::new(payload)))
}

/// The outcomes of a run's hubs, filled in by each hub's thread as it ends.
struct Results<T> {
    slots: Vec<Mutex<Option<Result<T, HubError>>>>,
    /// Counts the hubs still running.
    done: Countdown,
    /// Told of each hub whose closure never ran.
    not_started: Box<dyn Fn(usize) + Send + Sync>,
}

impl<T> Results<T> {
    fn new(count: usize) -> Results<T> {
        Results {
            slots: (0..count).map(|_| Mutex::new(None)).collect(),
            done: Countdown::new(count),
            not_started: Box::new(|_| {}),
        }
    }

    fn finish(&self, index: usize, outcome: Result<T, HubError>) {
        if outcome.as_ref().is_err_and(|e| e.panic().is_none()) {
            (self.not_started)(index);
        }
        *self.slots[index].lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
        self.done.count_down();
    }

    /// Every outcome, in index order (call once every hub finished).
    fn take(&self) -> Vec<Result<T, HubError>> {
        let take = |slot: &Mutex<Option<_>>| slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.slots.iter().map(|slot| take(slot).expect("every hub reports its outcome")).collect()
    }
}

/// Hubs started by [`Hubs::spawn`]. Dropping it detaches them (they run to the end of
/// their closure); [`join`](Self::join) waits for them.
#[must_use = "dropping the handle detaches the hubs; `join` waits for them"]
pub struct HubsHandle<T> {
    results: Arc<Results<T>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl<T> HubsHandle<T> {
    /// How many hubs were started (or failed to start).
    pub fn len(&self) -> usize {
        self.results.slots.len()
    }

    /// Whether there are no hubs (never: a run starts at least one).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether every hub's closure has ended.
    pub fn is_finished(&self) -> bool {
        self.results.done.is_done()
    }

    /// Waits for every hub (a greenlet parks, a plain thread blocks) and returns their
    /// outcomes in index order.
    pub fn join(self) -> Vec<Result<T, HubError>> {
        self.results.done.wait();
        for thread in self.threads {
            // The closure's outcome is in; the thread is on its way out and cannot panic
            // (hub_main catches), so this returns at once.
            let _ = thread.join();
        }
        self.results.take()
    }
}

impl<T> fmt::Debug for HubsHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubsHandle")
            .field("hubs", &self.len())
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// Why a hub of a [`Hubs`] run has no result: its closure panicked, or its thread could not
/// start (or be pinned). Names the hub's index.
#[derive(Debug)]
pub struct HubError {
    index: usize,
    cause: Cause,
}

#[derive(Debug)]
enum Cause {
    Panicked(Panic),
    NotStarted(io::Error),
}

impl HubError {
    fn panicked(index: usize, panic: Panic) -> HubError {
        HubError { index, cause: Cause::Panicked(panic) }
    }

    fn not_started(index: usize, error: io::Error) -> HubError {
        HubError { index, cause: Cause::NotStarted(error) }
    }

    /// The index of the hub that failed.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The panic, if the hub's closure panicked (its payload can be taken out, or the
    /// panic resumed with [`Panic::resume`]).
    pub fn panic(&self) -> Option<&Panic> {
        match &self.cause {
            Cause::Panicked(panic) => Some(panic),
            Cause::NotStarted(_) => None,
        }
    }
}

impl fmt::Display for HubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            Cause::Panicked(panic) => write!(f, "hub {} panicked: {panic}", self.index),
            Cause::NotStarted(error) => write!(f, "hub {} did not start: {error}", self.index),
        }
    }
}

impl Error for HubError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.cause {
            Cause::Panicked(_) => None,
            Cause::NotStarted(error) => Some(error),
        }
    }
}
