//! [`Group<L>`](Group): a set of greenlets that leave by themselves when they die. Its limit
//! `L` makes it gevent's `Group` ([`Unlimited`]: tracks without limiting) or gevent's `Pool`
//! ([`Limited`]: at most `size` members at once). Everything a group does is written once,
//! for both; what only a pool has (`free_count`, `wait_available`, `try_add`, `resize`...)
//! lives in `impl Group<Limited>`.

use std::cell::RefCell;
use std::error::Error;
use std::fmt;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use slab::Slab;
use verdant_hub::park::WaitList;
use verdant_hub::{AsGreenlet, Greenlet, GreenletError, GreenletRef, LinkHook, LinkId};

use crate::Pool;
use crate::mapping::{self, DeathReport, Feeders, MapError, MapIter, Order, Reporter};
use crate::slots::Slots;

use sealed::Limit as _;

/// The error of adding to a full pool without waiting, or after waiting in vain
/// (gevent's `PoolFull`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolFull;

impl fmt::Display for PoolFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the pool is full")
    }
}

impl Error for PoolFull {}

/// How many members a [`Group`] admits: [`Unlimited`] or [`Limited`], nothing else.
pub trait Limit: sealed::Limit + 'static {}

/// No limit: the kind of gevent's `Group` (`verdant_pool::Group` is `Group<Unlimited>`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unlimited;

/// At most `size` members at once, a size that can change: the limit of gevent's `Pool`
/// (`verdant_pool::Pool` is `Group<Limited>`). It holds the count of free places.
pub struct Limited(Slots);

mod sealed {
    use std::time::Instant;

    use crate::PoolFull;

    /// What a limit does when a member joins or leaves.
    pub trait Limit {
        /// Takes a place for a new member: waits while full (until `deadline`) if
        /// `blocking`, else fails at once.
        fn reserve(&self, blocking: bool, deadline: Option<Instant>) -> Result<(), PoolFull>;
        /// Gives back the place of a member that left.
        fn release(&self);
    }
}

impl sealed::Limit for Unlimited {
    #[inline]
    fn reserve(&self, _blocking: bool, _deadline: Option<Instant>) -> Result<(), PoolFull> {
        Ok(())
    }

    #[inline]
    fn release(&self) {}
}

impl sealed::Limit for Limited {
    #[inline]
    fn reserve(&self, blocking: bool, deadline: Option<Instant>) -> Result<(), PoolFull> {
        let got = if blocking { self.0.acquire_until(deadline) } else { self.0.try_acquire() };
        got.then_some(()).ok_or(PoolFull)
    }

    #[inline]
    fn release(&self) {
        self.0.release();
    }
}

impl Limit for Unlimited {}
impl Limit for Limited {}

impl fmt::Debug for Limited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limited")
            .field("size", &self.0.capacity())
            .field("used", &self.0.used())
            .finish()
    }
}

/// One member: its greenlet, the link that removes it when it dies, whether the group
/// already shot it (gevent's `dying` set: a member is killed by the group at most once),
/// and what a map wants done when it dies (its report: kept here rather than as a second
/// link on the greenlet, which would cost the greenlet's cold part two allocations).
struct Member {
    greenlet: GreenletRef,
    link: Option<LinkId>,
    dying: bool,
    on_death: Option<DeathReport>,
}

/// The roster behind every handle of one group: the members, the limit, the maps.
pub(crate) struct Roster<L> {
    /// The members. The slab key is the link hook's token, so a dying member is removed in
    /// O(1) without hashing; the rare lookups by greenlet (`contains`, `discard`, `add`)
    /// scan.
    members: RefCell<Slab<Member>>,
    limit: L,
    /// Woken whenever the group becomes empty.
    emptied: WaitList,
    feeders: Feeders,
}

impl Member {
    /// Leaving the group before it died: what its map wants done at its death moves to a
    /// link of the greenlet's own.
    fn report_on_its_own(self) {
        if let Some(on_death) = self.on_death {
            self.greenlet.link(move |_| on_death.deliver());
        }
    }
}

impl<L> Drop for Roster<L> {
    /// The group is gone (its pool dropped mid-map): the map's items still running report
    /// through a link of their own once they die.
    fn drop(&mut self) {
        for member in self.members.get_mut().drain() {
            member.report_on_its_own();
        }
    }
}

impl<L: Limit> LinkHook for Roster<L> {
    fn finished(&self, key: usize) {
        if let Some(Member { on_death: Some(on_death), .. }) = self.forget(key) {
            on_death.deliver();
        }
    }
}

impl<L: Limit> Roster<L> {
    fn new(limit: L) -> Rc<Roster<L>> {
        Rc::new(Roster {
            members: RefCell::new(Slab::new()),
            limit,
            emptied: WaitList::new(),
            feeders: Feeders::default(),
        })
    }

    fn len(&self) -> usize {
        self.members.borrow().len()
    }

    /// The slab key of a member, by scanning (rare operations only).
    fn key_of(&self, greenlet: &GreenletRef) -> Option<usize> {
        let members = self.members.borrow();
        members.iter().find(|(_, m)| m.greenlet == *greenlet).map(|(key, _)| key)
    }

    fn contains(&self, greenlet: &GreenletRef) -> bool {
        self.key_of(greenlet).is_some()
    }

    fn members(&self) -> Vec<GreenletRef> {
        let mut members: Vec<GreenletRef> =
            self.members.borrow().iter().map(|(_, m)| m.greenlet.clone()).collect();
        members.sort_by_key(GreenletRef::id);
        members
    }

    /// Whether the running greenlet is a member (then `apply` runs inline).
    fn current_is_member(&self) -> bool {
        let members = self.members.borrow();
        !members.is_empty() && {
            let me = verdant_hub::current();
            members.iter().any(|(_, m)| m.greenlet == me)
        }
    }

    /// Starts tracking a greenlet whose place was reserved; it leaves when it dies (through
    /// the group's shared [`LinkHook`]: no allocation per member).
    fn track(self: &Rc<Self>, greenlet: GreenletRef) {
        self.track_with(greenlet, None);
    }

    /// Like [`track`](Roster::track), with what to do once the member has died (after it
    /// left the group).
    fn track_with(self: &Rc<Self>, greenlet: GreenletRef, on_death: Option<DeathReport>) {
        let hook: Weak<dyn LinkHook> = Rc::downgrade(self) as Weak<dyn LinkHook>;
        // Recorded first: the hook runs at once if the greenlet is already dead.
        let member = Member { greenlet: greenlet.clone(), link: None, dying: false, on_death };
        let key = self.members.borrow_mut().insert(member);
        let link = greenlet.link_hook(hook, key);
        if let Some(member) = self.members.borrow_mut().get_mut(key)
            && member.greenlet == greenlet
        {
            member.link = Some(link);
        }
    }

    /// Like [`track`](Roster::track) for a greenlet the caller handed in, which may already
    /// be a member (then the place just reserved is given back).
    fn track_new_or_known(self: &Rc<Self>, greenlet: GreenletRef) {
        if self.contains(&greenlet) {
            self.limit.release();
            return;
        }
        self.track(greenlet);
    }

    /// Stops tracking the member at `key` (it died, or was discarded) and frees its place.
    fn forget(&self, key: usize) -> Option<Member> {
        let removed = self.members.borrow_mut().try_remove(key);
        if removed.is_some() {
            self.limit.release();
            if self.members.borrow().is_empty() {
                self.emptied.notify_all();
            }
        }
        removed
    }

    fn discard(&self, greenlet: &GreenletRef) {
        let Some(key) = self.key_of(greenlet) else { return };
        if let Some(member) = self.forget(key) {
            if let Some(link) = member.link {
                member.greenlet.unlink(link);
            }
            member.report_on_its_own(); // out of the group, its map still wants to hear
        }
    }

    /// Marks `greenlet` dying if it is a member the group has not shot yet; returns
    /// whether it did (then the caller shoots it).
    fn mark_dying(&self, greenlet: &GreenletRef) -> bool {
        let key = self.key_of(greenlet);
        let mut members = self.members.borrow_mut();
        match key.and_then(|key| members.get_mut(key)) {
            Some(member) if !member.dying => {
                member.dying = true;
                true
            }
            _ => false,
        }
    }

    /// Marks every member not shot yet as dying and returns them, the caller last (a
    /// kill of the running greenlet unwinds at once, so it must come after the others).
    fn take_the_living(&self) -> Vec<GreenletRef> {
        let mut targets: Vec<GreenletRef> = self
            .members
            .borrow_mut()
            .iter_mut()
            .filter(|(_, m)| !m.dying)
            .map(|(_, m)| {
                m.dying = true;
                m.greenlet.clone()
            })
            .collect();
        let me = verdant_hub::current();
        targets.sort_by_key(|g| (*g == me, g.id()));
        targets
    }

    /// Spawns `f` as a member, waiting for a place while the pool is full.
    #[track_caller]
    pub(crate) fn spawn<F, T>(self: &Rc<Self>, f: F) -> Greenlet<T>
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        self.limit.reserve(true, None).expect("a blocking reserve without deadline succeeds");
        self.spawn_reserved(f)
    }

    /// Spawns `f` as a member for a map, waiting for a place while the pool is full:
    /// `reporter` hears how it ended once it has died and left the group, whatever ended
    /// it (an overflow discards the task's frames, so a report from inside could be lost).
    fn spawn_reporting<F, T>(self: &Rc<Self>, f: F, reporter: Reporter<T>)
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        self.limit.reserve(true, None).expect("a blocking reserve without deadline succeeds");
        let greenlet = Greenlet::new(f);
        let member = greenlet.as_ref();
        self.track_with(member, Some(reporter.on_death_of(greenlet.clone())));
        greenlet.start();
    }

    /// Spawns `f` as a member in a place already reserved.
    #[track_caller]
    fn spawn_reserved<F, T>(self: &Rc<Self>, f: F) -> Greenlet<T>
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        let greenlet = Greenlet::new(f);
        self.track(greenlet.as_ref());
        greenlet.start();
        greenlet
    }

    /// Waits until the group is empty or `deadline`; with `raise_error`, fails with the
    /// error of a member that was one when the wait started.
    fn join(&self, deadline: Option<Instant>, raise_error: bool) -> Result<bool, GreenletError> {
        let watched = if raise_error { self.members() } else { Vec::new() };
        let reason = "the group to become empty (join)";
        let emptied = self.emptied.wait_until(&reason, deadline, || self.len() == 0);
        match watched.iter().find_map(GreenletRef::error) {
            Some(error) => Err(error),
            None => Ok(emptied),
        }
    }

    /// gevent's `Group.kill`: stops the maps, shoots every member not shot before (each
    /// at most once, however often the group is killed), and with `block` waits until
    /// `deadline` for them to die, shooting members that joined meanwhile. Returns
    /// whether the group is empty (or, called from a member, holds only the caller).
    fn kill(&self, block: bool, deadline: Option<Instant>) -> bool {
        for feeder in self.feeders.take() {
            feeder.kill_nowait();
        }
        loop {
            for target in self.take_the_living() {
                target.kill_nowait();
            }
            let me = verdant_hub::current();
            let others: Vec<GreenletRef> =
                self.members().into_iter().filter(|g| *g != me).collect();
            if others.is_empty() || !block {
                return others.is_empty();
            }
            if !join_all_until(&others, deadline) {
                return false;
            }
        }
    }

    /// gevent's `Group.killone`: shoots `greenlet` if it is a member not shot before; with
    /// `block`, then waits until `deadline` for it to die. A greenlet that is not a member
    /// (dead already, say) or was shot before is left alone, and the call returns at once.
    /// Returns whether the greenlet is dead.
    fn killone(&self, greenlet: &GreenletRef, block: bool, deadline: Option<Instant>) -> bool {
        if self.mark_dying(greenlet) {
            greenlet.kill_nowait();
            if block && *greenlet != verdant_hub::current() {
                return join_all_until(std::slice::from_ref(greenlet), deadline);
            }
        }
        greenlet.ready()
    }

    /// Maps `f` over `items` through members of this group: every mapping method ends here.
    fn imap<I, A, F, T>(
        self: &Rc<Self>,
        f: F,
        items: I,
        order: Order,
        maxsize: Option<usize>,
    ) -> MapIter<T>
    where
        I: IntoIterator<Item = A> + 'static,
        A: 'static,
        F: Fn(A) -> T + 'static,
        T: 'static,
    {
        let f = mapping::share(f);
        let spawner = self.clone();
        let (iter, feeder) = mapping::start(
            items,
            move |item, reporter: Reporter<T>| {
                let f = f.clone();
                spawner.spawn_reporting(move || f(item), reporter);
            },
            order,
            maxsize,
        );
        self.feeders.add(feeder);
        iter
    }
}

/// A set of greenlets that leave by themselves when they die; it can be joined, killed,
/// and used to map work over greenlets (gevent's `Group`, and with a [`Limited`] limit,
/// gevent's `Pool`).
///
/// `verdant_pool::Group` is `Group<Unlimited>` and `verdant_pool::Pool` is
/// `Group<Limited>`: write those (each has its own `new`). What a pool adds is in the
/// `impl Group<Limited>` below; in a pool, `spawn`, `start` and `add` wait while it is full.
///
/// ```
/// use verdant_pool::Group;
///
/// let group = Group::new();
/// for i in 0..3 {
///     group.spawn(move || i * 10);
/// }
/// assert_eq!(group.len(), 3);
/// group.join();
/// assert!(group.is_empty());
/// assert_eq!(group.map(|x: u32| x + 1, vec![1, 2, 3]), Ok(vec![2, 3, 4]));
/// ```
pub struct Group<L = Unlimited> {
    roster: Rc<Roster<L>>,
}

/// Membership, joining, killing, and the mapping methods built on `spawn` (gevent's
/// `GroupMappingMixin`): the same for groups and pools.
impl<L: Limit> Group<L> {
    /// Number of members (live greenlets being tracked).
    pub fn len(&self) -> usize {
        self.roster.len()
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.roster.len() == 0
    }

    /// Whether `greenlet` is a member.
    pub fn contains(&self, greenlet: &impl AsGreenlet) -> bool {
        self.roster.contains(&greenlet.as_greenlet())
    }

    /// The members right now, oldest first.
    pub fn greenlets(&self) -> Vec<GreenletRef> {
        self.roster.members()
    }

    /// Iterates over a snapshot of the members, oldest first (members that join or
    /// leave meanwhile do not affect it).
    pub fn iter(&self) -> impl Iterator<Item = GreenletRef> + use<L> {
        self.roster.members().into_iter()
    }

    /// Starts tracking `greenlet` (it leaves when it dies). In a pool, waits while the pool
    /// is full ([`try_add`](Group::try_add) refuses instead).
    pub fn add(&self, greenlet: &impl AsGreenlet) {
        self.roster.limit.reserve(true, None).expect("a blocking add without timeout succeeds");
        self.roster.track_new_or_known(greenlet.as_greenlet());
    }

    /// Tracks an unstarted greenlet (in a pool, waiting while it is full), then starts it.
    pub fn start<T: 'static>(&self, greenlet: &Greenlet<T>) {
        self.add(greenlet);
        greenlet.start();
    }

    /// Stops tracking a member (it runs on; its place is freed).
    pub fn discard(&self, greenlet: &impl AsGreenlet) {
        self.roster.discard(&greenlet.as_greenlet());
    }

    /// Waits until the group is empty *at least once* (gevent's `join()`).
    ///
    /// By the time the caller runs again, new members may have joined: only the
    /// emptiness at some moment is guaranteed.
    pub fn join(&self) {
        let _ = self.roster.join(None, false);
    }

    /// Like [`join`](Self::join), giving up after `timeout` (gevent's `join(timeout)`).
    /// Returns whether the group became empty.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.roster.join(deadline_after(timeout), false).unwrap_or(false)
    }

    /// Like [`join`](Self::join), then fails with the error of a greenlet that was a
    /// member when the join started and died with an error (gevent's
    /// `join(raise_error=True)`).
    pub fn join_raising(&self) -> Result<(), GreenletError> {
        self.roster.join(None, true).map(drop)
    }

    /// [`join_raising`](Self::join_raising) giving up after `timeout`: `Ok(false)` if the
    /// group did not become empty and no watched member failed.
    pub fn join_raising_timeout(&self, timeout: Duration) -> Result<bool, GreenletError> {
        self.roster.join(deadline_after(timeout), true)
    }

    /// Kills every member and waits until they are dead (gevent's `kill()`); every
    /// running map stops starting new tasks. A member is shot at most once however often
    /// the group is killed (gevent's `dying` set): one that survives its kill (it caught
    /// the unwind) is waited for, not shot again, so this can wait forever; see
    /// [`kill_timeout`](Self::kill_timeout). Members that join meanwhile are shot too.
    pub fn kill(&self) {
        self.roster.kill(true, None);
    }

    /// Shoots every member not shot before and returns at once (gevent's
    /// `kill(block=False)`): they die, and leave, when they next run.
    pub fn kill_nowait(&self) {
        self.roster.kill(false, None);
    }

    /// Like [`kill`](Self::kill), waiting at most `timeout` (gevent's `kill(timeout=t)`).
    /// Returns whether the group is empty.
    pub fn kill_timeout(&self, timeout: Duration) -> bool {
        self.roster.kill(true, deadline_after(timeout))
    }

    /// Kills `greenlet` if it is a member, and waits until it is dead (gevent's
    /// `killone`). A member the group shot before is not shot again, and then, as for a
    /// greenlet that is not a member (one already dead, say), this returns at once.
    pub fn killone(&self, greenlet: &impl AsGreenlet) {
        self.roster.killone(&greenlet.as_greenlet(), true, None);
    }

    /// Like [`killone`](Self::killone), without waiting for the greenlet to die (gevent's
    /// `killone(block=False)`).
    pub fn killone_nowait(&self, greenlet: &impl AsGreenlet) {
        self.roster.killone(&greenlet.as_greenlet(), false, None);
    }

    /// Like [`killone`](Self::killone), waiting at most `timeout`. Returns whether the
    /// greenlet is dead.
    pub fn killone_timeout(&self, greenlet: &impl AsGreenlet, timeout: Duration) -> bool {
        self.roster.killone(&greenlet.as_greenlet(), true, deadline_after(timeout))
    }

    /// Whether the running greenlet is a member (then `apply`, and eventlet's `spawn` into
    /// a full pool, run inline).
    pub(crate) fn current_is_member(&self) -> bool {
        self.roster.current_is_member()
    }

    /// Spawns `f` as a member (in a pool, waits for a free place first).
    #[track_caller]
    pub fn spawn<F, T>(&self, f: F) -> Greenlet<T>
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        self.roster.spawn(f)
    }

    /// Runs `f` in a member greenlet and returns its value; the calling greenlet waits.
    /// Called from a member of this group, it runs `f` right away instead (so a full
    /// pool cannot deadlock on itself). A panic in `f` is re-raised here.
    pub fn apply<F, T>(&self, f: F) -> T
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        if self.roster.current_is_member() {
            return f();
        }
        crate::reraise(self.roster.spawn(f).take())
    }

    /// Starts `f` without ever waiting, even when the pool is full, and returns its
    /// greenlet. If there is room it becomes a member at once; otherwise a helper
    /// greenlet (not a member) waits for room and then runs it like [`apply`].
    ///
    /// [`apply`]: Self::apply
    pub fn apply_async<F, T>(&self, f: F) -> Greenlet<T>
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        if self.roster.limit.reserve(false, None).is_ok() {
            return self.roster.spawn_reserved(f);
        }
        let roster = self.roster.clone();
        verdant_hub::spawn(move || crate::reraise(roster.spawn(f).take()))
    }

    /// Like [`apply_async`](Self::apply_async), then calls `callback` with the value
    /// if `f` succeeds (not if it panics).
    pub fn apply_async_with_callback<F, T, C>(&self, f: F, callback: C) -> Greenlet<T>
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
        C: FnOnce(&T) + 'static,
    {
        self.apply_async(move || {
            let value = f();
            callback(&value);
            value
        })
    }

    /// Like [`apply`](Self::apply), then calls `callback` with the value (in the calling
    /// greenlet) before returning it.
    pub fn apply_cb<F, T, C>(&self, f: F, callback: C) -> T
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
        C: FnOnce(&T),
    {
        let value = self.apply(f);
        callback(&value);
        value
    }

    /// Applies `f` to every item, as members (at most the pool's size at once), and
    /// returns the values in input order, or the error of the first failed item.
    pub fn map<I, A, F, T>(&self, f: F, items: I) -> Result<Vec<T>, MapError>
    where
        I: IntoIterator<Item = A> + 'static,
        A: 'static,
        F: Fn(A) -> T + 'static,
        T: 'static,
    {
        mapping::collect(self.imap(f, items))
    }

    /// Like [`map`](Self::map), in a new greenlet (not a member) whose value is the
    /// result.
    pub fn map_async<I, A, F, T>(&self, f: F, items: I) -> Greenlet<Result<Vec<T>, MapError>>
    where
        I: IntoIterator<Item = A> + 'static,
        A: 'static,
        F: Fn(A) -> T + 'static,
        T: 'static,
    {
        let roster = self.roster.clone();
        verdant_hub::spawn(move || mapping::collect(roster.imap(f, items, Order::Input, None)))
    }

    /// Applies `f` to every item as members, lazily (items are pulled from `items` only
    /// when a task can start), yielding results in input order. A failed item yields
    /// `Err` at its position and the iteration goes on; if `items` panics, the
    /// iteration ends with that error ([`MapError::Input`]), and if the group is killed,
    /// with [`MapError::Killed`] (even while `items` is producing an item).
    pub fn imap<I, A, F, T>(&self, f: F, items: I) -> MapIter<T>
    where
        I: IntoIterator<Item = A> + 'static,
        A: 'static,
        F: Fn(A) -> T + 'static,
        T: 'static,
    {
        self.roster.imap(f, items, Order::Input, None)
    }

    /// Like [`imap`](Self::imap), with at most `maxsize` results finished but not yet
    /// read: tasks wait to start until the reader catches up.
    pub fn imap_maxsize<I, A, F, T>(&self, f: F, items: I, maxsize: usize) -> MapIter<T>
    where
        I: IntoIterator<Item = A> + 'static,
        A: 'static,
        F: Fn(A) -> T + 'static,
        T: 'static,
    {
        self.roster.imap(f, items, Order::Input, Some(maxsize))
    }

    /// Like [`imap`](Self::imap), yielding results as they complete.
    pub fn imap_unordered<I, A, F, T>(&self, f: F, items: I) -> MapIter<T>
    where
        I: IntoIterator<Item = A> + 'static,
        A: 'static,
        F: Fn(A) -> T + 'static,
        T: 'static,
    {
        self.roster.imap(f, items, Order::Completion, None)
    }

    /// Like [`imap_unordered`](Self::imap_unordered), with at most `maxsize` results
    /// finished but not yet read.
    pub fn imap_unordered_maxsize<I, A, F, T>(&self, f: F, items: I, maxsize: usize) -> MapIter<T>
    where
        I: IntoIterator<Item = A> + 'static,
        A: 'static,
        F: Fn(A) -> T + 'static,
        T: 'static,
    {
        self.roster.imap(f, items, Order::Completion, Some(maxsize))
    }
}

impl Group<Unlimited> {
    /// An empty group.
    pub fn new() -> Group {
        Group { roster: Roster::new(Unlimited) }
    }
}

impl Default for Group<Unlimited> {
    fn default() -> Self {
        Self::new()
    }
}

/// What a pool adds to a group (gevent's `Pool`): a size, and ways to add without waiting.
///
/// `Pool::new(0)` never admits anyone (a waiting spawn waits forever unless given a
/// timeout); `Pool::unlimited()` (also `Pool::default()`) tracks without limiting.
///
/// ```
/// use std::time::Duration;
/// use verdant_pool::Pool;
///
/// let pool = Pool::new(2);
/// let squares: Vec<u64> = pool
///     .imap(|x: u64| { verdant_hub::sleep(Duration::from_millis(1)); x * x }, 1..=5)
///     .map(Result::unwrap)
///     .collect();
/// assert_eq!(squares, [1, 4, 9, 16, 25]);
/// ```
impl Group<Limited> {
    /// A pool of at most `size` members (gevent's `Pool(size)`). Size 0 never admits
    /// anyone.
    pub fn new(size: usize) -> Pool {
        Pool::with_capacity(Some(size))
    }

    /// A pool without a limit, which tracks like a [`Group`](crate::Group) (gevent's
    /// `Pool()`, its default; also [`Pool::default`]).
    pub fn unlimited() -> Pool {
        Pool::with_capacity(None)
    }

    fn with_capacity(size: Option<usize>) -> Pool {
        Group { roster: Roster::new(Limited(Slots::new(size))) }
    }

    pub(crate) fn slots(&self) -> &Slots {
        &self.roster.limit.0
    }

    /// The most members at once, or `None` if unlimited.
    pub fn size(&self) -> Option<usize> {
        self.slots().capacity()
    }

    /// Changes the size. Lowering it lets the members finish; no new one joins until
    /// there are fewer than `size`.
    pub fn resize(&self, size: usize) {
        self.slots().resize(Some(size));
    }

    /// Lifts the limit: every waiting `spawn` goes ahead.
    pub fn resize_unlimited(&self) {
        self.slots().resize(None);
    }

    /// How many more members could join now without waiting.
    pub fn free_count(&self) -> usize {
        self.slots().free().max(0) as usize
    }

    /// Whether `spawn`/`add` would wait.
    pub fn is_full(&self) -> bool {
        !self.slots().has_room()
    }

    /// Waits until a member could join and returns the free count (gevent's
    /// `wait_available()`). A pool of size 0 waits forever.
    pub fn wait_available(&self) -> usize {
        self.slots().wait_available(None).max(0) as usize
    }

    /// Like [`wait_available`](Self::wait_available), giving up after `timeout`
    /// (then the free count is 0).
    pub fn wait_available_timeout(&self, timeout: Duration) -> usize {
        self.slots().wait_available(deadline_after(timeout)).max(0) as usize
    }

    /// Starts tracking `greenlet` if there is room now; fails with [`PoolFull`] at once if
    /// not (gevent's `add(greenlet, blocking=False)`).
    pub fn try_add(&self, greenlet: &impl AsGreenlet) -> Result<(), PoolFull> {
        self.add_until(greenlet, false, None)
    }

    /// Like [`add`](Self::add), waiting at most `timeout` for room, then failing with
    /// [`PoolFull`] (gevent's `add(greenlet, timeout=t)`).
    pub fn add_timeout(
        &self,
        greenlet: &impl AsGreenlet,
        timeout: Duration,
    ) -> Result<(), PoolFull> {
        self.add_until(greenlet, true, deadline_after(timeout))
    }

    fn add_until(
        &self,
        greenlet: &impl AsGreenlet,
        blocking: bool,
        deadline: Option<Instant>,
    ) -> Result<(), PoolFull> {
        self.roster.limit.reserve(blocking, deadline)?;
        self.roster.track_new_or_known(greenlet.as_greenlet());
        Ok(())
    }

    /// [`try_add`](Self::try_add), then starts the greenlet (gevent's
    /// `start(greenlet, blocking=False)`).
    pub fn try_start<T: 'static>(&self, greenlet: &Greenlet<T>) -> Result<(), PoolFull> {
        self.try_add(greenlet)?;
        greenlet.start();
        Ok(())
    }

    /// [`add_timeout`](Self::add_timeout), then starts the greenlet.
    pub fn start_timeout<T: 'static>(
        &self,
        greenlet: &Greenlet<T>,
        timeout: Duration,
    ) -> Result<(), PoolFull> {
        self.add_timeout(greenlet, timeout)?;
        greenlet.start();
        Ok(())
    }
}

impl Default for Group<Limited> {
    /// gevent's `Pool()`: no limit.
    fn default() -> Self {
        Pool::unlimited()
    }
}

/// gevent's `Group(greenlets)`: a group tracking each of them (each leaves when it dies).
impl<G: AsGreenlet> FromIterator<G> for Group<Unlimited> {
    fn from_iter<I: IntoIterator<Item = G>>(greenlets: I) -> Self {
        let group = crate::Group::new();
        for greenlet in greenlets {
            group.add(&greenlet);
        }
        group
    }
}

/// The deadline `timeout` from now (`None`: too far to represent, i.e. never).
fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// The time left until `deadline` (`None`: no deadline).
/// Joins every one of `greenlets`, giving up at `deadline`: whether all of them died.
fn join_all_until(greenlets: &[GreenletRef], deadline: Option<Instant>) -> bool {
    let mut wait = verdant_hub::WaitFor::all();
    if let Some(left) = remaining(deadline) {
        wait = wait.timeout(left);
    }
    verdant_hub::joinall(greenlets, wait).len() == greenlets.len()
}

fn remaining(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

impl<L> Clone for Group<L> {
    fn clone(&self) -> Self {
        Group { roster: self.roster.clone() }
    }
}

impl fmt::Debug for Group<Unlimited> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group").field("len", &self.len()).finish()
    }
}

impl fmt::Debug for Group<Limited> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool").field("len", &self.len()).field("size", &self.size()).finish()
    }
}
