//! A scheduling timeline: when each greenlet ran and why it stopped, written as a Chrome
//! trace-event file that [Perfetto](https://ui.perfetto.dev) and `chrome://tracing` open.
//!
//! ```no_run
//! verdant_hub::trace::start("/tmp/verdant.trace.json").unwrap();
//! let g = verdant_hub::Builder::new().name("sleeper").spawn(|| {
//!     verdant_hub::sleep(std::time::Duration::from_millis(5));
//! }).unwrap();
//! g.join();
//! let summary = verdant_hub::trace::stop().unwrap();
//! assert!(summary.events > 0);
//! ```
//!
//! Or set `VERDANT_TRACE=/tmp/verdant.trace.json` before the program starts: the first hub
//! starts the trace, and it is finished when the process exits normally.
//!
//! # What is recorded
//!
//! The file holds one *process* per hub (`hub 1: main`), and in it one *thread* row per
//! greenlet, named after the greenlet, plus a `hub loop` row and a `main code` row:
//!
//! * a `run` slice for every stretch a greenlet (or the main code) ran, its `args` saying
//!   why it stopped: `yield`, or the reason it parked (`sleep`, `fd 7 to become
//!   readable`, `Event::wait()`, `the end of greenlet #3`...), or how it ended;
//! * a slice for every wait, named after the reason, with a category (`sleep`, `io`,
//!   `sync`, `join`, `yield`, `wait`) that the viewers colour by;
//! * instants on the `hub loop` row: timers fired, fds that became ready, cross-thread
//!   messages handled;
//! * [`span`]s from any thread (a thread pool records each task it runs) on a row of the
//!   `threads` process named after the thread.
//!
//! # Cost, and what it never does
//!
//! Off, the switch path reads one flag the hub keeps anyway for run information, and each
//! turn boundary one atomic: under a nanosecond per switch. On, each switch reads the
//! clock twice and formats the wait's reason (measured figures are in `docs/hub.md`).
//! A hub never writes the file: it hands batches of events to a writer thread through a
//! channel, at most [`MAX_PENDING_EVENTS`] events wait there, and events beyond that are
//! dropped and counted ([`TraceSummary::dropped`]) rather than buffered without bound.
//!
//! The file uses the trace-event format's *JSON array* form, whose closing `]` is
//! optional: a program that dies mid-trace still leaves a file the viewers open. A hub
//! hands its events over every [`BATCH_EVENTS`] events and whenever it goes idle; events
//! a busy hub recorded but had not handed over when [`stop`] ran are not in the file.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;
use std::time::Instant;

use parking_lot::Mutex;

/// The environment variable that starts a trace when the first hub is created: the path
/// of the file to write.
pub const TRACE_ENV: &str = "VERDANT_TRACE";

/// How many events a hub collects before it hands them to the writer.
pub const BATCH_EVENTS: usize = 1024;

/// How many events may wait for the writer thread; beyond that they are dropped.
pub const MAX_PENDING_EVENTS: usize = 1 << 20;

/// Odd while a trace is being recorded; bumped by [`start`] and [`stop`]. Hubs compare it
/// with the generation they last saw at every turn boundary.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// The trace being recorded, if any.
static SINK: Mutex<Option<Sink>> = Mutex::new(None);

/// Events handed to the writer and not written yet.
static PENDING: AtomicUsize = AtomicUsize::new(0);

/// Events dropped because `PENDING` was full, in the current trace.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// How many distinct stop reasons a hub's recording keeps shared (see `Recording::intern`).
const MAX_REASONS: usize = 4096;

/// Process ids of the trace's hubs (1, 2, ...); 0 is the `threads` process.
static NEXT_PID: AtomicU32 = AtomicU32::new(1);

/// What [`stop`] reports about the finished trace.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TraceSummary {
    /// The file written.
    pub path: PathBuf,
    /// Events written to it.
    pub events: u64,
    /// Events dropped because the writer fell more than [`MAX_PENDING_EVENTS`] behind.
    pub dropped: u64,
}

/// Starts recording every hub of the process into a new file at `path` (truncated if it
/// exists). Each hub starts recording at its next turn.
///
/// # Errors
///
/// The file cannot be created, or a trace is already being recorded.
pub fn start(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref().to_path_buf();
    let mut sink = SINK.lock();
    if sink.is_some() {
        return Err(io::Error::other(
            "verdant: a trace is already being recorded (trace::stop ends it)",
        ));
    }
    let file = File::create(&path).map_err(|err| {
        io::Error::new(
            err.kind(),
            format!("verdant: cannot create the trace file {}: {err}", path.display()),
        )
    })?;
    let (sender, receiver) = channel();
    let writer = std::thread::Builder::new()
        .name("verdant-trace".into())
        .spawn(move || write_trace(BufWriter::new(file), receiver))?;
    PENDING.store(0, Ordering::Relaxed);
    DROPPED.store(0, Ordering::Relaxed);
    let generation = GENERATION.fetch_add(1, Ordering::Release) + 1;
    *sink = Some(Sink { sender, writer, path, started: Instant::now(), generation });
    drop(sink);
    crate::hub::with_existing_hub(crate::hub::Hub::sync_trace);
    Ok(())
}

/// Stops recording, and waits until the writer thread has written every event handed to
/// it (this blocks the calling thread for as long as the file takes: call it from the
/// thread's main code, at the end). The calling thread's hub hands over what it recorded
/// first; other hubs' events not yet handed over are lost.
///
/// # Errors
///
/// No trace is being recorded, or writing the file failed.
pub fn stop() -> io::Result<TraceSummary> {
    crate::hub::with_existing_hub(crate::hub::Hub::close_trace);
    let sink = {
        let mut sink = SINK.lock();
        let taken = sink.take();
        if taken.is_some() {
            GENERATION.fetch_add(1, Ordering::Release);
        }
        taken
    };
    let Some(Sink { sender, writer, path, .. }) = sink else {
        return Err(io::Error::other(
            "verdant: no trace is being recorded (trace::start begins one)",
        ));
    };
    crate::hub::with_existing_hub(crate::hub::Hub::sync_trace);
    drop(sender);
    let events =
        writer.join().map_err(|_| io::Error::other("verdant: the trace writer panicked"))??;
    Ok(TraceSummary { path, events, dropped: DROPPED.load(Ordering::Relaxed) })
}

/// Whether a trace is being recorded.
pub fn is_active() -> bool {
    GENERATION.load(Ordering::Relaxed) % 2 == 1
}

/// A slice on the calling thread's row, from now until the span is dropped: for work done
/// off the hubs (the thread pool records each task it runs). Costs one atomic load when no
/// trace is being recorded.
///
/// ```
/// let _span = verdant_hub::trace::span("hashing a file");
/// // ... the work ...
/// ```
#[must_use = "the slice ends when the span is dropped"]
pub fn span(name: impl Into<Cow<'static, str>>) -> Span {
    if !is_active() {
        return Span(None);
    }
    Span(Some((name.into(), Instant::now())))
}

/// A slice being recorded; see [`span`].
#[derive(Debug)]
pub struct Span(Option<(Cow<'static, str>, Instant)>);

impl Drop for Span {
    fn drop(&mut self) {
        let Some((name, begun)) = self.0.take() else { return };
        thread_local! {
            /// The trace generation in which this thread's row was last named.
            static NAMED_IN: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
        }
        let sink = SINK.lock();
        let Some(sink) = sink.as_ref() else { return };
        let tid = thread_row();
        let mut events = Vec::with_capacity(3);
        let generation = GENERATION.load(Ordering::Relaxed);
        if NAMED_IN.with(|named| named.replace(generation)) != generation {
            let thread = std::thread::current();
            let label = thread.name().map_or_else(|| format!("thread {tid}"), str::to_string);
            events.push(Event::meta(0, 0, MetaKind::ProcessName, "threads".into()));
            events.push(Event::meta(0, tid, MetaKind::ThreadName, label));
        }
        let end = sink.nanos(Instant::now());
        events.push(Event::slice(0, tid, "span", Arc::from(name), sink.nanos(begun), end));
        sink.send(events);
    }
}

/// The calling thread's row in the `threads` process: its kernel thread id.
fn thread_row() -> u64 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u64 }
}

/// The trace being recorded: where events go, and what they are measured from.
struct Sink {
    sender: Sender<Vec<Event>>,
    writer: JoinHandle<io::Result<u64>>,
    path: PathBuf,
    started: Instant,
    /// The (odd) generation this trace was started as: a hub's recording belongs to it
    /// only if made in the same generation.
    generation: u64,
}

impl Sink {
    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.started).as_nanos() as u64
    }

    /// Hands a batch to the writer, or drops it (counted) if the writer is too far behind.
    fn send(&self, events: Vec<Event>) {
        let n = events.len();
        if PENDING.fetch_add(n, Ordering::Relaxed) + n > MAX_PENDING_EVENTS {
            PENDING.fetch_sub(n, Ordering::Relaxed);
            DROPPED.fetch_add(n as u64, Ordering::Relaxed);
            return;
        }
        if self.sender.send(events).is_err() {
            PENDING.fetch_sub(n, Ordering::Relaxed);
        }
    }
}

/// Text an event carries: shared, so that a reason recorded a million times is one
/// allocation (see `Recording::intern`).
type Text = Arc<str>;

/// One trace event, kept compact until the writer formats it.
pub(crate) struct Event {
    pid: u32,
    tid: u64,
    kind: EventKind,
    name: Text,
}

enum EventKind {
    /// A complete slice (`"ph":"X"`): begin and end in nanoseconds since the trace began;
    /// for a run, why it stopped.
    Slice {
        cat: &'static str,
        begin: u64,
        end: u64,
        stopped: Option<Text>,
    },
    /// An instant on the hub loop's row (`"ph":"i"`).
    Instant {
        cat: &'static str,
        at: u64,
    },
    Meta(MetaKind),
}

#[derive(Clone, Copy)]
enum MetaKind {
    ProcessName,
    ThreadName,
    /// Orders the rows: the loop first, then the main code, then greenlets by id.
    ThreadSort(u64),
}

impl Event {
    fn meta(pid: u32, tid: u64, kind: MetaKind, name: String) -> Event {
        Event { pid, tid, kind: EventKind::Meta(kind), name: name.into() }
    }

    fn slice(pid: u32, tid: u64, cat: &'static str, name: Text, begin: u64, end: u64) -> Event {
        Event { pid, tid, kind: EventKind::Slice { cat, begin, end, stopped: None }, name }
    }

    /// Appends the event's JSON object to `out`.
    fn write_json(&self, out: &mut String) {
        let (pid, tid) = (self.pid, self.tid);
        match &self.kind {
            EventKind::Slice { cat, begin, end, stopped } => {
                let _ = write!(out, r#"{{"ph":"X","pid":{pid},"tid":{tid},"cat":"{cat}","ts":"#);
                write_micros(out, *begin);
                out.push_str(r#","dur":"#);
                write_micros(out, end.saturating_sub(*begin));
                write_name_and_stopped(out, &self.name, stopped.as_deref());
            }
            EventKind::Instant { cat, at } => {
                let _ = write!(
                    out,
                    r#"{{"ph":"i","s":"t","pid":{pid},"tid":{tid},"cat":"{cat}","ts":"#
                );
                write_micros(out, *at);
                write_name_and_stopped(out, &self.name, None);
            }
            EventKind::Meta(kind) => {
                let (what, key) = match kind {
                    MetaKind::ProcessName => ("process_name", "name"),
                    MetaKind::ThreadName => ("thread_name", "name"),
                    MetaKind::ThreadSort(_) => ("thread_sort_index", "sort_index"),
                };
                let _ = write!(
                    out,
                    r#"{{"ph":"M","pid":{pid},"tid":{tid},"name":"{what}","args":{{"{key}":"#
                );
                match kind {
                    MetaKind::ThreadSort(index) => {
                        let _ = write!(out, "{index}");
                    }
                    _ => write_json_string(out, &self.name),
                }
                out.push_str("}}");
            }
        }
    }
}

fn write_name_and_stopped(out: &mut String, name: &str, stopped: Option<&str>) {
    out.push_str(r#","name":"#);
    write_json_string(out, name);
    if let Some(stopped) = stopped {
        out.push_str(r#","args":{"stopped":"#);
        write_json_string(out, stopped);
        out.push('}');
    }
    out.push('}');
}

/// Nanoseconds as the format's microseconds, keeping the nanoseconds as decimals.
fn write_micros(out: &mut String, nanos: u64) {
    let _ = write!(out, "{}.{:03}", nanos / 1000, nanos % 1000);
}

/// `text` as a JSON string literal (RFC 8259 section 7: quote, backslash and control
/// characters escaped).
pub(crate) fn write_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The writer thread: formats batches as they come, until every sender is gone.
fn write_trace(mut file: BufWriter<File>, batches: Receiver<Vec<Event>>) -> io::Result<u64> {
    let mut written = 0u64;
    let mut line = String::new();
    file.write_all(b"[\n")?;
    for batch in batches {
        PENDING.fetch_sub(batch.len(), Ordering::Relaxed);
        for event in &batch {
            line.clear();
            if written > 0 {
                line.push_str(",\n");
            }
            event.write_json(&mut line);
            file.write_all(line.as_bytes())?;
            written += 1;
        }
    }
    let dropped = DROPPED.load(Ordering::Relaxed);
    if dropped > 0 {
        line.clear();
        line.push_str(",\n");
        let name = format!("verdant: {dropped} events dropped (the writer fell behind)");
        Event {
            pid: 0,
            tid: 0,
            kind: EventKind::Instant { cat: "trace", at: 0 },
            name: name.into(),
        }
        .write_json(&mut line);
        file.write_all(line.as_bytes())?;
    }
    file.write_all(b"\n]\n")?;
    file.flush()?;
    Ok(written)
}

/// Starts the trace named by [`TRACE_ENV`], once per process, and finishes it at exit.
pub(crate) fn start_from_env() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Some(path) = std::env::var_os(TRACE_ENV).filter(|p| !p.is_empty()) else { return };
        match start(&path) {
            Ok(()) => {
                extern "C" fn finish_at_exit() {
                    if is_active() {
                        let _ = stop();
                    }
                }
                // SAFETY: `finish_at_exit` is a plain function that may run at exit; atexit
                // has no other precondition.
                unsafe { libc::atexit(finish_at_exit) };
            }
            Err(err) => crate::report::report(format!("verdant: {TRACE_ENV}: {err}")),
        }
    });
}

/// Why a greenlet stopped running, as a category the viewers colour by.
fn category(reason: &str) -> &'static str {
    const SYNC: [&str; 8] =
        ["Lock", "Semaphore", "Queue", "Event", "Channel", "AsyncResult", "Condition", "pool"];
    if reason == "yield" {
        "yield"
    } else if reason.starts_with("sleep") {
        "sleep"
    } else if reason.contains("the end of") || reason.contains("join") {
        "join"
    } else if reason.starts_with("fd ") || reason.contains(" fd(s) ") {
        "io"
    } else if SYNC.iter().any(|word| reason.contains(word)) {
        "sync"
    } else {
        "wait"
    }
}

/// One hub's recording: what it collected since the last hand-over, and where each of its
/// greenlets is in its run/wait cycle.
pub(crate) struct Recorder {
    /// The trace generation this hub last synced to.
    generation: std::cell::Cell<u64>,
    state: std::cell::RefCell<Option<Recording>>,
}

struct Recording {
    /// The trace this recording belongs to (`Sink::generation`).
    generation: u64,
    pid: u32,
    started: Instant,
    events: Vec<Event>,
    /// When the running greenlet (or the main code) was resumed.
    run_began: u64,
    /// Greenlets parked now (by row): since when, and why.
    waiting: HashMap<u64, (u64, Text), IdHash>,
    /// Rows named so far.
    named: std::collections::HashSet<u64, IdHash>,
    /// Every stop reason seen, and its category: each is allocated once.
    reasons: HashMap<Text, &'static str>,
    /// The name of every run slice.
    run: Text,
}

/// Hashes the hub's ids (small, distinct integers) with one multiplication.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A `HashMap` state for id keys.
pub(crate) type IdHash = BuildHasherDefault<IdHasher>;

/// The row of a greenlet: the loop is 0, the main code (greenlet id 0) is 1.
fn row_of(id: u64) -> u64 {
    id + 1
}

impl Recorder {
    pub(crate) fn new() -> Recorder {
        Recorder { generation: std::cell::Cell::new(0), state: std::cell::RefCell::new(None) }
    }

    /// Whether the process-wide trace changed since this hub last looked (one atomic load).
    #[inline(always)]
    pub(crate) fn out_of_date(&self) -> bool {
        GENERATION.load(Ordering::Relaxed) != self.generation.get()
    }

    /// Whether this hub records now.
    pub(crate) fn recording(&self) -> bool {
        self.state.borrow().is_some()
    }

    /// Whether code left the recording borrowed (see `Hub::end_overflowed`).
    pub(crate) fn in_use(&self) -> bool {
        self.state.try_borrow_mut().is_err()
    }

    /// Follows the process-wide trace: starts recording (naming the hub's rows) or hands
    /// over what it has and stops. Returns whether it records now.
    pub(crate) fn sync(&self) -> bool {
        let sink = SINK.lock();
        let generation = GENERATION.load(Ordering::Acquire);
        self.generation.set(generation);
        // A recording of an earlier trace (this hub slept through a stop and a start) is
        // dropped: its times and rows belong to another file.
        let current = matches!((&*self.state.borrow(), sink.as_ref()),
            (Some(rec), Some(sink)) if rec.generation == sink.generation);
        match sink.as_ref() {
            Some(sink) if !current => {
                let pid = NEXT_PID.fetch_add(1, Ordering::Relaxed);
                let thread = std::thread::current();
                let name =
                    thread.name().map_or_else(|| format!("{:?}", thread.id()), str::to_string);
                let events = vec![
                    Event::meta(pid, 0, MetaKind::ProcessName, format!("hub {pid}: {name}")),
                    Event::meta(pid, 0, MetaKind::ThreadName, "hub loop".into()),
                    Event::meta(pid, 0, MetaKind::ThreadSort(0), String::new()),
                ];
                let now = sink.nanos(Instant::now());
                *self.state.borrow_mut() = Some(Recording {
                    generation: sink.generation,
                    pid,
                    started: sink.started,
                    events,
                    run_began: now,
                    waiting: Default::default(),
                    named: Default::default(),
                    reasons: HashMap::new(),
                    run: Arc::from("run"),
                });
                true
            }
            Some(_) => true,
            None => {
                if let Some(mut recording) = self.state.borrow_mut().take() {
                    recording.events.clear();
                }
                false
            }
        }
    }

    /// Hands what this hub collected to the writer.
    pub(crate) fn flush(&self) {
        let mut state = self.state.borrow_mut();
        let Some(recording) = state.as_mut() else { return };
        if recording.events.is_empty() {
            return;
        }
        let events = std::mem::take(&mut recording.events);
        let generation = recording.generation;
        drop(state);
        if let Some(sink) = SINK.lock().as_ref().filter(|sink| sink.generation == generation) {
            sink.send(events);
        }
    }

    /// The loop resumes greenlet `id` (named `name`): its wait, if any, ends now.
    pub(crate) fn resumed(&self, id: u64, name: Option<&str>) {
        let full = self.with_recording(|rec| {
            let now = rec.now();
            let row = row_of(id);
            rec.name_row(row, id, name);
            if let Some((since, reason)) = rec.waiting.remove(&row) {
                let cat = rec.reasons.get(&reason).copied().unwrap_or_else(|| category(&reason));
                rec.push(Event::slice(rec.pid, row, cat, reason, since, now));
            }
            rec.run_began = now;
        });
        if full {
            self.flush();
        }
    }

    /// Greenlet `id` (named `name`) stopped running because of `why`; `finished` when it
    /// has ended.
    pub(crate) fn stopped(&self, id: u64, name: Option<&str>, why: &str, finished: bool) {
        let full = self.with_recording(|rec| {
            let now = rec.now();
            let row = row_of(id);
            rec.name_row(row, id, name);
            let began = rec.run_began;
            let why = rec.intern(why);
            let mut run = Event::slice(rec.pid, row, "run", rec.run.clone(), began, now);
            if let EventKind::Slice { stopped, .. } = &mut run.kind {
                *stopped = Some(why.clone());
            }
            rec.push(run);
            if !finished {
                rec.waiting.insert(row, (now, why));
            } else {
                rec.named.remove(&row);
            }
        });
        if full {
            self.flush();
        }
    }

    /// The trace ends here: the running task's stretch and every open wait end now, so the
    /// file shows them up to its last moment. `running` is the id and name of the task
    /// running now.
    pub(crate) fn close(&self, running: (u64, Option<&str>)) {
        self.with_recording(|rec| {
            let now = rec.now();
            let waiting: Vec<(u64, (u64, Text))> = rec.waiting.drain().collect();
            for (row, (since, reason)) in waiting {
                let cat = rec.reasons.get(&reason).copied().unwrap_or_else(|| category(&reason));
                rec.push(Event::slice(rec.pid, row, cat, reason, since, now));
            }
            let (id, name) = running;
            let row = row_of(id);
            rec.name_row(row, id, name);
            let mut run = Event::slice(rec.pid, row, "run", rec.run.clone(), rec.run_began, now);
            if let EventKind::Slice { stopped, .. } = &mut run.kind {
                *stopped = Some(Arc::from("the trace stopped"));
            }
            rec.push(run);
        });
        self.flush();
    }

    /// Something happened in the loop itself (timers fired, fds ready, messages handled).
    pub(crate) fn loop_event(&self, cat: &'static str, what: String) {
        let full = self.with_recording(|rec| {
            let at = rec.now();
            rec.push(Event {
                pid: rec.pid,
                tid: 0,
                kind: EventKind::Instant { cat, at },
                name: what.into(),
            });
        });
        if full {
            self.flush();
        }
    }

    /// Runs `record` if recording; returns whether the batch is full.
    fn with_recording(&self, record: impl FnOnce(&mut Recording)) -> bool {
        let mut state = self.state.borrow_mut();
        let Some(rec) = state.as_mut() else { return false };
        record(rec);
        rec.events.len() >= BATCH_EVENTS
    }
}

impl Recording {
    fn now(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    fn push(&mut self, event: Event) {
        self.events.push(event);
    }

    /// The shared copy of `reason` (made, with its category, the first time it is seen).
    /// At most [`MAX_REASONS`] are kept: reasons that name greenlets (`the end of greenlet
    /// #7`) are nearly all distinct, and past that each is allocated on its own.
    fn intern(&mut self, reason: &str) -> Text {
        if let Some((text, _)) = self.reasons.get_key_value(reason) {
            return text.clone();
        }
        let text: Text = Arc::from(reason);
        if self.reasons.len() < MAX_REASONS {
            self.reasons.insert(text.clone(), category(reason));
        }
        text
    }

    fn name_row(&mut self, row: u64, id: u64, name: Option<&str>) {
        if !self.named.insert(row) {
            return;
        }
        let label = match (id, name) {
            (0, _) => "main code".to_string(),
            (_, Some(name)) => format!("{name} (#{id})"),
            (_, None) => format!("greenlet #{id}"),
        };
        self.events.push(Event::meta(self.pid, row, MetaKind::ThreadName, label));
        self.events.push(Event::meta(self.pid, row, MetaKind::ThreadSort(row), String::new()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_escape_quotes_backslashes_and_control_characters() {
        let mut out = String::new();
        write_json_string(&mut out, "a \"b\" \\ c\n\u{1}é");
        assert_eq!(out, r#""a \"b\" \\ c\n\u0001é""#);
    }

    #[test]
    fn micros_keep_nanosecond_decimals() {
        let mut out = String::new();
        write_micros(&mut out, 1_234_567);
        assert_eq!(out, "1234.567");
    }

    #[test]
    fn reasons_fall_into_categories() {
        assert_eq!(category("yield"), "yield");
        assert_eq!(category("sleep"), "sleep");
        assert_eq!(category("fd 7 to become readable"), "io");
        assert_eq!(category("Event::wait()"), "sync");
        assert_eq!(category("the end of greenlet #3"), "join");
        assert_eq!(category("the end of greenlet #3 \"pdf-fd\" (join)"), "join");
        assert_eq!(category("2 fd(s) to become ready (quietly)"), "io");
        assert_eq!(category("something else"), "wait");
    }
}
