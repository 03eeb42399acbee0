//! Resolving many names at once (gevent's `examples/dns_mass_resolve.py`), against a local
//! DNS server this example starts, so the figure is the resolver's and not the network's.
//!
//! ```text
//! cargo run --release --example dns_mass_resolve -- [NAMES] [CONCURRENCY] [DELAY_MS]
//! cargo run --release --example dns_mass_resolve -- serve [DELAY_MS]   # the server alone
//! ```
//!
//! The server answers each UDP query `DELAY_MS` (1) late, as a real server a round trip
//! away would; 0 measures the resolvers' CPU cost alone. Resolves `NAMES` (10,000)
//! distinct names twice and prints lookups per second:
//!
//! * `green`: the green resolver, `CONCURRENCY` (200) greenlets of one pool at once, on
//!   this one thread;
//! * `threads`: the same queries from the resolver thread pool's 10 threads, each blocked
//!   in one look-up at a time: the shape of gevent's default thread resolver (which
//!   `lookup_host` uses, but `getaddrinfo` cannot be pointed at a local server).

#[allow(dead_code)] // the tests use more of it
#[path = "support/dns_server.rs"]
pub(crate) mod dns_server;

use std::io;
use std::net::IpAddr;
use std::time::Instant;

use verdant::net::dns::{GreenResolver, ResolverConfig};
use verdant::pool::Pool;
use verdant::threadpool::ThreadPool;

/// Resolves `hostN.test` for every `N` below `names`, `concurrency` at a time in
/// greenlets; returns how many resolved to the right address.
pub fn resolve_green(resolver: &GreenResolver, names: u32, concurrency: usize) -> usize {
    let pool = Pool::new(concurrency);
    let resolver = resolver.clone();
    let found = pool.map(move |n| right_answer(&resolver, n), 0..names);
    found.map_or(0, |found| found.into_iter().filter(|ok| *ok).count())
}

/// The same from `threads` native threads, one blocking look-up each at a time.
pub fn resolve_threads(resolver: &GreenResolver, names: u32, threads: usize) -> usize {
    let pool = ThreadPool::new(threads);
    let resolver = resolver.clone();
    let found = pool.map(move |n| right_answer(&resolver, n), 0..names);
    found.map_or(0, |found| found.into_iter().filter(|ok| *ok).count())
}

fn right_answer(resolver: &GreenResolver, n: u32) -> bool {
    let expected = IpAddr::V4(dns_server::address_of(n));
    resolver.lookup_ip(&format!("host{n}.test")).is_ok_and(|ips| ips == [expected])
}

/// Runs the local DNS server alone, for another resolver to be measured against
/// (`benches/gevent_dns_mass_resolve.py`).
fn serve(mut args: impl Iterator<Item = String>) -> io::Result<()> {
    let delay_ms: u64 = args.next().map_or(Ok(1), |arg| arg.parse()).map_err(io::Error::other)?;
    let server = dns_server::start_with_delay(std::time::Duration::from_millis(delay_ms))?;
    println!("serving on {} ({delay_ms} ms late)", server.addr);
    loop {
        std::thread::park(); // the server's threads do the work, until the process is killed
    }
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().is_some_and(|arg| arg == "serve") {
        return serve(args.skip(1));
    }
    let names: u32 = args.next().map_or(Ok(10_000), |arg| arg.parse()).map_err(io::Error::other)?;
    let concurrency: usize =
        args.next().map_or(Ok(200), |arg| arg.parse()).map_err(io::Error::other)?;
    let delay_ms: u64 = args.next().map_or(Ok(1), |arg| arg.parse()).map_err(io::Error::other)?;
    let server = dns_server::start_with_delay(std::time::Duration::from_millis(delay_ms))?;
    let resolver = GreenResolver::new(ResolverConfig::with_nameservers(vec![server.addr]));
    println!("resolving {names} names against a local DNS server answering {delay_ms} ms late");

    let started = Instant::now();
    let found = resolve_green(&resolver, names, concurrency);
    let rate = f64::from(names) / started.elapsed().as_secs_f64();
    println!(
        "green ({concurrency} greenlets, 1 thread): {found}/{names} resolved, {rate:.0} lookups/s"
    );
    println!("RESULT dns_green {rate:.0} lookups/s");

    let threads = verdant::net::DEFAULT_RESOLVER_THREADS;
    let started = Instant::now();
    let found = resolve_threads(&resolver, names, threads);
    let rate = f64::from(names) / started.elapsed().as_secs_f64();
    println!("threads ({threads} blocking threads): {found}/{names} resolved, {rate:.0} lookups/s");
    println!("RESULT dns_threads {rate:.0} lookups/s");
    Ok(())
}
