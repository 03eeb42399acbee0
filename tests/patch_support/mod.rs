//! Helpers shared by the `patch_*` tests: installing the hooks (or, to show that a test
//! fails without them, not), hang guards, a count of requests in flight, a ticker
//! greenlet, and a server that answers each request after a delay.
//!
//! `VERDANT_PATCH_TESTS_UNPATCHED=1 cargo test --release --test patch_net` runs a test
//! file without calling `install()`: every test that claims cooperation must then fail
//! (quickly, or through its hang guard), never pass.

#![allow(dead_code)]

use std::cell::Cell;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use verdant::Greenlet;

/// Turns the hooks on, unless `VERDANT_PATCH_TESTS_UNPATCHED` is set.
pub fn install() {
    if std::env::var_os("VERDANT_PATCH_TESTS_UNPATCHED").is_none() {
        verdant::patch::install();
    }
}

/// Whether the hooks are on for this run.
pub fn patched() -> bool {
    verdant::patch::is_installed()
}

/// Ends the process with a message if the test is still running after `limit`: a test
/// that would hang without the hooks fails instead. Disarmed when dropped.
pub struct HangGuard {
    disarm: mpsc::Sender<()>,
}

impl HangGuard {
    pub fn new(what: &'static str, limit: Duration) -> HangGuard {
        let (disarm, disarmed) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = disarmed.recv_timeout(limit) {
                eprintln!("hang guard: `{what}` still running after {limit:?}: failing");
                std::process::exit(101);
            }
        });
        HangGuard { disarm }
    }
}

impl Drop for HangGuard {
    fn drop(&mut self) {
        let _ = self.disarm.send(());
    }
}

/// How many greenlets are inside a blocking call right now, and the most ever at once.
#[derive(Clone, Default)]
pub struct InFlight {
    now: Rc<Cell<usize>>,
    max: Rc<Cell<usize>>,
    /// Set by the first greenlet that finds, after its call, that the others never got in
    /// alongside it (the call blocked the thread): the rest skip their calls, so a test
    /// run without the hooks fails at once instead of running every call one by one.
    failed: Rc<Cell<bool>>,
}

impl InFlight {
    pub fn new() -> InFlight {
        InFlight::default()
    }

    pub fn enter(&self) {
        self.now.set(self.now.get() + 1);
        self.max.set(self.max.get().max(self.now.get()));
    }

    pub fn leave(&self) {
        self.now.set(self.now.get() - 1);
    }

    pub fn now(&self) -> usize {
        self.now.get()
    }

    pub fn max(&self) -> usize {
        self.max.get()
    }

    /// After a call: if fewer than `expected` were ever in flight together, the calls run
    /// one at a time (the thread blocked): give up on the rest.
    pub fn check(&self, expected: usize) {
        if self.max() < expected {
            self.failed.set(true);
        }
    }

    pub fn failed(&self) -> bool {
        self.failed.get()
    }

    /// Spawns `clients` greenlets; greenlet `i` runs `call(i)` counted as in flight, then
    /// [`check`](Self::check)s that `expected` got in together. Once one finds they did
    /// not, the rest skip their calls (their value is `None`).
    pub fn spawn_clients<T: 'static>(
        &self,
        clients: usize,
        expected: usize,
        call: impl Fn(usize) -> T + Clone + 'static,
    ) -> Vec<Greenlet<Option<T>>> {
        (0..clients)
            .map(|i| {
                let (in_flight, call) = (self.clone(), call.clone());
                verdant::spawn(move || {
                    if in_flight.failed() {
                        return None;
                    }
                    in_flight.enter();
                    let answer = call(i);
                    in_flight.leave();
                    in_flight.check(expected);
                    Some(answer)
                })
            })
            .collect()
    }
}

/// A greenlet that ticks every millisecond (a verdant sleep) until stopped, counting the
/// ticks that happened while calls were in flight: proof that the hub kept running while
/// greenlets sat in blocking calls.
pub struct Ticker {
    stop: Rc<Cell<bool>>,
    greenlet: Greenlet<(usize, usize)>,
}

impl Ticker {
    pub fn start(in_flight: &InFlight) -> Ticker {
        let stop = Rc::new(Cell::new(false));
        let (s, in_flight) = (stop.clone(), in_flight.clone());
        let greenlet = verdant::spawn(move || {
            let (mut ticks, mut while_in_flight) = (0, 0);
            while !s.get() {
                verdant::sleep(Duration::from_millis(1));
                ticks += 1;
                if in_flight.now() > 0 {
                    while_in_flight += 1;
                }
            }
            (ticks, while_in_flight)
        });
        Ticker { stop, greenlet }
    }

    /// Stops the ticker: (ticks, ticks while calls were in flight).
    pub fn stop(self) -> (usize, usize) {
        self.stop.set(true);
        self.greenlet.get().unwrap()
    }
}

/// A line-based server on a thread (and hub) of its own: each connection sends one line,
/// and gets back `"OK <line>\n"` after `delay`. It counts the requests it holds at once.
pub struct DelayedServer {
    pub addr: SocketAddr,
    open: Arc<AtomicUsize>,
    max_open: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl DelayedServer {
    pub fn start(delay: Duration) -> DelayedServer {
        let open = Arc::new(AtomicUsize::new(0));
        let max_open = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let (o, m, s) = (open.clone(), max_open.clone(), stop.clone());
        std::thread::spawn(move || {
            let listener = verdant::net::TcpListener::bind("127.0.0.1:0").unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let listener = Rc::new(listener);
            let l = listener.clone();
            verdant::spawn(move || {
                for stream in l.incoming() {
                    let Ok(stream) = stream else { continue };
                    let (o, m) = (o.clone(), m.clone());
                    verdant::spawn(move || {
                        let mut reader = BufReader::new(&stream);
                        let mut line = String::new();
                        if reader.read_line(&mut line).is_err() {
                            return;
                        }
                        let now = o.fetch_add(1, Ordering::SeqCst) + 1;
                        m.fetch_max(now, Ordering::SeqCst);
                        verdant::sleep(delay);
                        let _ = (&stream).write_all(format!("OK {}", line).as_bytes());
                        o.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            });
            while !s.load(Ordering::SeqCst) {
                verdant::sleep(Duration::from_millis(10));
            }
        });
        let addr = rx.recv().unwrap();
        DelayedServer { addr, open, max_open, stop }
    }

    /// The most requests held at once.
    pub fn max_open(&self) -> usize {
        self.max_open.load(Ordering::SeqCst)
    }
}

impl Drop for DelayedServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
