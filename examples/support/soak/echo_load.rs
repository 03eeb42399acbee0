//! Clients of the echo server: churn (connect, a random number of messages, each echo
//! checked byte for byte, close), resets in the middle of an exchange, and a client that
//! never reads, which the server's idle timeout must drop.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};

use super::rng::Rng;
use super::tally::Tally;
use super::wire::{self, End};

/// The largest message sent (the server echoes 16 KiB at a time).
const MAX_MESSAGE: usize = 8 * 1024;

/// Messages per connection, at most.
const MAX_MESSAGES: usize = 20;

/// Connects, exchanges 1 to `MAX_MESSAGES` random messages checking every echo, then
/// half-closes and expects the server to close too.
pub fn churn(addr: SocketAddr, rng: &mut Rng, tally: &Tally) -> Result<(), String> {
    let mut stream = wire::connect(addr)?;
    for _ in 0..rng.between(1, MAX_MESSAGES) {
        exchange(&mut stream, rng, tally)?;
    }
    stream.shutdown(Shutdown::Write).map_err(wire::failed("echo: shutdown"))?;
    match wire::read_until_close(&stream, 0)? {
        (_, End::Closed) => Ok(()),
        (_, End::Reset) => Err("echo: the server reset instead of closing".to_string()),
    }
}

/// A few checked messages, then one more sent whose echo is not awaited, and a reset.
pub fn reset_midway(addr: SocketAddr, rng: &mut Rng, tally: &Tally) -> Result<(), String> {
    let mut stream = wire::connect(addr)?;
    for _ in 0..rng.between(0, 5) {
        exchange(&mut stream, rng, tally)?;
    }
    let mut message = vec![0; rng.between(1, MAX_MESSAGE)];
    rng.fill(&mut message);
    stream.write_all(&message).map_err(wire::failed("echo: write before the reset"))?;
    wire::set_linger_zero(&stream);
    drop(stream);
    Tally::bump(&tally.resets);
    Ok(())
}

/// Sends without ever reading: the server's writes soon wait, and its idle timeout must
/// close the connection, which the client sees as a reset or a broken pipe.
pub fn never_read(addr: SocketAddr, tally: &Tally) -> Result<(), String> {
    /// Far more than any socket buffers hold: reaching it means nobody stopped us.
    const LIMIT: usize = 256 << 20;
    let mut stream = wire::connect(addr)?;
    wire::set_small_receive_buffer(&stream);
    let chunk = [b'z'; 64 * 1024];
    let mut sent = 0;
    while sent < LIMIT {
        match stream.write(&chunk) {
            Ok(n) => sent += n,
            Err(err) if verdant::net::is_disconnect(&err) => {
                Tally::bump(&tally.slow_closed);
                return Ok(());
            }
            Err(err) => return Err(wire::failed("echo: a client that never reads")(err)),
        }
    }
    Err(format!("echo: a client that never reads sent {sent} bytes without being dropped"))
}

/// One random message and its echo, compared byte for byte.
fn exchange(
    stream: &mut verdant::net::TcpStream,
    rng: &mut Rng,
    tally: &Tally,
) -> Result<(), String> {
    let mut message = [0; MAX_MESSAGE];
    let mut echo = [0; MAX_MESSAGE];
    let len = rng.between(1, MAX_MESSAGE);
    rng.fill(&mut message[..len]);
    stream.write_all(&message[..len]).map_err(wire::failed("echo: write"))?;
    stream.read_exact(&mut echo[..len]).map_err(wire::failed("echo: read the echo"))?;
    if echo[..len] != message[..len] {
        return Err(format!("echo: a {len}-byte message came back different"));
    }
    Tally::bump(&tally.echoed);
    Ok(())
}
