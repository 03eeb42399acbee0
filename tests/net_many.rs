//! Many connections at once: 5,000 clients and 5,000 handlers on one hub, all connected
//! at the same moment (10,000 sockets, 10,000 greenlets).

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::rc::Rc;

use verdant::net::{TcpListener, TcpStream};
use verdant::server::StreamServer;
use verdant::sync::Event;
use verdant::{Builder, yield_now};

const CONNECTIONS: usize = 5_000;

/// Raises the soft fd limit to what the test needs (or fails saying why).
fn ensure_fd_limit(needed: usize) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if (limit.rlim_cur as usize) < needed {
            limit.rlim_cur = limit.rlim_max.min(needed as libc::rlim_t);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
    assert!(
        limit.rlim_cur as usize >= needed,
        "this test needs {needed} fds; `ulimit -n` allows {}",
        limit.rlim_cur
    );
}

#[test]
fn five_thousand_connections_are_open_and_served_at_once() {
    ensure_fd_limit(2 * CONNECTIONS + 100);
    let open_now = Rc::new(Cell::new(0usize));
    let most_open = Rc::new(Cell::new(0usize));
    let everyone_connected = Event::new();
    let handler = {
        let (open_now, most_open, everyone_connected) =
            (open_now.clone(), most_open.clone(), everyone_connected.clone());
        move |mut stream: TcpStream, _| -> io::Result<()> {
            open_now.set(open_now.get() + 1);
            most_open.set(most_open.get().max(open_now.get()));
            if open_now.get() == CONNECTIONS {
                everyone_connected.set();
            }
            everyone_connected.wait(); // nobody is answered before all are connected
            let mut id = [0; 4];
            stream.read_exact(&mut id)?;
            stream.write_all(&id)?;
            open_now.set(open_now.get() - 1);
            Ok(())
        }
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_backlog(4096).unwrap();
    let server = StreamServer::from_listener(listener, handler);
    server.start().unwrap();
    let addr = server.local_addr();

    let clients: Vec<_> = (0..CONNECTIONS as u32)
        .map(|id| {
            if id % 500 == 0 {
                yield_now(); // let the server accept between bursts of connects
            }
            Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || -> io::Result<bool> {
                    let mut stream = TcpStream::connect(addr)?;
                    stream.write_all(&id.to_le_bytes())?;
                    let mut echo = [0; 4];
                    stream.read_exact(&mut echo)?;
                    Ok(u32::from_le_bytes(echo) == id)
                })
                .unwrap()
        })
        .collect();
    for (id, client) in clients.iter().enumerate() {
        let echoed = client.take().unwrap().unwrap_or_else(|e| panic!("client {id}: {e}"));
        assert!(echoed, "client {id} got another client's id back");
    }
    assert_eq!(most_open.get(), CONNECTIONS, "all connections were open at once");
    assert_eq!(server.stats().accepted, CONNECTIONS as u64);
    server.stop(None);
}
