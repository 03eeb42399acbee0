//! Helpers shared by verdant's integration tests (in every crate's `tests/` and the
//! top-level `tests/`): an ordering log, a drop counter, panic messages, tests that run in a
//! child process, and socket options the tests need. Not published.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// An ordered record of events, shared by the greenlets of one test.
#[derive(Clone, Debug, Default)]
pub struct Log(Rc<RefCell<Vec<String>>>);

impl Log {
    /// An empty log.
    pub fn new() -> Log {
        Log::default()
    }

    /// Appends one event.
    pub fn push(&self, event: impl Into<String>) {
        self.0.borrow_mut().push(event.into());
    }

    /// Returns the events so far and empties the log.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.borrow_mut())
    }

    /// How many events are recorded.
    pub fn len(&self) -> usize {
        self.0.borrow().len()
    }

    /// Whether nothing is recorded yet.
    pub fn is_empty(&self) -> bool {
        self.0.borrow().is_empty()
    }
}

/// Counts how many of its tokens were dropped: proves destructors ran (exactly once).
#[derive(Clone, Debug, Default)]
pub struct DropCounter(Rc<Cell<usize>>);

impl DropCounter {
    /// A counter at zero.
    pub fn new() -> DropCounter {
        DropCounter::default()
    }

    /// A token that adds one to the counter when dropped.
    pub fn token(&self) -> DropToken {
        DropToken(self.0.clone())
    }

    /// How many tokens were dropped so far.
    pub fn dropped(&self) -> usize {
        self.0.get()
    }
}

/// Adds one to its [`DropCounter`] when dropped.
#[derive(Debug)]
pub struct DropToken(Rc<Cell<usize>>);

impl Drop for DropToken {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

/// Runs `f` and returns the message of the panic it must raise.
pub fn panic_message_of(f: impl FnOnce()) -> String {
    let payload =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).expect_err("expected a panic");
    if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else {
        "<non-string panic>".to_string()
    }
}

/// The environment variable that tells a test it runs as [`run_test_in_child`]'s child.
pub const CHILD_MARKER: &str = "VERDANT_TEST_CHILD";

/// Whether this process is the child started by [`run_test_in_child`] for test `name`.
pub fn is_child_for(name: &str) -> bool {
    std::env::var(CHILD_MARKER).is_ok_and(|v| v == name)
}

/// Runs one test of this test binary in a child process (for behaviour that ends the
/// process, like a stack overflow, or that must measure the process alone) and returns
/// its stderr and the signal that ended it.
pub fn run_test_in_child(name: &str) -> (String, Option<i32>) {
    use std::os::unix::process::ExitStatusExt;
    let out = child_output(name);
    (String::from_utf8_lossy(&out.stderr).into_owned(), out.status.signal())
}

/// Like [`run_test_in_child`], asserting that the child test passed.
pub fn assert_test_passes_in_child(name: &str) {
    let out = child_output(name);
    assert!(
        out.status.success(),
        "{name} failed in its child process: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn child_output(name: &str) -> std::process::Output {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD_MARKER, name)
        .output()
        .unwrap()
}

/// Recurses until the stack overflows.
#[allow(unconditional_recursion)] // overflowing is the point
pub fn recurse_forever(n: u64) -> u64 {
    let pad = std::hint::black_box([n; 128]);
    recurse_forever(n + 1) + pad[7]
}

/// Makes closing `socket` send a reset instead of a FIN (`SO_LINGER` with a zero timeout).
pub fn set_linger_zero(socket: &impl std::os::fd::AsFd) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    set_socket_option(socket, libc::SO_LINGER, &linger);
}

/// Sets the `SOL_SOCKET`-level option `name` of `socket` to `value`, asserting success.
pub fn set_socket_option<T>(socket: &impl std::os::fd::AsFd, name: libc::c_int, value: &T) {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt reads `size_of::<T>()` bytes from a valid reference to a `T`, and
    // the fd is open for as long as `socket` is borrowed (an `AsFd` borrow).
    let rc = unsafe {
        libc::setsockopt(
            socket.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt({name}): {}", std::io::Error::last_os_error());
}

/// Runs `tests` (name, function) the way libtest would, for test binaries with
/// `harness = false` (a process pool's workers re-execute the binary, and must leave `main`
/// through `worker_main()` before any test runs). Arguments that do not start with `-` are
/// filters on the names; each test's verdict and time is printed; exits with 101 if any
/// failed.
pub fn run_tests(tests: &[(&str, fn())]) {
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let selected: Vec<_> = tests
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    println!("\nrunning {} tests", selected.len());
    let mut failed = Vec::new();
    for (name, test) in &selected {
        let start = std::time::Instant::now();
        let outcome = std::panic::catch_unwind(test);
        let verdict = if outcome.is_ok() { "ok" } else { "FAILED" };
        println!("test {name} ... {verdict} ({:.2?})", start.elapsed());
        if outcome.is_err() {
            failed.push(*name);
        }
    }
    let passed = selected.len() - failed.len();
    if failed.is_empty() {
        println!("\ntest result: ok. {passed} passed; 0 failed\n");
    } else {
        println!(
            "\nfailures: {failed:?}\ntest result: FAILED. {passed} passed; {} failed\n",
            failed.len()
        );
        std::process::exit(101);
    }
}
