//! The chat room of the `chat` example: line-based, one greenlet reading each client and
//! one writing to it, lines broadcast through a bounded queue per member. A full queue
//! makes the sender wait (backpressure), but at most `SLOW_CLIENT_TIMEOUT`: a client that
//! reads nothing for that long is disconnected, so it cannot hold up the room.

use std::cell::{Cell, RefCell};
use std::io::{self, BufRead, BufReader, Write};
use std::net::Shutdown;
use std::rc::Rc;
use std::time::Duration;

use verdant::net::TcpStream;
use verdant::sync::{PutError, Queue};

/// Lines a member may have waiting before senders wait for it.
const BACKLOG_LINES: usize = 100;

/// How long a sender waits for a member with a full queue before disconnecting it.
const SLOW_CLIENT_TIMEOUT: Duration = Duration::from_millis(500);

struct Member {
    id: u64,
    name: String,
    inbox: Queue<Rc<str>>,
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
        let inbox = Queue::bounded(BACKLOG_LINES);
        let member =
            Member { id, name: name.to_string(), inbox: inbox.clone(), stream: stream.clone() };
        self.members.borrow_mut().push(member);
        (id, inbox)
    }

    fn leave(&self, id: u64) {
        self.members.borrow_mut().retain(|m| m.id != id);
    }

    fn names(&self) -> Vec<String> {
        self.members.borrow().iter().map(|m| m.name.clone()).collect()
    }

    /// Queues `line` for every member except `from`, waiting for members that are behind;
    /// one that stays behind for `SLOW_CLIENT_TIMEOUT` is disconnected.
    fn broadcast(&self, from: Option<u64>, line: &str) {
        let line: Rc<str> = Rc::from(line);
        // A snapshot: the puts below may wait, while others join and leave.
        let recipients: Vec<(Queue<Rc<str>>, Rc<TcpStream>)> = (self.members.borrow().iter())
            .filter(|m| Some(m.id) != from)
            .map(|m| (m.inbox.clone(), m.stream.clone()))
            .collect();
        for (inbox, stream) in recipients {
            if let Err(PutError::Full(_)) = inbox.put_timeout(line.clone(), SLOW_CLIENT_TIMEOUT) {
                inbox.close();
                let _ = stream.shutdown(Shutdown::Both); // unblocks its writer and reader
            }
        }
    }
}

/// Serves one client: asks for a name, then relays its lines until it leaves.
pub fn serve(room: &Rc<Room>, stream: TcpStream) -> io::Result<()> {
    let stream = Rc::new(stream);
    let mut lines = BufReader::new(&*stream).lines();
    (&*stream).write_all(b"Welcome! Your name? ")?;
    let Some(name) = lines.next().transpose()? else { return Ok(()) };
    let name = name.trim().to_string();
    let (id, inbox) = room.join(&name, &stream);
    let writer = verdant::spawn({
        let (stream, inbox) = (stream.clone(), inbox.clone());
        move || {
            for line in inbox.iter() {
                if (&*stream).write_all(line.as_bytes()).is_err() {
                    break;
                }
            }
            let _ = stream.shutdown(Shutdown::Both); // also ends the reader below
        }
    });
    let _ = inbox.put_nowait(Rc::from(format!(
        "* {} here: {}\n",
        room.names().len(),
        room.names().join(", ")
    )));
    room.broadcast(Some(id), &format!("* {name} joined\n"));
    let outcome = relay(room, id, &name, &inbox, lines.by_ref());
    room.leave(id);
    inbox.close();
    writer.join();
    room.broadcast(None, &format!("* {name} left\n"));
    outcome
}

fn relay(
    room: &Room,
    id: u64,
    name: &str,
    inbox: &Queue<Rc<str>>,
    lines: &mut impl Iterator<Item = io::Result<String>>,
) -> io::Result<()> {
    for line in lines {
        let line = line?;
        match line.trim_end() {
            "/quit" => break,
            "/who" => {
                let _ =
                    inbox.put_nowait(Rc::from(format!("* here: {}\n", room.names().join(", "))));
            }
            text => room.broadcast(Some(id), &format!("{name}: {text}\n")),
        }
    }
    Ok(())
}
