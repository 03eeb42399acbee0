//! W7's load client, shared by `loadgen` and `workloads`: N connections, each sending M
//! messages of S bytes and waiting for every echo before the next; all start together.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use verdant::net::TcpStream;

#[path = "cpu.rs"]
pub mod cpu;

use cpu::{own_cpu, process_cpu};
use verdant::sync::Event;

/// What to run.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub connections: usize,
    pub messages: usize,
    pub size: usize,
}

/// What a run measured.
#[derive(Debug)]
pub struct LoadReport {
    pub messages: usize,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
    /// CPU the server process used meanwhile, if its pid was given.
    pub server_cpu: Option<Duration>,
    /// CPU this client used meanwhile.
    pub client_cpu: Duration,
}

impl LoadReport {
    pub fn messages_per_second(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }

    /// Prints the figures: `RESULT` lines on stdout, a summary on stderr.
    pub fn print(&self, id: &str) {
        eprintln!(
            "{} messages in {:.2?}: {:.0} msg/s, p50 {:?}, p99 {:?}, client CPU {:.0} ns/msg",
            self.messages,
            self.elapsed,
            self.messages_per_second(),
            self.p50,
            self.p99,
            self.client_cpu.as_nanos() as f64 / self.messages as f64,
        );
        println!("RESULT {id} {:.0} msg/s", self.messages_per_second());
        println!("RESULT {id}-p50 {:.1} us", self.p50.as_secs_f64() * 1e6);
        println!("RESULT {id}-p99 {:.1} us", self.p99.as_secs_f64() * 1e6);
        if let Some(cpu) = self.server_cpu {
            let per_message = cpu.as_nanos() as f64 / self.messages as f64;
            println!("RESULT {id}-server-cpu {per_message:.0} ns/msg");
        }
    }
}

/// Connects every client, starts them together, and measures until the last echo.
pub fn run(addr: SocketAddr, load: Load, server_pid: Option<u32>) -> io::Result<LoadReport> {
    let start = Event::new();
    let clients: Vec<_> = (0..load.connections)
        .map(|_| -> io::Result<_> {
            let mut stream = TcpStream::connect(addr)?;
            stream.set_nodelay(true)?;
            let start = start.clone();
            Ok(verdant::spawn(move || client(&mut stream, load, &start)))
        })
        .collect::<io::Result<_>>()?;
    verdant::yield_now(); // every client waits at the start line
    let server_before = server_pid.map(process_cpu).transpose()?;
    let client_before = own_cpu();
    let began = Instant::now();
    start.set();
    let mut latencies = Vec::with_capacity(load.connections * load.messages);
    for client in clients {
        latencies.extend(client.take().map_err(io::Error::other)??);
    }
    let elapsed = began.elapsed();
    let client_cpu = own_cpu() - client_before;
    let server_cpu = match (server_pid, server_before) {
        (Some(pid), Some(before)) => Some(process_cpu(pid)? - before),
        _ => None,
    };
    let messages = latencies.len();
    Ok(LoadReport {
        messages,
        elapsed,
        p50: percentile(&mut latencies, 0.50),
        p99: percentile(&mut latencies, 0.99),
        server_cpu,
        client_cpu,
    })
}

/// One connection's loop; returns each message's round-trip time in nanoseconds.
fn client(stream: &mut TcpStream, load: Load, start: &Event) -> io::Result<Vec<u32>> {
    let message = vec![b'x'; load.size];
    let mut echo = vec![0; load.size];
    let mut latencies = Vec::with_capacity(load.messages);
    start.wait();
    for _ in 0..load.messages {
        let sent = Instant::now();
        stream.write_all(&message)?;
        stream.read_exact(&mut echo)?;
        latencies.push(sent.elapsed().as_nanos().min(u32::MAX as u128) as u32);
    }
    Ok(latencies)
}

fn percentile(samples: &mut [u32], q: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let index = ((samples.len() - 1) as f64 * q).round() as usize;
    Duration::from_nanos(u64::from(*samples.select_nth_unstable(index).1))
}
