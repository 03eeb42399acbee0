//! A line-based chat room: connect with `nc`, give a name, and every line you type goes to
//! everyone else. `/who` lists who is here, `/quit` leaves.
//!
//! ```text
//! cargo run --release --example chat -- 127.0.0.1:9000
//! nc 127.0.0.1 9000
//! ```
//!
//! Each client has a reader greenlet (its handler) and a writer greenlet fed by a bounded
//! outbox, the eventlet chat-server pattern. Lines over 4 KiB are refused (the client is
//! told and disconnected); a member that does not read is disconnected as a slow
//! consumer, and never holds up the room for more than 0.5 s per broadcast (see
//! `support/chat_room.rs`).

#[path = "support/chat_room.rs"]
mod chat_room;

use verdant::server::StreamServer;

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9000".to_string());
    let room = chat_room::Room::new();
    let server =
        StreamServer::new(addr.as_str(), move |stream, _| chat_room::serve(&room, stream))?;
    println!(
        "chat room on {} — try: nc {} {}",
        server.local_addr(),
        server.local_addr().ip(),
        server.local_addr().port()
    );
    server.serve_forever()
}
