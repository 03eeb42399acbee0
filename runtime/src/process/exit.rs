//! Seeing a child exit without a thread: its pidfd registered with the hub, or, where
//! `pidfd_open` is missing (Linux before 5.3, some sandboxes), `SIGCHLD`.
//!
//! A pidfd becomes readable when its process exits (and stays so). The waiting greenlet
//! parks on that readiness, then reaps the child with `try_wait` (std's `waitpid(WNOHANG)`),
//! which keeps std's `Child` the one owner of the exit status. The pid cannot be reused
//! between the spawn and `pidfd_open`: only its parent (us) could reap it, and we have not.
//!
//! The fallback subscribes to `SIGCHLD` (through [`crate::signal`]) and re-checks the
//! child after every delivery: a `SIGCHLD` for any child wakes every waiter of this hub.

use std::cell::Cell;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::process::ExitStatus;
use std::time::Instant;

use verdant_hub::io::{Green, Interest};

use crate::signal::{SIGCHLD, SignalWatch};

thread_local! {
    /// Tests force the `SIGCHLD` fallback on their thread with this.
    static FORCE_SIGCHLD: Cell<bool> = const { Cell::new(false) };
}

/// Makes children spawned on this thread use the `SIGCHLD` fallback even where pidfds
/// work: for testing the fallback.
#[doc(hidden)]
pub fn force_sigchld_fallback(on: bool) {
    FORCE_SIGCHLD.with(|force| force.set(on));
}

/// How this hub learns that one child exited.
pub(super) enum ExitWatch {
    Pidfd(Green<OwnedFd>),
    Sigchld(SignalWatch),
}

impl ExitWatch {
    /// Made before the child is spawned (a `SIGCHLD` subscription must exist before the
    /// child can exit): `None` means "open a pidfd once the pid is known".
    pub(super) fn before_spawn() -> io::Result<Option<ExitWatch>> {
        if FORCE_SIGCHLD.with(Cell::get) {
            return SignalWatch::new(SIGCHLD).map(|watch| Some(ExitWatch::Sigchld(watch)));
        }
        Ok(None)
    }

    /// The watch for child `pid`: its pidfd, or `SIGCHLD` if pidfds are not available.
    pub(super) fn after_spawn(pid: u32) -> io::Result<ExitWatch> {
        match pidfd_open(pid) {
            Ok(pidfd) => Ok(ExitWatch::Pidfd(Green::new(pidfd)?)),
            Err(err) if pidfd_unsupported(&err) => {
                SignalWatch::new(SIGCHLD).map(ExitWatch::Sigchld)
            }
            Err(err) => Err(err),
        }
    }

    /// Parks until `try_wait` returns a status, or `deadline` passes (`Ok(None)`).
    pub(super) fn wait(
        &self,
        deadline: Option<Instant>,
        mut try_wait: impl FnMut() -> io::Result<Option<ExitStatus>>,
    ) -> io::Result<Option<ExitStatus>> {
        loop {
            let seen = match self {
                ExitWatch::Pidfd(pidfd) => {
                    pidfd.clear_ready(Interest::READABLE); // an exit after this sets it again
                    0
                }
                ExitWatch::Sigchld(watch) => watch.seen(),
            };
            if let Some(status) = try_wait()? {
                return Ok(Some(status));
            }
            let exited = match self {
                ExitWatch::Pidfd(pidfd) => match pidfd.wait(Interest::READABLE, deadline) {
                    Err(err) if err.kind() == io::ErrorKind::TimedOut => false,
                    other => other.map(|()| true)?,
                },
                ExitWatch::Sigchld(watch) => watch.wait_after(seen, deadline),
            };
            if !exited {
                return try_wait(); // the deadline passed: one last look
            }
        }
    }
}

/// `pidfd_open(2)`: an fd that becomes readable when process `pid` exits.
fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
    // SAFETY: pidfd_open takes two integers and returns a new fd or -1; it touches no memory.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us: it is open, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// The kernel or a sandbox has no `pidfd_open`.
fn pidfd_unsupported(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::ENOSYS | libc::EPERM | libc::EACCES))
}
