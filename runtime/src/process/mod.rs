//! Subprocesses for greenlets: [`Command`] has the shape of `std::process::Command`, but
//! waiting for a child and reading or writing its pipes park only the calling greenlet
//! (gevent's `subprocess`). No thread is held per child.
//!
//! ```
//! use verdant::process::Command;
//!
//! let output = Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]).output().unwrap();
//! assert_eq!(output.stdout, b"out\n");
//! assert_eq!(output.stderr, b"err\n");
//! assert_eq!(output.status.code(), Some(3));
//! ```
//!
//! Many children at once, each waited for by its own greenlet, on one thread:
//!
//! ```
//! use verdant::process::Command;
//!
//! let sleepers: Vec<_> = (0..20)
//!     .map(|_| verdant::spawn(|| Command::new("sleep").arg("0.05").status()))
//!     .collect();
//! for sleeper in sleepers {
//!     assert!(sleeper.take().unwrap().unwrap().success());
//! }
//! ```
//!
//! # How it works
//!
//! `std::process::Command` builds and spawns the child, on a worker thread (`spawn.rs`:
//! std's spawn waits for the child's `exec`, which would stall the hub), while the calling
//! greenlet parks. The child's pipes (the parent's ends) are then made non-blocking and
//! registered with the hub (`pipe.rs`), and its exit is seen through a pidfd registered
//! with the hub, or `SIGCHLD` where pidfds are missing (`exit.rs`). The exit status is
//! reaped with std's `try_wait`, so std's `Child` stays its owner.
//!
//! # Limits
//!
//! * At most [`SPAWN_THREADS`] children are being started at once; more spawns queue.
//! * If the spawning greenlet is killed (or times out) while its child is being started,
//!   that child is killed and reaped as soon as it has started, and the [`Command`] is lost
//!   with it (it was on the worker thread): its later spawns fail with `InvalidInput`.
//! * A [`Child`] dropped before it was waited for is not killed (as in std). Once it has
//!   exited it is reaped by the next `spawn` on that thread (Python's `subprocess` does the
//!   same), so it stays a zombie only until then.
//! * Children belong to the thread that spawned them (`!Send`, like sockets):
//!
//! ```compile_fail,E0277
//! fn assert_send<T: Send>() {}
//! assert_send::<verdant::process::Child>(); // its pipes and pidfd are registered with its hub
//! ```

mod exit;
pub mod pipe;
mod spawn;

use std::cell::RefCell;
use std::ffi::OsStr;
use std::fmt;
use std::io::{self, Read};
use std::os::raw::c_int;
use std::path::Path;
use std::time::{Duration, Instant};

pub use std::process::{ExitStatus, Output, Stdio};

use exit::ExitWatch;
#[doc(hidden)]
pub use exit::force_sigchld_fallback;
pub use pipe::{ChildPipe, ChildStderr, ChildStdin, ChildStdout};
pub use spawn::SPAWN_THREADS;

thread_local! {
    /// Children dropped before they were reaped: tried again at every spawn.
    static ORPHANS: RefCell<Vec<std::process::Child>> = const { RefCell::new(Vec::new()) };
}

/// A process builder, std's `Command` with green `spawn`, `output` and `status`.
///
/// Every builder method is std's; [`as_std_mut`](Command::as_std_mut) reaches the others
/// (std's `CommandExt`: `uid`, `process_group`, `pre_exec`...).
pub struct Command {
    std: std::process::Command,
    /// Which streams the caller set: `output` captures the others.
    stdin_set: bool,
    stdout_set: bool,
    stderr_set: bool,
    /// Set while std's command is away on a spawning thread; stays set if the spawn was
    /// cut short (the command never came back).
    lost: bool,
}

impl Command {
    /// A command that runs `program` (looked up in `PATH` if it has no `/`).
    pub fn new(program: impl AsRef<OsStr>) -> Command {
        Command::from(std::process::Command::new(program))
    }

    /// Adds an argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Command {
        self.std.arg(arg);
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.std.args(args);
        self
    }

    /// Sets an environment variable of the child.
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Command {
        self.std.env(key, value);
        self
    }

    /// Sets environment variables of the child.
    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Command
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.std.envs(vars);
        self
    }

    /// Removes an environment variable from the child's environment.
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Command {
        self.std.env_remove(key);
        self
    }

    /// Starts the child with an empty environment (plus what `env` adds).
    pub fn env_clear(&mut self) -> &mut Command {
        self.std.env_clear();
        self
    }

    /// Sets the child's working directory.
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Command {
        self.std.current_dir(dir);
        self
    }

    /// The child's standard input (`spawn` and `status` inherit it by default; `output`
    /// gives the child none).
    pub fn stdin(&mut self, cfg: impl Into<Stdio>) -> &mut Command {
        self.std.stdin(cfg);
        self.stdin_set = true;
        self
    }

    /// The child's standard output (inherited by default; `output` captures it).
    pub fn stdout(&mut self, cfg: impl Into<Stdio>) -> &mut Command {
        self.std.stdout(cfg);
        self.stdout_set = true;
        self
    }

    /// The child's standard error (inherited by default; `output` captures it).
    pub fn stderr(&mut self, cfg: impl Into<Stdio>) -> &mut Command {
        self.std.stderr(cfg);
        self.stderr_set = true;
        self
    }

    /// The std command inside.
    pub fn as_std(&self) -> &std::process::Command {
        &self.std
    }

    /// The std command inside, for the settings this type does not repeat. Streams set
    /// through it are not known to [`output`](Command::output), which captures stdout and
    /// stderr unless they were set through this type.
    pub fn as_std_mut(&mut self) -> &mut std::process::Command {
        &mut self.std
    }

    /// Starts the child. Its piped streams are in [`Child`]'s fields. Only the calling
    /// greenlet waits while the kernel starts it (std's spawn runs on a thread).
    pub fn spawn(&mut self) -> io::Result<Child> {
        if self.lost {
            let message = "this Command was lost when an earlier spawn of it was cut short \
                           (its greenlet was killed or timed out); build a new one";
            return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
        }
        reap_orphans();
        let early_watch = ExitWatch::before_spawn()?;
        let mut std = self.spawn_std()?;
        let watch = match early_watch {
            Some(watch) => Ok(watch),
            None => ExitWatch::after_spawn(std.id()),
        };
        let parts = watch.and_then(|watch| {
            let stdin = std.stdin.take().map(ChildStdin::new).transpose()?;
            let stdout = std.stdout.take().map(ChildStdout::new).transpose()?;
            let stderr = std.stderr.take().map(ChildStderr::new).transpose()?;
            Ok((watch, stdin, stdout, stderr))
        });
        match parts {
            Ok((exit, stdin, stdout, stderr)) => {
                Ok(Child { stdin, stdout, stderr, std: Some(std), exit, status: None })
            }
            Err(err) => {
                // Cannot watch it: do not leave it running unwatched.
                let _ = std.kill();
                let _ = std.wait();
                Err(err)
            }
        }
    }

    /// std's spawn of the command, on a spawning thread: the command goes there and back,
    /// and stays lost if the wait for it unwinds.
    fn spawn_std(&mut self) -> io::Result<std::process::Child> {
        let stand_in = std::process::Command::new(self.std.get_program());
        let command = std::mem::replace(&mut self.std, stand_in);
        self.lost = true;
        let (command, child) = spawn::spawn(command);
        if let Some(command) = command {
            self.std = command;
            self.lost = false;
        }
        child
    }

    /// Runs the child to completion and collects its stdout and stderr (captured unless
    /// set otherwise; stdin is empty unless set). Only the calling greenlet waits.
    pub fn output(&mut self) -> io::Result<Output> {
        self.set_unset_streams(Stdio::null, Stdio::piped);
        let child = self.spawn();
        self.set_unset_streams(Stdio::inherit, Stdio::inherit); // what `spawn` does with them
        child?.wait_with_output()
    }

    /// Configures the streams the caller did not set: stdin with `input`, stdout and
    /// stderr with `output` (the caller's own choices stay).
    fn set_unset_streams(&mut self, input: fn() -> Stdio, output: fn() -> Stdio) {
        if !self.stdin_set {
            self.std.stdin(input());
        }
        if !self.stdout_set {
            self.std.stdout(output());
        }
        if !self.stderr_set {
            self.std.stderr(output());
        }
    }

    /// Runs the child to completion (streams inherited unless set) and returns its status.
    pub fn status(&mut self) -> io::Result<ExitStatus> {
        self.spawn()?.wait()
    }
}

impl From<std::process::Command> for Command {
    fn from(std: std::process::Command) -> Command {
        Command { std, stdin_set: false, stdout_set: false, stderr_set: false, lost: false }
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.std, f)
    }
}

/// A running (or exited) child process, std's `Child` whose waits park only the calling
/// greenlet.
pub struct Child {
    /// Its standard input, if piped.
    pub stdin: Option<ChildStdin>,
    /// Its standard output, if piped.
    pub stdout: Option<ChildStdout>,
    /// Its standard error, if piped.
    pub stderr: Option<ChildStderr>,
    /// `Some` until dropped (then it may move to the orphans).
    std: Option<std::process::Child>,
    exit: ExitWatch,
    status: Option<ExitStatus>,
}

impl Child {
    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.std.as_ref().map_or(0, std::process::Child::id)
    }

    fn std(&mut self) -> &mut std::process::Child {
        self.std.as_mut().expect("a child's std half is there until it is dropped")
    }

    /// Kills the child with `SIGKILL` (std's `kill`); `Ok` if it has exited already.
    pub fn kill(&mut self) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        self.std().kill()
    }

    /// Sends `signal` to the child (gevent's `send_signal`: `SIGTERM` asks it to stop);
    /// `Ok` if it has been reaped already, since its pid may now be another process's.
    pub fn send_signal(&mut self, signal: c_int) -> io::Result<()> {
        if self.try_wait()?.is_some() {
            return Ok(());
        }
        let pid = libc::pid_t::try_from(self.id()).map_err(io::Error::other)?;
        // SAFETY: kill(2) takes two integers and touches no memory. The child is not
        // reaped (checked above, and only this `Child` reaps it), so `pid` is still ours.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Its exit status if it has exited, without waiting.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.std().try_wait()?;
        }
        Ok(self.status)
    }

    /// Closes its stdin (so a child reading it sees end of file), then parks the calling
    /// greenlet until it exits.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        let status = self.wait_until(None)?;
        Ok(status.expect("a wait without a deadline ends with a status"))
    }

    /// Like [`wait`](Child::wait), giving up after `timeout`: `Ok(None)` if the child is
    /// still running (it is left running).
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        self.wait_until(Instant::now().checked_add(timeout))
    }

    fn wait_until(&mut self, deadline: Option<Instant>) -> io::Result<Option<ExitStatus>> {
        drop(self.stdin.take());
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        let Child { std, exit, status, .. } = self;
        let std = std.as_mut().expect("a child's std half is there until it is dropped");
        *status = exit.wait(deadline, || std.try_wait())?;
        Ok(*status)
    }

    /// Closes stdin, reads stdout and stderr to their ends (both at once: a child that
    /// fills one pipe while we read the other cannot stall), and waits for the exit.
    pub fn wait_with_output(mut self) -> io::Result<Output> {
        drop(self.stdin.take());
        let stderr =
            self.stderr.take().map(|pipe| KillOnDrop(verdant_hub::spawn(|| read_all(pipe))));
        let stdout = self.stdout.take().map(read_all).transpose()?.unwrap_or_default();
        let stderr = match stderr {
            Some(reader) => match reader.0.take() {
                Ok(read) => read?,
                Err(err) => return Err(io::Error::other(format!("reading stderr: {err}"))),
            },
            None => Vec::new(),
        };
        let status = self.wait()?;
        Ok(Output { status, stdout, stderr })
    }
}

/// Reads a pipe to its end.
fn read_all(mut pipe: impl Read) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    pipe.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// A helper greenlet that must not outlive its caller's wait (killed if it unwinds).
struct KillOnDrop<T>(verdant_hub::Greenlet<T>);

impl<T> Drop for KillOnDrop<T> {
    fn drop(&mut self) {
        self.0.kill_nowait();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        // Still running, or exited unreaped: reaped by a later spawn on this thread.
        if let Some(orphan) = self.std.take() {
            let _ = ORPHANS.try_with(|orphans| orphans.borrow_mut().push(orphan));
        }
    }
}

impl fmt::Debug for Child {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Child").field("pid", &self.id()).field("status", &self.status).finish()
    }
}

/// Reaps the orphans that have exited.
fn reap_orphans() {
    ORPHANS.with(|orphans| {
        orphans
            .borrow_mut()
            .retain_mut(|orphan| !matches!(orphan.try_wait(), Ok(Some(_)) | Err(_)));
    });
}
