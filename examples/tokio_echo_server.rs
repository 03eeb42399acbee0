//! Dev-only comparison: the same echo server as `echo_server`, on tokio's current-thread
//! runtime, so W7 can be measured against a peer with the same load client.
//!
//! ```text
//! cargo run --release --example tokio_echo_server -- 127.0.0.1:7001
//! ```

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Serves on the address given as the first argument until killed (public so that
/// `benches/compare_tokio.rs` can run it in a process of its own).
pub fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:7001".to_string());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind(&addr).await?;
        println!("listening on {} (pid {})", listener.local_addr()?, std::process::id());
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(echo(stream));
        }
    })
}

async fn echo(mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = [0; 16 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n]).await?;
    }
}
