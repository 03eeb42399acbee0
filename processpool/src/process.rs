//! One worker process seen from the pool: starting it (re-executing this very binary with
//! its socket on fd 3 and its gate on fd 4), the handshake, reading and writing its frames
//! within the frame bound, and telling how it ended.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use verdant_hub::io::Green;

use crate::frame::{self, FrameReader, Kind};
use crate::function::{BinaryIdentity, Call};
use crate::gate::Gate;
use crate::startup::StartFailure;
use crate::worker::{WORKER_ENV, WORKER_FD, WORKER_GATE_FD};

/// How long a new worker may take to say hello and run its initializer.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A started worker process, the pool's end of its socket, and its gate. Dropping it
/// kills and reaps the process if it is still running: no worker outlives its handle.
#[derive(Debug)]
pub(crate) struct Process {
    child: RefCell<Child>,
    pid: u32,
    pipe: Green<UnixStream>,
    /// Which of the tasks sent to it the worker has started (see `gate.rs`).
    pub(crate) gate: Gate,
    /// How long a frame may take, from its first byte to its last.
    frame_timeout: Duration,
}

/// Starts a worker: this program's binary, re-executed through `/proc/self/exe` (the
/// very file this process runs, even if its path was replaced since), with the worker
/// marker in its environment. Blocks the thread for the fork and exec only.
///
/// `frame_timeout` (not zero) bounds every frame to and from it, see
/// [`read_frame`](Process::read_frame) and [`write_all`](Process::write_all).
pub(crate) fn launch(frame_timeout: Duration) -> io::Result<Process> {
    refuse_if_a_test_asks()?;
    let (ours, theirs) = UnixStream::pair()?; // both close-on-exec
    let (gate, gate_fd) = Gate::new()?; // close-on-exec
    let (socket, shared) = (theirs.as_raw_fd(), gate_fd.as_raw_fd());
    let mut command = Command::new("/proc/self/exe");
    if let Some(arg0) = std::env::args_os().next() {
        command.arg0(arg0); // `ps` shows the program's own name
    }
    command.env(WORKER_ENV, std::process::id().to_string()).stdin(Stdio::null());
    // SAFETY: the closure runs in the child between fork and exec; it calls only fcntl and
    // dup2, which are async-signal-safe, on `socket` and `shared`, which are open there.
    unsafe { command.pre_exec(move || put_on_worker_fds(socket, shared)) };
    let child = command.spawn()?;
    drop((theirs, gate_fd));
    let pid = child.id();
    let pipe = Green::new(ours)?;
    pipe.set_write_timeout(Some(frame_timeout))?;
    Ok(Process { child: RefCell::new(child), pid, pipe, gate, frame_timeout })
}

/// Set by tests only, to a directory of token files: while it is set, each start of a
/// worker process takes a token, and fails (as a failed fork would) when none is left.
pub const TEST_LAUNCH_TOKENS_ENV: &str = "VERDANT_PROCESSPOOL_TEST_LAUNCH_TOKENS";

/// The hook of [`TEST_LAUNCH_TOKENS_ENV`]: nothing when the variable is not set.
fn refuse_if_a_test_asks() -> io::Result<()> {
    let Some(tokens) = std::env::var_os(TEST_LAUNCH_TOKENS_ENV) else { return Ok(()) };
    let entries = std::fs::read_dir(tokens)?;
    if entries.flatten().any(|token| std::fs::remove_file(token.path()).is_ok()) {
        return Ok(());
    }
    Err(io::Error::other("no launch token left (a test refused this start)"))
}

/// In the child: makes `socket` the worker's fd [`WORKER_FD`] and `gate` its fd
/// [`WORKER_GATE_FD`], both open across exec.
fn put_on_worker_fds(socket: RawFd, gate: RawFd) -> io::Result<()> {
    // Copies above both fixed numbers first, so that one dup2 cannot close the other's
    // source; they are close-on-exec, so they vanish at the exec.
    // SAFETY: F_DUPFD_CLOEXEC on open fds makes new fds and touches no memory.
    let high = unsafe {
        [
            libc::fcntl(socket, libc::F_DUPFD_CLOEXEC, 10),
            libc::fcntl(gate, libc::F_DUPFD_CLOEXEC, 10),
        ]
    };
    if high.contains(&-1) {
        return Err(io::Error::last_os_error());
    }
    for (from, to) in high.into_iter().zip([WORKER_FD, WORKER_GATE_FD]) {
        // SAFETY: dup2 onto a fixed number; the copy does not have FD_CLOEXEC.
        if unsafe { libc::dup2(from, to) } != to {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

impl Process {
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Reads the next frame into `reader`, the calling greenlet parked meanwhile; `None`
    /// at the end of the stream (between frames).
    ///
    /// Waiting for a frame to begin gives up at `deadline` (`None`: never). A frame that
    /// has begun must be complete within the frame bound of when its first byte was seen:
    /// if not, the read fails with `TimedOut`, saying how much of it came.
    pub(crate) fn read_frame(
        &self,
        reader: &mut FrameReader,
        deadline: Option<Instant>,
    ) -> io::Result<Option<frame::Frame>> {
        let mut began: Option<Instant> = None;
        loop {
            if let Some(frame) = reader.next_frame().map_err(io::Error::other)? {
                return Ok(Some(frame));
            }
            let (have, whole) = reader.partial();
            if have > 0 && began.is_none() {
                began = Some(Instant::now());
            }
            let frame_deadline = began.and_then(|began| began.checked_add(self.frame_timeout));
            let limit = [deadline, frame_deadline].into_iter().flatten().min();
            match reader.fill(|buf| self.read_until(buf, limit)) {
                Ok(0) if have == 0 => return Ok(None),
                // The worker died with our bytes unread: an end of stream too.
                Err(err) if err.kind() == io::ErrorKind::ConnectionReset && have == 0 => {
                    return Ok(None);
                }
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the stream ended in the middle of a frame",
                    ));
                }
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::TimedOut && limit == frame_deadline => {
                    let whole = whole.map_or("its".into(), |n| format!("its {n}"));
                    let bound = self.frame_timeout;
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "stalled in the middle of a frame ({have} of {whole} bytes came, \
                             then nothing within the frame bound of {bound:?})"
                        ),
                    ));
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Reads what is there, parked until something is, or `TimedOut` at `limit`.
    fn read_until(&self, buf: &mut [u8], limit: Option<Instant>) -> io::Result<usize> {
        let left = limit.map(|limit| limit.saturating_duration_since(Instant::now()));
        if left != Some(Duration::ZERO) {
            self.pipe.set_read_timeout(left).expect("a nonzero timeout");
            match self.pipe.read_buf(buf, |mut s, b| s.read(b)) {
                Err(err) if err.kind() == io::ErrorKind::TimedOut => {}
                done => return done,
            }
        }
        // The time is up. One last look, in case the bytes came together with the timer.
        match self.pipe.get_ref().read(buf) {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"))
            }
            done => done,
        }
    }

    /// Writes all of `bytes`, the calling greenlet parked while the socket is full.
    ///
    /// A worker reads its tasks except while it runs one (which `busy` tells): one that
    /// takes no byte for a whole frame bound while it runs no task has stopped reading,
    /// and the write fails with `TimedOut` (it is noticed within two bounds).
    pub(crate) fn write_all(&self, mut bytes: &[u8], busy: impl Fn() -> bool) -> io::Result<()> {
        let mut idle_bounds = 0;
        while !bytes.is_empty() {
            let written = match self.pipe.write_with(|mut s| s.write(bytes)) {
                Err(err) if err.kind() == io::ErrorKind::TimedOut => {
                    // One last try, in case the room came together with the timer.
                    match self.pipe.get_ref().write(bytes) {
                        Err(err) if err.kind() == io::ErrorKind::WouldBlock => 0,
                        written => written?,
                    }
                }
                written => written?,
            };
            bytes = &bytes[written..];
            idle_bounds = if written > 0 || busy() { 0 } else { idle_bounds + 1 };
            if idle_bounds == 2 {
                let bound = self.frame_timeout;
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "stopped reading its tasks (it took none of their bytes within the \
                         frame bound of {bound:?} while it ran none)"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Checks the worker runs our binary and runs the initializer in it. On failure, the
    /// worker is left to the caller to kill.
    pub(crate) fn handshake(
        &self,
        reader: &mut FrameReader,
        expected: BinaryIdentity,
        initializer: Option<(Call, &[u8])>,
    ) -> Result<(), StartFailure> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let pid = self.pid();
        let hello = match self.read_frame(reader, deadline.into()) {
            Ok(Some(hello)) if hello.kind == Kind::Hello => hello,
            Ok(Some(other)) => {
                let what =
                    format!("worker process {pid} sent {:?} instead of its hello", other.kind);
                return Err(StartFailure::no_hello(what));
            }
            Ok(None) => {
                let how = describe(self.reap());
                return Err(StartFailure::no_hello(format!(
                    "worker process {pid} {how} before it said hello"
                )));
            }
            Err(err) if err.kind() == io::ErrorKind::TimedOut => {
                let what = format!("worker process {pid} did not say hello: {err}");
                return Err(StartFailure::other(what));
            }
            Err(err) => {
                let what = format!("worker process {pid} did not say hello: {err}");
                return Err(StartFailure::no_hello(what));
            }
        };
        let identity = BinaryIdentity::from_bytes(reader.payload(&hello));
        if identity != Some(expected) {
            return Err(StartFailure::other_binary(format!(
                "worker process {pid} runs a different binary than the pool's process \
                 (its identity {identity:?}, ours {expected:?}): refused"
            )));
        }
        self.set_up(reader, initializer, deadline).map_err(StartFailure::other)
    }

    /// The second half of the handshake: sends `Init` and waits for `Ready`.
    fn set_up(
        &self,
        reader: &mut FrameReader,
        initializer: Option<(Call, &[u8])>,
        deadline: Instant,
    ) -> Result<(), String> {
        let pid = self.pid();
        let mut init = Vec::new();
        match initializer {
            None => frame::encode(&mut init, Kind::Init, 0, &[&[0]]),
            Some((call, argument)) => {
                frame::encode(
                    &mut init,
                    Kind::Init,
                    0,
                    &[&[1], &frame::call_bytes(call), argument],
                );
            }
        }
        self.write_all(&init, || false)
            .map_err(|e| format!("could not send worker process {pid} its set-up: {e}"))?;
        let ready = match self.read_frame(reader, Some(deadline)) {
            Ok(Some(ready)) => ready,
            Ok(None) => {
                let how = describe(self.reap());
                return Err(format!("worker process {pid} {how} before it ran the initializer"));
            }
            Err(err) => {
                return Err(format!("worker process {pid} did not run the initializer: {err}"));
            }
        };
        match ready.kind {
            Kind::Ready => Ok(()),
            Kind::InitFailed => {
                let (kind, message) = frame::parse_failure(reader.payload(&ready));
                let why = match kind.into_error(message) {
                    crate::TaskError::Panicked(panic) => panic.to_string(),
                    other => other.to_string(),
                };
                Err(format!("the initializer failed in worker process {pid}: {why}"))
            }
            other => Err(format!("worker process {pid} sent {other:?} instead of Ready")),
        }
    }

    /// Waits for the process to end (its socket closed, so it is ending) and returns how
    /// it ended; kills it if it lingers.
    pub(crate) fn reap(&self) -> ExitStatus {
        for _ in 0..500 {
            let polled = self.child.borrow_mut().try_wait();
            match polled {
                Ok(Some(status)) => return status,
                Ok(None) => verdant_hub::sleep(Duration::from_millis(1)),
                Err(_) => break,
            }
        }
        self.kill_now()
    }

    /// SIGKILL, then waits (which takes the kernel a moment at most).
    pub(crate) fn kill_now(&self) -> ExitStatus {
        let mut child = self.child.borrow_mut();
        let _ = child.kill();
        child.wait().unwrap_or_else(|_| ExitStatus::from_raw(libc::SIGKILL))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let child = self.child.get_mut();
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// "exited with status 3", "was killed by signal 11 (SIGSEGV)".
pub(crate) fn describe(status: ExitStatus) -> String {
    if let Some(signal) = status.signal() {
        let name = match signal {
            libc::SIGSEGV => "SIGSEGV",
            libc::SIGABRT => "SIGABRT",
            libc::SIGKILL => "SIGKILL",
            libc::SIGBUS => "SIGBUS",
            libc::SIGILL => "SIGILL",
            libc::SIGFPE => "SIGFPE",
            libc::SIGTERM => "SIGTERM",
            libc::SIGINT => "SIGINT",
            _ => "signal",
        };
        format!("was killed by signal {signal} ({name})")
    } else {
        format!("exited with status {}", status.code().unwrap_or(-1))
    }
}
