//! Dev-only comparison: `http_hello`'s behavior on tokio's current-thread runtime, same
//! parsing and responses (`support/http.rs`), for `wrk -t1 -c100 -d10s`.
//!
//! ```text
//! cargo run --release --example tokio_http_hello -- 127.0.0.1:8081
//! ```

#[path = "support/http.rs"]
mod http;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Serves on the address given as the first argument until killed (public so that
/// `benches/compare_tokio.rs` can run it in a process of its own).
pub fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8081".to_string());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind(&addr).await?;
        println!("listening on http://{} (pid {})", listener.local_addr()?, std::process::id());
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(serve(stream));
        }
    })
}

async fn serve(mut stream: TcpStream) -> std::io::Result<()> {
    let mut input = Vec::with_capacity(4096);
    let mut output = Vec::with_capacity(4096);
    let mut chunk = [0; 4096];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        input.extend_from_slice(&chunk[..n]);
        let next = http::answer(&input, &mut output);
        stream.write_all(&output).await?;
        output.clear();
        match next {
            http::Next::Read { consumed } => drop(input.drain(..consumed)),
            // No lingering close nor timeouts here: this server exists to compare speed.
            http::Next::Close | http::Next::CloseAfterError => return Ok(()),
        }
    }
}
