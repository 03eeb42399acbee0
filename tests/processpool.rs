//! `verdant::processpool`: every behaviour of the processing Pool API, crashes of every
//! kind, and the process table after terminate.
//!
//! This test binary has its own `main` (`harness = false`): the pool re-executes the
//! binary to make workers, and `worker_main()` must run first in `main`, which libtest's
//! generated `main` would not do. The runner below runs each test in turn on the main
//! thread's hub.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use verdant::processpool::{
    GetError, IMAP_WINDOW_PER_PROCESS, MapError, NotReady, ProcessPool, StillRunning, TaskError,
};

// ---- Functions the workers run -------------------------------------------------------

fn square(x: u64) -> u64 {
    x * x
}

fn pid(_: ()) -> u32 {
    std::process::id()
}

fn fail(message: String) -> u32 {
    panic!("{message}")
}

/// Panics with the line it panics on in its message.
fn panic_with_its_line(_: ()) -> u32 {
    panic!("raised at line {}", line!()) // some comment
}

fn abort(_: ()) -> u32 {
    std::process::abort()
}

fn segfault(_: ()) -> u32 {
    // SAFETY: none — crashing the worker is the point of this task.
    unsafe { std::ptr::null_mut::<u8>().write_volatile(1) };
    0
}

fn exit_with(code: i32) -> u32 {
    std::process::exit(code)
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Creates the file `path` (so the test knows the task started), then sleeps `ms`.
fn announce_then_sleep((path, ms): (String, u64)) -> u64 {
    std::fs::write(path, b"").unwrap();
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Creates the file `started`, then waits until the file `release` exists; returns its
/// worker's pid.
fn announce_then_wait((started, release): (String, String)) -> u32 {
    std::fs::write(started, b"").unwrap();
    while !Path::new(&release).exists() {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::process::id()
}

/// How many bytes it got, and in which worker.
fn byte_count(bytes: Vec<u8>) -> (usize, u32) {
    (bytes.len(), std::process::id())
}

/// Writes the header of a `Done` frame that promises 1 MiB of result, then nothing more:
/// sleeps for an hour.
fn promise_a_frame_then_hang(_: ()) -> u32 {
    let mut header = Vec::new();
    header.extend_from_slice(&(9u32 + (1 << 20)).to_le_bytes()); // kind + id + payload
    header.push(13); // Done
    header.extend_from_slice(&0u64.to_le_bytes());
    // SAFETY: fd 3 is this worker's socket to the pool; forging a frame on it is the test.
    unsafe { libc::write(3, header.as_ptr().cast(), header.len()) };
    std::thread::sleep(Duration::from_secs(3600));
    0
}

/// Panics on 3 and 17; sleeps 50 ms on 15 and above.
fn picky(x: u64) -> u64 {
    if x == 3 || x == 17 {
        panic!("picky about {x}");
    }
    if x >= 15 {
        std::thread::sleep(Duration::from_millis(50));
    }
    x
}

/// Waits until the file at `gate` exists (the test opens the gate), then returns `value`:
/// a task that takes exactly as long as the test wants. `None`: returns at once. Gives up
/// after a minute (a hang guard) with `u64::MAX`, which no test expects.
fn after_gate((gate, value): (Option<String>, u64)) -> u64 {
    let Some(gate) = gate else { return value };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::path::Path::new(&gate).exists() {
        if Instant::now() >= deadline {
            return u64::MAX;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    value
}

/// Creates a file in the directory `announce` (so the test knows the task is running in a
/// worker), then sleeps `ms`.
fn announce_in_then_sleep((announce, ms): (String, u64)) -> u64 {
    let me = format!("{announce}/{}", std::process::id());
    std::fs::write(me, b"").unwrap();
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

static INITIALIZED_WITH: AtomicU64 = AtomicU64::new(0);

fn remember(value: u64) {
    INITIALIZED_WITH.store(value, Ordering::SeqCst);
}

fn initialized_with(_: ()) -> u64 {
    INITIALIZED_WITH.load(Ordering::SeqCst)
}

fn initializer_that_panics(_: ()) {
    panic!("bad initializer")
}

/// An initializer that fails in the one worker that takes the token in `tokens`; the
/// others wait in it (for a gate that never opens; a hang guard of a minute).
fn one_initializer_fails_the_others_wait(tokens: String) {
    let taken = std::fs::read_dir(&tokens).unwrap().flatten();
    if taken.into_iter().any(|token| std::fs::remove_file(token.path()).is_ok()) {
        panic!("this worker's initializer fails");
    }
    after_gate((Some(format!("{tokens}/never")), 0));
}

/// Writes bytes that are not a frame to the pool, then waits.
fn scribble(_: ()) -> u32 {
    let junk = [0xffu8; 64];
    // SAFETY: fd 3 is this worker's socket to the pool; writing junk to it is the test.
    unsafe { libc::write(3, junk.as_ptr().cast(), junk.len()) };
    std::thread::sleep(Duration::from_secs(5));
    0
}

/// A value whose serialization always fails.
#[derive(Debug, Deserialize)]
struct Unencodable;

impl Serialize for Unencodable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("Unencodable refuses"))
    }
}

fn make_unencodable(_: ()) -> Unencodable {
    Unencodable
}

fn take_unencodable(_: Unencodable) -> u32 {
    0
}

/// A value that serializes but never deserializes.
#[derive(Debug, Serialize)]
struct Undecodable(u32);

impl<'de> Deserialize<'de> for Undecodable {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("Undecodable refuses"))
    }
}

fn make_undecodable(_: ()) -> Undecodable {
    Undecodable(7)
}

/// Yields 0, 1, … below `total`, and panics instead of yielding `when` (multiprocessing's
/// tests' `exception_throwing_generator`).
fn say_when(total: u64, when: u64) -> impl Iterator<Item = u64> {
    (0..total).inspect(move |&i| {
        if i == when {
            panic!("Somebody said when");
        }
    })
}

fn said_when(item: Option<Result<u64, TaskError>>) -> bool {
    matches!(item, Some(Err(TaskError::InputPanicked(m))) if m == "Somebody said when")
}

// ---- Helpers --------------------------------------------------------------------------

const LONG: Option<Duration> = Some(Duration::from_secs(30));

fn pool(processes: usize) -> ProcessPool {
    ProcessPool::new(Some(processes)).unwrap()
}

fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The processes whose parent is this process (zombies included).
fn children() -> Vec<u32> {
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        let ppid: u32 = after_name.split_whitespace().nth(1).unwrap().parse().unwrap();
        if ppid == me {
            found.push(pid);
        }
    }
    found
}

/// A path under the temporary directory, for this test process only; removed (with what
/// is under it) when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let path = std::env::temp_dir()
            .join(format!("verdant-processpool-test-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        let _ = std::fs::remove_file(&path);
        Scratch(path)
    }

    /// A directory holding `count` token files (for `TEST_DIE_BEFORE_HELLO_ENV`).
    fn tokens(tag: &str, count: usize) -> Scratch {
        let scratch = Scratch::new(tag);
        std::fs::create_dir(&scratch.0).unwrap();
        for token in 0..count {
            std::fs::write(scratch.0.join(token.to_string()), b"").unwrap();
        }
        scratch
    }

    fn remaining(&self) -> usize {
        std::fs::read_dir(&self.0).unwrap().count()
    }

    fn string(&self) -> String {
        self.0.to_str().unwrap().to_string()
    }

    /// A fresh directory at this path, for gates and announcements.
    fn directory(tag: &str) -> Scratch {
        let scratch = Scratch::new(tag);
        std::fs::create_dir_all(&scratch.0).unwrap();
        scratch
    }

    /// The path of a gate (a file that does not exist until [`open`](Scratch::open)).
    fn gate(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }

    fn open(&self, name: &str) {
        std::fs::write(self.gate(name), b"").unwrap();
    }

    /// Waits (as a greenlet) until `count` tasks announced themselves in this directory.
    fn wait_for_announcements(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.remaining() < count {
            assert!(Instant::now() < deadline, "fewer than {count} tasks started in 30 s");
            verdant::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Parks this greenlet until `path` exists (a hang guard of 30 s).
fn wait_until_exists(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(start.elapsed() < Duration::from_secs(30), "{path:?} never appeared");
        verdant::sleep(Duration::from_millis(1));
    }
}

/// Runs `test` with `TEST_DIE_BEFORE_HELLO_ENV` naming `tokens`: each worker started
/// meanwhile that can take a token dies before its hello.
fn with_deaths_before_hello<T>(tokens: &Scratch, test: impl FnOnce() -> T) -> T {
    let variable = verdant::processpool::TEST_DIE_BEFORE_HELLO_ENV;
    // SAFETY: this test binary runs its tests on one thread; nothing reads the
    // environment concurrently. Workers started meanwhile inherit the variable.
    unsafe { std::env::set_var(variable, &tokens.0) };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(test));
    // SAFETY: as above.
    unsafe { std::env::remove_var(variable) };
    outcome.unwrap_or_else(|payload| std::panic::resume_unwind(payload))
}

fn died(result: Result<u32, TaskError>) -> String {
    match result {
        Err(TaskError::WorkerDied(how)) => how,
        other => panic!("expected WorkerDied, got {other:?}"),
    }
}

// ---- Tests ----------------------------------------------------------------------------

fn apply_and_apply_async_return_values() {
    let pool = pool(2);
    assert_eq!(pool.apply(square, 7), Ok(49));
    let result = pool.apply_async(square, 9);
    assert_eq!(result.get(LONG), Ok(81));
    assert!(result.ready());
    assert_eq!(result.successful(), Ok(true));
    assert_eq!(result.get(LONG), Ok(81), "get() leaves the value for the next reader");
}

/// processing's `ApplyResult.get()` may be called again: every call returns the value
/// (or raises the error). `take` moves a value out instead, once.
fn an_apply_result_is_read_again_until_taken() {
    let pool = pool(1);
    let result = pool.apply_async(square, 7);
    assert_eq!(result.get(LONG), Ok(49));
    assert_eq!(result.get(LONG), Ok(49));
    let clone = result.clone();
    assert_eq!(clone.get(None), Ok(49), "clones share the result");
    assert_eq!(result.take(None), Ok(49));
    assert_eq!(clone.get(None), Err(GetError::Taken));
    assert_eq!(clone.take(None), Err(GetError::Taken));
    assert_eq!(result.successful(), Ok(true), "taken, it still succeeded");

    let mapped = pool.map_async(square, 1..4, None);
    assert_eq!(mapped.get(LONG), Ok(vec![1, 4, 9]));
    assert_eq!(mapped.get(LONG), Ok(vec![1, 4, 9]));

    let failed = pool.apply_async(fail, "every time".to_string());
    for _ in 0..2 {
        let error = failed.get(LONG).unwrap_err();
        assert!(
            matches!(&error, GetError::Failed(TaskError::Panicked(m)) if m.contains("every time"))
        );
        assert_eq!(failed.take(LONG), Err(error), "take reports a failure on every call too");
    }
}

fn callbacks_run_exactly_once_before_get_returns() {
    let pool = pool(1);
    let log = Rc::new(RefCell::new(Vec::new()));
    let (ok_log, err_log) = (log.clone(), log.clone());
    let good = pool.apply_async_with(
        square,
        3,
        move |v| ok_log.borrow_mut().push(format!("value {v}")),
        move |e| err_log.borrow_mut().push(format!("error {e}")),
    );
    assert_eq!(good.get(LONG), Ok(9));
    assert_eq!(*log.borrow(), ["value 9"]);
    let (ok_log, err_log) = (log.clone(), log.clone());
    let bad = pool.apply_async_with(
        fail,
        "no".to_string(),
        move |v| ok_log.borrow_mut().push(format!("value {v}")),
        move |e| err_log.borrow_mut().push(format!("error {e}")),
    );
    assert!(bad.wait(LONG));
    let errors = log.borrow()[1..].to_vec();
    assert!(
        errors.len() == 1 && errors[0].starts_with("error the task panicked at "),
        "{errors:?}"
    );
    let first_line = errors[0].lines().next().unwrap(); // a backtrace may follow
    assert!(first_line.ends_with(": no"), "{errors:?}");
    assert_eq!(bad.successful(), Ok(false));

    let (ok_log, err_log) = (log.clone(), log.clone());
    let mapped = pool.map_async_with(
        square,
        1..=3,
        Some(2),
        move |v| ok_log.borrow_mut().push(format!("values {v:?}")),
        move |e| err_log.borrow_mut().push(format!("error {e}")),
    );
    assert_eq!(mapped.get(LONG), Ok(vec![1, 4, 9]));
    assert_eq!(log.borrow().last().unwrap(), "values [1, 4, 9]");
    assert_eq!(log.borrow().len(), 3);
}

fn successful_is_an_error_before_the_result_is_ready() {
    let pool = pool(1);
    let scratch = Scratch::directory("successful");
    let slow = pool.apply_async(after_gate, (Some(scratch.gate("go")), 300));
    assert_eq!(slow.successful(), Err(NotReady));
    assert!(!slow.ready());
    assert!(!slow.wait(Some(Duration::from_millis(10))));
    assert_eq!(slow.get(Some(Duration::from_millis(10))), Err(GetError::Timeout));
    scratch.open("go");
    assert_eq!(slow.get(LONG), Ok(300));
}

fn map_matches_a_sequential_map_for_any_chunksize() {
    let pool = pool(2);
    let expected: Vec<u64> = (0..1000).map(square).collect();
    for chunksize in [Some(1), Some(37), Some(1000), None] {
        assert_eq!(pool.map(square, 0..1000, chunksize).unwrap(), expected, "{chunksize:?}");
    }
    assert_eq!(pool.map(square, Vec::new(), None), Ok(vec![]));
    assert_eq!(pool.map_async(square, 0..4, Some(3)).get(LONG), Ok(vec![0, 1, 4, 9]));
}

fn imap_is_in_order_and_next_timeout_times_out() {
    let pool = pool(2);
    let scratch = Scratch::directory("imap");
    let items = [(Some(scratch.gate("first")), 300), (None, 0), (None, 0)];
    let mut results = pool.imap(after_gate, items, 1);
    assert!(results.next_timeout(Duration::from_millis(10)).is_err(), "the first is not done");
    scratch.open("first");
    assert_eq!(results.next(), Some(Ok(300)));
    assert_eq!(results.next_timeout(Duration::from_secs(30)), Ok(Some(Ok(0))));
    assert_eq!(results.collect::<Vec<_>>(), [Ok(0)]);
    let chunked: Vec<u64> = pool.imap(square, 0..10, 3).map(Result::unwrap).collect();
    assert_eq!(chunked, (0..10).map(square).collect::<Vec<_>>());
}

fn imap_unordered_yields_in_completion_order() {
    // The first item (on one worker) waits for its gate, which opens only once the second
    // (on the other worker) came back: the completion order is fixed, not timed.
    let pool = pool(2);
    let scratch = Scratch::directory("unordered");
    let items = [(Some(scratch.gate("first")), 400), (None, 0)];
    let mut results = pool.imap_unordered(after_gate, items, 1);
    assert_eq!(results.next_timeout(Duration::from_secs(30)), Ok(Some(Ok(0))));
    scratch.open("first");
    assert_eq!(results.next_timeout(Duration::from_secs(30)), Ok(Some(Ok(400))));
    assert_eq!(results.next(), None);
}

/// multiprocessing's `test_imap_handle_iterable_exception`: the input's error comes after
/// the results of the items before it; with chunks, after those of the whole chunks
/// before it (the chunk it broke off is lost).
fn imap_delivers_an_input_panic_after_the_results_before_it() {
    let pool = pool(4);
    for _ in 0..2 {
        // At the very first item, and again: the pool is not stuck after it.
        let mut results = pool.imap(square, say_when(1, 0), 1);
        assert!(said_when(results.next()));
        assert_eq!(results.next(), None);
    }
    for (chunksize, before) in [(1, 3), (2, 6), (4, 4)] {
        let when = if chunksize == 1 { 3 } else { 7 };
        let mut results = pool.imap(square, say_when(20, when), chunksize);
        for i in 0..before {
            assert_eq!(results.next(), Some(Ok(i * i)), "chunksize {chunksize}");
        }
        assert!(said_when(results.next()), "chunksize {chunksize}");
        assert_eq!(results.next(), None, "the iteration ends with the input's error");
    }
    assert_eq!(pool.apply(square, 3), Ok(9), "the pool goes on");
}

/// multiprocessing's `test_imap_unordered_handle_iterable_exception`: the error comes,
/// and every value before it is one of the expected ones. Here it comes last.
fn imap_unordered_delivers_an_input_panic_last() {
    let pool = pool(4);
    let mut results = pool.imap_unordered(square, say_when(1, 0), 1);
    assert!(said_when(results.next()));
    for (when, chunksize, values) in [(3, 1, 3), (7, 2, 6), (7, 4, 4)] {
        let mut expected: Vec<u64> = (0..20).map(square).collect();
        let mut results = pool.imap_unordered(square, say_when(20, when), chunksize);
        for _ in 0..values {
            let value = results.next().unwrap().unwrap();
            let at = expected.iter().position(|&e| e == value).expect("an expected value");
            expected.remove(at);
        }
        assert!(said_when(results.next()), "chunksize {chunksize}");
        assert_eq!(results.next(), None);
    }
}

/// Python 3.14's `imap(..., buffersize=n)` test on `itertools.count()`: an endless input
/// is read only as far as the results read, plus a bounded window of chunks.
fn imap_reads_its_input_lazily_with_backpressure() {
    let pool = pool(2);
    let window = IMAP_WINDOW_PER_PROCESS * pool.processes();
    for chunksize in [1, 3] {
        let pulled = Rc::new(Cell::new(0usize));
        let counted = (0u64..).inspect({
            let pulled = pulled.clone();
            move |_| pulled.set(pulled.get() + 1)
        });
        let mut results = pool.imap(square, counted, chunksize);
        assert_eq!(pulled.get(), window * chunksize, "the first window is sent at once");
        for i in 0..100u64 {
            assert_eq!(results.next(), Some(Ok(i * i)));
            let chunks_read = i as usize / chunksize + 1;
            assert_eq!(pulled.get(), (window + chunks_read) * chunksize, "after {i}");
        }
    }
    // An imap begun before close() runs to its end, as multiprocessing's task handler
    // goes on reading its iterable; one begun after is refused.
    let results = pool.imap(square, 0..50, 1);
    pool.close();
    assert_eq!(
        results.map(Result::unwrap).collect::<Vec<_>>(),
        (0..50).map(square).collect::<Vec<_>>()
    );
    assert_eq!(pool.imap(square, 0..3, 1).collect::<Vec<_>>(), [Err(TaskError::NotRunning)]);
    pool.join().unwrap();
}

/// multiprocessing's `test_traceback`: the worker's panic comes with where it happened
/// (and its backtrace, with `RUST_BACKTRACE`).
fn a_panic_says_where_it_happened_in_the_worker() {
    let original = std::env::var_os("RUST_BACKTRACE");
    for backtrace in ["0", "1"] {
        // SAFETY: this test binary runs its tests on one thread; nothing reads the
        // environment concurrently. The workers inherit the variable.
        unsafe { std::env::set_var("RUST_BACKTRACE", backtrace) };
        let outcome = pool(1).apply(panic_with_its_line, ());
        let Err(TaskError::Panicked(panic)) = outcome else { panic!("{outcome:?}") };
        let line =
            panic.message().strip_prefix("raised at line ").unwrap_or_else(|| panic!("{panic}"));
        let location = panic.location().expect("a worker's panic has a location");
        assert!(location.starts_with(&format!("{}:{line}:", file!())), "{location}");
        let shown = TaskError::Panicked(panic.clone()).to_string();
        let expected = format!("the task panicked at {location}: raised at line {line}");
        assert!(shown.starts_with(&expected), "{shown}");
        match backtrace {
            "0" => assert_eq!(panic.backtrace(), None),
            _ => {
                let trace = panic.backtrace().expect("RUST_BACKTRACE=1: a backtrace");
                assert!(trace.contains("panic_with_its_line"), "{trace}");
                assert!(shown.contains("worker backtrace:"), "{shown}");
            }
        }
    }
    // SAFETY: as above.
    unsafe {
        match original {
            Some(value) => std::env::set_var("RUST_BACKTRACE", value),
            None => std::env::remove_var("RUST_BACKTRACE"),
        }
    }
}

/// multiprocessing's `Pool(0)` and `test_pool_maxtasksperchild_invalid`: refused with a
/// clear error (`ValueError` there), no process started.
fn zero_processes_or_zero_maxtasksperchild_are_refused() {
    let before = children();
    let refusals = [
        (ProcessPool::new(Some(0)), "processes"),
        (ProcessPool::builder().processes(0).build(), "processes"),
        (ProcessPool::builder().processes(3).maxtasksperchild(0).build(), "maxtasksperchild"),
    ];
    for (outcome, what) in refusals {
        let err = outcome.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
        assert!(err.to_string().contains(what), "{err}");
    }
    assert!(children().iter().all(|c| before.contains(c)), "no worker was started");
    let pool = ProcessPool::builder().processes(1).maxtasksperchild(1).build().unwrap();
    assert_eq!(pool.apply(square, 2), Ok(4), "1 is the least accepted");
}

/// multiprocessing's `test_release_unused_processes` (bpo-19675): when a worker cannot be
/// started while the pool is made, the ones already started are terminated and reaped.
fn a_worker_that_cannot_be_started_leaves_no_process_behind() {
    let before = children();
    let tokens = Scratch::tokens("launches", 3);
    let variable = verdant::processpool::TEST_LAUNCH_TOKENS_ENV;
    // SAFETY: this test binary runs its tests on one thread; nothing reads the
    // environment concurrently.
    unsafe { std::env::set_var(variable, &tokens.0) };
    let outcome = ProcessPool::new(Some(5));
    // SAFETY: as above.
    unsafe { std::env::remove_var(variable) };
    let err = outcome.unwrap_err();
    assert!(err.to_string().contains("could not start worker 4 of 5"), "{err}");
    assert_eq!(tokens.remaining(), 0, "three workers were started");
    let left: Vec<u32> = children().into_iter().filter(|c| !before.contains(c)).collect();
    assert_eq!(left, Vec::<u32>::new(), "no child process left, not even a zombie");
}

/// The same when a worker fails its start-up at the pool's first start: the workers
/// already started (here, waiting in their initializers) are killed and reaped when the
/// pool breaks, not left to time out.
fn a_first_start_up_failure_leaves_no_process_behind() {
    let before = children();
    let tokens = Scratch::tokens("initializers", 1);
    let pool = ProcessPool::builder()
        .processes(3)
        .initializer(one_initializer_fails_the_others_wait, tokens.string())
        .build()
        .unwrap();
    match pool.apply(square, 2) {
        Err(TaskError::PoolBroken(why)) => assert!(why.contains("initializer fails"), "{why}"),
        other => panic!("{other:?}"),
    }
    let left: Vec<u32> = children().into_iter().filter(|c| !before.contains(c)).collect();
    assert_eq!(left, Vec::<u32>::new(), "no child process left, not even a zombie");
    pool.terminate();
    pool.join().unwrap();
}

fn a_panic_reaches_the_caller_and_the_worker_survives() {
    let pool = pool(1);
    let before = pool.apply(pid, ()).unwrap();
    assert_eq!(pool.apply(fail, "boom".to_string()), Err(TaskError::Panicked("boom".into())));
    assert_eq!(pool.apply(pid, ()).unwrap(), before, "the same worker process");
}

fn a_crashing_worker_fails_its_task_and_is_replaced() {
    type Task = fn(()) -> u32;
    let crashes: [(Task, &str); 2] = [(abort, "SIGABRT"), (segfault, "SIGSEGV")];
    for (crash, signal) in crashes {
        let pool = pool(1);
        let before = pool.apply(pid, ()).unwrap();
        let how = died(pool.apply(crash, ()));
        assert!(how.contains(signal) && how.contains(&before.to_string()), "{how}");
        let after = pool.apply(pid, ()).unwrap();
        assert_ne!(after, before, "a new worker process");
        assert!(!process_exists(before), "the dead worker was reaped");
    }
    let pool = pool(1);
    let how = died(pool.apply(exit_with, 3));
    assert!(how.contains("exited with status 3"), "{how}");
    assert_eq!(pool.apply(square, 5), Ok(25));
}

fn a_worker_killed_from_outside_fails_its_task_and_is_replaced() {
    let pool = pool(1);
    let worker = pool.apply(pid, ()).unwrap();
    let scratch = Scratch::directory("killed");
    let stuck = pool.apply_async(announce_in_then_sleep, (scratch.string(), 20_000));
    scratch.wait_for_announcements(1); // it runs in the worker now
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(worker as i32, libc::SIGKILL) }, 0);
    match stuck.get(LONG) {
        Err(GetError::Failed(TaskError::WorkerDied(how))) => {
            assert!(how.contains("SIGKILL"), "{how}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(pool.apply(square, 6), Ok(36));
}

fn tasks_sent_behind_a_crash_are_not_lost() {
    let pool = pool(1);
    let crash = pool.apply_async(abort, ());
    let after: Vec<_> = (1..=4).map(|x| pool.apply_async(square, x)).collect();
    assert!(matches!(crash.get(LONG), Err(GetError::Failed(TaskError::WorkerDied(_)))));
    let values: Vec<u64> = after.iter().map(|r| r.get(LONG).unwrap()).collect();
    assert_eq!(values, [1, 4, 9, 16]);
}

fn an_unreadable_frame_fails_the_task_and_the_worker_is_replaced() {
    let pool = pool(1);
    let how = died(pool.apply(scribble, ()));
    assert!(how.contains("unreadable frame"), "{how}");
    assert_eq!(pool.apply(square, 4), Ok(16));
}

fn map_does_not_fail_fast_and_reports_the_first_failed_chunk_whole() {
    let pool = pool(2);
    let start = Instant::now();
    let err = pool.map(picky, 0..20, Some(5)).unwrap_err();
    // Chunk 0..5 fails at once, chunk 15..20 after 15 and 16 slept 50 ms each: the error
    // came only after that, and it is the first failed chunk by position.
    assert!(start.elapsed() >= Duration::from_millis(100), "{:?}", start.elapsed());
    assert_eq!(err, MapError { items: 0..5, error: TaskError::Panicked("picky about 3".into()) });
    let items: Vec<_> = pool.imap(picky, 0..10, 5).collect();
    assert!(items[..5].iter().all(|r| r == &Err(TaskError::Panicked("picky about 3".into()))));
    assert_eq!(items[5..], [Ok(5), Ok(6), Ok(7), Ok(8), Ok(9)]);
}

fn the_initializer_runs_in_every_worker() {
    let pool = ProcessPool::builder().processes(2).initializer(remember, 42).build().unwrap();
    let seen = pool.map(initialized_with, vec![(); 20], Some(1)).unwrap();
    assert!(seen.iter().all(|&v| v == 42), "{seen:?}");
}

fn a_failing_initializer_breaks_the_pool_without_hanging() {
    let pool = ProcessPool::builder()
        .processes(1)
        .initializer(initializer_that_panics, ())
        .build()
        .unwrap();
    match pool.apply(square, 1) {
        Err(TaskError::PoolBroken(why)) => assert!(why.contains("bad initializer"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(pool.apply(square, 2), Err(TaskError::PoolBroken(_))));
}

fn maxtasksperchild_replaces_workers() {
    let pool = ProcessPool::builder().processes(1).maxtasksperchild(2).build().unwrap();
    let pids: Vec<u32> = (0..6).map(|_| pool.apply(pid, ()).unwrap()).collect();
    assert_eq!(pids[0], pids[1]);
    assert_eq!(pids[2], pids[3]);
    assert_eq!(pids[4], pids[5]);
    assert_eq!(pids.iter().collect::<HashSet<_>>().len(), 3, "{pids:?}");
}

fn close_then_join_finishes_the_queue() {
    let pool = pool(2);
    assert_eq!(pool.join(), Err(StillRunning));
    let queued: Vec<_> = (0..6).map(|x| pool.apply_async(sleep_ms, 20 + x)).collect();
    let pids = pool.pids();
    pool.close();
    assert_eq!(pool.apply(square, 1), Err(TaskError::NotRunning));
    pool.join().unwrap();
    for (x, result) in queued.iter().enumerate() {
        assert_eq!(result.get(Some(Duration::ZERO)), Ok(20 + x as u64));
    }
    assert!(pids.iter().all(|&p| !process_exists(p)), "the workers exited and were reaped");
    assert!(pool.pids().is_empty());
}

fn terminate_with_thousands_of_long_tasks_is_prompt_and_leaves_no_process() {
    let pool = pool(2);
    let scratch = Scratch::directory("terminate");
    let pending: Vec<_> = (0..2000)
        .map(|_| pool.apply_async(announce_in_then_sleep, (scratch.string(), 10_000)))
        .collect();
    scratch.wait_for_announcements(2); // two of them are running
    let pids = pool.pids();
    assert_eq!(pids.len(), 2);
    // Prompt: the two running tasks are cut short, not awaited (they would report 10000).
    pool.terminate();
    assert!(
        pending
            .iter()
            .all(|r| r.get(Some(Duration::ZERO)) == Err(GetError::Failed(TaskError::Terminated)))
    );
    assert!(pids.iter().all(|&p| !process_exists(p)));
    assert_eq!(children(), Vec::<u32>::new(), "no child process left, not even a zombie");
    pool.join().unwrap();
    assert_eq!(pool.apply(square, 1), Err(TaskError::NotRunning));
}

fn dropping_the_pool_terminates_it() {
    let pool = pool(2);
    let scratch = Scratch::directory("drop");
    let running = pool.apply_async(announce_in_then_sleep, (scratch.string(), 10_000));
    scratch.wait_for_announcements(1);
    let pids = pool.pids();
    drop(pool);
    assert_eq!(running.get(LONG), Err(GetError::Failed(TaskError::Terminated)));
    assert!(pids.iter().all(|&p| !process_exists(p)));
}

fn serialization_failures_are_task_errors() {
    let pool = pool(1);
    let before = pool.apply(pid, ()).unwrap();
    match pool.apply(make_unencodable, ()) {
        Err(TaskError::Serialization(what)) => {
            assert!(what.contains("encode the result: Unencodable refuses"), "{what}")
        }
        other => panic!("{other:?}"),
    }
    match pool.apply(make_undecodable, ()) {
        Err(TaskError::Serialization(what)) => {
            assert!(what.contains("decode the result"), "{what}")
        }
        other => panic!("{other:?}"),
    }
    match pool.apply(take_unencodable, Unencodable) {
        Err(TaskError::Serialization(what)) => {
            assert!(what.contains("encode the argument: Unencodable refuses"), "{what}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(pool.apply(pid, ()).unwrap(), before, "the worker survived all three");
}

/// multiprocessing's `test_unpickleable_result`: a result that cannot be serialized
/// reaches the error callback and `get` as the serializer's own message (pickle's, in
/// `MaybeEncodingError`), and no worker is lost to it, twenty times over.
fn an_unserializable_result_reports_the_serializers_message() {
    let pool = pool(2);
    let pids: HashSet<u32> = pool.pids().into_iter().collect();
    for _ in 0..20 {
        let scratchpad = Rc::new(RefCell::new(None));
        let errback = {
            let scratchpad = scratchpad.clone();
            move |e: &TaskError| *scratchpad.borrow_mut() = Some(e.clone())
        };
        let result = pool.apply_async_with(make_unencodable, (), |_| {}, errback);
        let error = result.take(LONG).unwrap_err();
        let GetError::Failed(TaskError::Serialization(what)) = &error else { panic!("{error:?}") };
        assert!(what.ends_with("could not encode the result: Unencodable refuses"), "{what}");
        assert_eq!(scratchpad.borrow().as_ref(), Some(&TaskError::Serialization(what.clone())));
    }
    assert_eq!(pool.pids().into_iter().collect::<HashSet<_>>(), pids, "no worker was lost");
}

fn a_worker_running_another_binary_is_refused() {
    // SAFETY: this test binary runs its tests on one thread; nothing reads the
    // environment concurrently. Workers inherit the variable and report another identity.
    unsafe { std::env::set_var(verdant::processpool::TEST_IDENTITY_SALT_ENV, "other") };
    let pool = pool(1);
    let outcome = pool.apply(square, 2);
    // SAFETY: as above.
    unsafe { std::env::remove_var(verdant::processpool::TEST_IDENTITY_SALT_ENV) };
    match outcome {
        Err(TaskError::PoolBroken(why)) => assert!(why.contains("different binary"), "{why}"),
        other => panic!("{other:?}"),
    }
}

fn other_greenlets_run_while_a_task_runs() {
    // The task runs until a greenlet opens its gate after 20 ticks: `apply` can only
    // return if greenlets kept running while the caller waited for the task.
    let pool = pool(1);
    let scratch = Rc::new(Scratch::directory("ticks"));
    let ticks = Rc::new(Cell::new(0u32));
    let ticker = verdant::spawn({
        let (ticks, scratch) = (ticks.clone(), scratch.clone());
        move || {
            for _ in 0..20 {
                verdant::sleep(Duration::from_millis(1));
                ticks.set(ticks.get() + 1);
            }
            scratch.open("ticked");
        }
    });
    assert_eq!(pool.apply(after_gate, (Some(scratch.gate("ticked")), 200)), Ok(200));
    assert_eq!(ticks.get(), 20);
    ticker.join();
    let askers: Vec<_> = (0..50u64)
        .map(|x| {
            let result = pool.apply_async(square, x);
            verdant::spawn(move || result.get(LONG))
        })
        .collect();
    for (x, asker) in askers.iter().enumerate() {
        assert_eq!(asker.get().unwrap(), Ok(square(x as u64)));
    }
}

fn a_replacement_killed_before_its_hello_is_replaced_again() {
    let pool = pool(1);
    let first = pool.apply(pid, ()).unwrap();
    died(pool.apply(abort, ()));
    // The result came when the supervisor had started the replacement and was waiting for
    // its hello (the supervisor runs until it parks, this greenlet only after that).
    let replacement = pool.pids()[0];
    assert_ne!(replacement, first);
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(replacement as i32, libc::SIGKILL) }, 0);
    let after = pool.apply(pid, ());
    let after = after.unwrap_or_else(|e| panic!("a death during start-up broke the pool: {e}"));
    assert!(after != first && after != replacement, "a third worker ran it");
    assert!(!process_exists(replacement), "the killed replacement was reaped");
}

fn a_replacement_dying_before_its_hello_is_retried() {
    let pool = pool(1);
    let first = pool.apply(pid, ()).unwrap();
    let tokens = Scratch::tokens("one-death", 1);
    let after = with_deaths_before_hello(&tokens, || {
        died(pool.apply(abort, ())); // its replacement takes the token and dies
        pool.apply(pid, ())
    });
    assert_eq!(tokens.remaining(), 0, "the first replacement died before its hello");
    let after = after.unwrap_or_else(|e| panic!("a death during start-up broke the pool: {e}"));
    assert_ne!(after, first);
}

fn consecutive_failed_start_ups_break_the_pool_and_say_so() {
    let pool = pool(1);
    pool.apply(pid, ()).unwrap();
    let tokens = Scratch::tokens("many-deaths", 100);
    let outcome = with_deaths_before_hello(&tokens, || {
        died(pool.apply(abort, ())); // every replacement dies before its hello
        pool.apply(square, 3)
    });
    assert_eq!(100 - tokens.remaining(), 5, "five start-ups were tried");
    match outcome {
        Err(TaskError::PoolBroken(why)) => {
            assert!(why.starts_with("5 consecutive worker start-ups failed: "), "{why}");
            assert!(why.contains("before it said hello"), "{why}");
            assert!(!why.contains("worker_main"), "a replacement is no sign of that: {why}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(pool.apply(square, 4), Err(TaskError::PoolBroken(_))));
}

fn a_worker_dying_at_the_first_start_breaks_the_pool_naming_worker_main() {
    let tokens = Scratch::tokens("first-start", 100);
    let outcome = with_deaths_before_hello(&tokens, || pool(1).apply(square, 3));
    assert_eq!(100 - tokens.remaining(), 1, "no retry when nothing has ever started");
    match outcome {
        Err(TaskError::PoolBroken(why)) => {
            assert!(why.contains("before it said hello"), "{why}");
            assert!(why.contains("worker_main()"), "{why}");
        }
        other => panic!("{other:?}"),
    }
}

fn a_frame_that_never_completes_fails_its_task_and_frees_the_one_behind() {
    let pool =
        ProcessPool::builder().processes(1).frame_timeout(Duration::from_secs(1)).build().unwrap();
    let first = pool.apply(pid, ()).unwrap();
    let stuck = pool.apply_async(promise_a_frame_then_hang, ());
    let behind = pool.apply_async(pid, ()); // sent behind it to the same worker
    match stuck.get(LONG) {
        Err(GetError::Failed(TaskError::WorkerDied(how))) => {
            assert!(how.contains(&first.to_string()) && how.contains("stalled"), "{how}")
        }
        other => panic!("{other:?}"),
    }
    let ran_on = behind.get(LONG).expect("the task behind it never started: it runs elsewhere");
    assert_ne!(ran_on, first);
    assert!(!process_exists(first), "the stalled worker was killed and reaped");
}

fn a_worker_that_stops_reading_its_task_is_replaced() {
    let pool =
        ProcessPool::builder().processes(1).frame_timeout(Duration::from_secs(1)).build().unwrap();
    let stopped = pool.apply(pid, ()).unwrap();
    // SAFETY: kill(2) on our own child. A stopped worker reads nothing.
    assert_eq!(unsafe { libc::kill(stopped as i32, libc::SIGSTOP) }, 0);
    let big = vec![7u8; 8 << 20]; // far more than a socket buffer holds
    let outcome = pool.apply_async(byte_count, big).get(LONG);
    let (len, ran_on) = outcome.expect("it never started: it runs elsewhere");
    assert_eq!(len, 8 << 20);
    assert_ne!(ran_on, stopped);
    assert!(!process_exists(stopped), "the stopped worker was killed and reaped");
}

fn a_task_queued_behind_a_hung_one_moves_to_an_idle_worker() {
    let pool = pool(2);
    let (hung_runs, blocker_runs) = (Scratch::new("hung-runs"), Scratch::new("blocker-runs"));
    let release = Scratch::new("release");
    let hung = pool.apply_async(announce_then_sleep, (hung_runs.string(), 3_600_000));
    let blocker = pool.apply_async(announce_then_wait, (blocker_runs.string(), release.string()));
    wait_until_exists(&hung_runs.0);
    wait_until_exists(&blocker_runs.0); // each worker runs one of the two
    let behind: Vec<_> = (0..2).map(|_| pool.apply_async(pid, ())).collect();
    // The feeders, woken by the submissions, run before this greenlet does again: with
    // both workers busy, each gets one of `behind` queued behind its task.
    verdant::yield_now();
    std::fs::write(&release.0, b"").unwrap();
    let free = blocker.get(LONG).unwrap();
    for result in &behind {
        assert_eq!(result.get(LONG), Ok(free), "both ran on the worker that was free");
    }
    assert!(!hung.ready());
}

// ---- Runner ---------------------------------------------------------------------------

fn main() {
    verdant::processpool::worker_main();

    let tests: &[(&str, fn())] = &[
        ("apply_and_apply_async_return_values", apply_and_apply_async_return_values),
        ("an_apply_result_is_read_again_until_taken", an_apply_result_is_read_again_until_taken),
        (
            "callbacks_run_exactly_once_before_get_returns",
            callbacks_run_exactly_once_before_get_returns,
        ),
        (
            "successful_is_an_error_before_the_result_is_ready",
            successful_is_an_error_before_the_result_is_ready,
        ),
        (
            "map_matches_a_sequential_map_for_any_chunksize",
            map_matches_a_sequential_map_for_any_chunksize,
        ),
        (
            "imap_is_in_order_and_next_timeout_times_out",
            imap_is_in_order_and_next_timeout_times_out,
        ),
        ("imap_unordered_yields_in_completion_order", imap_unordered_yields_in_completion_order),
        (
            "imap_delivers_an_input_panic_after_the_results_before_it",
            imap_delivers_an_input_panic_after_the_results_before_it,
        ),
        (
            "imap_unordered_delivers_an_input_panic_last",
            imap_unordered_delivers_an_input_panic_last,
        ),
        (
            "imap_reads_its_input_lazily_with_backpressure",
            imap_reads_its_input_lazily_with_backpressure,
        ),
        (
            "a_panic_says_where_it_happened_in_the_worker",
            a_panic_says_where_it_happened_in_the_worker,
        ),
        (
            "zero_processes_or_zero_maxtasksperchild_are_refused",
            zero_processes_or_zero_maxtasksperchild_are_refused,
        ),
        (
            "a_worker_that_cannot_be_started_leaves_no_process_behind",
            a_worker_that_cannot_be_started_leaves_no_process_behind,
        ),
        (
            "a_first_start_up_failure_leaves_no_process_behind",
            a_first_start_up_failure_leaves_no_process_behind,
        ),
        (
            "a_panic_reaches_the_caller_and_the_worker_survives",
            a_panic_reaches_the_caller_and_the_worker_survives,
        ),
        (
            "a_crashing_worker_fails_its_task_and_is_replaced",
            a_crashing_worker_fails_its_task_and_is_replaced,
        ),
        (
            "a_worker_killed_from_outside_fails_its_task_and_is_replaced",
            a_worker_killed_from_outside_fails_its_task_and_is_replaced,
        ),
        ("tasks_sent_behind_a_crash_are_not_lost", tasks_sent_behind_a_crash_are_not_lost),
        (
            "an_unreadable_frame_fails_the_task_and_the_worker_is_replaced",
            an_unreadable_frame_fails_the_task_and_the_worker_is_replaced,
        ),
        (
            "map_does_not_fail_fast_and_reports_the_first_failed_chunk_whole",
            map_does_not_fail_fast_and_reports_the_first_failed_chunk_whole,
        ),
        ("the_initializer_runs_in_every_worker", the_initializer_runs_in_every_worker),
        (
            "a_failing_initializer_breaks_the_pool_without_hanging",
            a_failing_initializer_breaks_the_pool_without_hanging,
        ),
        ("maxtasksperchild_replaces_workers", maxtasksperchild_replaces_workers),
        ("close_then_join_finishes_the_queue", close_then_join_finishes_the_queue),
        (
            "terminate_with_thousands_of_long_tasks_is_prompt_and_leaves_no_process",
            terminate_with_thousands_of_long_tasks_is_prompt_and_leaves_no_process,
        ),
        ("dropping_the_pool_terminates_it", dropping_the_pool_terminates_it),
        ("serialization_failures_are_task_errors", serialization_failures_are_task_errors),
        (
            "an_unserializable_result_reports_the_serializers_message",
            an_unserializable_result_reports_the_serializers_message,
        ),
        ("a_worker_running_another_binary_is_refused", a_worker_running_another_binary_is_refused),
        ("other_greenlets_run_while_a_task_runs", other_greenlets_run_while_a_task_runs),
        (
            "a_replacement_killed_before_its_hello_is_replaced_again",
            a_replacement_killed_before_its_hello_is_replaced_again,
        ),
        (
            "a_replacement_dying_before_its_hello_is_retried",
            a_replacement_dying_before_its_hello_is_retried,
        ),
        (
            "consecutive_failed_start_ups_break_the_pool_and_say_so",
            consecutive_failed_start_ups_break_the_pool_and_say_so,
        ),
        (
            "a_worker_dying_at_the_first_start_breaks_the_pool_naming_worker_main",
            a_worker_dying_at_the_first_start_breaks_the_pool_naming_worker_main,
        ),
        (
            "a_frame_that_never_completes_fails_its_task_and_frees_the_one_behind",
            a_frame_that_never_completes_fails_its_task_and_frees_the_one_behind,
        ),
        (
            "a_worker_that_stops_reading_its_task_is_replaced",
            a_worker_that_stops_reading_its_task_is_replaced,
        ),
        (
            "a_task_queued_behind_a_hung_one_moves_to_an_idle_worker",
            a_task_queued_behind_a_hung_one_moves_to_an_idle_worker,
        ),
    ];
    verdant_testutil::run_tests(tests);
}
