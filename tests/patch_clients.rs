//! Real blocking client crates, unchanged, in greenlets under `verdant::patch`: `ureq`
//! fetching from the project's `http_hello` in 200 greenlets at once, and the `redis`
//! crate's sync client in 100 greenlets against a Redis-protocol server (a real
//! `redis-server` where one is installed, else the `mini-redis` crate's server on a thread
//! of its own). Each holds its calls until all greenlets are inside them, which only works
//! if the calls are cooperative; a ticker greenlet shows the hub kept running. Both fail
//! without the hooks (see `patch_support`).

#![allow(dead_code)] // the example's `main` is included but not called here

mod patch_support;

#[path = "../examples/http_hello.rs"]
mod http_hello;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use patch_support::{HangGuard, InFlight, Ticker};
use verdant::spawn;

/// Waits (a verdant sleep at a time, so the hub runs) until `n` greenlets are in flight,
/// or one found its call blocked the thread; returns whether they were. (No time limit:
/// the test's hang guard is the bound.)
fn wait_until_in_flight(in_flight: &InFlight, n: usize) -> bool {
    while in_flight.now() < n && !in_flight.failed() {
        verdant::sleep(Duration::from_millis(1));
    }
    in_flight.now() >= n
}

const HTTP_CLIENTS: usize = 200;

/// http_hello on a thread and hub of its own, listening but not serving until `go`: the
/// clients' requests wait in the kernel's queue until every client is inside ureq. It
/// stops once `done`.
fn start_http_hello(go: mpsc::Receiver<()>, done: Arc<AtomicBool>) -> SocketAddr {
    let (addr_tx, addr_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let server = http_hello::server("127.0.0.1:0", http_hello::Timeouts::default()).unwrap();
        addr_tx.send(server.local_addr()).unwrap();
        // Without the hooks the first client blocks the test's thread for good: serve
        // anyway after a while, so the test fails rather than hangs. (With them, every
        // client is in flight before any can be answered: serving early changes nothing.)
        let _ = go.recv_timeout(Duration::from_secs(5));
        server.start().unwrap();
        while !done.load(Ordering::SeqCst) {
            verdant::sleep(Duration::from_millis(5));
        }
        server.stop(None);
    });
    addr_rx.recv().unwrap()
}

#[test]
fn ureq_fetches_from_http_hello_in_200_greenlets_at_once() {
    patch_support::install();
    let _guard = HangGuard::new("ureq clients", Duration::from_secs(120));
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let done = Arc::new(AtomicBool::new(false));
    let url = format!("http://{}/", start_http_hello(go_rx, done.clone()));
    let in_flight = InFlight::new();
    let ticker = Ticker::start(&in_flight);
    let clients = in_flight.spawn_clients(HTTP_CLIENTS, HTTP_CLIENTS, move |_| {
        ureq::get(&url).call().unwrap().body_mut().read_to_string().unwrap()
    });
    let all_in = wait_until_in_flight(&in_flight, HTTP_CLIENTS);
    let _ = go_tx.send(());
    let bodies: Vec<_> = clients.iter().map(|c| c.get().unwrap()).collect();
    done.store(true, Ordering::SeqCst);
    let (ticks, ticks_in_flight) = ticker.stop();
    assert!(all_in, "only {} of {HTTP_CLIENTS} ureq calls were in flight at once", in_flight.max());
    assert!(ticks_in_flight > 0, "the ticker never ran during the calls ({ticks} ticks)");
    for body in bodies {
        assert_eq!(body.as_deref(), Some("Hello, world!"));
    }
}

/// A Redis-protocol server on a free port: a real `redis-server` if one is installed,
/// else mini-redis on a thread of its own (which lives as long as the test process).
enum RedisServer {
    Real(Child),
    Mini,
}

impl RedisServer {
    fn start() -> (RedisServer, SocketAddr) {
        if let Some(server) = RedisServer::start_real() {
            return server;
        }
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let _ = mini_redis::server::run(listener, std::future::pending::<()>()).await;
            });
        });
        (RedisServer::Mini, rx.recv().unwrap())
    }

    fn start_real() -> Option<(RedisServer, SocketAddr)> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let ready = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            if Instant::now() > ready {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some((RedisServer::Real(child), addr))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let RedisServer::Real(child) = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

const REDIS_CLIENTS: usize = 100;

/// Without the hooks the first subscriber blocks the test's thread for good: a plain thread
/// publishes once no greenlet has subscribed for 5 s while some never did, so that the
/// test fails rather than hangs. With the hooks all subscribe and it never publishes.
fn publish_if_stuck(client: &redis::Client, subscribed: Arc<AtomicUsize>, stop: Arc<AtomicBool>) {
    let client = client.clone();
    std::thread::spawn(move || {
        let (mut seen, mut since) = (0, Instant::now());
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
            let now = subscribed.load(Ordering::SeqCst);
            if now != seen {
                (seen, since) = (now, Instant::now());
            }
            if now < REDIS_CLIENTS && since.elapsed() > Duration::from_secs(5) {
                let mut con = client.get_connection().unwrap();
                let _: redis::RedisResult<i64> =
                    redis::cmd("PUBLISH").arg("verdant-patch-go").arg("fallback").query(&mut con);
            }
        }
    });
}

/// One greenlet's work: SET and GET a key of its own, then wait, inside the client, for a
/// message published only once all are in. `None` if an earlier client found its calls
/// blocked the thread.
fn redis_client(
    client: &redis::Client,
    i: usize,
    in_flight: &InFlight,
    subscribed: &AtomicUsize,
) -> Option<(usize, String)> {
    if in_flight.failed() {
        return None;
    }
    let mut con = client.get_connection().unwrap();
    let key = format!("verdant-patch-test-{i}");
    redis::cmd("SET").arg(&key).arg(i).query::<()>(&mut con).unwrap();
    let value: usize = redis::cmd("GET").arg(&key).query(&mut con).unwrap();
    let mut pubsub = con.as_pubsub();
    pubsub.subscribe("verdant-patch-go").unwrap();
    subscribed.fetch_add(1, Ordering::SeqCst);
    in_flight.enter();
    let message: String = pubsub.get_message().unwrap().get_payload().unwrap();
    in_flight.leave();
    in_flight.check(REDIS_CLIENTS);
    Some((value, message))
}

#[test]
fn the_redis_sync_client_works_in_100_greenlets_at_once() {
    patch_support::install();
    let _guard = HangGuard::new("redis clients", Duration::from_secs(120));
    let (server, addr) = RedisServer::start();
    let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
    let in_flight = InFlight::new();
    let ticker = Ticker::start(&in_flight);
    let subscribed = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..REDIS_CLIENTS)
        .map(|i| {
            let (in_flight, client) = (in_flight.clone(), client.clone());
            let subscribed = subscribed.clone();
            spawn(move || redis_client(&client, i, &in_flight, &subscribed))
        })
        .collect();
    let stop_fallback = Arc::new(AtomicBool::new(false));
    publish_if_stuck(&client, subscribed, stop_fallback.clone());
    let all_in = wait_until_in_flight(&in_flight, REDIS_CLIENTS);
    // The main code's calls pass through (blocking): fine, the server is elsewhere.
    let mut con = client.get_connection().unwrap();
    let receivers: i64 =
        redis::cmd("PUBLISH").arg("verdant-patch-go").arg("go").query(&mut con).unwrap();
    let results: Vec<_> = clients.iter().map(|c| c.get().unwrap()).collect();
    stop_fallback.store(true, Ordering::SeqCst);
    let (ticks, ticks_in_flight) = ticker.stop();
    assert!(
        all_in,
        "only {} of {REDIS_CLIENTS} redis calls were in flight at once",
        in_flight.max()
    );
    assert_eq!(receivers, REDIS_CLIENTS as i64, "every greenlet was subscribed at once");
    assert!(ticks_in_flight > 0, "the ticker never ran during the calls ({ticks} ticks)");
    for (i, result) in results.into_iter().enumerate() {
        assert_eq!(result, Some((i, "go".to_string())));
    }
    drop(server);
}
