//! The worker side: what a child process does once [`worker_main`] recognizes it.
//!
//! A worker is the program's own binary, re-executed by the pool with [`WORKER_ENV`] set,
//! its end of a socket pair on fd [`WORKER_FD`] and its gate on fd [`WORKER_GATE_FD`]. It
//! says hello with its binary identity, runs the initializer it is sent, then takes tasks
//! one at a time in arrival order: it runs each one it can decide at the gate (the others
//! the pool took back, and it skips them silently), answering it with a `Done` or `Failed`
//! frame, until `Quit` or the end of the stream. Plain blocking I/O: a worker has no hub
//! and needs none.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::frame::{self, FrameReader, Kind};
use crate::function::BinaryIdentity;
use crate::gate::Gate;

/// The environment variable that marks a worker process; its value is the parent's pid.
pub(crate) const WORKER_ENV: &str = "VERDANT_PROCESSPOOL_WORKER";

/// The fd on which a worker finds its socket to the pool.
pub(crate) const WORKER_FD: i32 = 3;

/// The fd on which a worker finds the memfd of its [`Gate`].
pub(crate) const WORKER_GATE_FD: i32 = 4;

/// Set by tests only, to a directory of token files: a worker started with it that can
/// remove one of the tokens exits (status 86) before it says hello. It makes "a worker
/// died during start-up" happen exactly as often as the test put tokens there.
pub const TEST_DIE_BEFORE_HELLO_ENV: &str = "VERDANT_PROCESSPOOL_TEST_DIE_BEFORE_HELLO";

/// Turns this process into a pool worker if it was started as one, and otherwise returns
/// at once: call it first thing in `main` of every program that creates a
/// [`ProcessPool`](crate::ProcessPool) (as Python's `freeze_support`).
///
/// Workers are started by re-executing the program's own binary, so a worker runs `main`
/// from the top; this call is where it leaves to serve tasks instead (it never returns in
/// a worker). It must come before anything else, in particular before any thread is
/// started.
///
/// ```no_run
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// fn main() {
///     verdant_processpool::worker_main(); // workers stop here
///
///     let pool = verdant_processpool::ProcessPool::new(Some(2)).unwrap();
///     assert_eq!(pool.map(square, 1..=4, None).unwrap(), [1, 4, 9, 16]);
/// }
/// ```
pub fn worker_main() {
    let Some(parent) = std::env::var_os(WORKER_ENV) else { return };
    // SAFETY: the documented contract of this function is that it runs first in `main`,
    // before any other thread exists, so nothing reads the environment concurrently.
    unsafe { std::env::remove_var(WORKER_ENV) }; // pools made by tasks are ordinary pools
    let parent: i32 = parent.to_str().and_then(|p| p.parse().ok()).unwrap_or(0);
    let code = match serve(parent) {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("verdant: process-pool worker {}: {err}", std::process::id());
            1
        }
    };
    std::process::exit(code);
}

fn serve(parent: i32) -> io::Result<()> {
    die_with_parent(parent);
    die_before_hello_if_a_test_asks();
    crate::function::record_panic_sites();
    // SAFETY: the pool put our end of the socket pair on WORKER_FD just before exec, and
    // nothing else in this process owns that fd.
    let socket = unsafe { UnixStream::from_raw_fd(WORKER_FD) };
    let mut input = socket.try_clone()?;
    let mut output = socket;
    // SAFETY: the pool put the gate's memfd on WORKER_GATE_FD just before exec, and nothing
    // else in this process owns that fd. The mapping outlives it.
    let gate = Gate::map(unsafe { OwnedFd::from_raw_fd(WORKER_GATE_FD) }.as_raw_fd())?;
    let mut reader = FrameReader::new();
    let mut out = Vec::new();

    let identity = BinaryIdentity::of_this_worker()?.to_bytes();
    frame::encode(&mut out, Kind::Hello, 0, &[&identity]);
    send(&mut output, &mut out)?;

    let Some(init) = reader.read_frame(|buf| input.read(buf))? else { return Ok(()) };
    if init.kind != Kind::Init {
        return Err(io::Error::other(format!("expected Init from the pool, got {:?}", init.kind)));
    }
    let payload = reader.payload(&init);
    if payload.first() == Some(&1) {
        let (call, argument) = frame::split_task(&payload[1..])
            .ok_or_else(|| io::Error::other("a malformed Init frame"))?;
        // SAFETY: the pool made this call in the parent, which runs the same executable as
        // this worker (it checked our identity before sending Init).
        if let Err(failure) = unsafe { call.invoke(argument) } {
            frame::encode(&mut out, Kind::InitFailed, 0, &[&frame::failure_payload(&failure)]);
            return send(&mut output, &mut out);
        }
    }
    frame::encode(&mut out, Kind::Ready, 0, &[]);
    send(&mut output, &mut out)?;

    let mut seq = 0; // of the task frames received, as the pool counts those it sent
    while let Some(task) = reader.read_frame(|buf| read_spinning(&mut input, buf))? {
        match task.kind {
            Kind::Quit => return Ok(()),
            Kind::Task => {
                seq += 1;
                if !gate.try_decide(seq) {
                    continue; // the pool took it back and gave it to another worker
                }
                let payload = reader.payload(&task);
                let outcome = match frame::split_task(payload) {
                    // SAFETY: as for the initializer above.
                    Some((call, argument)) => unsafe { call.invoke(argument) },
                    None => Err((
                        crate::function::FailureKind::DecodeArgument,
                        "a malformed Task frame".into(),
                    )),
                };
                match outcome {
                    Ok(result) => frame::encode(&mut out, Kind::Done, task.id, &[&result]),
                    Err(failure) => frame::encode(
                        &mut out,
                        Kind::Failed,
                        task.id,
                        &[&frame::failure_payload(&failure)],
                    ),
                }
                send(&mut output, &mut out)?;
            }
            other => return Err(io::Error::other(format!("unexpected {other:?} frame"))),
        }
    }
    Ok(()) // the pool closed the socket
}

/// How long a worker polls for its next task before it sleeps in `read`: a task that
/// follows within this time finds the worker awake (a wake-up across cores costs tens of
/// microseconds).
const SPIN: Duration = Duration::from_micros(50);

/// Reads what is there, polling for up to [`SPIN`] before blocking.
fn read_spinning(input: &mut UnixStream, buf: &mut [u8]) -> io::Result<usize> {
    let started = Instant::now();
    loop {
        // SAFETY: recv into a valid, writable buffer of `buf.len()` bytes.
        let n = unsafe {
            libc::recv(input.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT)
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let error = io::Error::last_os_error();
        match error.kind() {
            io::ErrorKind::WouldBlock => match started.elapsed() {
                // Busy first (the answer is usually this quick), then yielding the CPU
                // (the pool's process may need it to send the next task).
                waited if waited < SPIN / 10 => std::hint::spin_loop(),
                waited if waited < SPIN => std::thread::yield_now(),
                _ => return input.read(buf),
            },
            io::ErrorKind::Interrupted => {}
            _ => return Err(error),
        }
    }
}

/// The hook of [`TEST_DIE_BEFORE_HELLO_ENV`]: one `read_dir` when the variable is set,
/// nothing otherwise.
fn die_before_hello_if_a_test_asks() {
    let Some(tokens) = std::env::var_os(TEST_DIE_BEFORE_HELLO_ENV) else { return };
    let Ok(entries) = std::fs::read_dir(tokens) else { return };
    // Removing a file succeeds for one process only: each token costs one worker.
    if entries.flatten().any(|token| std::fs::remove_file(token.path()).is_ok()) {
        std::process::exit(86);
    }
}

/// Writes and clears `out`.
fn send(output: &mut UnixStream, out: &mut Vec<u8>) -> io::Result<()> {
    let result = output.write_all(out);
    out.clear();
    result
}

/// Asks the kernel to kill this worker when the pool's thread exits, so no worker outlives
/// its pool's process; exits at once if the parent is already gone.
fn die_with_parent(parent: i32) {
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a process attribute.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } != parent {
        std::process::exit(1); // the parent died before the prctl took effect
    }
}
