//! The comparison workloads of `shared/WORKLOADS.md`, one per run, machine-readable.
//!
//! ```text
//! cargo run --release --example workloads -- <ID> [N]
//! ```
//!
//! prints one `RESULT <id> <value> <unit>` line per figure and nothing else on stdout.
//! Only the measured section is timed. Implemented here: W1 (switch), W2 (spawn+join),
//! W3 (pool map), W4 (thread-pool round trip), W5 (queue ping-pong), W6 (100,000 timers),
//! W7 (TCP echo: this program re-runs itself as the server process and drives it with the
//! `loadgen` client code; N = messages per connection; `W7.2hubs`: the server on two hubs),
//! W8 (idle memory; N = 10000, 100000 or 1000000, any with the default stack mode), W9 (HTTP plaintext under `wrk`, the server on 1
//! and 2 hubs, and on one pinned core with wrk on the other; N = seconds per run).

#[path = "support/echo.rs"]
mod echo;
#[path = "support/http.rs"]
#[allow(dead_code)] // W9 uses the parser, not the example's answers
mod http;
#[path = "support/plaintext.rs"]
mod plaintext;
#[path = "support/tcp_load.rs"]
mod tcp_load;
#[path = "support/wrk.rs"]
mod wrk;

use std::time::{Duration, Instant};

use verdant::hub::{self, StackMode};
use verdant::{sleep, spawn, yield_now};

/// The hub's default stack mode (adaptive: guarded stacks while they last, then shared
/// ones), unless the `VERDANT_STACK_MODE` environment variable (`guarded`, `shared` or
/// `adaptive`) says otherwise.
fn choose_stack_mode() {
    let mode = match std::env::var("VERDANT_STACK_MODE").as_deref() {
        Ok("shared") => StackMode::Shared,
        Ok("guarded") => StackMode::Guarded,
        Ok("adaptive") | Err(_) => StackMode::Adaptive,
        Ok(other) => panic!("VERDANT_STACK_MODE={other}: expected guarded, shared or adaptive"),
    };
    hub::configure(|c| c.stack_mode = mode).unwrap();
    if let Ok(n) = std::env::var("VERDANT_ADAPTIVE_GUARDED") {
        let n = n.parse().expect("VERDANT_ADAPTIVE_GUARDED: a number of greenlets");
        hub::configure(|c| c.adaptive_guarded = n).unwrap();
    }
    eprintln!("stack mode: {mode:?}, adaptive_guarded {}", hub::config().adaptive_guarded);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let id = args.first().map(String::as_str).unwrap_or("");
    let n: Option<usize> = args.get(1).map(|s| s.parse().expect("N must be a number"));
    match id {
        "W1" => w1_switch(n.unwrap_or(1_000_000)),
        "W2" => w2_spawn_join(n.unwrap_or(100_000)),
        "W3" => w3_pool_map(n.unwrap_or(100_000)),
        "W4" => w4_threadpool_round_trip(n.unwrap_or(100_000)),
        "W5" => w5_queue(n.unwrap_or(1_000_000)),
        "W6" => w6_timers(n.unwrap_or(100_000)),
        "W7" => w7_tcp_echo("W7", 1, n.unwrap_or(10_000)),
        "W7.2hubs" => w7_tcp_echo("W7.2hubs", 2, n.unwrap_or(10_000)),
        "W7-server" => w7_server(n.unwrap_or(1)),
        "W8" => w8_idle_memory(n.unwrap_or(10_000)),
        "W9" => w9_http_plaintext(n.unwrap_or(10) as u64),
        "W9-server" => w9_server(n.unwrap_or(1)),
        _ => {
            eprintln!("usage: workloads <W1|W2|W3|W4|W5|W6|W7|W7.2hubs|W8|W9> [N]");
            std::process::exit(2);
        }
    }
}

fn result(id: &str, value: f64, unit: &str) {
    println!("RESULT {id} {value:.1} {unit}");
}

/// W7: 100 connections x `messages` echoes of 64 bytes against an echo server on `hubs`
/// hubs in a child process (this program, as `W7-server`); reports msg/s, p50/p99 and
/// server CPU/message.
fn w7_tcp_echo(id: &str, hubs: usize, messages: usize) {
    let mut server = ServerProcess::start("W7-server", hubs, None);
    let load = tcp_load::Load { connections: 100, messages, size: 64 };
    let report = tcp_load::run(server.addr, load, Some(server.child.id()));
    server.stop();
    report.expect("the W7 run failed").print(id);
}

/// The server side of W7: echo on an ephemeral port, address on the first stdout line;
/// one hub on the main thread, or `hubs` hubs (`MultiServer`).
fn w7_server(hubs: usize) {
    if hubs > 1 {
        let server =
            verdant::server::MultiServer::start("127.0.0.1:0", verdant::Hubs::new(hubs), |_| {
                echo::echo
            })
            .unwrap();
        println!("{}", server.local_addr());
        server.wait().unwrap();
        return;
    }
    let server = verdant::server::StreamServer::new("127.0.0.1:0", echo::echo).unwrap();
    println!("{}", server.local_addr());
    server.serve_forever().unwrap();
}

/// A server run as a child process: this program with a `*-server` ID and a hub count,
/// optionally on one CPU (`taskset`); it prints its address first.
struct ServerProcess {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

impl ServerProcess {
    fn start(id: &str, hubs: usize, cpu: Option<usize>) -> ServerProcess {
        use std::io::BufRead;
        let exe = std::env::current_exe().unwrap();
        let mut command = match cpu {
            Some(cpu) => {
                let mut taskset = std::process::Command::new("taskset");
                taskset.arg("-c").arg(cpu.to_string()).arg(exe);
                taskset
            }
            None => std::process::Command::new(exe),
        };
        let mut child = command
            .args([id, &hubs.to_string()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start the {id} process: {e}"));
        let mut first_line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut first_line).unwrap();
        let addr = first_line.trim().parse().expect("the server prints its address first");
        ServerProcess { child, addr }
    }

    fn stop(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// One W9 server configuration.
struct W9Variant {
    name: &'static str,
    hubs: usize,
    /// (the server's CPU, wrk's CPU), to pin each to one core.
    pinning: Option<(usize, usize)>,
}

const W9_VARIANTS: [W9Variant; 3] = [
    W9Variant { name: "1hub", hubs: 1, pinning: None },
    W9Variant { name: "2hubs", hubs: 2, pinning: None },
    W9Variant { name: "1hub-pinned", hubs: 1, pinning: Some((0, 1)) },
];

/// W9: `wrk -t1 -c100` for `seconds` against the plaintext server (a child process) on 1
/// hub, on 2 hubs, and on 1 hub pinned to CPU 0 with wrk pinned to CPU 1; reports req/s,
/// p99 and the server's CPU per request (utime + stime of all its threads, from /proc).
fn w9_http_plaintext(seconds: u64) {
    if !wrk::available() {
        eprintln!("W9 skipped: wrk is not installed (Debian: apt-get install wrk)");
        return;
    }
    for variant in W9_VARIANTS {
        let (variant, hubs, pinning) = (variant.name, variant.hubs, variant.pinning);
        let mut server = ServerProcess::start("W9-server", hubs, pinning.map(|p| p.0));
        let _ = wrk::run(server.addr, 100, 1, pinning.map(|p| p.1)); // warm-up
        let before = tcp_load::cpu::process_cpu(server.child.id()).unwrap();
        let report = wrk::run(server.addr, 100, seconds, pinning.map(|p| p.1));
        let cpu = tcp_load::cpu::process_cpu(server.child.id()).unwrap() - before;
        server.stop();
        let report = report.expect("the W9 run failed");
        for error in &report.errors {
            eprintln!("W9.{variant}: wrk reported {error}");
        }
        let per_request = cpu.as_secs_f64() * 1e6 / report.requests.max(1) as f64;
        eprintln!(
            "W9.{variant}: {} requests, {:.0} req/s, p99 {:?}, server CPU {cpu:.2?}",
            report.requests, report.requests_per_second, report.p99
        );
        println!("RESULT W9.{variant} {:.0} req/s", report.requests_per_second);
        println!("RESULT W9.{variant}-p99 {:.1} us", report.p99.as_secs_f64() * 1e6);
        println!("RESULT W9.{variant}-server-cpu {per_request:.2} us/req");
    }
}

/// The server side of W9: the plaintext server on `hubs` hubs (`MultiServer`), address on
/// the first stdout line.
fn w9_server(hubs: usize) {
    let server =
        verdant::server::MultiServer::start("127.0.0.1:0", verdant::Hubs::new(hubs), |_| {
            plaintext::serve
        })
        .unwrap();
    println!("{}", server.local_addr());
    server.wait().unwrap();
}

/// W1: two greenlets hand control to each other `rounds` times each.
fn w1_switch(rounds: usize) {
    let ping = || {
        spawn(move || {
            for _ in 0..rounds {
                yield_now();
            }
        })
    };
    let (a, b) = (ping(), ping());
    let t = Instant::now();
    a.join();
    b.join();
    let elapsed = t.elapsed();
    result("W1", elapsed.as_nanos() as f64 / (2 * rounds) as f64, "ns/switch");
}

/// W2: spawn `count` greenlets returning their index, join all, sum.
fn w2_spawn_join(count: usize) {
    let t = Instant::now();
    let greenlets: Vec<_> = (0..count).map(|i| spawn(move || i as u64)).collect();
    let sum: u64 = greenlets.iter().map(|g| g.get().unwrap()).sum();
    let elapsed = t.elapsed();
    assert_eq!(sum, (count as u64) * (count as u64 - 1) / 2);
    result("W2", elapsed.as_nanos() as f64 / count as f64, "ns/spawn+join");
}

/// W3: a pool of 100 maps `x * 2` (with one yield inside) over `count` items, in order.
fn w3_pool_map(count: usize) {
    let pool = verdant::pool::Pool::new(100);
    let t = Instant::now();
    let doubled = pool
        .map(
            |x: u64| {
                yield_now();
                x * 2
            },
            0..count as u64,
        )
        .unwrap();
    let elapsed = t.elapsed();
    assert_eq!(doubled.len(), count);
    assert!(doubled.iter().enumerate().all(|(i, &v)| v == 2 * i as u64));
    result("W3", elapsed.as_nanos() as f64 / count as f64, "ns/item");
}

/// W4: from a greenlet, `count` sequential round trips to a thread pool running `x + 1`.
/// Also reports the process CPU time per round trip (the spinning costs CPU).
fn w4_threadpool_round_trip(count: usize) {
    if let Ok(us) = std::env::var("VERDANT_SPIN_US") {
        let us: u64 = us.parse().expect("VERDANT_SPIN_US is microseconds");
        hub::configure(|c| c.spin = Duration::from_micros(us)).unwrap();
        eprintln!("hub spin: {us} us");
    }
    let pool = verdant::threadpool::ThreadPool::new(1);
    pool.apply(|| 0u64); // start the worker outside the measurement
    let greenlet = spawn(move || {
        let cpu = tcp_load::cpu::own_cpu();
        let t = Instant::now();
        let mut x = 0u64;
        for _ in 0..count {
            x = pool.apply(move || x + 1);
        }
        (t.elapsed(), tcp_load::cpu::own_cpu() - cpu, x)
    });
    let (elapsed, cpu, x) = greenlet.get().unwrap();
    assert_eq!(x, count as u64);
    result("W4", elapsed.as_secs_f64() * 1e6 / count as f64, "us/round-trip");
    result("W4-cpu", cpu.as_secs_f64() * 1e6 / count as f64, "us-cpu/round-trip");
}

/// W5: a producer and a consumer pass `count` integers through a capacity-1 queue.
fn w5_queue(count: usize) {
    let queue = verdant::sync::Queue::bounded(1);
    let q = queue.clone();
    let producer = spawn(move || {
        for i in 0..count as u64 {
            q.put(i).unwrap();
        }
    });
    let q = queue.clone();
    let consumer = spawn(move || (0..count).map(|_| q.get().unwrap()).sum::<u64>());
    let t = Instant::now();
    let sum = consumer.get().unwrap();
    let elapsed = t.elapsed();
    producer.join();
    assert_eq!(sum, (count as u64) * (count as u64 - 1) / 2);
    result("W5", elapsed.as_nanos() as f64 / count as f64, "ns/message");
}

/// A small fixed-seed generator (xorshift64*), so every run sleeps the same amounts.
fn random_millis(count: usize, max: u64) -> Vec<u64> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..count)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D) % (max + 1)
        })
        .collect()
}

/// W6: `count` greenlets each sleep 0–100 ms, join all; time beyond the 100 ms floor.
fn w6_timers(count: usize) {
    choose_stack_mode();
    let delays = random_millis(count, 100);
    let t = Instant::now();
    let greenlets: Vec<_> =
        delays.iter().map(|&ms| spawn(move || sleep(Duration::from_millis(ms)))).collect();
    for g in &greenlets {
        g.join();
    }
    let elapsed = t.elapsed();
    assert!(greenlets.iter().all(|g| g.successful()), "some greenlet failed");
    result("W6", elapsed.as_secs_f64() * 1000.0 - 100.0, "ms");
}

/// Resident memory of this process in KiB (VmRSS).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// W8: `count` greenlets all blocked in `sleep(10 s)`; resident memory per greenlet.
fn w8_idle_memory(count: usize) {
    choose_stack_mode();
    // Warm up the hub and allocator outside the measurement.
    spawn(|| ()).join();
    let before = rss_kib();
    let t = Instant::now();
    let greenlets: Vec<_> = (0..count).map(|_| spawn(|| sleep(Duration::from_secs(10)))).collect();
    yield_now(); // every greenlet starts and parks in its sleep
    let spawned = t.elapsed();
    let during = rss_kib();
    let stats = hub::stats();
    assert_eq!(stats.switches as usize, count + 1, "every greenlet started and parked");
    eprintln!(
        "{} guarded stacks in use, {} shared stacks, {} bytes copied",
        stats.stacks_in_use, stats.shared_stacks, stats.shared_bytes_copied
    );
    result("W8.spawn", spawned.as_secs_f64() * 1e9 / count as f64, "ns/greenlet");
    result("W8", (during - before) as f64 / count as f64, "KiB/greenlet");
    for g in &greenlets {
        g.kill_nowait();
    }
}
