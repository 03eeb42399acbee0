//! Futures that need tokio's reactor, run from greenlets (feature `tokio`).
//!
//! [`block_on`](crate::block_on) runs any future whose wake-ups do not depend on a
//! particular runtime. Futures of crates tied to tokio (a `tokio::net::TcpStream`,
//! `tokio::time::sleep`, clients built on them) only make progress inside a tokio runtime,
//! whose reactor must be driving their sockets and timers. [`tokio`] sends such a future to
//! one tokio runtime shared by the whole process, started on first use on a background
//! thread, and parks the calling greenlet until the future finishes there:
//!
//! ```text
//!   greenlet ── compat::tokio(fut) ── spawn ──▶ "verdant-tokio" thread: tokio current-thread
//!      │                                          runtime, drives fut with its reactor
//!      └─ block_on(JoinHandle) ◀── the JoinHandle's Waker, through the hub's inbox ──┘
//! ```
//!
//! Other greenlets of the hub run meanwhile. The future must be `Send + 'static`: it runs
//! on another thread, so it cannot borrow from the greenlet or use its green sockets. Make
//! the tokio objects *inside* the future (`async { tokio::time::sleep(d).await }`, not
//! `tokio::time::sleep(d)`): most of them look for the runtime when they are created.
//! The runtime has one thread: it suits I/O-bound clients, not CPU-heavy futures (give
//! those to [`threadpool`](crate::threadpool)).

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use ::tokio::runtime::{Builder, Handle};
use ::tokio::task::JoinHandle;

/// Runs `future` on the process's shared tokio runtime and parks the calling greenlet
/// (or thread) until it finishes; returns its output.
///
/// * A panic in the future is raised again here, with the same payload: a greenlet that
///   calls this ends as `Panicked` with the future's message.
/// * A kill or `with_timeout` expiry of the waiting greenlet aborts the tokio task (it is
///   dropped on the runtime's thread at its next await point).
///
/// ```
/// use std::io::{Read, Write};
/// use ::tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// // A green server on this hub, and a tokio client running on the shared runtime.
/// let listener = verdant::net::TcpListener::bind("127.0.0.1:0").unwrap();
/// let addr = listener.local_addr().unwrap();
/// let server = verdant::spawn(move || {
///     let (mut stream, _) = listener.accept().unwrap();
///     let mut request = [0; 4];
///     stream.read_exact(&mut request).unwrap();
///     stream.write_all(b"pong").unwrap();
/// });
/// let reply = verdant::compat::tokio(async move {
///     let mut stream = ::tokio::net::TcpStream::connect(addr).await?;
///     stream.write_all(b"ping").await?;
///     let mut reply = [0; 4];
///     stream.read_exact(&mut reply).await?;
///     Ok::<_, std::io::Error>(reply)
/// });
/// assert_eq!(&reply.unwrap(), b"pong");
/// server.join();
/// ```
pub fn tokio<F>(future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let task = AbortOnDrop(tokio_handle().spawn(future));
    match crate::block_on(task) {
        Ok(output) => output,
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(err) => panic!("verdant: the task on the shared tokio runtime was cancelled: {err}"),
    }
}

/// The shared tokio runtime's handle, starting the runtime on first use: for spawning
/// tasks that outlive the greenlet, or for entering the runtime's context
/// (`Handle::enter`) to create tokio objects outside a future.
pub fn tokio_handle() -> Handle {
    static HANDLE: OnceLock<Handle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let runtime =
                Builder::new_current_thread().enable_all().build().unwrap_or_else(|err| {
                    panic!("verdant: cannot start the shared tokio runtime: {err}")
                });
            let handle = runtime.handle().clone();
            // A current-thread runtime runs its tasks while a thread is in `block_on`:
            // this thread stays there for the life of the process.
            std::thread::Builder::new()
                .name("verdant-tokio".into())
                .spawn(move || runtime.block_on(std::future::pending::<()>()))
                .unwrap_or_else(|err| {
                    panic!("verdant: cannot start the shared tokio runtime's thread: {err}")
                });
            handle
        })
        .clone()
}

/// A tokio task's `JoinHandle` that aborts the task when dropped before it finished (a
/// kill of the waiting greenlet drops it).
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, ::tokio::task::JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort(); // does nothing if the task has finished
    }
}
