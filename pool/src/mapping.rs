//! The map/imap machinery every pool shares (gevent's `GroupMappingMixin`).
//!
//! It needs only one thing from a pool: a way to *start a task* for an input item (which may
//! block while the pool is full) that reports its outcome when done ([`Reporter`]).
//! Everything else — laziness, ordering, the `maxsize` bound, errors at their position, an
//! input iterator that panics, stopping when the pool is killed — lives here once.
//!
//! ```text
//!   feeder greenlet                                    consumer (the iterator)
//!   ───────────────                                    ───────────────────────
//!   loop {                                             next():
//!     take a maxsize permit (if bounded)                 ordered: wait until result #i
//!     item = input.next()      (lazy; may block)                  is in the buffer
//!     task = spawn(f, item)    (waits while full)        unordered: take any result
//!     when task is done ──► results queue ───────────►  give the permit back
//!   }                                                    yield Ok(value) / Err(at its index)
//!   input ends / panics / feeder killed ──► "no more after #n"
//! ```
//!
//! In input order, a result that comes in before those ahead of it waits in its slot, an
//! [`Outcome`] (the hub's one "value arrives later" state), until they are read.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::error::Error;
use std::fmt;
use std::rc::Rc;

use slab::Slab;
use verdant_hub::cell::Outcome;
use verdant_hub::park::{self, Waker};
use verdant_hub::{Greenlet, GreenletError, GreenletRef, Panic, catch_panic};
use verdant_sync::Semaphore;

/// Given to the pool with each task, to report the task's outcome to the map's iterator
/// exactly once: [`run`](Reporter::run) runs the task and reports how it ended, or
/// [`report`](Reporter::report) reports an outcome obtained some other way. A reporter
/// dropped unused (its task was killed before it started) reports
/// [`GreenletError::Killed`].
pub struct Reporter<T> {
    index: usize,
    reports: Option<Rc<Reports<T>>>,
}

impl<T> Reporter<T> {
    /// Tells the map's iterator how the task ended.
    pub fn report(mut self, outcome: Result<T, GreenletError>) {
        if let Some(reports) = self.reports.take() {
            reports.put(Report::Done(self.index, outcome));
        }
    }

    /// Runs `task` in the calling greenlet and reports its value, or its panic before
    /// letting the panic go on, so the greenlet ends the same way. A kill passes straight
    /// through; dropping the reporter on the way reports it as `Killed`.
    ///
    /// A greenlet that overflows its stack is ended with its frames discarded, this call's
    /// included: nothing is reported. Where a task runs in a greenlet of its own (as a
    /// pool's map does), [`report`](Reporter::report) its outcome from a link instead.
    pub fn run(self, task: impl FnOnce() -> T) {
        match catch_panic(task) {
            Ok(value) => self.report(Ok(value)),
            Err(payload) => {
                let panic = Panic::new(payload);
                self.report(Err(GreenletError::Panicked(panic.clone())));
                panic.resume();
            }
        }
    }
}

impl<T> Drop for Reporter<T> {
    fn drop(&mut self) {
        if let Some(reports) = self.reports.take() {
            reports.put(Report::Done(self.index, Err(GreenletError::Killed)));
        }
    }
}

impl<T: 'static> Reporter<T> {
    /// Defers the report to `greenlet`'s death: the greenlet waits in its map's table
    /// (no allocation), and [`DeathReport::deliver`] reports its outcome once it has died.
    pub(crate) fn on_death_of(mut self, greenlet: Greenlet<T>) -> DeathReport {
        let reports = self.reports.take().expect("a reporter reports once");
        let key = reports.dying.borrow_mut().insert((self.index, greenlet));
        DeathReport { reports: Some(reports), key }
    }
}

/// A map item's report, waiting for its greenlet's death (see [`Reporter::on_death_of`]).
/// Dropped undelivered (its greenlet will never die: the hub is going away), it reports
/// the item as killed, as a [`Reporter`] dropped unused does.
pub(crate) struct DeathReport {
    reports: Option<Rc<dyn Dying>>,
    key: usize,
}

impl DeathReport {
    /// Reports the outcome of the greenlet, which has died.
    pub(crate) fn deliver(mut self) {
        if let Some(reports) = self.reports.take() {
            reports.died(self.key, true);
        }
    }
}

impl Drop for DeathReport {
    fn drop(&mut self) {
        if let Some(reports) = self.reports.take() {
            reports.died(self.key, false);
        }
    }
}

/// The map's table of items waiting for their greenlet's death, whatever their type.
trait Dying {
    /// The item at `key` is done: its greenlet died (`dead`), or will never report.
    fn died(&self, key: usize, dead: bool);
}

impl<T: 'static> Dying for Reports<T> {
    fn died(&self, key: usize, dead: bool) {
        let (index, greenlet) = self.dying.borrow_mut().remove(key);
        let outcome = if dead { greenlet.take() } else { Err(GreenletError::Killed) };
        self.put(Report::Done(index, outcome));
    }
}

impl<T> fmt::Debug for Reporter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reporter").field("index", &self.index).finish()
    }
}

/// Why an item of a map produced no value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapError {
    /// The task for the item at `index` (counting from 0) failed.
    Task {
        /// Position of the item in the input.
        index: usize,
        /// How the task failed (panicked, killed...).
        error: GreenletError,
    },
    /// The input iterator panicked while producing the item at `index`; the map ends here.
    Input {
        /// How many items the input had produced before it panicked.
        index: usize,
        /// The panic message.
        message: String,
    },
    /// The map was killed (with its pool) before it took the item at `index` from the
    /// input, perhaps while the input iterator was producing it; the map ends here
    /// (gevent raises the `GreenletExit` from the iterator).
    Killed {
        /// How many tasks the map had started before it was killed.
        index: usize,
    },
}

impl MapError {
    /// The input position the error belongs to.
    pub fn index(&self) -> usize {
        match self {
            MapError::Task { index, .. }
            | MapError::Input { index, .. }
            | MapError::Killed { index } => *index,
        }
    }
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapError::Task { index, error } => write!(f, "item {index}: {error}"),
            MapError::Input { index, message } => {
                write!(f, "the input iterator panicked after {index} items: {message}")
            }
            MapError::Killed { index } => write!(f, "the map was killed after {index} items"),
        }
    }
}

impl Error for MapError {}

/// What the feeder and the tasks tell the consumer.
pub(crate) enum Report<T> {
    /// The task for item `index` finished.
    Done(usize, Result<T, GreenletError>),
    /// No more items after the first `count`: the input is exhausted.
    End { count: usize },
    /// The feeder was killed after starting `count` tasks.
    Killed { count: usize },
    /// The input panicked after `count` items.
    InputPanicked { count: usize, message: String },
}

/// The channel from the feeder and the tasks to the map's iterator: many writers, one
/// reader. Lighter than a `Queue`: no capacity, no putters, a single waker for the reader.
pub(crate) struct Reports<T> {
    items: RefCell<VecDeque<Report<T>>>,
    reader: RefCell<Option<Waker>>,
    /// Items whose report waits for their greenlet's death: index and greenlet.
    dying: RefCell<Slab<(usize, Greenlet<T>)>>,
}

impl<T> Reports<T> {
    fn new() -> Rc<Reports<T>> {
        Rc::new(Reports {
            items: RefCell::new(VecDeque::new()),
            reader: RefCell::new(None),
            dying: RefCell::new(Slab::new()),
        })
    }

    fn put(&self, report: Report<T>) {
        self.items.borrow_mut().push_back(report);
        let reader = self.reader.borrow_mut().take();
        if let Some(reader) = reader {
            reader.wake();
        }
    }

    fn get(&self) -> Report<T> {
        let mut report = None;
        park::wait_until(
            &"the results of a pool map",
            None,
            |waker| *self.reader.borrow_mut() = Some(waker),
            || {
                report = self.items.borrow_mut().pop_front();
                report.is_some()
            },
        );
        report.expect("no deadline: a report came")
    }
}

/// How the iterator hands results out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// In input order (`imap`).
    Input,
    /// As they complete (`imap_unordered`).
    Completion,
}

/// Starts mapping: returns the lazy iterator of results and the feeder greenlet (which
/// the pool kills when it is killed). `spawn_task(item, reporter)` must start a task for
/// `item` (it may wait while the pool is full) and have it call `reporter` when done.
pub fn start<I, A, T, S>(
    input: I,
    mut spawn_task: S,
    order: Order,
    maxsize: Option<usize>,
) -> (MapIter<T>, GreenletRef)
where
    I: IntoIterator<Item = A> + 'static,
    A: 'static,
    T: 'static,
    S: FnMut(A, Reporter<T>) + 'static,
{
    let reports: Rc<Reports<T>> = Reports::new();
    let permits = maxsize.map(|n| Semaphore::new(n.max(1)));
    let spawned = Rc::new(Cell::new(0usize));
    let feeder = {
        let (reports, permits, spawned) = (reports.clone(), permits.clone(), spawned.clone());
        let mut input = input.into_iter();
        verdant_hub::spawn(move || {
            loop {
                if let Some(permits) = &permits {
                    std::mem::forget(permits.acquire()); // given back when the result is read
                }
                let index = spawned.get();
                // A kill of the feeder (the pool was killed) is not the input's panic: it
                // passes through, and the feeder's link ends the iteration.
                let item = match catch_panic(|| input.next()) {
                    Ok(Some(item)) => item,
                    Ok(None) => break,
                    Err(payload) => {
                        let message = verdant_hub::panic_message(&*payload);
                        reports.put(Report::InputPanicked { count: index, message });
                        return;
                    }
                };
                spawn_task(item, Reporter { index, reports: Some(reports.clone()) });
                spawned.set(index + 1);
            }
            reports.put(Report::End { count: spawned.get() });
        })
    };
    // However the feeder ends, the consumer learns how many results to expect; killed
    // (with the pool), it learns that too.
    {
        let (reports, spawned) = (reports.clone(), spawned.clone());
        feeder.link(move |feeder| {
            let count = spawned.get();
            let killed = feeder.error() == Some(GreenletError::Killed);
            reports.put(if killed { Report::Killed { count } } else { Report::End { count } });
        });
    }
    let feeder_ref = feeder.as_ref();
    let iter = MapIter {
        reports,
        permits,
        order,
        buffer: VecDeque::new(),
        next_index: 0,
        yielded: 0,
        expected: None,
        final_error: None,
        feeder,
    };
    (iter, feeder_ref)
}

/// The lazy iterator of a map: `Ok(value)` or `Err(MapError)` for each input item, in input
/// order (`imap`) or completion order (`imap_unordered`).
pub struct MapIter<T> {
    reports: Rc<Reports<T>>,
    permits: Option<Semaphore>,
    order: Order,
    /// Input order: a slot for each result from `next_index` on, filled as they come in
    /// (early ones wait there for those before them).
    buffer: VecDeque<Outcome<T, GreenletError>>,
    next_index: usize,
    yielded: usize,
    /// How many results there will be, once known.
    expected: Option<usize>,
    /// An input panic or a kill, to report after the results before it.
    final_error: Option<MapError>,
    feeder: Greenlet<()>,
}

impl<T> MapIter<T> {
    fn all_yielded(&self) -> bool {
        self.expected.is_some_and(|expected| self.yielded >= expected)
    }

    /// Files a report; returns a result ready to be yielded now (completion order).
    fn file(&mut self, report: Report<T>) -> Option<(usize, Result<T, GreenletError>)> {
        match report {
            Report::Done(index, outcome) => {
                if self.order == Order::Completion {
                    return Some((index, outcome));
                }
                if index == self.next_index && self.buffer.is_empty() {
                    self.next_index += 1; // the one we wait for: skip the buffer
                    return Some((index, outcome));
                }
                let slot = index - self.next_index;
                if self.buffer.len() <= slot {
                    self.buffer.resize_with(slot + 1, || Outcome::Pending);
                }
                let filled = self.buffer[slot].complete(outcome);
                debug_assert!(filled.is_ok(), "item {index} was reported twice");
                None
            }
            Report::End { count } => {
                self.expected = Some(self.expected.map_or(count, |e| e.min(count)));
                None
            }
            Report::InputPanicked { count, message } => {
                self.end_with(count, MapError::Input { index: count, message });
                None
            }
            Report::Killed { count } => {
                self.end_with(count, MapError::Killed { index: count });
                None
            }
        }
    }

    /// The map ends after `count` results, then `error` (unless it already has one).
    fn end_with(&mut self, count: usize, error: MapError) {
        self.expected = Some(self.expected.map_or(count, |e| e.min(count)));
        self.final_error.get_or_insert(error);
    }

    fn hand_out(&mut self, index: usize, outcome: Result<T, GreenletError>) -> Result<T, MapError> {
        self.yielded += 1;
        if let Some(permits) = &self.permits {
            permits.release();
        }
        outcome.map_err(|error| MapError::Task { index, error })
    }
}

impl<T> Iterator for MapIter<T> {
    type Item = Result<T, MapError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.order == Order::Input && self.buffer.front().is_some_and(Outcome::is_ready) {
                let slot = self.buffer.pop_front().expect("checked");
                let outcome = slot.into_result().expect("checked: ready");
                let index = self.next_index;
                self.next_index += 1;
                return Some(self.hand_out(index, outcome));
            }
            if self.all_yielded() {
                return self.final_error.take().map(Err);
            }
            let report = self.reports.get();
            if let Some((index, outcome)) = self.file(report) {
                return Some(self.hand_out(index, outcome));
            }
        }
    }
}

impl<T> Drop for MapIter<T> {
    /// Dropping the iterator stops the feeder: no new tasks start (those running go on).
    fn drop(&mut self) {
        self.feeder.kill_nowait();
    }
}

impl<T> fmt::Debug for MapIter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapIter")
            .field("order", &self.order)
            .field("yielded", &self.yielded)
            .field("expected", &self.expected)
            .finish()
    }
}

/// Collects a map into a vector, or the first error by input position.
pub(crate) fn collect<T>(iter: MapIter<T>) -> Result<Vec<T>, MapError> {
    let mut values = Vec::new();
    let mut first_error: Option<MapError> = None;
    for item in iter {
        match item {
            Ok(value) => values.push(value),
            Err(error) => {
                if first_error.as_ref().is_none_or(|e| error.index() < e.index()) {
                    first_error = Some(error);
                }
            }
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(values),
    }
}

/// A shared, cloneable handle to the mapping function.
pub(crate) fn share<F>(f: F) -> Rc<F> {
    Rc::new(f)
}

/// Keeps feeders alive and findable, so killing a pool stops its maps from spawning more.
#[derive(Default)]
pub(crate) struct Feeders(RefCell<Vec<GreenletRef>>);

impl Feeders {
    pub(crate) fn add(&self, feeder: GreenletRef) {
        let mut feeders = self.0.borrow_mut();
        feeders.retain(|f| !f.ready());
        feeders.push(feeder);
    }

    pub(crate) fn take(&self) -> Vec<GreenletRef> {
        std::mem::take(&mut *self.0.borrow_mut())
    }
}
