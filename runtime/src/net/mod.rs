//! Green networking: sockets with the `std::net` shapes whose blocking calls suspend only the
//! calling greenlet.
//!
//! Every socket here is a std socket in non-blocking mode, registered with the hub of the
//! thread that made it (so sockets are `!Send`). An operation is tried first; when the
//! kernel says `WouldBlock`, the greenlet parks until the hub's epoll reports readiness and
//! then tries again. Nothing else changes for the caller: `read` returns when data came,
//! `accept` when a peer connected, and every stream implements `std::io::Read` and `Write`,
//! so any crate generic over them works unchanged.
//!
//! ```
//! use std::io::{BufRead, BufReader, Write};
//! use verdant::net::{TcpListener, TcpStream};
//!
//! let listener = TcpListener::bind("127.0.0.1:0").unwrap();
//! let addr = listener.local_addr().unwrap();
//! // One greenlet per connection, gevent style.
//! verdant::spawn(move || {
//!     for stream in listener.incoming().take(3) {
//!         let stream = stream.unwrap();
//!         verdant::spawn(move || {
//!             let mut line = String::new();
//!             BufReader::new(&stream).read_line(&mut line).unwrap();
//!             (&stream).write_all(line.to_uppercase().as_bytes()).unwrap();
//!         });
//!     }
//! });
//! let clients: Vec<_> = ["a\n", "b\n", "c\n"]
//!     .into_iter()
//!     .map(|msg| verdant::spawn(move || {
//!         let mut stream = TcpStream::connect(addr).unwrap();
//!         stream.write_all(msg.as_bytes()).unwrap();
//!         let mut reply = String::new();
//!         BufReader::new(stream).read_line(&mut reply).unwrap();
//!         reply
//!     }))
//!     .collect();
//! let replies: Vec<String> = clients.iter().map(|c| c.get().unwrap()).collect();
//! assert_eq!(replies, ["A\n", "B\n", "C\n"]);
//! ```
//!
//! Timeouts come two ways: per socket (`set_read_timeout`, `set_write_timeout`: the call
//! returns `ErrorKind::TimedOut` and the socket stays usable), and around any code with
//! [`with_timeout`](crate::with_timeout), which interrupts whatever socket call is blocked.
//!
//! ```compile_fail,E0277
//! fn assert_send<T: Send>() {}
//! assert_send::<verdant::net::TcpStream>(); // a socket belongs to its hub's thread
//! ```

#[macro_use]
mod impls;
mod addr;
mod disconnect;
pub mod dns;
mod tcp;
mod udp;
mod unix;

/// socket2, whose `SockRef` [`TcpStream::socket`] returns: every socket option.
pub use socket2;

pub(crate) use addr::each_addr;
pub use addr::{
    DEFAULT_RESOLVER_THREADS, RESOLVER_THREADS_ENV, ToSocketAddrs, lookup_host, resolver_threads,
    set_resolver_threads,
};
pub use disconnect::is_disconnect;
pub(crate) use tcp::reuse_port_listener;
pub use tcp::{DEFAULT_BACKLOG, TcpListener, TcpStream};
pub use udp::UdpSocket;
pub use unix::{UnixListener, UnixStream};
pub use verdant_hub::io::{wait_readable, wait_writable};
