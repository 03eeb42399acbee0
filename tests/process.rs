//! `verdant::process`: children whose waits and pipes park only the calling greenlet, many
//! at once on one thread, none left a zombie; and the `subprocess` example's functions.

#![allow(dead_code)] // the example's `main` is included but not called here

#[path = "../examples/subprocess.rs"]
mod example;

use std::cell::RefCell;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::rc::Rc;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use verdant::process::{Command, Stdio};
use verdant_testutil as util;

/// The number of threads of this process, from `/proc/self/status`.
fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|line| line.starts_with("Threads:")).unwrap();
    line["Threads:".len()..].trim().parse().unwrap()
}

/// Children of this process that exited and were not reaped (state `Z` in `/proc`).
fn zombies() -> Vec<u32> {
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let Some((_, after)) = stat.rsplit_once(')') else { continue };
        let fields: Vec<&str> = after.split_whitespace().collect();
        if fields.first() == Some(&"Z") && fields.get(1) == Some(&me.to_string().as_str()) {
            found.push(pid);
        }
    }
    found
}

#[test]
fn output_collects_stdout_stderr_and_the_exit_code() {
    let output =
        Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]).output().unwrap();
    assert_eq!(output.stdout, b"out\n");
    assert_eq!(output.stderr, b"err\n");
    assert_eq!(output.status.code(), Some(3));
    assert!(!output.status.success());
    // The command can be run again: `output` left its streams as `spawn` wants them.
    let mut command = Command::new("sh");
    command.args(["-c", "echo again"]);
    assert_eq!(command.output().unwrap().stdout, b"again\n");
    assert_eq!(command.output().unwrap().stdout, b"again\n");
}

#[test]
fn exit_codes_come_back() {
    for code in [0, 1, 7, 255] {
        let status = Command::new("sh").args(["-c", &format!("exit {code}")]).status().unwrap();
        assert_eq!(status.code(), Some(code));
        assert_eq!(status.success(), code == 0);
    }
}

#[test]
fn a_child_reads_its_stdin_to_the_end() {
    // More than a pipe holds (64 KiB): the writer parks while `cat` drains, and `cat`
    // parks while we have not read what it wrote back, so both must run concurrently.
    let input: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let mut child =
        Command::new("cat").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let sent = input.clone();
    let writer = verdant::spawn(move || {
        stdin.write_all(&sent).unwrap();
        // dropped here: `cat` sees the end of its input
    });
    let mut echoed = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut echoed).unwrap();
    writer.take().unwrap();
    assert_eq!(echoed.len(), input.len());
    assert!(echoed == input);
    assert!(child.wait().unwrap().success());

    // `wc -c` counts what it read until end of file.
    let mut child = Command::new("wc").arg("-c").stdin(Stdio::piped()).spawn_output();
    child.stdin.as_mut().unwrap().write_all(&[b'x'; 1000]).unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8(output.stdout).unwrap().trim(), "1000");
}

/// Spawns with stdout and stderr piped.
trait SpawnOutput {
    fn spawn_output(&mut self) -> verdant::process::Child;
}

impl SpawnOutput for Command {
    fn spawn_output(&mut self) -> verdant::process::Child {
        self.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    }
}

#[test]
fn killed_children_report_the_signal() {
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    assert_eq!(child.wait_timeout(Duration::from_millis(5)).unwrap(), None, "still running");
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert_eq!(status.code(), None);
    child.kill().unwrap(); // exited already: fine

    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    child.send_signal(libc::SIGTERM).unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGTERM));
    assert_eq!(child.try_wait().unwrap().unwrap().signal(), Some(libc::SIGTERM));
}

#[test]
fn other_greenlets_run_while_a_child_is_waited_for() {
    let log = util::Log::new();
    let l = log.clone();
    let waiter = verdant::spawn(move || {
        let status = Command::new("sh").args(["-c", "read line"]).stdin(Stdio::piped()).spawn();
        let mut child = status.unwrap();
        let mut stdin = child.stdin.take().unwrap();
        l.push("spawned");
        let other = l.clone();
        verdant::spawn(move || other.push("other greenlet"));
        verdant::yield_now(); // the other greenlet runs while the child waits for input
        stdin.write_all(b"go\n").unwrap();
        l.push("wrote");
        child.wait().unwrap()
    });
    assert!(waiter.take().unwrap().success());
    assert_eq!(log.take(), ["spawned", "other greenlet", "wrote"]);
}

#[test]
fn a_missing_program_is_a_clear_error() {
    let err = Command::new("/nonexistent/program").spawn().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    let err = Command::new("/nonexistent/program").output().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
}

#[test]
fn the_sigchld_fallback_sees_children_exit() {
    verdant::process::force_sigchld_fallback(true);
    let children: Vec<_> = (0..20)
        .map(|code| {
            verdant::spawn(move || {
                let script = format!("sleep 0.0{}; exit {code}", code % 3);
                Command::new("sh").args(["-c", &script]).status().unwrap().code()
            })
        })
        .collect();
    let codes: Vec<_> = children.iter().map(|c| c.take().unwrap().unwrap()).collect();
    assert_eq!(codes, (0..20).collect::<Vec<_>>());
    let output = Command::new("sh").args(["-c", "echo fallback"]).output().unwrap();
    assert_eq!(output.stdout, b"fallback\n");
    verdant::process::force_sigchld_fallback(false);
}

/// Run in a child process by `two_hundred_children_hold_no_thread_and_leave_no_zombie`,
/// so that no other test's threads change the count.
#[test]
fn many_children_child() {
    if !util::is_child_for("many_children_child") {
        return;
    }
    verdant::yield_now(); // the hub exists
    let before = threads();
    let started = std::rc::Rc::new(std::cell::Cell::new(0));
    let begun = Instant::now();
    let sleepers: Vec<_> = (0..200)
        .map(|_| {
            let started = started.clone();
            verdant::spawn(move || {
                let mut child = Command::new("sleep").arg("0.2").spawn().unwrap();
                started.set(started.get() + 1);
                child.wait().unwrap()
            })
        })
        .collect();
    while started.get() < 200 {
        verdant::yield_now();
    }
    let spawned = begun.elapsed();
    // The spawning threads (started on demand, lingering a while) are all there is.
    let most = before + verdant::process::SPAWN_THREADS;
    assert!(threads() <= most, "200 children are waited for without a thread each");
    for sleeper in &sleepers {
        assert!(sleeper.take().unwrap().success());
    }
    eprintln!(
        "200 concurrent `sleep 0.2` children: all spawned after {spawned:?}, all done after {:?}",
        begun.elapsed()
    );
    assert!(threads() <= most);
    assert_eq!(zombies(), Vec::<u32>::new());
}

#[test]
fn two_hundred_children_hold_no_thread_and_leave_no_zombie() {
    util::assert_test_passes_in_child("many_children_child");
}

#[test]
fn a_dropped_child_is_reaped_by_a_later_spawn() {
    let child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    drop(child); // not waited for
    // Once it has exited (its pidfd or /proc says so), the next spawn reaps it.
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.rsplit_once(')').is_some_and(|(_, after)| after.trim_start().starts_with('Z')) {
            break;
        }
        verdant::sleep(Duration::from_millis(1));
    }
    assert!(Command::new("true").status().unwrap().success());
    assert!(!zombies().contains(&pid), "the dropped child was reaped");
}

#[test]
fn the_subprocess_example_runs_commands_at_once_and_pipes_through_sort() {
    let outputs = example::run_all(&["echo one", "sleep 0.01; echo two", "exit 1"]).unwrap();
    assert_eq!(outputs, ["one\n", "two\n", ""]);
    let words = ["pear", "apple", "fig"].map(str::to_string).to_vec();
    assert_eq!(example::sort_lines(words).unwrap(), ["apple", "fig", "pear"]);
}

/// A pipe whose ends are closed on `exec`: (read end, write end).
fn pipe() -> (File, File) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array it is given, which has room for them.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both fds were just opened for us and nothing else owns them.
    unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
}

/// Holds children on their way to `exec`, so std's spawn of each does not return until the
/// test lets it: each child's `pre_exec` hook writes its pid to `started`, then waits for a
/// byte on `release`.
struct Gate {
    started: File,
    started_tx: File,
    release_rx: File,
    release: Arc<File>,
}

impl Gate {
    fn new() -> Gate {
        let (started, started_tx) = pipe();
        let (release_rx, release) = pipe();
        Gate { started, started_tx, release_rx, release: Arc::new(release) }
    }

    /// `program`, held at the gate when spawned.
    fn command(&self, program: &str) -> Command {
        let (tx, rx) = (self.started_tx.as_raw_fd(), self.release_rx.as_raw_fd());
        let mut command = Command::new(program);
        let hook = move || {
            // SAFETY: in the forked child before `exec`: only async-signal-safe calls
            // (getpid, write, read) on fds the parent keeps open while it spawns, and
            // buffers on this stack.
            unsafe {
                let pid = libc::getpid().to_ne_bytes();
                libc::write(tx, pid.as_ptr().cast(), pid.len());
                let mut byte = 0u8;
                while libc::read(rx, (&raw mut byte).cast(), 1) < 0 {} // EINTR: again
            }
            Ok(())
        };
        // SAFETY: the hook is async-signal-safe (see above).
        unsafe { command.as_std_mut().pre_exec(hook) };
        command
    }

    /// Parks the calling greenlet until `count` children wait at the gate; their pids.
    fn wait_started(&self, count: usize) -> Vec<u32> {
        let mut bytes = Vec::new();
        while bytes.len() < 4 * count {
            verdant::hub::io::wait_readable(&self.started, None).unwrap();
            let mut buf = [0; 64];
            let read = (&self.started).read(&mut buf[..4 * count - bytes.len()]).unwrap();
            bytes.extend_from_slice(&buf[..read]);
        }
        bytes.chunks(4).map(|pid| u32::from_ne_bytes(pid.try_into().unwrap())).collect()
    }

    /// Lets `count` children through.
    fn release(&self, count: usize) {
        (&*self.release).write_all(&vec![b'x'; count]).unwrap();
    }

    /// A thread that lets `count` children through if the test has not said `done` within
    /// a minute (a hub blocked in a held spawn would otherwise hang the test); it says
    /// whether it had to.
    fn watchdog(&self, count: usize) -> (mpsc::Sender<()>, std::thread::JoinHandle<bool>) {
        let (done, wait) = mpsc::channel();
        let release = self.release.clone();
        let thread = std::thread::spawn(move || {
            let timed_out = wait.recv_timeout(Duration::from_secs(60)).is_err();
            if timed_out {
                (&*release).write_all(&vec![b'x'; count]).unwrap();
            }
            timed_out
        });
        (done, thread)
    }
}

/// What `/proc` says of process `pid` if it is (still) a child of this process: its state
/// letter and name.
fn child_state(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (name, after) = stat.split_once(" (")?.1.rsplit_once(')')?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    (fields.get(1) == Some(&std::process::id().to_string().as_str()))
        .then(|| format!("{} {name}", fields[0]))
}

#[test]
fn the_hub_runs_on_while_children_are_being_started() {
    // Three spawns are held at the gate at once. Only another greenlet of this hub lets
    // them through: if a spawn held the hub, that greenlet could not run until the
    // watchdog stepped in, and the log would show the spawns returning first.
    const HELD: usize = 3;
    let gate = Rc::new(Gate::new());
    let (done, watchdog) = gate.watchdog(HELD);
    let log = util::Log::new();
    let spawners: Vec<_> = (0..HELD)
        .map(|_| {
            let (log, mut command) = (log.clone(), gate.command("true"));
            verdant::spawn(move || {
                let mut child = command.spawn().unwrap();
                log.push("spawned");
                child.wait().unwrap()
            })
        })
        .collect();
    let (l, g) = (log.clone(), gate.clone());
    let releaser = verdant::spawn(move || {
        let pids = g.wait_started(HELD);
        l.push(format!("{} children being started at once", pids.len()));
        g.release(HELD);
    });
    releaser.take().unwrap();
    for spawner in spawners {
        assert!(spawner.take().unwrap().success());
    }
    let _ = done.send(()); // the watchdog may have given up waiting
    assert!(!watchdog.join().unwrap(), "the test's greenlet never ran: the watchdog released");
    let mut expected = vec!["3 children being started at once".to_string()];
    expected.extend(["spawned"; HELD].map(String::from));
    assert_eq!(log.take(), expected);
}

#[test]
fn a_spawn_cut_short_kills_and_reaps_its_child_and_loses_the_command() {
    for cut in ["kill", "timeout"] {
        let gate = Gate::new();
        let (done, watchdog) = gate.watchdog(1);
        let command = Rc::new(RefCell::new(gate.command("sleep")));
        command.borrow_mut().arg("30");
        let c = command.clone();
        let spawner = verdant::spawn(move || {
            let mut command = c.borrow_mut();
            match cut {
                "kill" => drop(command.spawn()), // killed while the child waits at the gate
                _ => {
                    let spawn = verdant::with_timeout(Duration::from_millis(1), || command.spawn());
                    assert!(spawn.is_err(), "the spawn cannot finish before the gate opens");
                }
            }
        });
        let pid = gate.wait_started(1)[0];
        if cut == "kill" {
            spawner.kill();
            assert_eq!(spawner.take(), Err(verdant::GreenletError::Killed));
        } else {
            spawner.take().unwrap();
        }
        gate.release(1); // the child goes on to `exec` `sleep 30`: nobody wants it now
        let _ = done.send(());
        assert!(!watchdog.join().unwrap(), "{cut}: the spawn held the hub until the watchdog");
        let mut state = child_state(pid);
        for _ in 0..60_000 {
            if state.is_none() {
                break;
            }
            verdant::sleep(Duration::from_millis(1));
            state = child_state(pid);
        }
        assert_eq!(state, None, "{cut}: the unwanted child is killed and reaped");
        let err = command.borrow_mut().spawn().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{cut}: {err}");
        assert!(err.to_string().contains("build a new one"), "{err}");
    }
}
