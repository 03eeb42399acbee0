//! A multi-producer multi-consumer channel between greenlets on any hub and plain threads,
//! bounded or unbounded, with the shape of `crossbeam-channel` (and of std's `mpsc`):
//! [`bounded`] and [`unbounded`] return a [`Sender`] and a [`Receiver`], both cloneable.
//!
//! # Nothing is lost
//!
//! Items stay in the channel until a receiver that is *running* takes one, under the
//! channel's lock; a send only notifies a waiting receiver. So a receiver killed (or timed
//! out by `with_timeout`) after being notified has taken nothing: on its way out it
//! notifies the next receiver if items remain, and the item goes to that one (or stays
//! for the next `recv`). Senders waiting for space in a bounded channel work the same way.
//! Items leave in the order they came in, so each sender's items arrive in its order.
//!
//! # Disconnection
//!
//! When the last [`Sender`] is dropped, receivers take what is left and then get
//! `Disconnected`; when the last [`Receiver`] is dropped, sends fail and hand the item
//! back. [`close`](Sender::close), on either side, does both at once for every handle
//! (gevent's `Queue.close`). Waiters are woken by either, wherever they wait.
//!
//! A waiter on a hub counts for that hub as cross-thread work still to come, so a hub
//! whose main code waits in `recv` while a sender lives somewhere does not report a
//! deadlock. (The flip side: a hub waiting on a channel whose only live sender is never
//! used again waits for good, as a thread would; drop senders you are done with.)

use std::collections::VecDeque;
use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::waiters::{Wait, WaitQueue, Wakes};

/// A channel holding any number of items: a send never waits.
///
/// ```
/// use verdant_sync::shared::channel;
///
/// let (tx, rx) = channel::unbounded();
/// let producers: Vec<_> = (0..2)
///     .map(|p| {
///         let tx = tx.clone();
///         std::thread::spawn(move || (0..3).for_each(|i| tx.send((p, i)).unwrap()))
///     })
///     .collect();
/// drop(tx); // the producers hold the only senders now
/// producers.into_iter().for_each(|p| p.join().unwrap());
/// let mut got: Vec<_> = rx.iter().collect(); // ends when every sender is gone
/// got.sort();
/// assert_eq!(got, [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]);
/// ```
pub fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
    channel(None)
}

/// A channel holding at most `capacity` items: a send to a full channel waits for room.
///
/// # Panics
///
/// If `capacity` is 0: a rendezvous is not supported here; use `bounded(1)`, or
/// `verdant_sync::Channel` between greenlets of one hub.
///
/// ```
/// use verdant_sync::shared::channel::{self, TrySendError};
///
/// let (tx, rx) = channel::bounded(1);
/// tx.send(1).unwrap();
/// assert_eq!(tx.try_send(2), Err(TrySendError::Full(2)));
/// let sender = std::thread::spawn(move || tx.send(2)); // waits for room
/// assert_eq!(rx.recv(), Ok(1));
/// assert_eq!(rx.recv(), Ok(2));
/// sender.join().unwrap().unwrap();
/// ```
pub fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    assert!(
        capacity > 0,
        "shared::channel::bounded(0): a rendezvous channel is not supported; use bounded(1)"
    );
    channel(Some(capacity))
}

fn channel<T>(capacity: Option<usize>) -> (Sender<T>, Receiver<T>) {
    let state = State {
        items: VecDeque::new(),
        capacity,
        senders: 1,
        receivers: 1,
        closed: false,
        receiving: WaitQueue::default(),
        sending: WaitQueue::default(),
    };
    let shared = Arc::new(Mutex::new(state));
    (Sender { shared: shared.clone() }, Receiver { shared })
}

/// Everything about a channel, under its one lock.
struct State<T> {
    items: VecDeque<T>,
    capacity: Option<usize>,
    /// Live `Sender` handles.
    senders: usize,
    /// Live `Receiver` handles.
    receivers: usize,
    closed: bool,
    /// Receivers waiting for an item.
    receiving: WaitQueue,
    /// Senders waiting for room (bounded channels only).
    sending: WaitQueue,
}

impl<T> State<T> {
    fn is_full(&self) -> bool {
        self.capacity.is_some_and(|capacity| self.items.len() >= capacity)
    }

    /// Nothing more will ever be sent.
    fn senders_gone(&self) -> bool {
        self.closed || self.senders == 0
    }

    /// Nothing sent will ever be received.
    fn receivers_gone(&self) -> bool {
        self.closed || self.receivers == 0
    }

    fn try_send(&mut self, item: T, wakes: &mut Wakes<Self>) -> Result<(), TrySendError<T>> {
        if self.receivers_gone() {
            return Err(TrySendError::Disconnected(item));
        }
        if self.is_full() {
            return Err(TrySendError::Full(item));
        }
        self.items.push_back(item);
        wakes.add(self.receiving.notify_one(), State::pass_on_receiving);
        Ok(())
    }

    fn try_recv(&mut self, wakes: &mut Wakes<Self>) -> Result<T, TryRecvError> {
        match self.items.pop_front() {
            Some(item) => {
                wakes.add(self.sending.notify_one(), State::pass_on_sending);
                Ok(item)
            }
            None if self.senders_gone() => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// A notified receiver left without receiving: the next one gets its chance.
    fn pass_on_receiving(&mut self, wakes: &mut Wakes<Self>) {
        if !self.items.is_empty() || self.senders_gone() {
            wakes.add(self.receiving.notify_one(), State::pass_on_receiving);
        }
    }

    /// A notified sender left without sending: the next one gets its chance.
    fn pass_on_sending(&mut self, wakes: &mut Wakes<Self>) {
        if !self.is_full() || self.receivers_gone() {
            wakes.add(self.sending.notify_one(), State::pass_on_sending);
        }
    }

    /// Wakes everyone waiting on either side (to see the channel disconnected).
    fn notify_everyone(&mut self, wakes: &mut Wakes<Self>) {
        wakes.extend(self.receiving.notify_all());
        wakes.extend(self.sending.notify_all());
    }
}

/// Runs `f` under the channel's lock, then makes the wake-ups it decided.
fn locked<T, R>(
    shared: &Mutex<State<T>>,
    f: impl FnOnce(&mut State<T>, &mut Wakes<State<T>>) -> R,
) -> R {
    let mut wakes = Wakes::default();
    let result = f(&mut shared.lock(), &mut wakes);
    wakes.fire(shared);
    result
}

/// The sending side of a shared channel. `Send + Sync`, cloneable; when the last one is
/// dropped the channel is disconnected for receivers.
pub struct Sender<T> {
    shared: Arc<Mutex<State<T>>>,
}

impl<T> Sender<T> {
    /// Sends `item`, waiting for room in a full bounded channel (only the calling greenlet
    /// waits; a thread without a hub blocks). Fails, handing the item back, once every
    /// receiver is gone or the channel is closed.
    pub fn send(&self, item: T) -> Result<(), SendError<T>> {
        self.send_until(item, None).map_err(|error| SendError(error.into_inner()))
    }

    /// Like [`send`](Self::send), waiting at most `timeout` for room.
    pub fn send_timeout(&self, item: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.send_until(item, Instant::now().checked_add(timeout))
    }

    /// Sends `item` if there is room right now.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        locked(&self.shared, |state, wakes| state.try_send(item, wakes))
    }

    fn send_until(&self, item: T, deadline: Option<Instant>) -> Result<(), SendTimeoutError<T>> {
        let mut item = Some(item);
        let wait = Wait {
            lock: &self.shared,
            queue: |state: &mut State<T>| &mut state.sending,
            pass_on: State::pass_on_sending,
            reason: &"shared::Sender::send()",
            deadline,
        };
        let sent = wait.run(|state, _, wakes| {
            match state.try_send(item.take().expect("the item, until sent"), wakes) {
                Ok(()) => Some(Ok(())),
                Err(TrySendError::Disconnected(back)) => Some(Err(back)),
                Err(TrySendError::Full(back)) => {
                    item = Some(back);
                    None
                }
            }
        });
        match sent {
            Some(Ok(())) => Ok(()),
            Some(Err(back)) => Err(SendTimeoutError::Disconnected(back)),
            None => Err(SendTimeoutError::Timeout(item.expect("the item, not sent"))),
        }
    }

    /// Closes the channel for every handle: sends fail from now on, receivers take what is
    /// left and then get `Disconnected` (gevent's `Queue.close`).
    pub fn close(&self) {
        close(&self.shared);
    }

    /// Items in the channel now.
    pub fn len(&self) -> usize {
        self.shared.lock().items.len()
    }

    /// Whether the channel holds no item now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a send would wait now.
    pub fn is_full(&self) -> bool {
        self.shared.lock().is_full()
    }

    /// The capacity of a bounded channel.
    pub fn capacity(&self) -> Option<usize> {
        self.shared.lock().capacity
    }

    /// Senders waiting for room now.
    pub fn waiting(&self) -> usize {
        self.shared.lock().sending.len()
    }
}

fn close<T>(shared: &Mutex<State<T>>) {
    locked(shared, |state, wakes| {
        state.closed = true;
        state.notify_everyone(wakes);
    });
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Sender { shared: self.shared.clone() }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        locked(&self.shared, |state, wakes| {
            state.senders -= 1;
            if state.senders == 0 {
                wakes.extend(state.receiving.notify_all());
            }
        });
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug(f, "shared::Sender", &self.shared.lock())
    }
}

/// The receiving side of a shared channel. `Send + Sync`, cloneable: each item goes to one
/// receiver. When the last one is dropped, sends fail.
pub struct Receiver<T> {
    shared: Arc<Mutex<State<T>>>,
}

impl<T> Receiver<T> {
    /// Takes the oldest item, waiting for one (only the calling greenlet waits; a thread
    /// without a hub blocks). Fails once the channel is empty and every sender is gone (or
    /// it was closed).
    pub fn recv(&self) -> Result<T, RecvError> {
        self.recv_until(None).map_err(|_| RecvError)
    }

    /// Like [`recv`](Self::recv), waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_until(Instant::now().checked_add(timeout))
    }

    /// Takes the oldest item if there is one now.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        locked(&self.shared, |state, wakes| state.try_recv(wakes))
    }

    fn recv_until(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        let wait = Wait {
            lock: &self.shared,
            queue: |state: &mut State<T>| &mut state.receiving,
            pass_on: State::pass_on_receiving,
            reason: &"shared::Receiver::recv()",
            deadline,
        };
        let received = wait.run(|state, _, wakes| match state.try_recv(wakes) {
            Ok(item) => Some(Ok(item)),
            Err(TryRecvError::Disconnected) => Some(Err(RecvTimeoutError::Disconnected)),
            Err(TryRecvError::Empty) => None,
        });
        received.unwrap_or(Err(RecvTimeoutError::Timeout))
    }

    /// Receives until the channel is empty and disconnected.
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(|| self.recv().ok())
    }

    /// Receives what is there now, without waiting.
    pub fn try_iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(|| self.try_recv().ok())
    }

    /// Closes the channel for every handle (see [`Sender::close`]).
    pub fn close(&self) {
        close(&self.shared);
    }

    /// Items in the channel now.
    pub fn len(&self) -> usize {
        self.shared.lock().items.len()
    }

    /// Whether the channel holds no item now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The capacity of a bounded channel.
    pub fn capacity(&self) -> Option<usize> {
        self.shared.lock().capacity
    }

    /// Receivers waiting for an item now.
    pub fn waiting(&self) -> usize {
        self.shared.lock().receiving.len()
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        self.shared.lock().receivers += 1;
        Receiver { shared: self.shared.clone() }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        locked(&self.shared, |state, wakes| {
            state.receivers -= 1;
            if state.receivers == 0 {
                wakes.extend(state.sending.notify_all());
            }
        });
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug(f, "shared::Receiver", &self.shared.lock())
    }
}

fn debug<T>(f: &mut fmt::Formatter<'_>, name: &str, state: &State<T>) -> fmt::Result {
    f.debug_struct(name)
        .field("len", &state.items.len())
        .field("capacity", &state.capacity)
        .field("senders", &state.senders)
        .field("receivers", &state.receivers)
        .field("closed", &state.closed)
        .field("receivers_waiting", &state.receiving.len())
        .field("senders_waiting", &state.sending.len())
        .finish()
}

// ---- Errors ---------------------------------------------------------------------------

/// The error of [`Sender::send`]: every receiver is gone (or the channel was closed). The
/// item comes back.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SendError<T>(pub T);

/// The error of [`Sender::try_send`]. The item comes back.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TrySendError<T> {
    /// The bounded channel is full.
    Full(T),
    /// Every receiver is gone, or the channel was closed.
    Disconnected(T),
}

/// The error of [`Sender::send_timeout`]. The item comes back.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SendTimeoutError<T> {
    /// The channel stayed full until the timeout.
    Timeout(T),
    /// Every receiver is gone, or the channel was closed.
    Disconnected(T),
}

/// The error of [`Receiver::recv`]: the channel is empty and every sender is gone (or it
/// was closed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvError;

/// The error of [`Receiver::try_recv`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TryRecvError {
    /// Nothing in the channel now.
    Empty,
    /// Empty, and every sender is gone (or it was closed).
    Disconnected,
}

/// The error of [`Receiver::recv_timeout`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvTimeoutError {
    /// Nothing came before the timeout.
    Timeout,
    /// Empty, and every sender is gone (or it was closed).
    Disconnected,
}

impl<T> SendError<T> {
    /// The item that was not sent.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> TrySendError<T> {
    /// The item that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(item) | TrySendError::Disconnected(item) => item,
        }
    }
}

impl<T> SendTimeoutError<T> {
    /// The item that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            SendTimeoutError::Timeout(item) | SendTimeoutError::Disconnected(item) => item,
        }
    }
}

const GONE: &str = "every receiver is gone or the channel is closed";
const EMPTY_AND_GONE: &str = "the channel is empty and every sender is gone or it is closed";

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(GONE)
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Disconnected(_) => f.write_str("Disconnected(..)"),
        }
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("the channel is full"),
            TrySendError::Disconnected(_) => f.write_str(GONE),
        }
    }
}

impl<T> fmt::Debug for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendTimeoutError::Timeout(_) => f.write_str("Timeout(..)"),
            SendTimeoutError::Disconnected(_) => f.write_str("Disconnected(..)"),
        }
    }
}

impl<T> fmt::Display for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendTimeoutError::Timeout(_) => f.write_str("the channel stayed full"),
            SendTimeoutError::Disconnected(_) => f.write_str(GONE),
        }
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EMPTY_AND_GONE)
    }
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str("the channel is empty"),
            TryRecvError::Disconnected => f.write_str(EMPTY_AND_GONE),
        }
    }
}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvTimeoutError::Timeout => f.write_str("nothing came before the timeout"),
            RecvTimeoutError::Disconnected => f.write_str(EMPTY_AND_GONE),
        }
    }
}

impl<T> Error for SendError<T> {}
impl<T> Error for TrySendError<T> {}
impl<T> Error for SendTimeoutError<T> {}
impl Error for RecvError {}
impl Error for TryRecvError {}
impl Error for RecvTimeoutError {}
