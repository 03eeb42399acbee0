//! A TCP port forwarder with a graceful exit on `SIGTERM` or `SIGINT` (gevent's
//! `examples/portforwarder.py`): each connection to the listening address is forwarded to
//! the destination, one greenlet per direction.
//!
//! ```text
//! cargo run --release --example portforwarder -- 127.0.0.1:8080 127.0.0.1:7000
//! ```
//!
//! On the first `SIGTERM` or `SIGINT` (Ctrl-C) it closes the listening socket and waits for
//! the connections it has to finish: they go on unaffected, new ones are refused. It exits
//! once the last one is closed. A second signal aborts at once (exit status 1).

use std::io;
use std::net::Shutdown;
use std::rc::Rc;
use std::time::Duration;

use verdant::net::TcpStream;
use verdant::server::StreamServer;
use verdant::signal::{self, SIGINT, SIGTERM, SignalHandler};

/// How long the graceful stop waits for connections: "until they are done".
const DRAIN_FOR: Duration = Duration::from_secs(365 * 24 * 3600);

/// A server on `listen` that forwards each connection to `dest`.
pub fn forwarder(listen: &str, dest: String) -> io::Result<StreamServer> {
    StreamServer::new(listen, move |client: TcpStream, peer| {
        let upstream = TcpStream::connect(dest.as_str())?;
        eprintln!("{peer} -> {dest}: forwarding");
        let (client, upstream) = (Rc::new(client), Rc::new(upstream));
        let (from, to) = (client.clone(), upstream.clone());
        let outbound = verdant::spawn(move || pipe(&from, &to));
        let inbound = pipe(&upstream, &client);
        let outbound = outbound.take().unwrap_or(Ok(0));
        eprintln!("{peer} -> {dest}: closed");
        inbound.and(outbound).map(|_| ())
    })
}

/// Copies `from` to `to` until `from` ends, then ends `to`'s writing side.
fn pipe(from: &TcpStream, to: &TcpStream) -> io::Result<u64> {
    let copied = io::copy(&mut &*from, &mut &*to);
    let _ = to.shutdown(Shutdown::Write);
    copied
}

/// On the first `SIGTERM`/`SIGINT`, stops `server` gracefully (in the handler's greenlet);
/// on a second one, exits with status 1. Keep the handlers for as long as they should act.
pub fn stop_on_signals(server: &StreamServer) -> io::Result<[SignalHandler; 2]> {
    let on_signal = {
        let server = server.clone();
        move || {
            if server.is_closed() {
                eprintln!("multiple exit signals received: aborting");
                std::process::exit(1);
            }
            eprintln!("closing the listener, waiting for {} connection(s)", server.stats().active);
            server.stop(Some(DRAIN_FOR));
        }
    };
    Ok([signal::handler(SIGTERM, on_signal.clone())?, signal::handler(SIGINT, on_signal)?])
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(dest)) = (args.next(), args.next()) else {
        eprintln!(
            "usage: portforwarder LISTEN_ADDR DEST_ADDR (e.g. 127.0.0.1:8080 127.0.0.1:7000)"
        );
        std::process::exit(2);
    };
    let server = forwarder(&listen, dest.clone())?;
    let _handlers = stop_on_signals(&server)?;
    println!(
        "listening on {}, forwarding to {dest} (pid {})",
        server.local_addr(),
        std::process::id()
    );
    server.serve_forever()?;
    eprintln!("every connection is closed: exiting");
    Ok(())
}
