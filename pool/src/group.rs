//! `Group` and `Pool`: sets of greenlets that leave by themselves when they die.

use std::cell::RefCell;
use std::error::Error;
use std::fmt;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use slab::Slab;
use verdant_hub::park::{self, WaitList};
use verdant_hub::{Greenlet, GreenletError, GreenletRef, LinkHook, LinkId};

use crate::mapping::Feeders;
use crate::slots::Slots;

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

/// What `Group`, `Pool` and `GreenPool` share: the members, the optional limit, the maps.
pub(crate) struct Core {
    /// Members, each with the link that removes it when it dies. The slab key is the link
    /// hook's token, so a dying member is removed in O(1) without hashing; the rare
    /// lookups by greenlet (`contains`, `discard`, `add`) scan.
    members: RefCell<Slab<(GreenletRef, Option<LinkId>)>>,
    /// `None` for a `Group` (tracks without limiting).
    pub(crate) slots: Option<Slots>,
    /// Woken whenever the group becomes empty.
    emptied: WaitList,
    pub(crate) feeders: Feeders,
}

impl LinkHook for Core {
    fn finished(&self, key: usize) {
        self.forget(key);
    }
}

impl Core {
    pub(crate) fn new(capacity: Option<Option<usize>>) -> Rc<Core> {
        Rc::new(Core {
            members: RefCell::new(Slab::new()),
            slots: capacity.map(Slots::new),
            emptied: WaitList::new(),
            feeders: Feeders::default(),
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.members.borrow().len()
    }

    /// The slab key of a member, by scanning (rare operations only).
    fn key_of(&self, greenlet: &GreenletRef) -> Option<usize> {
        self.members.borrow().iter().find(|(_, (g, _))| g == greenlet).map(|(key, _)| key)
    }

    pub(crate) fn contains(&self, greenlet: &GreenletRef) -> bool {
        self.key_of(greenlet).is_some()
    }

    pub(crate) fn members(&self) -> Vec<GreenletRef> {
        let mut members: Vec<GreenletRef> =
            self.members.borrow().iter().map(|(_, (g, _))| g.clone()).collect();
        members.sort_by_key(GreenletRef::id);
        members
    }

    /// Whether the running greenlet is a member (then `apply` runs inline).
    pub(crate) fn current_is_member(&self) -> bool {
        let members = self.members.borrow();
        !members.is_empty() && {
            let me = verdant_hub::current();
            members.iter().any(|(_, (g, _))| *g == me)
        }
    }

    /// Takes a place for a new member: waits while full, up to `deadline` if `blocking`.
    pub(crate) fn reserve(
        &self,
        blocking: bool,
        deadline: Option<Instant>,
    ) -> Result<(), PoolFull> {
        let Some(slots) = &self.slots else { return Ok(()) };
        let got = if blocking { slots.acquire_until(deadline) } else { slots.try_acquire() };
        got.then_some(()).ok_or(PoolFull)
    }

    /// Starts tracking a greenlet whose place was reserved; it leaves when it dies (through
    /// the group's shared [`LinkHook`]: no allocation per member).
    pub(crate) fn track(self: &Rc<Core>, greenlet: GreenletRef) {
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

    /// Like [`track`](Core::track) for a greenlet the caller handed in, which may already
    /// be a member (then the place just reserved is given back).
    pub(crate) fn track_new_or_known(self: &Rc<Core>, greenlet: GreenletRef) {
        if self.contains(&greenlet) {
            if let Some(slots) = &self.slots {
                slots.release();
            }
            return;
        }
        self.track(greenlet);
    }

    /// Stops tracking the member at `key` (it died, or was discarded) and frees its place.
    pub(crate) fn forget(&self, key: usize) -> Option<(GreenletRef, Option<LinkId>)> {
        let removed = self.members.borrow_mut().try_remove(key);
        if removed.is_some() {
            if let Some(slots) = &self.slots {
                slots.release();
            }
            if self.members.borrow().is_empty() {
                self.emptied.notify_all();
            }
        }
        removed
    }

    pub(crate) fn discard(&self, greenlet: &GreenletRef) {
        let Some(key) = self.key_of(greenlet) else { return };
        if let Some((g, Some(link))) = self.forget(key) {
            g.unlink(link);
        }
    }

    /// Spawns `f` as a member, waiting for a place while the pool is full.
    pub(crate) fn spawn<F, T>(self: &Rc<Core>, f: F) -> Greenlet<T>
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        self.reserve(true, None).expect("a blocking reserve without deadline succeeds");
        let greenlet = Greenlet::new(f);
        self.track(greenlet.as_ref());
        greenlet.start();
        greenlet
    }

    pub(crate) fn join(
        &self,
        timeout: Option<Duration>,
        raise_error: bool,
    ) -> Result<bool, GreenletError> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let watched = if raise_error { self.members() } else { Vec::new() };
        let emptied = loop {
            if self.len() == 0 {
                break true;
            }
            self.emptied.push(park::waker());
            if park::park_until(&"the group to become empty (join)", deadline) && self.len() > 0 {
                break false;
            }
        };
        match watched.iter().find_map(GreenletRef::error) {
            Some(error) if raise_error => Err(error),
            _ => Ok(emptied),
        }
    }

    pub(crate) fn kill(&self, block: bool, timeout: Option<Duration>) -> bool {
        for feeder in self.feeders.take() {
            feeder.kill_with(false, None);
        }
        verdant_hub::killall(&self.members(), block, timeout)
    }
}

/// Methods every group-like type offers: membership, joining, killing, and the mapping
/// methods built on `spawn` (gevent's `GroupMappingMixin`).
macro_rules! group_methods {
    () => {
        /// Number of members (live greenlets being tracked).
        pub fn len(&self) -> usize {
            self.core.len()
        }

        /// Whether there are no members.
        pub fn is_empty(&self) -> bool {
            self.core.len() == 0
        }

        /// Whether `greenlet` is a member.
        pub fn contains(&self, greenlet: &impl verdant_hub::AsGreenlet) -> bool {
            self.core.contains(&greenlet.as_greenlet())
        }

        /// The members right now, oldest first.
        pub fn greenlets(&self) -> Vec<verdant_hub::GreenletRef> {
            self.core.members()
        }

        /// Iterates over a snapshot of the members, oldest first (members that join or
        /// leave meanwhile do not affect it).
        pub fn iter(&self) -> impl Iterator<Item = verdant_hub::GreenletRef> + use<> {
            self.core.members().into_iter()
        }

        /// Stops tracking a member (it runs on; its place is freed).
        pub fn discard(&self, greenlet: &impl verdant_hub::AsGreenlet) {
            self.core.discard(&greenlet.as_greenlet());
        }

        /// Waits until the group is empty *at least once*, or `timeout` passes. Returns
        /// whether it became empty.
        ///
        /// By the time the caller runs again, new members may have joined: only the
        /// emptiness at some moment is guaranteed. With `raise_error`, if a greenlet that
        /// was a member when the join started died with an error, that error is returned.
        pub fn join(
            &self,
            timeout: Option<std::time::Duration>,
            raise_error: bool,
        ) -> Result<bool, verdant_hub::GreenletError> {
            self.core.join(timeout, raise_error)
        }

        /// Kills every member (and stops every running map from starting more tasks); with
        /// `block`, waits at most `timeout` until they are dead. Returns whether all are.
        pub fn kill(&self, block: bool, timeout: Option<std::time::Duration>) -> bool {
            self.core.kill(block, timeout)
        }

        /// Kills `greenlet` if it is a member.
        pub fn killone(
            &self,
            greenlet: &impl verdant_hub::AsGreenlet,
            block: bool,
            timeout: Option<std::time::Duration>,
        ) {
            let greenlet = greenlet.as_greenlet();
            if self.core.contains(&greenlet) {
                greenlet.kill_with(block, timeout);
            }
        }

        /// Spawns `f` as a member (in a bounded pool, waits for a free place first).
        pub fn spawn<F, T>(&self, f: F) -> verdant_hub::Greenlet<T>
        where
            F: FnOnce() -> T + 'static,
            T: 'static,
        {
            self.core.spawn(f)
        }

        /// Runs `f` in a member greenlet and returns its value; the calling greenlet waits.
        /// Called from a member of this group, it runs `f` right away instead (so a full
        /// pool cannot deadlock on itself). A panic in `f` is re-raised here.
        pub fn apply<F, T>(&self, f: F) -> T
        where
            F: FnOnce() -> T + 'static,
            T: 'static,
        {
            if self.core.current_is_member() {
                return f();
            }
            crate::reraise(self.core.spawn(f).get())
        }

        /// Starts `f` without ever waiting, even when the pool is full, and returns its
        /// greenlet. If there is room it becomes a member at once; otherwise a helper
        /// greenlet (not a member) waits for room and then runs it like [`apply`].
        ///
        /// [`apply`]: Self::apply
        pub fn apply_async<F, T>(&self, f: F) -> verdant_hub::Greenlet<T>
        where
            F: FnOnce() -> T + 'static,
            T: 'static,
        {
            if self.core.reserve(false, None).is_ok() {
                let greenlet = verdant_hub::Greenlet::new(f);
                self.core.track(greenlet.as_ref());
                greenlet.start();
                return greenlet;
            }
            let core = self.core.clone();
            verdant_hub::spawn(move || crate::reraise(core.spawn(f).get()))
        }

        /// Like [`apply_async`](Self::apply_async), then calls `callback` with the value
        /// if `f` succeeds (not if it panics).
        pub fn apply_async_with_callback<F, T, C>(
            &self,
            f: F,
            callback: C,
        ) -> verdant_hub::Greenlet<T>
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
        pub fn map<I, A, F, T>(&self, f: F, items: I) -> Result<Vec<T>, crate::MapError>
        where
            I: IntoIterator<Item = A> + 'static,
            A: 'static,
            F: Fn(A) -> T + 'static,
            T: 'static,
        {
            crate::mapping::collect(self.imap(f, items))
        }

        /// Like [`map`](Self::map), in a new greenlet (not a member) whose value is the
        /// result.
        pub fn map_async<I, A, F, T>(
            &self,
            f: F,
            items: I,
        ) -> verdant_hub::Greenlet<Result<Vec<T>, crate::MapError>>
        where
            I: IntoIterator<Item = A> + 'static,
            A: 'static,
            F: Fn(A) -> T + 'static,
            T: 'static,
        {
            let core = self.core.clone();
            verdant_hub::spawn(move || {
                crate::mapping::collect(crate::imap_on(&core, f, items, crate::Order::Input, None))
            })
        }

        /// Applies `f` to every item as members, lazily (items are pulled from `items` only
        /// when a task can start), yielding results in input order. A failed item yields
        /// `Err` at its position and the iteration goes on; if `items` panics, the
        /// iteration ends with that error.
        pub fn imap<I, A, F, T>(&self, f: F, items: I) -> crate::MapIter<T>
        where
            I: IntoIterator<Item = A> + 'static,
            A: 'static,
            F: Fn(A) -> T + 'static,
            T: 'static,
        {
            crate::imap_on(&self.core, f, items, crate::Order::Input, None)
        }

        /// Like [`imap`](Self::imap), with at most `maxsize` results finished but not yet
        /// read: tasks wait to start until the reader catches up.
        pub fn imap_maxsize<I, A, F, T>(&self, f: F, items: I, maxsize: usize) -> crate::MapIter<T>
        where
            I: IntoIterator<Item = A> + 'static,
            A: 'static,
            F: Fn(A) -> T + 'static,
            T: 'static,
        {
            crate::imap_on(&self.core, f, items, crate::Order::Input, Some(maxsize))
        }

        /// Like [`imap`](Self::imap), yielding results as they complete.
        pub fn imap_unordered<I, A, F, T>(&self, f: F, items: I) -> crate::MapIter<T>
        where
            I: IntoIterator<Item = A> + 'static,
            A: 'static,
            F: Fn(A) -> T + 'static,
            T: 'static,
        {
            crate::imap_on(&self.core, f, items, crate::Order::Completion, None)
        }

        /// Like [`imap_unordered`](Self::imap_unordered), with at most `maxsize` results
        /// finished but not yet read.
        pub fn imap_unordered_maxsize<I, A, F, T>(
            &self,
            f: F,
            items: I,
            maxsize: usize,
        ) -> crate::MapIter<T>
        where
            I: IntoIterator<Item = A> + 'static,
            A: 'static,
            F: Fn(A) -> T + 'static,
            T: 'static,
        {
            crate::imap_on(&self.core, f, items, crate::Order::Completion, Some(maxsize))
        }
    };
}

pub(crate) use group_methods;

/// An unbounded set of greenlets (gevent's `Group`): members leave by themselves when they
/// die; the group can be joined, killed, and used to map work over greenlets.
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
#[derive(Clone)]
pub struct Group {
    core: Rc<Core>,
}

impl Default for Group {
    fn default() -> Self {
        Group::new()
    }
}

impl Group {
    /// An empty group.
    pub fn new() -> Group {
        Group { core: Core::new(None) }
    }

    /// Starts tracking `greenlet` (it leaves when it dies).
    pub fn add(&self, greenlet: &impl verdant_hub::AsGreenlet) {
        self.core.track_new_or_known(greenlet.as_greenlet());
    }

    /// Tracks an unstarted greenlet, then starts it.
    pub fn start<T: 'static>(&self, greenlet: &Greenlet<T>) {
        self.add(greenlet);
        greenlet.start();
    }

    group_methods!();
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group").field("len", &self.len()).finish()
    }
}

/// A group with at most `size` members (gevent's `Pool`): `spawn`, `start` and `add` wait
/// while it is full.
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
#[derive(Clone)]
pub struct Pool {
    core: Rc<Core>,
}

impl Pool {
    /// A pool of at most `size` members (`None`: unlimited).
    pub fn new(size: Option<usize>) -> Pool {
        Pool { core: Core::new(Some(size)) }
    }

    fn slots(&self) -> &Slots {
        self.core.slots.as_ref().expect("a pool has slots")
    }

    /// The most members at once, or `None` if unlimited.
    pub fn size(&self) -> Option<usize> {
        self.slots().capacity()
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

    /// Starts tracking `greenlet`, waiting while the pool is full.
    pub fn add(&self, greenlet: &impl verdant_hub::AsGreenlet) {
        self.add_with(greenlet, true, None).expect("a blocking add without timeout succeeds");
    }

    /// Starts tracking `greenlet`. If the pool is full: with `blocking`, waits (at most
    /// `timeout`); without, or when the timeout passes, fails with [`PoolFull`].
    pub fn add_with(
        &self,
        greenlet: &impl verdant_hub::AsGreenlet,
        blocking: bool,
        timeout: Option<Duration>,
    ) -> Result<(), PoolFull> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        self.core.reserve(blocking, deadline)?;
        self.core.track_new_or_known(greenlet.as_greenlet());
        Ok(())
    }

    /// Tracks an unstarted greenlet (waiting while full), then starts it.
    pub fn start<T: 'static>(&self, greenlet: &Greenlet<T>) {
        self.add(greenlet);
        greenlet.start();
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

    pub(crate) fn core(&self) -> &Rc<Core> {
        &self.core
    }

    group_methods!();
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool").field("len", &self.len()).field("size", &self.size()).finish()
    }
}
