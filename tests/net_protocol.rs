//! A real protocol crate from crates.io, unchanged, over green sockets: tungstenite's
//! WebSocket client and server are generic over `Read + Write`, and both ends run as
//! greenlets on one thread. With blocking std sockets they would deadlock at the first
//! handshake; here every read parks only its own greenlet.

use tungstenite::{Error as WsError, Message};
use verdant::net::TcpStream;
use verdant::server::StreamServer;
use verdant::spawn;

/// A WebSocket echo handler: upgrades, then echoes every text and binary message.
fn websocket_echo(stream: TcpStream, _peer: std::net::SocketAddr) -> Result<(), WsError> {
    let mut socket = tungstenite::accept(stream).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(error) => error,
        tungstenite::HandshakeError::Interrupted(_) => {
            unreachable!("green sockets never WouldBlock")
        }
    })?;
    loop {
        match socket.read() {
            Ok(message @ (Message::Text(_) | Message::Binary(_))) => socket.send(message)?,
            Ok(_) => {} // pings are answered by tungstenite itself
            Err(WsError::ConnectionClosed) => return Ok(()),
            Err(error) => return Err(error),
        }
    }
}

fn start_server() -> StreamServer {
    let server = StreamServer::new("127.0.0.1:0", websocket_echo).unwrap();
    server.start().unwrap();
    server
}

type Client = tungstenite::WebSocket<TcpStream>;

fn connect(server: &StreamServer) -> Client {
    let stream = TcpStream::connect(server.local_addr()).unwrap();
    let url = format!("ws://{}/echo", server.local_addr());
    let (client, response) = tungstenite::client(url, stream).unwrap();
    assert_eq!(response.status(), 101, "switching protocols");
    client
}

#[test]
fn websocket_clients_and_server_interleave_on_one_thread() {
    let server = start_server();
    let clients: Vec<_> = (0..20)
        .map(|i| {
            let server = server.clone();
            spawn(move || {
                let mut client = connect(&server);
                let mut replies = Vec::new();
                for n in 0..10 {
                    client.send(Message::text(format!("client {i} message {n}"))).unwrap();
                    replies.push(client.read().unwrap().into_text().unwrap().to_string());
                }
                client.close(None).unwrap();
                // Drive the close handshake to its end.
                while !matches!(client.read(), Err(WsError::ConnectionClosed)) {}
                replies
            })
        })
        .collect();
    for (i, client) in clients.iter().enumerate() {
        let expected: Vec<String> = (0..10).map(|n| format!("client {i} message {n}")).collect();
        assert_eq!(client.get().unwrap(), expected);
    }
    server.stop(None);
    assert_eq!(server.stats().accepted, 20);
    assert_eq!(server.stats().handler_errors, 0);
}

#[test]
fn websocket_binary_ping_and_large_messages() {
    let server = start_server();
    let mut client = connect(&server);
    client.send(Message::Ping(b"are you there".to_vec().into())).unwrap();
    let pong = client.read().unwrap();
    assert_eq!(pong, Message::Pong(b"are you there".to_vec().into()));
    // Larger than the socket buffers: the server's writes must park and resume.
    let big: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 253) as u8).collect();
    client.send(Message::binary(big.clone())).unwrap();
    assert_eq!(client.read().unwrap(), Message::binary(big));
    client.close(None).unwrap();
    while !matches!(client.read(), Err(WsError::ConnectionClosed)) {}
    server.stop(None);
}

#[test]
fn a_handshake_from_a_client_that_is_not_websocket_is_a_handler_error() {
    use std::io::{Read, Write};
    let errors = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let server = StreamServer::new("127.0.0.1:0", websocket_echo).unwrap().on_error({
        let errors = errors.clone();
        move |e| errors.borrow_mut().push(e.to_string())
    });
    server.start().unwrap();
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(!response.contains("101"), "no upgrade for a plain HTTP request: {response:?}");
    server.stop(None);
    let errors = errors.borrow();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("the handler for 127.0.0.1"), "{errors:?}");
}
