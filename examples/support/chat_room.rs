//! The chat room of the `chat` example: line-based, one greenlet reading each client and
//! one writing to it, lines broadcast through a bounded outbox per member.
//!
//! No client can make the room hold much, or wait long:
//!
//! * A line is at most [`MAX_LINE`] bytes. A client that sends a longer one gets
//!   `* line too long ...` and is disconnected: the server never holds more than
//!   `MAX_LINE` bytes of it. (Refused rather than truncated: 4 KiB without a newline is
//!   not chat, and cutting it would turn the rest into more lines.)
//! * Each member has an outbox of [`OUTBOX_LINES`] lines, emptied by its writer
//!   greenlet. A broadcast puts the line in every outbox that has room at once; the
//!   members whose outbox is full get until one deadline, [`SLOW_CLIENT_TIMEOUT`] after
//!   the broadcast began, to make room, and those still full are disconnected as slow
//!   consumers. One deadline per broadcast: twenty members that never read hold the
//!   room up for 0.5 s once, not 0.5 s each in turn. A single write to a member may
//!   wait [`WRITE_TIMEOUT`] at most.
//! * A client that resets the connection has simply left: not an error.

use std::cell::{Cell, RefCell};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::rc::Rc;
use std::time::{Duration, Instant};

use verdant::net::{TcpStream, is_disconnect};
use verdant::sync::{PutError, Queue};

/// The longest line accepted, in bytes, without its newline.
pub const MAX_LINE: usize = 4096;

/// Lines a member may have waiting for its writer.
pub const OUTBOX_LINES: usize = 100;

/// How long a broadcast waits for the members whose outbox is full, all of them together.
pub const SLOW_CLIENT_TIMEOUT: Duration = Duration::from_millis(500);

/// How long one write to a member may wait: bounds how long a member that stopped
/// reading keeps its writer when no broadcast comes to find its outbox full.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

struct Member {
    id: u64,
    name: String,
    outbox: Queue<Rc<str>>,
    stream: Rc<TcpStream>,
}

/// Everyone connected, by join order.
#[derive(Default)]
pub struct Room {
    members: RefCell<Vec<Member>>,
    next_id: Cell<u64>,
}

impl Room {
    pub fn new() -> Rc<Room> {
        Rc::default()
    }

    fn join(&self, name: &str, stream: &Rc<TcpStream>) -> (u64, Queue<Rc<str>>) {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let outbox = Queue::bounded(OUTBOX_LINES);
        let member =
            Member { id, name: name.to_string(), outbox: outbox.clone(), stream: stream.clone() };
        self.members.borrow_mut().push(member);
        (id, outbox)
    }

    fn leave(&self, id: u64) {
        self.members.borrow_mut().retain(|m| m.id != id);
    }

    fn names(&self) -> Vec<String> {
        self.members.borrow().iter().map(|m| m.name.clone()).collect()
    }

    /// Queues `line` for every member except `from`. Members with a full outbox get until
    /// one deadline to make room; those that do not are disconnected.
    fn broadcast(&self, from: Option<u64>, line: &str) {
        let line: Rc<str> = Rc::from(line);
        let mut behind = Vec::new();
        for member in self.members.borrow().iter().filter(|m| Some(m.id) != from) {
            if let Err(PutError::Full(_)) = member.outbox.put_nowait(line.clone()) {
                behind.push((member.outbox.clone(), member.stream.clone()));
            }
        }
        if behind.is_empty() {
            return;
        }
        let deadline = Instant::now() + SLOW_CLIENT_TIMEOUT;
        for (outbox, stream) in behind {
            let left = deadline.saturating_duration_since(Instant::now());
            let put = if left.is_zero() {
                outbox.put_nowait(line.clone())
            } else {
                outbox.put_timeout(line.clone(), left)
            };
            if let Err(PutError::Full(_)) = put {
                outbox.close();
                let _ = stream.shutdown(Shutdown::Both); // ends its writer and its reader
            }
        }
    }
}

/// Serves one client: asks for a name, then relays its lines until it leaves.
pub fn serve(room: &Rc<Room>, stream: TcpStream) -> io::Result<()> {
    match serve_member(room, Rc::new(stream)) {
        Err(err) if is_disconnect(&err) => Ok(()), // the client hung up
        done => done,
    }
}

fn serve_member(room: &Rc<Room>, stream: Rc<TcpStream>) -> io::Result<()> {
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut reader = BufReader::new(&*stream);
    (&*stream).write_all(b"Welcome! Your name? ")?;
    let name = match next_line(&mut reader)? {
        Line::Text(name) => name.trim().to_string(),
        Line::TooLong => return (&*stream).write_all(too_long().as_bytes()),
        Line::End => return Ok(()),
    };
    let (id, outbox) = room.join(&name, &stream);
    let writer = verdant::spawn({
        let (stream, outbox) = (stream.clone(), outbox.clone());
        move || {
            for line in outbox.iter() {
                if (&*stream).write_all(line.as_bytes()).is_err() {
                    break;
                }
            }
            let _ = stream.shutdown(Shutdown::Both); // also ends the reader below
        }
    });
    let _ = outbox.put_nowait(Rc::from(format!(
        "* {} here: {}\n",
        room.names().len(),
        room.names().join(", ")
    )));
    room.broadcast(Some(id), &format!("* {name} joined\n"));
    let outcome = relay(room, id, &name, &outbox, &mut reader);
    room.leave(id);
    outbox.close();
    writer.join();
    room.broadcast(None, &format!("* {name} left\n"));
    outcome
}

/// What a member is told before it is disconnected for a line over [`MAX_LINE`].
pub fn too_long() -> String {
    format!("* line too long (the limit is {MAX_LINE} bytes); bye\n")
}

fn relay(
    room: &Room,
    id: u64,
    name: &str,
    outbox: &Queue<Rc<str>>,
    reader: &mut impl BufRead,
) -> io::Result<()> {
    loop {
        let line = match next_line(reader)? {
            Line::Text(line) => line,
            Line::TooLong => {
                let _ = outbox.put_nowait(Rc::from(too_long())); // the writer sends it, then closes
                return Ok(());
            }
            Line::End => return Ok(()),
        };
        match line.trim_end() {
            "/quit" => return Ok(()),
            "/who" => {
                let _ =
                    outbox.put_nowait(Rc::from(format!("* here: {}\n", room.names().join(", "))));
            }
            text => room.broadcast(Some(id), &format!("{name}: {text}\n")),
        }
    }
}

/// One line from a client.
enum Line {
    /// The line, without its line ending; invalid UTF-8 is replaced.
    Text(String),
    /// Over [`MAX_LINE`] bytes: only `MAX_LINE + 1` of them were read.
    TooLong,
    /// The client closed.
    End,
}

/// Reads a line, holding at most `MAX_LINE + 1` bytes of it.
fn next_line(reader: &mut impl BufRead) -> io::Result<Line> {
    let mut line = Vec::new();
    reader.by_ref().take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Ok(Line::End);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    } else if line.len() > MAX_LINE {
        return Ok(Line::TooLong);
    }
    Ok(Line::Text(String::from_utf8_lossy(&line).into_owned()))
}
