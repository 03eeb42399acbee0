//! A soak test in one process: the echo server, the HTTP server (`http_hello`'s own code
//! and timeouts) and a process pool, all on the main thread's hub, under mixed load from
//! client greenlets on other threads — good clients whose every byte is checked, clients
//! that reset, bad and slow HTTP clients, pool tasks that crash their worker — for a
//! bounded time. Every interval it prints RSS, the live heap, open fds, threads, live
//! greenlets and the counts; at the end, how much each grew after the warm-up.
//!
//! ```text
//! cargo run --release --example soak -- --seconds 600
//! ```
//!
//! Exits non-zero if an invariant broke: a client saw a wrong byte, a wrong status, a
//! hang or an error where none was due; a pool task failed that should not have (or a
//! crashing one did not); a server reported a handler error; the shutdown did not
//! finish; or, once everything stopped, the open fds, the threads or the greenlets of
//! the server's hub are not back to what they were before the start. Growth under load
//! is printed (`RESULT soak-rss-growth …`), not judged: read the series. Linux only
//! (`/proc/self`). See docs/net.md, "Soak".

#[path = "support/echo.rs"]
mod echo;
#[allow(dead_code, reason = "only the server and its timeouts are used here")]
#[path = "http_hello.rs"]
mod http_hello;
#[path = "support/soak/mod.rs"]
mod soak;

use std::cell::RefCell;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use verdant::WaitFor;
use verdant::processpool::ProcessPool;
use verdant::server::StreamServer;

use soak::clients::{self, Plan};
use soak::options::{Options, USAGE};
use soak::probe::Sample;
use soak::report::{Growth, Series};
use soak::rng::Rng;
use soak::tally::Tally;
use soak::wire::HANG_GUARD;

/// Greenlets on the server's hub calling the process pool.
const POOL_CALLERS: usize = 2;

fn main() -> ExitCode {
    verdant::processpool::worker_main(); // worker processes leave main here
    run_from_args(std::env::args().skip(1))
}

/// Parses the arguments (without the program name) and runs the soak (public for
/// `tests/soak.rs`, which includes this file).
pub fn run_from_args(args: impl Iterator<Item = String>) -> ExitCode {
    match Options::parse(args) {
        Ok(options) => run(&options),
        Err(message) => {
            eprintln!("soak: {message}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Everything the run started, to be stopped in order.
struct Running {
    echo: StreamServer,
    http: StreamServer,
    pool: Rc<ProcessPool>,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    series: Rc<RefCell<Series>>,
    reporter: verdant::Greenlet<()>,
    pool_callers: Vec<verdant::Greenlet<()>>,
    client_threads: Vec<JoinHandle<()>>,
}

/// Runs the soak for `options.seconds`; the exit code says whether every invariant held.
fn run(options: &Options) -> ExitCode {
    let started = Instant::now();
    let before = Sample::take(started);
    let running = match start(options, started) {
        Ok(running) => running,
        Err(err) => {
            eprintln!("soak: could not start: {err}");
            return ExitCode::FAILURE;
        }
    };
    verdant::sleep_until(started + options.seconds);
    let end = running.series.borrow_mut().sample();
    let broken = wind_down(running, options, started, before, end);
    verdict(&broken)
}

/// Starts the servers, the pool, the reporter, the pool callers and the client threads.
fn start(options: &Options, started: Instant) -> std::io::Result<Running> {
    let timeouts =
        http_hello::Timeouts { request: options.request_timeout, idle: options.idle_timeout };
    let http = http_hello::server("127.0.0.1:0", timeouts)?;
    let echo =
        StreamServer::new("127.0.0.1:0", echo::echo)?.with_idle_timeout(options.idle_timeout);
    echo.start()?;
    http.start()?;
    let pool = Rc::new(ProcessPool::new(Some(options.workers))?);
    println!(
        "soak: {:?}, seed {}; echo on {}, http on {}, pool workers {:?}",
        options.seconds,
        options.seed,
        echo.local_addr(),
        http.local_addr(),
        pool.pids()
    );
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let series = Rc::new(RefCell::new(Series::new(started, options.warmup, tally.clone())));
    let reporter = start_reporter(&series, started, options);
    let pool_callers = (0..POOL_CALLERS)
        .map(|i| start_pool_caller(&pool, &tally, &stop, options, i as u64))
        .collect();
    let client_threads = (0..options.client_threads)
        .map(|i| {
            let plan = Plan {
                echo: echo.local_addr(),
                http: http.local_addr(),
                tally: tally.clone(),
                stop: stop.clone(),
                seed: options.seed.wrapping_add(i as u64 + 1),
                pause: options.pause,
            };
            start_client_thread(i, plan)
        })
        .collect::<std::io::Result<_>>()?;
    Ok(Running { echo, http, pool, tally, stop, series, reporter, pool_callers, client_threads })
}

/// An OS thread whose hub runs one mix of client greenlets.
fn start_client_thread(index: usize, plan: Plan) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(format!("soak-clients-{index}")).spawn(|| clients::run(plan))
}

/// A greenlet that samples every interval until just before the end of the run.
fn start_reporter(
    series: &Rc<RefCell<Series>>,
    started: Instant,
    options: &Options,
) -> verdant::Greenlet<()> {
    let (series, interval, end) = (series.clone(), options.interval, started + options.seconds);
    verdant::spawn(move || {
        let mut next = started + interval;
        while next < end {
            verdant::sleep_until(next);
            series.borrow_mut().sample();
            next += interval;
        }
    })
}

fn start_pool_caller(
    pool: &Rc<ProcessPool>,
    tally: &Arc<Tally>,
    stop: &Arc<AtomicBool>,
    options: &Options,
    index: u64,
) -> verdant::Greenlet<()> {
    let (pool, tally, stop) = (pool.clone(), tally.clone(), stop.clone());
    let mut rng = Rng::new(options.seed ^ (0xb001 << 48) ^ index);
    let pause = options.pause;
    verdant::spawn(move || {
        clients::repeat(&stop, &mut rng, pause, |rng| {
            soak::pool_load::one_call(&pool, rng, &tally);
        });
    })
}

/// Stops the load, then the servers and the pool, checking each step; prints the
/// summary and returns the invariants that broke.
fn wind_down(
    mut running: Running,
    options: &Options,
    started: Instant,
    before: Sample,
    end: Sample,
) -> Vec<String> {
    let mut broken = Vec::new();
    stop_load(&mut running, options, &mut broken);
    let series = Rc::into_inner(running.series).expect("the reporter is dead").into_inner();
    let (growth, baseline) = (series.growth(&end), series.baseline());
    let dropped = series.finish(); // the printing thread ends: stdout is ours again
    stop_services(&running.echo, &running.http, &running.pool, &mut broken);
    let counts = running.tally.counts();
    println!("soak: {}", soak::report::line(&end, &counts));
    if let Some(base) = baseline {
        println!(
            "soak: baseline at {} s: rss {} KiB, heap {} KiB in {} blocks, fds {}, greenlets {}",
            base.elapsed.as_secs(),
            base.rss_kib,
            base.heap_kib,
            base.heap_blocks,
            base.fds,
            base.greenlets
        );
    }
    if dropped > 0 {
        println!("soak: {dropped} lines of the series were dropped (stdout was behind)");
    }
    print_growth(&growth);
    check_after_stop(&before, &Sample::take(started), &mut broken);
    if counts.failures > 0 || counts.pool_unexpected > 0 {
        broken.push(format!(
            "{} client failures, {} unexpected pool outcomes",
            counts.failures, counts.pool_unexpected
        ));
    }
    broken
}

/// Tells every client to stop, and waits for the client threads, the pool callers and
/// the reporter to end.
fn stop_load(running: &mut Running, options: &Options, broken: &mut Vec<String>) {
    running.stop.store(true, Relaxed);
    running.reporter.kill(); // the end sample is taken: no more lines
    let patience = HANG_GUARD + 2 * (options.request_timeout + options.idle_timeout);
    if !join_client_threads(std::mem::take(&mut running.client_threads), patience) {
        broken.push(format!("the client threads did not finish within {patience:?}"));
    }
    let callers = &running.pool_callers;
    if verdant::joinall(callers, WaitFor::all().timeout(patience)).len() < callers.len() {
        broken.push("the process-pool callers did not finish".to_string());
    }
}

/// Waits, without blocking the hub, until every client thread has ended; false if one
/// did not within `patience`, or panicked.
fn join_client_threads(threads: Vec<JoinHandle<()>>, patience: Duration) -> bool {
    let deadline = Instant::now() + patience;
    while !threads.iter().all(JoinHandle::is_finished) {
        if Instant::now() > deadline {
            return false;
        }
        verdant::sleep(Duration::from_millis(20));
    }
    threads.into_iter().all(|thread| thread.join().is_ok())
}

/// Stops both servers (no handler may be left, none may have failed), then closes and
/// joins the pool.
fn stop_services(
    echo: &StreamServer,
    http: &StreamServer,
    pool: &ProcessPool,
    broken: &mut Vec<String>,
) {
    for (name, server) in [("echo", echo), ("http", http)] {
        server.stop(Some(Duration::from_secs(5)));
        let stats = server.stats();
        println!("soak: {name} server: {stats:?}");
        if stats.handler_errors > 0 || stats.active > 0 {
            broken.push(format!("the {name} server: {stats:?}"));
        }
    }
    pool.close();
    if pool.join().is_err() {
        broken.push("the process pool did not join".to_string());
    }
}

fn print_growth(growth: &Growth) {
    println!("RESULT soak-rss-growth {} KiB", growth.rss_kib);
    println!("RESULT soak-heap-growth {} KiB", growth.heap_kib);
    println!("RESULT soak-heap-block-growth {} blocks", growth.heap_blocks);
    println!("RESULT soak-fd-growth {} fds", growth.fds);
    println!("RESULT soak-greenlet-growth {} greenlets", growth.greenlets);
}

/// Once everything has stopped, the fds, the threads and the server hub's greenlets must
/// be back to what they were before the start. (A thread left over would be verdant's
/// error-report thread, started by the first report: something went wrong then.)
fn check_after_stop(before: &Sample, after: &Sample, broken: &mut Vec<String>) {
    println!(
        "soak: after the stop: fds {} (before the start {}), threads {} (before {}), \
         greenlets on the server hub {} (before {})",
        after.fds, before.fds, after.threads, before.threads, after.greenlets, before.greenlets
    );
    if after.fds != before.fds {
        broken.push(format!("{} fds open after the stop, {} before", after.fds, before.fds));
    }
    if after.threads != before.threads {
        broken.push(format!("{} threads after the stop, {} before", after.threads, before.threads));
    }
    if after.greenlets != before.greenlets {
        broken.push(format!(
            "{} greenlets alive on the server hub after the stop, {} before",
            after.greenlets, before.greenlets
        ));
    }
}

/// Prints the broken invariants, if any, and the verdict.
fn verdict(broken: &[String]) -> ExitCode {
    for invariant in broken {
        println!("soak: INVARIANT BROKEN: {invariant}");
    }
    if broken.is_empty() {
        println!("soak: PASS");
        ExitCode::SUCCESS
    } else {
        println!("soak: FAIL");
        ExitCode::FAILURE
    }
}
