//! [`Group<L>`](Group): a set of greenlets that leave by themselves when they die. Its limit
//! `L` makes it gevent's `Group` ([`Unlimited`]: tracks without limiting) or gevent's `Pool`
//! ([`Limited`]: at most `size` members at once). Everything a group does is written once,
//! for both; what only a pool has (`free_count`, `wait_available`, `add_with`, `resize`...)
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
use crate::mapping::{self, Feeders, MapError, MapIter, Order, Reporter};
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

/// The roster behind every handle of one group: the members, the limit, the maps.
pub(crate) struct Roster<L> {
    /// Members, each with the link that removes it when it dies. The slab key is the link
    /// hook's token, so a dying member is removed in O(1) without hashing; the rare
    /// lookups by greenlet (`contains`, `discard`, `add`) scan.
    members: RefCell<Slab<(GreenletRef, Option<LinkId>)>>,
    limit: L,
    /// Woken whenever the group becomes empty.
    emptied: WaitList,
    feeders: Feeders,
}

impl<L: Limit> LinkHook for Roster<L> {
    fn finished(&self, key: usize) {
        self.forget(key);
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
        self.members.borrow().iter().find(|(_, (g, _))| g == greenlet).map(|(key, _)| key)
    }

    fn contains(&self, greenlet: &GreenletRef) -> bool {
        self.key_of(greenlet).is_some()
    }

    fn members(&self) -> Vec<GreenletRef> {
        let mut members: Vec<GreenletRef> =
            self.members.borrow().iter().map(|(_, (g, _))| g.clone()).collect();
        members.sort_by_key(GreenletRef::id);
        members
    }

    /// Whether the running greenlet is a member (then `apply` runs inline).
    fn current_is_member(&self) -> bool {
        let members = self.members.borrow();
        !members.is_empty() && {
            let me = verdant_hub::current();
            members.iter().any(|(_, (g, _))| *g == me)
        }
    }

    /// Starts tracking a greenlet whose place was reserved; it leaves when it dies (through
    /// the group's shared [`LinkHook`]: no allocation per member).
    fn track(self: &Rc<Self>, greenlet: GreenletRef) {
        let hook: Weak<dyn LinkHook> = Rc::downgrade(self) as Weak<dyn LinkHook>;
        // Recorded first: the hook runs at once if the greenlet is already dead.
        let key = self.members.borrow_mut().insert((greenlet.clone(), None));
        let link = greenlet.link_hook(hook, key);
        if let Some((g, slot)) = self.members.borrow_mut().get_mut(key)
            && *g == greenlet
        {
            *slot = Some(link);
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
    fn forget(&self, key: usize) -> Option<(GreenletRef, Option<LinkId>)> {
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
        if let Some((g, Some(link))) = self.forget(key) {
            g.unlink(link);
        }
    }

    /// Spawns `f` as a member, waiting for a place while the pool is full.
    pub(crate) fn spawn<F, T>(self: &Rc<Self>, f: F) -> Greenlet<T>
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        self.limit.reserve(true, None).expect("a blocking reserve without deadline succeeds");
        let greenlet = Greenlet::new(f);
        self.track(greenlet.as_ref());
        greenlet.start();
        greenlet
    }

    fn join(&self, timeout: Option<Duration>, raise_error: bool) -> Result<bool, GreenletError> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let watched = if raise_error { self.members() } else { Vec::new() };
        let reason = "the group to become empty (join)";
        let emptied = self.emptied.wait_until(&reason, deadline, || self.len() == 0);
        match watched.iter().find_map(GreenletRef::error) {
            Some(error) if raise_error => Err(error),
            _ => Ok(emptied),
        }
    }

    fn kill(&self, block: bool, timeout: Option<Duration>) -> bool {
        for feeder in self.feeders.take() {
            feeder.kill_nowait();
        }
        let members = self.members();
        match (block, timeout) {
            (false, _) => verdant_hub::killall_nowait(&members),
            (true, None) => verdant_hub::killall(&members),
            (true, Some(timeout)) => return verdant_hub::killall_timeout(&members, timeout),
        }
        members.iter().all(|member| member.ready() || *member == verdant_hub::current())
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
                spawner.spawn(move || reporter.run(|| f(item)));
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
/// assert_eq!(group.join(None, false), Ok(true));
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
    /// is full ([`add_with`](Group::add_with) can refuse instead).
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

    /// Waits until the group is empty *at least once*, or `timeout` passes. Returns
    /// whether it became empty.
    ///
    /// By the time the caller runs again, new members may have joined: only the
    /// emptiness at some moment is guaranteed. With `raise_error`, if a greenlet that
    /// was a member when the join started died with an error, that error is returned.
    pub fn join(
        &self,
        timeout: Option<Duration>,
        raise_error: bool,
    ) -> Result<bool, GreenletError> {
        self.roster.join(timeout, raise_error)
    }

    /// Kills every member (and stops every running map from starting more tasks); with
    /// `block`, waits at most `timeout` until they are dead. Returns whether all are.
    pub fn kill(&self, block: bool, timeout: Option<Duration>) -> bool {
        self.roster.kill(block, timeout)
    }

    /// Kills `greenlet` if it is a member.
    pub fn killone(&self, greenlet: &impl AsGreenlet, block: bool, timeout: Option<Duration>) {
        let greenlet = greenlet.as_greenlet();
        if self.roster.contains(&greenlet) {
            match (block, timeout) {
                (false, _) => greenlet.kill_nowait(),
                (true, None) => greenlet.kill(),
                (true, Some(timeout)) => drop(greenlet.kill_timeout(timeout)),
            }
        }
    }

    /// Spawns `f` as a member (in a pool, waits for a free place first).
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
            let greenlet = Greenlet::new(f);
            self.roster.track(greenlet.as_ref());
            greenlet.start();
            return greenlet;
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
    /// iteration ends with that error.
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
/// `Pool::new(Some(0))` never admits anyone (a waiting spawn waits forever unless given a
/// timeout); `Pool::new(None)` tracks without limiting.
///
/// ```
/// use std::time::Duration;
/// use verdant_pool::Pool;
///
/// let pool = Pool::new(Some(2));
/// let squares: Vec<u64> = pool
///     .imap(|x: u64| { verdant_hub::sleep(Duration::from_millis(1)); x * x }, 1..=5)
///     .map(Result::unwrap)
///     .collect();
/// assert_eq!(squares, [1, 4, 9, 16, 25]);
/// ```
impl Group<Limited> {
    /// A pool of at most `size` members (`None`: unlimited).
    pub fn new(size: Option<usize>) -> Pool {
        Group { roster: Roster::new(Limited(Slots::new(size))) }
    }

    pub(crate) fn slots(&self) -> &Slots {
        &self.roster.limit.0
    }

    /// The most members at once, or `None` if unlimited.
    pub fn size(&self) -> Option<usize> {
        self.slots().capacity()
    }

    /// Changes the size (`None`: unlimited). Lowering it lets the members finish; no new
    /// one joins until there are fewer than `size`.
    pub fn resize(&self, size: Option<usize>) {
        self.slots().resize(size);
    }

    /// How many more members could join now without waiting.
    pub fn free_count(&self) -> usize {
        self.slots().free().max(0) as usize
    }

    /// Whether `spawn`/`add` would wait.
    pub fn is_full(&self) -> bool {
        !self.slots().has_room()
    }

    /// Waits until a member could join (or `timeout` passes) and returns the free count.
    /// A pool of size 0 waits forever unless a timeout is given.
    pub fn wait_available(&self, timeout: Option<Duration>) -> usize {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        self.slots().wait_available(deadline).max(0) as usize
    }

    /// Starts tracking `greenlet`. If the pool is full: with `blocking`, waits (at most
    /// `timeout`); without, or when the timeout passes, fails with [`PoolFull`].
    pub fn add_with(
        &self,
        greenlet: &impl AsGreenlet,
        blocking: bool,
        timeout: Option<Duration>,
    ) -> Result<(), PoolFull> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        self.roster.limit.reserve(blocking, deadline)?;
        self.roster.track_new_or_known(greenlet.as_greenlet());
        Ok(())
    }

    /// Like [`start`](Self::start), with [`add_with`](Self::add_with)'s options.
    pub fn start_with<T: 'static>(
        &self,
        greenlet: &Greenlet<T>,
        blocking: bool,
        timeout: Option<Duration>,
    ) -> Result<(), PoolFull> {
        self.add_with(greenlet, blocking, timeout)?;
        greenlet.start();
        Ok(())
    }
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
