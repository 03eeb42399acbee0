//! Who waits on a shared primitive, in which order, and the one wait loop every shared
//! primitive is written with.
//!
//! A waiter is a greenlet on some hub or a thread without a hub. It waits in a
//! [`WaitQueue`] that lives, with the primitive's state, under the primitive's one lock.
//!
//! # Notified means removed
//!
//! A waiter joins the queue with a *ticket* (its place; tickets only grow, so the queue is
//! sorted by them). Whoever wakes a waiter takes its entry *out* of the queue, under the
//! lock, and wakes it after the lock is released. So, under the lock, a waiter that no
//! longer finds its ticket in the queue knows it was notified; one that still finds it
//! was not, and withdraws it when it gives up. There is no per-wait allocation and no flag
//! that could disagree with the queue.
//!
//! What a notification *means* is the primitive's business: for a semaphore it is a
//! permit handed over (the waiter owns it from that moment), for a channel only a hint
//! that an item or a free slot may be there (the waiter takes it itself, under the lock,
//! or waits again). A waiter that is killed, or whose `with_timeout` expires, after being
//! notified and before it could act, *passes the notification on* (the primitive says
//! how: a semaphore releases the permit again, a channel notifies the next waiter if its
//! condition still holds), so nothing handed to it is lost.
//!
//! # Waking
//!
//! A greenlet is woken through its hub's inbox with a [`RemoteWaker`]: a message, and an
//! eventfd write only if that hub is asleep with an empty inbox, so many wake-ups to one
//! hub coalesce into one write. While the waker exists the hub counts it as outstanding
//! cross-thread work, so a hub whose main code waits on a shared primitive blocks instead
//! of reporting a deadlock: another thread may still notify it. A thread without a hub is
//! woken with [`Thread::unpark`].

use std::collections::VecDeque;
use std::fmt;
use std::thread::{self, Thread};
use std::time::Instant;

use parking_lot::Mutex;
use verdant_hub::RemoteWaker;
use verdant_hub::park;

/// How to wake one waiter.
pub(super) enum Wake {
    /// A greenlet parked on some hub (or a hub's main code): through that hub's inbox.
    Greenlet(RemoteWaker),
    /// A thread without a hub, blocked in [`thread::park`].
    Thread(Thread),
}

impl Wake {
    /// A way to wake the caller's next wait: through its hub if this thread has one
    /// (then the hub keeps running while the caller waits), else by unparking the thread.
    fn current(on_hub: bool) -> Wake {
        if on_hub {
            Wake::Greenlet(RemoteWaker::new(park::waker()))
        } else {
            Wake::Thread(thread::current())
        }
    }

    /// Wakes the waiter. Returns `false` if its hub's thread has ended: then nobody got
    /// the notification.
    fn wake(self) -> bool {
        match self {
            Wake::Greenlet(waker) => waker.wake().is_ok(),
            Wake::Thread(thread) => {
                thread.unpark();
                true
            }
        }
    }
}

impl fmt::Debug for Wake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Wake::Greenlet(_) => f.write_str("Greenlet"),
            Wake::Thread(thread) => write!(f, "Thread({:?})", thread.id()),
        }
    }
}

/// What a waiter that got a notification and cannot act on it passes on, under the
/// primitive's lock (a permit released again, the next waiter notified).
pub(super) type PassOn<S> = fn(&mut S, &mut Wakes<S>);

/// Wake-ups decided under a primitive's lock, made after it is released (so that a woken
/// waiter never finds the lock still held by its waker, and no inbox lock is taken under
/// the primitive's).
///
/// A notification that cannot be delivered (the waiter's hub thread has ended, leaving
/// its greenlets parked for good) is passed on as the waiter itself would have.
#[must_use = "the wake-ups happen only when `fire` is called"]
pub(super) struct Wakes<S> {
    one: Option<(Wake, Option<PassOn<S>>)>,
    more: Vec<(Wake, Option<PassOn<S>>)>,
}

impl<S> Default for Wakes<S> {
    fn default() -> Self {
        Wakes { one: None, more: Vec::new() }
    }
}

impl<S> Wakes<S> {
    /// Adds a notification, if there is one, with what to pass on if nobody gets it.
    pub(super) fn add(&mut self, wake: Option<Wake>, pass_on: PassOn<S>) {
        if let Some(wake) = wake {
            self.push(wake, Some(pass_on));
        }
    }

    /// Adds notifications that nobody needs to pass on (everyone is told).
    pub(super) fn extend(&mut self, wakes: impl IntoIterator<Item = Wake>) {
        wakes.into_iter().for_each(|wake| self.push(wake, None));
    }

    fn push(&mut self, wake: Wake, pass_on: Option<PassOn<S>>) {
        match self.one {
            None => self.one = Some((wake, pass_on)),
            Some(_) => self.more.push((wake, pass_on)),
        }
    }

    /// Wakes them all; passes on, under `lock`, what could not be delivered. Call it with
    /// `lock` released.
    pub(super) fn fire(self, lock: &Mutex<S>) {
        let mut wakes = self;
        loop {
            let mut undelivered = Vec::new();
            for (wake, pass_on) in wakes.one.into_iter().chain(wakes.more) {
                if !wake.wake() {
                    undelivered.extend(pass_on);
                }
            }
            if undelivered.is_empty() {
                return;
            }
            wakes = Wakes::default();
            let mut state = lock.lock();
            undelivered.into_iter().for_each(|pass_on| pass_on(&mut state, &mut wakes));
        }
    }
}

impl<S> fmt::Debug for Wakes<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wakes")
            .field("count", &(self.one.iter().count() + self.more.len()))
            .finish()
    }
}

/// The waiters of one kind on one primitive (its receivers, its senders, its acquirers),
/// first-in first-out. Lives under the primitive's lock.
#[derive(Debug, Default)]
pub(super) struct WaitQueue {
    /// Waiting entries by ticket, oldest first. Sorted: tickets are handed out in order,
    /// entries leave from anywhere but are only ever appended.
    entries: VecDeque<(u64, Wake)>,
    next_ticket: u64,
}

impl WaitQueue {
    /// How many wait.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Notifies the longest-waiting waiter, if any: takes it out of the queue and returns
    /// how to wake it.
    pub(super) fn notify_one(&mut self) -> Option<Wake> {
        self.entries.pop_front().map(|(_, wake)| wake)
    }

    /// Notifies every waiter.
    pub(super) fn notify_all(&mut self) -> impl Iterator<Item = Wake> + '_ {
        self.entries.drain(..).map(|(_, wake)| wake)
    }

    fn push(&mut self, wake: Wake) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.entries.push_back((ticket, wake));
        ticket
    }

    fn find(&self, ticket: u64) -> Option<usize> {
        self.entries.binary_search_by_key(&ticket, |(t, _)| *t).ok()
    }

    /// Whether `ticket` still waits (was not notified).
    fn contains(&self, ticket: u64) -> bool {
        self.find(ticket).is_some()
    }

    /// Takes `ticket` out if it still waits; returns its wake (to drop after the lock).
    fn withdraw(&mut self, ticket: u64) -> Option<Wake> {
        let at = self.find(ticket)?;
        self.entries.remove(at).map(|(_, wake)| wake)
    }

    /// Replaces the wake of `ticket`, which still waits; returns the old one.
    fn rearm(&mut self, ticket: u64, wake: Wake) -> Option<Wake> {
        let at = self.find(ticket)?;
        Some(std::mem::replace(&mut self.entries[at].1, wake))
    }
}

/// One wait on a primitive whose state `S` sits behind `lock`.
pub(super) struct Wait<'a, S> {
    /// The primitive's lock, over its state and its wait queues.
    pub(super) lock: &'a Mutex<S>,
    /// The queue this wait waits in.
    pub(super) queue: fn(&mut S) -> &mut WaitQueue,
    /// What a waiter that leaves after being notified, without acting on it, passes on.
    pub(super) pass_on: PassOn<S>,
    /// What the wait is for, for the hub's deadlock report.
    pub(super) reason: &'a dyn fmt::Display,
    pub(super) deadline: Option<Instant>,
}

impl<S> Wait<'_, S> {
    /// Waits until `attempt` succeeds; `None` once the deadline passed without it.
    ///
    /// `attempt(state, notified, wakes)` runs under the lock: first right away, then after
    /// every wake-up, with `notified` telling whether this waiter was notified (taken out
    /// of the queue) since the last attempt. It acts if it can (takes the item, the
    /// permit) and returns the outcome, adding to `wakes` whom its action should wake.
    /// A wait whose deadline has already passed makes one attempt and does not queue.
    ///
    /// ```text
    ///   lock ─ attempt ─ done? ──────────────────────────────▶ return
    ///            │ no: queue a ticket, unlock
    ///            ▼
    ///   block (park the greenlet, or park the thread) ◀──────┐ not notified, not timed out
    ///   lock ─ ticket still queued? ─ yes, time left ────────┘ (spurious: re-arm, block)
    ///            │ no (notified), or timed out (withdraw it)
    ///            ▼
    ///          attempt ─ done, or timed out ─────────────────▶ return
    ///            │ notified but beaten to it: queue a new ticket, block
    /// ```
    ///
    /// A kill or an expired `with_timeout` unwinds out of the block; on the way out the
    /// ticket is withdrawn, or, if it was notified meanwhile, `pass_on` runs.
    pub(super) fn run<R>(
        &self,
        mut attempt: impl FnMut(&mut S, bool, &mut Wakes<S>) -> Option<R>,
    ) -> Option<R> {
        let mut wakes = Wakes::default();
        let mut state = self.lock.lock();
        if let Some(done) = attempt(&mut state, false, &mut wakes) {
            drop(state);
            wakes.fire(self.lock);
            return Some(done);
        }
        if passed(self.deadline) {
            drop(state);
            wakes.fire(self.lock);
            return None;
        }
        let on_hub = verdant_hub::has_hub();
        let ticket = (self.queue)(&mut state).push(Wake::current(on_hub));
        drop(state);
        let mut leave = Leave { wait: self, ticket: Some(ticket) };
        let outcome = self.blocked(&mut leave, on_hub, &mut attempt, &mut wakes);
        leave.ticket = None;
        wakes.fire(self.lock);
        outcome
    }

    /// The part of [`run`](Self::run) after the first ticket was queued.
    fn blocked<R>(
        &self,
        leave: &mut Leave<'_, '_, S>,
        on_hub: bool,
        attempt: &mut impl FnMut(&mut S, bool, &mut Wakes<S>) -> Option<R>,
        wakes: &mut Wakes<S>,
    ) -> Option<R> {
        loop {
            let ticket = leave.ticket.expect("a queued ticket while blocked");
            let timed_out = block(on_hub, self.reason, self.deadline);
            let mut state = self.lock.lock();
            let queue = (self.queue)(&mut state);
            let queued = queue.contains(ticket);
            if queued && !timed_out {
                // A spurious wake-up. A greenlet's waker served only the wait that just
                // ended: give the ticket a fresh one; a thread's stays good.
                let old = if on_hub { queue.rearm(ticket, Wake::current(true)) } else { None };
                drop(state);
                drop(old);
                continue;
            }
            let withdrawn = if queued { queue.withdraw(ticket) } else { None };
            leave.ticket = None;
            let done = attempt(&mut state, !queued, wakes);
            if done.is_some() || timed_out {
                drop(state);
                drop(withdrawn);
                return done;
            }
            // Notified, but another waiter that was running got there first: wait again,
            // at the back.
            leave.ticket = Some((self.queue)(&mut state).push(Wake::current(on_hub)));
        }
    }
}

/// Cleans up after a wait that unwinds (a kill, an expired `with_timeout`) while its
/// ticket is queued: withdraws it, or passes on the notification it got.
struct Leave<'w, 'a, S> {
    wait: &'w Wait<'a, S>,
    /// The ticket queued now, if any.
    ticket: Option<u64>,
}

impl<S> Drop for Leave<'_, '_, S> {
    fn drop(&mut self) {
        let Some(ticket) = self.ticket else { return };
        let mut wakes = Wakes::default();
        let mut state = self.wait.lock.lock();
        let withdrawn = (self.wait.queue)(&mut state).withdraw(ticket);
        if withdrawn.is_none() {
            (self.wait.pass_on)(&mut state, &mut wakes);
        }
        drop(state);
        drop(withdrawn);
        wakes.fire(self.wait.lock);
    }
}

/// Blocks until woken or until `deadline`; returns whether the deadline passed. On a hub
/// the greenlet (or the main code, running the hub meanwhile) parks; elsewhere the thread
/// parks. Either may return spuriously.
fn block(on_hub: bool, reason: &dyn fmt::Display, deadline: Option<Instant>) -> bool {
    if on_hub {
        return park::park_until(reason, deadline);
    }
    match deadline {
        None => {
            thread::park();
            false
        }
        Some(deadline) => {
            let now = Instant::now();
            if now < deadline {
                thread::park_timeout(deadline - now);
            }
            passed(Some(deadline))
        }
    }
}

fn passed(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|deadline| Instant::now() >= deadline)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Wake {
        Wake::Thread(thread::current())
    }

    #[test]
    fn notified_means_taken_out_in_ticket_order() {
        let mut queue = WaitQueue::default();
        let tickets: Vec<u64> = (0..4).map(|_| queue.push(me())).collect();
        assert!(queue.withdraw(tickets[1]).is_some()); // gave up: out, not notified
        assert!(queue.withdraw(tickets[1]).is_none());
        assert!(queue.notify_one().is_some()); // the oldest: ticket 0
        assert!(!queue.contains(tickets[0]), "notified");
        assert!(queue.contains(tickets[2]) && queue.contains(tickets[3]));
        assert!(queue.rearm(tickets[3], me()).is_some());
        assert!(queue.rearm(tickets[0], me()).is_none(), "a notified ticket is not re-armed");
        let later = queue.push(me());
        assert_eq!(queue.notify_all().count(), 3);
        assert!(!queue.contains(later) && queue.len() == 0);
    }

    #[test]
    fn an_undelivered_notification_is_passed_on_under_the_lock() {
        // A greenlet's hub that is gone cannot be woken: simulate one with a pass-on that
        // counts, on a wake that reports failure (a remote waker of an ended hub).
        let ended = thread::spawn(|| RemoteWaker::new(park::waker())).join().unwrap();
        let lock = Mutex::new(0usize);
        let mut wakes = Wakes::default();
        wakes.add(Some(Wake::Greenlet(ended)), |passed: &mut usize, _| *passed += 1);
        wakes.add(Some(me()), |passed: &mut usize, _| *passed += 100); // delivered
        wakes.fire(&lock);
        assert_eq!(*lock.lock(), 1);
    }
}
