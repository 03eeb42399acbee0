//! `verdant::compat::tokio`: futures tied to tokio's reactor, run on the shared tokio
//! runtime while the calling greenlet parks.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use verdant::net::TcpStream;
use verdant::server::StreamServer;
use verdant::{GreenletError, compat, sleep, spawn, with_timeout, yield_now};

/// Generous: only a lost wake-up would take this long.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// Echoes until the client closes.
fn echo(mut stream: TcpStream, _peer: std::net::SocketAddr) -> std::io::Result<()> {
    let mut buf = [0; 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n])?;
    }
}

#[test]
fn tokio_tcp_clients_talk_to_a_green_server_on_the_same_hub() {
    let server = StreamServer::new("127.0.0.1:0", echo).unwrap();
    server.start().unwrap();
    let addr = server.local_addr();
    let clients: Vec<_> = (0..10)
        .map(|i| {
            spawn(move || {
                compat::tokio(async move {
                    let mut stream = tokio::net::TcpStream::connect(addr).await?;
                    let mut replies = Vec::new();
                    for round in 0..5 {
                        let message = format!("client {i} round {round}");
                        stream.write_all(message.as_bytes()).await?;
                        let mut reply = vec![0; message.len()];
                        stream.read_exact(&mut reply).await?;
                        replies.push(String::from_utf8(reply).unwrap());
                    }
                    Ok::<_, std::io::Error>(replies)
                })
            })
        })
        .collect();
    with_timeout(HANG_GUARD, || {
        for (i, client) in clients.iter().enumerate() {
            let replies = client.take().unwrap().unwrap();
            let expected: Vec<_> = (0..5).map(|r| format!("client {i} round {r}")).collect();
            assert_eq!(replies, expected);
        }
    })
    .unwrap();
    server.stop(None);
    assert_eq!(server.stats().accepted, 10);
}

#[test]
fn a_tokio_timer_from_the_main_code_is_no_deadlock() {
    let started = Instant::now();
    let ticks = spawn(|| {
        yield_now();
        "the hub ran meanwhile"
    });
    // Made inside the async block: tokio's timers and sockets must be created on the runtime.
    let sleep = async { tokio::time::sleep(Duration::from_millis(5)).await };
    with_timeout(HANG_GUARD, || compat::tokio(sleep)).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(5)); // timers never fire early
    assert_eq!(ticks.get(), Ok("the hub ran meanwhile"));
}

#[test]
fn a_panic_in_the_tokio_future_makes_the_greenlet_panicked() {
    let g = spawn(|| compat::tokio(async { panic!("failed on the tokio thread") }));
    assert_eq!(g.get(), Err(GreenletError::Panicked("failed on the tokio thread".into())));
}

#[test]
fn a_kill_while_waiting_aborts_the_tokio_task() {
    /// Sets its flag when dropped (on the tokio thread, when the task is aborted).
    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = SetOnDrop(dropped.clone());
    let g = spawn(move || {
        compat::tokio(async move {
            let _flag = flag;
            std::future::pending::<()>().await;
        })
    });
    yield_now(); // g parks, waiting for the task
    g.kill();
    assert_eq!(g.get(), Err(GreenletError::Killed));
    // The abort reaches the task on the runtime's thread soon; wait for it (hang-guarded).
    with_timeout(HANG_GUARD, || {
        while !dropped.load(Ordering::SeqCst) {
            sleep(Duration::from_millis(1));
        }
    })
    .unwrap();
}

#[test]
fn the_shared_runtime_handle_spawns_tasks_whose_handles_block_on_awaits() {
    let handle = compat::tokio_handle();
    let task = handle.spawn(async { 6 * 7 });
    let g = spawn(move || verdant::block_on(task).unwrap());
    assert_eq!(g.get(), Ok(42));
}
