//! Starting a child on a worker thread, so that the hub runs its other greenlets meanwhile.
//!
//! std's `Command::spawn` returns only once the child has called `exec` (a failed `exec` must
//! come back as the spawn's error): about a millisecond per child on a small VM, more for a
//! big parent or a `pre_exec` hook that takes its time. Run on the hub, that stalls every
//! greenlet of the hub, and 200 children are started one after another.
//!
//! So std's spawn runs on [`SPAWN_THREADS`] worker threads of a [`ThreadPool`] (the
//! mechanism `lookup_host` uses), and only the calling greenlet parks. The std `Command`
//! moves to the worker and back, so the builder stays reusable, as std's is.
//!
//! # A spawn nobody waits for any more
//!
//! The calling greenlet may be killed, or its `with_timeout` expire, while the worker is
//! still starting the child. The worker finishes anyway; the child it started is wrapped in
//! [`Unclaimed`] until the caller takes it, and an `Unclaimed` dropped untaken kills its
//! child and reaps it (on a worker, never blocking a hub), so no child runs on unseen and
//! none stays a zombie.

use std::io;
use std::process;
use std::sync::OnceLock;

use verdant_threadpool::ThreadPool;

/// How many children may be starting at once, each on its own thread: std's spawn of one
/// child holds its thread until the child has called `exec`. The threads start only when
/// spawns need them, and linger idle a while after.
pub const SPAWN_THREADS: usize = 8;

/// The pool std's spawns run on.
fn spawner() -> &'static ThreadPool {
    static POOL: OnceLock<ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| ThreadPool::new(SPAWN_THREADS))
}

/// Runs std's spawn of `command` on a worker thread; only the calling greenlet waits.
/// Returns the command (`None` only if std's spawn panicked with it), with the child or
/// std's error.
///
/// If the wait unwinds (kill, timeout), the command stays with the worker and is dropped
/// there, and the child, if one was started, is killed and reaped (see the module docs).
pub(super) fn spawn(
    mut command: process::Command,
) -> (Option<process::Command>, io::Result<process::Child>) {
    let started = spawner().spawn(move || {
        let child = command.spawn().map(|child| Unclaimed(Some(child)));
        (command, child)
    });
    match started.take() {
        Ok((command, child)) => (Some(command), child.map(Unclaimed::claim)),
        // Only a panic in std's spawn (out of memory) gets here: the command went with it.
        Err(err) => (None, Err(io::Error::other(format!("spawning the child failed: {err}")))),
    }
}

/// A child started on a worker that its caller has not taken yet: dropped untaken, it is
/// killed and reaped.
struct Unclaimed(Option<process::Child>);

impl Unclaimed {
    fn claim(mut self) -> process::Child {
        self.0.take().expect("an unclaimed child is claimed once")
    }
}

impl Drop for Unclaimed {
    fn drop(&mut self) {
        let Some(mut child) = self.0.take() else { return };
        let _ = child.kill();
        if spawner().is_current_worker() {
            let _ = child.wait(); // SIGKILLed: it is gone in a moment
        } else {
            // Dropped on a hub (the result came in just as its caller unwound): the kill
            // is sent; a worker waits for the kernel to finish it off.
            drop(spawner().spawn(move || child.wait()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `pid` is still a child of this process (running, or a zombie).
    fn is_our_child(pid: u32) -> bool {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        let ppid = stat.rsplit_once(')').and_then(|(_, after)| after.split_whitespace().nth(1));
        ppid == Some(&std::process::id().to_string())
    }

    #[test]
    fn an_unclaimed_child_dropped_off_the_workers_is_killed_and_reaped_on_one() {
        let child = process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        drop(Unclaimed(Some(child))); // as on a hub whose spawning greenlet unwound
        let gone = (0..60_000).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(1));
            !is_our_child(pid)
        });
        assert!(gone, "the unclaimed child was killed and reaped");
    }
}
