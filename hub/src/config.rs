//! Per-hub settings: stack size and stack limits.

use crate::stack::DEFAULT_STACK_SIZE;

/// Settings of one thread's hub. Read them with [`config`](crate::config), change them
/// with [`configure`](crate::configure); changes apply to greenlets spawned afterwards.
///
/// ```
/// verdant_hub::configure(|c| c.stack_size = 64 * 1024).unwrap();
/// assert_eq!(verdant_hub::config().stack_size, 64 * 1024);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubConfig {
    /// Usable stack size of greenlets that do not choose one with
    /// [`Builder::stack_size`](crate::Builder::stack_size). Default 256 KiB
    /// ([`DEFAULT_STACK_SIZE`]); only touched pages cost memory. A greenlet that overflows
    /// it ends with [`GreenletError::StackOverflow`](crate::GreenletError::StackOverflow)
    /// (its frames' destructors do not run).
    pub stack_size: usize,
    /// The most guarded stacks this hub may hold at once (in use plus free-listed), on top
    /// of the process-wide cap derived from `vm.max_map_count`. `None` (the default): only
    /// the process-wide cap applies.
    pub max_stacks: Option<usize>,
    /// How many finished greenlets' stacks the hub keeps for reuse. Default 1024.
    pub max_free_stacks: usize,
    /// Which stacks new greenlets get. Default [`StackMode::Adaptive`]: guarded stacks
    /// while they last, then shared ones.
    pub stack_mode: StackMode,
    /// In [`StackMode::Adaptive`], how many of this hub's greenlets may hold guarded stacks
    /// at once; greenlets that start while that many do run on shared stacks. Default
    /// 1024, as many as the free list keeps: so guarded stacks are the recycled, cheap
    /// ones (mapping a new one costs several microseconds of kernel time, mostly `mmap`,
    /// `mprotect` and the first page faults), and a crowd of idle greenlets costs about
    /// 1 KiB each.
    pub adaptive_guarded: usize,
    /// How many shared stacks (each `stack_size` bytes) the hub spreads its shared-stack
    /// greenlets over ([`StackMode::Shared`], or [`StackMode::Adaptive`] past the
    /// switch-over). Default 16.
    pub shared_stacks: usize,
    /// How long the hub spins, checking for cross-thread completions, before it blocks in
    /// `epoll_wait` — only while it waits for other threads (a thread pool) and for nothing
    /// else. Waking a sleeping hub costs tens of microseconds on a VM; spinning costs CPU
    /// for at most this long per wait, and nothing when no cross-thread work is
    /// outstanding. Default 50 µs; zero disables it.
    pub spin: std::time::Duration,
    /// Turns the blocked-hub monitor on for this hub (gevent's `max_blocking_time`):
    /// when one greenlet (or the loop's own code) holds the hub this long without
    /// switching, the monitor thread reports it once, naming the greenlet and where it
    /// was spawned (see [`set_blocking_reporter`](crate::set_blocking_reporter)). Default
    /// `None` (off), or the `VERDANT_MAX_BLOCKING_TIME` environment variable in seconds
    /// (`0.1`). Costs the switch path nothing.
    ///
    /// ```
    /// use std::time::Duration;
    /// verdant_hub::configure(|c| c.max_blocking_time = Some(Duration::from_millis(100)))
    ///     .unwrap();
    /// ```
    pub max_blocking_time: Option<std::time::Duration>,
    /// Keeps a list of this hub's live greenlets, so that [`dump`](crate::dump) (and
    /// `SIGQUIT` with the monitor on) can list them with what each waits on. Default
    /// `false`, or the `VERDANT_TRACK_GREENLETS` environment variable (`1`): the list costs
    /// every spawn, switch and exit a little (measured figures in `docs/hub.md`). Recording
    /// a [`trace`](crate::trace) turns it on as well.
    pub track_greenlets: bool,
}

/// Which stacks a hub gives its greenlets.
///
/// Every mode detects stack overflow: a shared stack has a guard page too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StackMode {
    /// Guarded stacks while they are cheap and available, then shared ones: a greenlet
    /// that starts while [`adaptive_guarded`](HubConfig::adaptive_guarded) of this hub's
    /// greenlets (1024 by default) hold guarded stacks, or while guarded stacks run short
    /// (the process maps seven eighths of what `vm.max_map_count` allows, or the hub is
    /// one short of its [`max_stacks`](HubConfig::max_stacks), or `mmap` fails), runs on
    /// a shared stack for its whole life, as in [`StackMode::Shared`]. Later greenlets
    /// get guarded stacks again once enough are free. So a program with up to a thousand
    /// greenlets alive at once runs as in [`StackMode::Guarded`], and one that needs a
    /// million works with no setting, at about 1 KiB per idle greenlet.
    ///
    /// The greenlets past the switch-over carry the caveat of [`StackMode::Shared`].
    #[default]
    Adaptive,
    /// Each greenlet has its own `mmap`'d stack with a guard page. Switching costs nothing
    /// extra; about 32k greenlets can be alive at once (each stack costs two of the
    /// kernel's `vm.max_map_count` memory maps), and a spawn past that fails with an error
    /// naming the limit.
    Guarded,
    /// Greenlets take turns on a few shared guarded stacks; a suspended greenlet keeps a
    /// heap copy of the part of the stack it uses (often 1–2 KiB). No limit on the number
    /// of greenlets, and less memory per idle greenlet, at the price of a copy when two
    /// greenlets bound to the same shared stack alternate.
    ///
    /// # Caveat
    ///
    /// While a greenlet is suspended, its stack memory may hold another greenlet's frames.
    /// Nothing may use a pointer into a suspended greenlet's stack: not unsafe code (a
    /// raw pointer, an io_uring buffer), and not a scoped thread (`std::thread::scope`,
    /// `rayon::scope`) that borrows the greenlet's locals while the greenlet parks on a
    /// green call inside the scope. [`block_on`](crate::block_on) keeps the futures it
    /// polls on the heap in these greenlets, so async code (whose wakers other threads
    /// may use) is not affected. A greenlet given an explicit
    /// [`Builder::stack_size`](crate::Builder::stack_size) always gets its own guarded
    /// stack: that is how to keep one greenlet off shared stacks.
    Shared,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            stack_size: DEFAULT_STACK_SIZE,
            max_stacks: None,
            max_free_stacks: 1024,
            adaptive_guarded: 1024,
            stack_mode: StackMode::Adaptive,
            shared_stacks: 16,
            spin: std::time::Duration::from_micros(50),
            max_blocking_time: None,
            track_greenlets: false,
        }
    }
}
