//! Records a scheduling timeline of a small program and draws it as an SVG: one row per
//! greenlet, a coloured slice for every stretch it ran or waited, and what it waited for.
//!
//! ```text
//! cargo run --release --example timeline                 # writes timeline.svg and timeline.json
//! cargo run --release --example timeline -- docs/timeline.svg
//! ```
//!
//! The program: a local HTTP server (one greenlet per connection, each answer delayed by
//! a 2 ms "backend"), a pool of 3 greenlets crawling 6 of its pages, a producer and a
//! consumer passing 6 items through a queue that holds 2, and a greenlet that hands a hash
//! to the thread pool. The JSON next to the SVG opens in <https://ui.perfetto.dev>.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use verdant::hub::trace;
use verdant::net::{TcpListener, TcpStream};
use verdant::pool::{Group, Pool};
use verdant::sync::Queue;
use verdant::threadpool::ThreadPool;
use verdant::{Builder, sleep, yield_now};

/// The largest request or response this example reads; anything longer is refused.
const MAX_MESSAGE: usize = 16 * 1024;

fn main() -> io::Result<()> {
    let svg_path = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "timeline.svg".into()));
    let summary = run(&svg_path)?;
    println!(
        "{} events ({} dropped) in {}; drawn in {}",
        summary.events,
        summary.dropped,
        summary.path.display(),
        svg_path.display()
    );
    Ok(())
}

/// Runs the scenario with a trace recorded next to `svg_path` (`.json`), and draws it there.
pub fn run(svg_path: &Path) -> io::Result<trace::TraceSummary> {
    trace::start(svg_path.with_extension("json"))?;
    let ran = scenario();
    let summary = trace::stop()?;
    ran?;
    let text = std::fs::read_to_string(&summary.path)?;
    let events: Vec<Value> = serde_json::from_str(&text).map_err(io::Error::other)?;
    std::fs::write(svg_path, render(&events))?;
    Ok(summary)
}

// ----- the program whose timeline is drawn ---------------------------------------------

fn scenario() -> io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = Builder::new().name("server").spawn(move || serve(listener))?;

    let queue = Queue::bounded(2);
    let (into, out_of) = (queue.clone(), queue);
    let producer = Builder::new().name("producer").spawn(move || {
        for item in 0..6 {
            into.put(item).expect("the queue stays open");
        }
        into.close();
    })?;
    let consumer = Builder::new().name("consumer").spawn(move || {
        let mut sum = 0;
        for item in out_of.iter() {
            sleep(Duration::from_micros(500)); // some work per item
            sum += item;
        }
        sum
    })?;

    let hasher = Builder::new().name("hasher").spawn(|| {
        let pool = ThreadPool::new(1);
        pool.spawn(|| (0..200_000u64).fold(0u64, |h, x| h.rotate_left(5) ^ x)).get()
    })?;

    let crawlers = Pool::new(3);
    let pages = crawlers.map(move |page| fetch(addr, page), 1..=6).expect("the crawl ran");
    let fetched = pages.iter().filter(|page| page.is_ok()).count();
    assert_eq!(fetched, 6, "every page was fetched: {pages:?}");

    producer.join();
    assert_eq!(consumer.get().expect("the consumer ran"), 15);
    hasher.get().expect("the hasher ran").expect("the thread pool ran the hash");
    server.kill();
    Ok(())
}

fn serve(listener: TcpListener) -> io::Result<()> {
    let handlers = Group::new();
    loop {
        let (stream, _) = listener.accept()?;
        handlers.spawn(move || answer(stream));
    }
}

/// Answers one `GET /page/N` with a short page, after the backend's 2 ms.
fn answer(mut stream: TcpStream) -> io::Result<()> {
    let request = read_until_blank_line(&mut stream)?;
    let page = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    sleep(Duration::from_millis(2));
    let body = format!("<h1>{page}</h1>\n");
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())
}

fn fetch(addr: SocketAddr, page: u32) -> io::Result<usize> {
    let mut stream = TcpStream::connect(addr)?;
    write!(stream, "GET /page/{page} HTTP/1.1\r\nHost: timeline\r\nConnection: close\r\n\r\n")?;
    let mut response = Vec::new();
    stream.take(MAX_MESSAGE as u64).read_to_end(&mut response)?;
    if !response.starts_with(b"HTTP/1.1 200") {
        return Err(io::Error::other("the server did not answer 200"));
    }
    yield_now();
    Ok(response.len())
}

fn read_until_blank_line(stream: &mut TcpStream) -> io::Result<String> {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 || request.len() + n > MAX_MESSAGE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "an incomplete or oversized request",
            ));
        }
        request.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&request).into_owned())
}

// ----- drawing the trace -------------------------------------------------------------

const LABEL_WIDTH: f64 = 190.0;
const PLOT_WIDTH: f64 = 900.0;
const ROW_HEIGHT: f64 = 18.0;
const TOP: f64 = 44.0;

/// The colour of each slice category, and what it means (for the legend).
const CATEGORIES: [(&str, &str, &str); 8] = [
    ("run", "#2e9e44", "running"),
    ("sleep", "#9db4d8", "sleep"),
    ("io", "#f0a030", "waiting for I/O"),
    ("sync", "#a77fd0", "lock / queue / event"),
    ("join", "#46b5b0", "join"),
    ("yield", "#f3e27a", "yielded, ready"),
    ("wait", "#c8c8c8", "other wait"),
    ("span", "#d9534f", "thread-pool task"),
];

fn colour(cat: &str) -> &'static str {
    CATEGORIES.iter().find(|(c, _, _)| *c == cat).map_or("#999999", |(_, colour, _)| colour)
}

/// A row of the drawing: a (process, thread) of the trace.
struct Row {
    label: String,
    sort: u64,
}

fn render(events: &[Value]) -> String {
    let mut rows: BTreeMap<(u64, u64), Row> = BTreeMap::new();
    for e in events.iter().filter(|e| e["ph"] == "M") {
        let key = (e["pid"].as_u64().unwrap_or(0), e["tid"].as_u64().unwrap_or(0));
        let row = rows.entry(key).or_insert(Row { label: String::new(), sort: key.1 });
        match e["name"].as_str() {
            Some("thread_name") => row.label = e["args"]["name"].as_str().unwrap_or("").to_string(),
            Some("thread_sort_index") => row.sort = e["args"]["sort_index"].as_u64().unwrap_or(0),
            _ => {}
        }
    }
    rows.retain(|_, row| !row.label.is_empty());
    // Hubs first (pid 1, 2, ...), the `threads` process (pid 0) last.
    let mut order: Vec<(u64, u64)> = rows.keys().copied().collect();
    order.sort_by_key(|&(pid, tid)| (pid == 0, pid, rows[&(pid, tid)].sort));
    let index: BTreeMap<(u64, u64), usize> =
        order.iter().enumerate().map(|(i, k)| (*k, i)).collect();

    let timed = events.iter().filter(|e| e["ph"] == "X" || e["ph"] == "i");
    let start = timed.clone().filter_map(|e| e["ts"].as_f64()).fold(f64::MAX, f64::min);
    let end = timed
        .filter_map(|e| Some(e["ts"].as_f64()? + e["dur"].as_f64().unwrap_or(0.0)))
        .fold(0.0, f64::max);
    let span = (end - start).max(1.0);
    let x = |ts: f64| LABEL_WIDTH + (ts - start) / span * PLOT_WIDTH;

    let height = TOP + ROW_HEIGHT * order.len() as f64 + 60.0;
    let width = LABEL_WIDTH + PLOT_WIDTH + 20.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{LABEL_WIDTH}" y="16" font-size="12">verdant: one hub's greenlets over {:.1} ms (rows = greenlets, time →)</text>"#,
        span / 1000.0
    );
    let plot_bottom = TOP + ROW_HEIGHT * order.len() as f64;
    let step = tick_step(span);
    let mut tick = 0.0;
    while tick <= span {
        let at = x(start + tick);
        let _ = writeln!(
            svg,
            r##"<line x1="{at:.2}" x2="{at:.2}" y1="{}" y2="{plot_bottom}" stroke="#ddd"/><text x="{at:.2}" y="{}" fill="#777" text-anchor="middle">{} ms</text>"##,
            TOP - 2.0,
            TOP - 4.0,
            tick / 1000.0
        );
        tick += step;
    }
    for (i, key) in order.iter().enumerate() {
        let y = TOP + ROW_HEIGHT * i as f64;
        if i % 2 == 0 {
            let _ = writeln!(
                svg,
                r##"<rect x="0" y="{y}" width="{width}" height="{ROW_HEIGHT}" fill="#f4f4f4"/>"##
            );
        }
        let _ =
            writeln!(svg, r#"<text x="4" y="{}">{}</text>"#, y + 13.0, escape(&rows[key].label));
    }
    for e in events.iter().filter(|e| e["ph"] == "X") {
        let key = (e["pid"].as_u64().unwrap_or(0), e["tid"].as_u64().unwrap_or(0));
        let Some(&i) = index.get(&key) else { continue };
        let (ts, dur) = (e["ts"].as_f64().unwrap_or(0.0), e["dur"].as_f64().unwrap_or(0.0));
        let cat = e["cat"].as_str().unwrap_or("wait");
        let y = TOP + ROW_HEIGHT * i as f64 + 3.0;
        let w = (dur / span * PLOT_WIDTH).max(0.6);
        let what = match e["args"]["stopped"].as_str() {
            Some(stopped) => format!("ran {dur:.1} µs, then: {stopped}"),
            None => format!("{} ({dur:.1} µs)", e["name"].as_str().unwrap_or("")),
        };
        let _ = writeln!(
            svg,
            r#"<rect x="{:.2}" y="{y}" width="{w:.2}" height="{}" fill="{}"><title>{}</title></rect>"#,
            x(ts),
            ROW_HEIGHT - 6.0,
            colour(cat),
            escape(&what)
        );
    }
    for e in events.iter().filter(|e| e["ph"] == "i") {
        let key = (e["pid"].as_u64().unwrap_or(0), e["tid"].as_u64().unwrap_or(0));
        let Some(&i) = index.get(&key) else { continue };
        let y = TOP + ROW_HEIGHT * i as f64;
        let at = x(e["ts"].as_f64().unwrap_or(0.0));
        let _ = writeln!(
            svg,
            r##"<line x1="{at:.2}" x2="{at:.2}" y1="{}" y2="{}" stroke="#444" stroke-width="1"><title>{}</title></line>"##,
            y + 2.0,
            y + ROW_HEIGHT - 2.0,
            escape(e["name"].as_str().unwrap_or(""))
        );
    }
    let legend_y = TOP + ROW_HEIGHT * order.len() as f64 + 22.0;
    let mut legend_x = LABEL_WIDTH;
    for (cat, fill, meaning) in CATEGORIES {
        let _ = writeln!(
            svg,
            r#"<rect x="{legend_x}" y="{}" width="12" height="12" fill="{fill}"/><text x="{}" y="{}">{meaning}</text>"#,
            legend_y - 10.0,
            legend_x + 16.0,
            legend_y,
        );
        legend_x += 18.0 + 6.5 * meaning.len() as f64 + 12.0;
        let _ = cat;
    }
    let _ = writeln!(
        svg,
        r#"<text x="{LABEL_WIDTH}" y="{}">ticks on the hub loop row: timers fired, fds ready, cross-thread messages</text>"#,
        legend_y + 20.0
    );
    svg.push_str("</svg>\n");
    svg
}

/// A round tick interval (1, 2 or 5 × 10^k µs) giving at most 15 ticks over `span` µs.
fn tick_step(span: f64) -> f64 {
    let mut decade = 1.0;
    loop {
        for step in [decade, 2.0 * decade, 5.0 * decade] {
            if span / step <= 15.0 {
                return step;
            }
        }
        decade *= 10.0;
    }
}

/// `text` with XML's special characters escaped.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
