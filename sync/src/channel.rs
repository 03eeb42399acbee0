//! `Channel`: a queue of capacity 0, where a put waits for a getter (a rendezvous).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use verdant_hub::park::{self, WaitList, Waker};

use super::queue::{GetError, PutError};

/// A rendezvous between greenlets (gevent's `Channel`): `put` returns only once a getter
/// has taken the item.
///
/// Each waiting put is an *offer*. A getter takes the first offer's item while it runs and
/// wakes that putter, so an item is never handed to a getter that is not there to receive
/// it; a putter that gives up (killed, timed out) withdraws its offer and keeps its item.
///
/// ```
/// use verdant_sync::Channel;
///
/// let ch = Channel::new();
/// let getter = {
///     let ch = ch.clone();
///     verdant_hub::spawn(move || ch.get())
/// };
/// ch.put("hand-over").unwrap(); // returns once the getter has it
/// assert_eq!(getter.get().unwrap(), Ok("hand-over"));
/// ```
pub struct Channel<T> {
    inner: Rc<ChannelInner<T>>,
}

struct ChannelInner<T> {
    offers: RefCell<VecDeque<Rc<Offer<T>>>>,
    getters: WaitList,
    closed: Cell<bool>,
}

/// A put in progress: the item until a getter takes it, and how to wake the putter.
struct Offer<T> {
    item: RefCell<Option<T>>,
    putter: RefCell<Waker>,
}

/// Withdraws an offer whose putter gives up (returns the item if it was not taken).
struct Withdraw<'a, T> {
    channel: &'a ChannelInner<T>,
    offer: &'a Rc<Offer<T>>,
}

impl<T> Withdraw<'_, T> {
    fn now(self) -> Option<T> {
        self.channel.offers.borrow_mut().retain(|o| !Rc::ptr_eq(o, self.offer));
        self.offer.item.borrow_mut().take()
    }
}

impl<T> Drop for Withdraw<'_, T> {
    fn drop(&mut self) {
        self.channel.offers.borrow_mut().retain(|o| !Rc::ptr_eq(o, self.offer));
        drop(self.offer.item.borrow_mut().take());
    }
}

impl<T> Channel<T> {
    /// A new channel.
    pub fn new() -> Channel<T> {
        Channel {
            inner: Rc::new(ChannelInner {
                offers: RefCell::new(VecDeque::new()),
                getters: WaitList::new(),
                closed: Cell::new(false),
            }),
        }
    }

    /// Offers an item and waits until a getter takes it.
    ///
    /// # Errors
    ///
    /// [`PutError::Closed`] if the channel is (or gets) closed first.
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        self.put_until(item, None)
    }

    /// Like [`put`](Channel::put), giving up after `timeout` ([`PutError::Full`]).
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutError<T>> {
        self.put_until(item, Instant::now().checked_add(timeout))
    }

    fn put_until(&self, item: T, deadline: Option<Instant>) -> Result<(), PutError<T>> {
        if self.inner.closed.get() {
            return Err(PutError::Closed(item));
        }
        let offer =
            Rc::new(Offer { item: RefCell::new(Some(item)), putter: RefCell::new(park::waker()) });
        self.inner.offers.borrow_mut().push_back(offer.clone());
        self.inner.getters.notify_one();
        let withdraw = Withdraw { channel: &self.inner, offer: &offer };
        park::wait_until(
            &"Channel::put() waiting for a getter",
            deadline,
            |waker| *offer.putter.borrow_mut() = waker,
            || offer.item.borrow().is_none() || self.inner.closed.get(),
        );
        if offer.item.borrow().is_none() {
            std::mem::forget(withdraw);
            return Ok(());
        }
        if self.inner.closed.get() {
            return Err(PutError::Closed(withdraw.now().expect("not taken")));
        }
        Err(PutError::Full(withdraw.now().expect("not taken")))
    }

    /// Takes an item if a putter is offering one right now.
    pub fn get_nowait(&self) -> Result<T, GetError> {
        loop {
            let offer = self.inner.offers.borrow_mut().pop_front();
            let Some(offer) = offer else {
                return Err(if self.inner.closed.get() {
                    GetError::Closed
                } else {
                    GetError::Empty
                });
            };
            let item = offer.item.borrow_mut().take();
            if let Some(item) = item {
                offer.putter.borrow().wake();
                return Ok(item);
            }
        }
    }

    /// Waits for a putter and takes its item.
    ///
    /// # Errors
    ///
    /// [`GetError::Closed`] once the channel is closed and no putter is offering.
    pub fn get(&self) -> Result<T, GetError> {
        self.get_until(None)
    }

    /// Like [`get`](Channel::get), giving up after `timeout` ([`GetError::Empty`]).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetError> {
        self.get_until(Instant::now().checked_add(timeout))
    }

    fn get_until(&self, deadline: Option<Instant>) -> Result<T, GetError> {
        let mut done = None;
        let pass_on = PassOn(&self.inner);
        self.inner.getters.wait_until(&"Channel::get() waiting for a putter", deadline, || {
            match self.get_nowait() {
                Err(GetError::Empty) => false,
                other => {
                    done = Some(other);
                    true
                }
            }
        });
        std::mem::forget(pass_on);
        done.unwrap_or(Err(GetError::Empty))
    }

    /// Putters waiting for a getter.
    pub fn putters_waiting(&self) -> usize {
        self.inner.offers.borrow().len()
    }

    /// Closes the channel: waiting and later puts fail (the putters keep their items),
    /// gets fail once no offer is left.
    pub fn close(&self) {
        self.inner.closed.set(true);
        self.inner.getters.notify_all();
        for offer in self.inner.offers.borrow().iter() {
            offer.putter.borrow().wake();
        }
    }

    /// Iterates by calling `get` until the channel is closed.
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(move || self.get().ok())
    }
}

/// A getter that unwinds after being woken for an offer wakes the next getter.
struct PassOn<'a, T>(&'a ChannelInner<T>);

impl<T> Drop for PassOn<'_, T> {
    fn drop(&mut self) {
        if !self.0.offers.borrow().is_empty() {
            self.0.getters.notify_one();
        }
    }
}

impl<T> Default for Channel<T> {
    fn default() -> Self {
        Channel::new()
    }
}

impl<T> Clone for Channel<T> {
    fn clone(&self) -> Self {
        Channel { inner: self.inner.clone() }
    }
}

impl<T> fmt::Debug for Channel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("putters_waiting", &self.putters_waiting())
            .field("closed", &self.inner.closed.get())
            .finish()
    }
}
