//! A greenlet's stack overflow ends that greenlet, not the process.
//!
//! A greenlet that overflows its stack touches its guard page and the kernel raises
//! `SIGSEGV`. The hub installs (once per process) a handler that runs on the thread's
//! alternate signal stack — the Rust runtime gives every thread it starts one — and checks
//! whether the faulting address lies in the guard page of the greenlet that is running on
//! this thread. Any other fault is passed on to the handler that was installed before (the
//! Rust runtime's own, which reports thread-stack overflows and otherwise restores the
//! default action).
//!
//! # Ending the greenlet
//!
//! For a fault on the running greenlet's guard page, the handler uses corosensei's trap
//! support ([`setup_trap_handler`]): it resets the coroutine's stack and rewrites the
//! interrupted register context, so that when the handler returns, the greenlet's
//! coroutine calls [`end_overflowed`] on its own, now empty, stack instead of going on
//! with the frames that overflowed. Those frames are simply abandoned: their
//! destructors never run, and whatever they held is leaked. `end_overflowed` ends the
//! greenlet the normal way for an error outcome ([`GreenletError::StackOverflow`]: outcome,
//! joiners, link callbacks, stats), in the greenlet's own context, and the coroutine then
//! returns to the hub's `resume` like any finished greenlet, which recycles the stack.
//! The guard page is untouched by all this (a fault does not change its protection), so
//! the recycled stack is guarded as before.
//!
//! [`setup_trap_handler`]: corosensei::trap::CoroutineTrapHandler::setup_trap_handler
//!
//! The handler itself only decides and redirects: it reads a thread-local and the
//! greenlet's `Core`, writes one flag and the register context, and allocates nothing; the
//! error value, the report and the bookkeeping are made after control is back on normal
//! code.
//!
//! # When the process still aborts
//!
//! Abandoning frames is only safe when nothing that outlives them depends on them. The
//! handler refuses, and aborts with today's message naming the greenlet, its stack size
//! and the knob to turn (plus why it could not just end it), when:
//!
//! * the faulting instruction is not in the program's own code (the object that holds
//!   this crate): C libraries such as `malloc` or stdio may hold a process-wide lock that
//!   would never be released;
//! * an unwind is in progress on the thread: the thread's panic count would stay raised;
//! * a `block_on` of this greenlet is polling a pinned future: pinned memory must not be
//!   reused before the value in it is dropped, and async runtimes keep pointers to it;
//! * the greenlet already overflowed once (a link callback, run after the first overflow,
//!   overflowed again);
//! * the stack pointer is not inside the greenlet's stack, or the platform is not one of
//!   those handled below (Linux on x86-64 and AArch64).
//!
//! After the return, `Hub::end_overflowed` checks that the abandoned frames did not leave
//! the hub's own bookkeeping borrowed (an overflow inside the hub's code on the greenlet's
//! stack); if they did, it aborts with the same message.
//!
//! The running greenlet's guard page and a pointer to its [`Core`] are published in a
//! thread-local that the loop sets before every resume ([`publish_running`]); that is the
//! only cost on the switch path.

use std::cell::Cell;
use std::sync::{Once, OnceLock};

use libc::{c_int, c_void, siginfo_t};

#[cfg(doc)]
use crate::GreenletError;
use crate::hub::with_hub;
use crate::task::Core;

/// Where the running greenlet's guard page starts, and the greenlet.
///
/// # Invariant
///
/// `core` points at the `Core` of the greenlet that was last resumed on this thread, whose
/// stack has its guard page at `guard_low`. It may be stale (that greenlet suspended or
/// finished since), so it is only dereferenced when a fault hits that guard page: only
/// code running on that very stack can touch it, so the greenlet is running, and alive.
#[derive(Clone, Copy)]
struct ActiveStack {
    guard_low: usize,
    core: *const Core,
}

const NO_STACK: ActiveStack = ActiveStack { guard_low: 0, core: std::ptr::null() };

thread_local! {
    static ACTIVE: Cell<ActiveStack> = const { Cell::new(NO_STACK) };
}

/// Publishes the greenlet the loop is about to resume on this thread, and its guard page.
///
/// It is not cleared afterwards: a guard page can only be hit by code running on its own
/// stack, so a stale entry never misattributes a fault (a fault elsewhere falls outside
/// it), and skipping the clear keeps one thread-local write off every switch.
#[inline]
pub(crate) fn publish_running(core: &Core) {
    let active = ActiveStack { guard_low: core.guard_low.get(), core };
    ACTIVE.with(|a| a.set(active));
}

/// The `Core` of the greenlet the loop resumed last on this thread (null if none yet).
/// Stale once that greenlet suspended: dereference it only from code that knows the
/// greenlet runs (see the monitor's probe handler). Async-signal-safe.
pub(crate) fn running_core() -> *const Core {
    ACTIVE.try_with(|a| a.get().core).unwrap_or(std::ptr::null())
}

struct PreviousActions {
    segv: libc::sigaction,
    bus: libc::sigaction,
}

// SAFETY: `sigaction` is plain data (integers, a signal mask and a function pointer);
// it is written once, before any handler can read it, and never changed afterwards.
unsafe impl Sync for PreviousActions {}
// SAFETY: as above; the value holds no thread-bound resources.
unsafe impl Send for PreviousActions {}

static PREVIOUS: OnceLock<PreviousActions> = OnceLock::new();

/// Installs the overflow handler for `SIGSEGV` and `SIGBUS`, once per process.
pub(crate) fn install_handler() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Found before the handler exists, so that the handler only reads it.
        let _ = OWN_CODE.set(OwnCode::find());
        // SAFETY: sigaction with a zeroed struct is the documented way to set a handler;
        // the handler only reads thread-locals and statics, writes the interrupted
        // context, and calls async-signal-safe functions.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_fault as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            let mut segv: libc::sigaction = std::mem::zeroed();
            let mut bus: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGSEGV, std::ptr::null(), &mut segv);
            libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut bus);
            let _ = PREVIOUS.set(PreviousActions { segv, bus });
            libc::sigaction(libc::SIGSEGV, &action, std::ptr::null_mut());
            libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut());
        }
    });
}

extern "C" fn on_fault(signum: c_int, info: *mut siginfo_t, context: *mut c_void) {
    // SAFETY: the kernel passes a valid `siginfo_t` to an SA_SIGINFO handler.
    let address = unsafe { (*info).si_addr() } as usize;
    let active = ACTIVE.try_with(|a| a.get()).unwrap_or(NO_STACK);
    // A frame larger than the probe step may fault a little below the guard page.
    let slack = 64 * 1024;
    // The page size was read (and cached) when the hub mapped its first stack.
    let guard_high = active.guard_low + crate::stack::page_size();
    if active.guard_low != 0
        && address >= active.guard_low.saturating_sub(slack)
        && address < guard_high
    {
        // SAFETY: the fault hit the published guard page, so by the invariant of
        // `ActiveStack` its greenlet is the one running, and its `Core` is alive.
        let core = unsafe { &*active.core };
        // SAFETY: `context` is the `ucontext_t` the kernel passed to this SA_SIGINFO
        // handler, for a fault on the guard page of `core`'s running greenlet.
        match unsafe { return_to_hub(core, context) } {
            Ok(()) => return, // the greenlet now runs `end_overflowed`
            Err(why) => report_overflow(core, &[why]),
        }
    }
    // SAFETY: forwards the same arguments the kernel gave us to the previous handler.
    unsafe { forward(signum, info, context) };
}

/// Why an overflow cannot end just its greenlet: the end of "It cannot be ended alone,
/// because ...".
mod why {
    pub(super) const AGAIN: &[u8] =
        b"it overflowed again, in a link callback run after its first overflow ended it";
    pub(super) const PINNED: &[u8] = b"a block_on on its stack was polling a pinned future, \
        whose memory must not be reused before it is dropped";
    pub(super) const UNWINDING: &[u8] = b"an unwind (a panic or a kill) was in progress on \
        this thread, and cutting it short would leave the thread's panic count wrong";
    pub(super) const OUTSIDE: &[u8] = b"its stack pointer was not inside its stack";
    pub(super) const FOREIGN: &[u8] = b"the fault came from code outside this program's own \
        (a C library), which may hold a lock that would then never be released";
    pub(super) const PLATFORM: &[u8] = b"ending one greenlet is not supported on this platform";
}

/// Makes the overflowing greenlet's coroutine run [`end_overflowed`] on its reset stack
/// once the signal handler returns, or says why that would not be safe.
///
/// Async-signal-safe: reads the `Core` and the context, takes the `Core`'s trap handler,
/// and writes the coroutine's stack top (corosensei's trampoline) and the context.
///
/// # Safety
///
/// `context` is the `ucontext_t` the kernel passed to the running SA_SIGINFO handler, for
/// a fault on the guard page of `core`'s greenlet, which is running on this thread.
unsafe fn return_to_hub(core: &Core, context: *mut c_void) -> Result<(), &'static [u8]> {
    // Taken: the coroutine is ended once this way, never twice.
    let Some(trap) = core.trap.take() else { return Err(why::AGAIN) };
    if core.pinned.get() > 0 {
        return Err(why::PINNED);
    }
    if std::thread::panicking() {
        return Err(why::UNWINDING);
    }
    // SAFETY: `context` is the kernel's `ucontext_t` (our caller's contract).
    let Some((pc, sp)) = (unsafe { registers::pc_and_sp(context) }) else {
        return Err(why::PLATFORM);
    };
    if !trap.stack_ptr_in_bounds(sp) {
        return Err(why::OUTSIDE);
    }
    if !OWN_CODE.get().is_some_and(|code| code.contains(pc)) {
        return Err(why::FOREIGN);
    }
    // corosensei's contract for `setup_trap_handler` holds:
    // * `trap` comes from this greenlet's coroutine (set in `create_coroutine`), which is
    //   alive: it is the one running (the fault hit its guard page), and its hub holds it.
    // * the interrupted stack pointer lies within that coroutine's stack (checked just
    //   above with `stack_ptr_in_bounds`), and `registers::redirect` below updates every
    //   register of the returned `TrapHandlerRegs` in the interrupted context.
    // * "the coroutine must not write to memory outside itself": arbitrary greenlet code
    //   does, so what the abandoned frames left outside their stack stays as it was
    //   (leaked allocations, held guards); that is the documented price of ending the
    //   greenlet. The cases where it would break the process for good are refused above
    //   (C code that may hold locks, an unwind in progress, a pinned future being polled),
    //   and after the return `Hub::end_overflowed` refuses a hub whose own bookkeeping was
    //   left borrowed. The hub keeps no pointer into a running greenlet's frames.
    // SAFETY: by the points above, the contract of `setup_trap_handler` holds.
    let regs = unsafe { trap.setup_trap_handler(end_overflowed) };
    // SAFETY: `context` is the kernel's `ucontext_t`; the registers come from
    // `setup_trap_handler` for the coroutine whose execution it describes.
    unsafe { registers::redirect(context, regs) };
    Ok(())
}

/// What the overflowed greenlet's coroutine runs when the signal handler returns: on its
/// own stack, reset, in normal (not signal) context.
fn end_overflowed() {
    with_hub(|hub| hub.end_overflowed());
}

/// The interrupted context's registers, per platform.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub(crate) mod registers {
    use corosensei::trap::TrapHandlerRegs;
    use libc::c_void;

    /// The interrupted instruction and stack pointers.
    ///
    /// # Safety
    ///
    /// `context` is the `ucontext_t` the kernel passed to a running SA_SIGINFO handler.
    pub(crate) unsafe fn pc_and_sp(context: *mut c_void) -> Option<(usize, usize)> {
        // SAFETY: by the caller's contract, `context` points to a valid `ucontext_t`.
        let gregs = unsafe { &(*context.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
        let pc = gregs[libc::REG_RIP as usize] as usize;
        let sp = gregs[libc::REG_RSP as usize] as usize;
        Some((pc, sp))
    }

    /// Writes every register of `regs` into the interrupted context.
    ///
    /// # Safety
    ///
    /// As for [`pc_and_sp`]; `regs` comes from `setup_trap_handler` for the interrupted
    /// coroutine.
    pub(super) unsafe fn redirect(context: *mut c_void, regs: TrapHandlerRegs) {
        // SAFETY: by the caller's contract, `context` points to a valid `ucontext_t`
        // that nothing else accesses while the handler runs.
        let gregs = unsafe { &mut (*context.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
        let TrapHandlerRegs { rip, rsp, rbp, rdi, rsi } = regs;
        gregs[libc::REG_RIP as usize] = rip as i64;
        gregs[libc::REG_RSP as usize] = rsp as i64;
        gregs[libc::REG_RBP as usize] = rbp as i64;
        gregs[libc::REG_RDI as usize] = rdi as i64;
        gregs[libc::REG_RSI as usize] = rsi as i64;
    }
}

/// The interrupted context's registers, per platform.
#[cfg(all(target_os = "linux", target_arch = "aarch64"))]
pub(crate) mod registers {
    use corosensei::trap::TrapHandlerRegs;
    use libc::c_void;

    /// The interrupted instruction and stack pointers.
    ///
    /// # Safety
    ///
    /// `context` is the `ucontext_t` the kernel passed to a running SA_SIGINFO handler.
    pub(crate) unsafe fn pc_and_sp(context: *mut c_void) -> Option<(usize, usize)> {
        // SAFETY: by the caller's contract, `context` points to a valid `ucontext_t`.
        let mcontext = unsafe { &(*context.cast::<libc::ucontext_t>()).uc_mcontext };
        Some((mcontext.pc as usize, mcontext.sp as usize))
    }

    /// Writes every register of `regs` into the interrupted context.
    ///
    /// # Safety
    ///
    /// As for [`pc_and_sp`]; `regs` comes from `setup_trap_handler` for the interrupted
    /// coroutine.
    pub(super) unsafe fn redirect(context: *mut c_void, regs: TrapHandlerRegs) {
        // SAFETY: by the caller's contract, `context` points to a valid `ucontext_t`
        // that nothing else accesses while the handler runs.
        let mcontext = unsafe { &mut (*context.cast::<libc::ucontext_t>()).uc_mcontext };
        let TrapHandlerRegs { pc, sp, x0, x1, x29, lr } = regs;
        mcontext.pc = pc;
        mcontext.sp = sp;
        mcontext.regs[0] = x0;
        mcontext.regs[1] = x1;
        mcontext.regs[29] = x29;
        mcontext.regs[30] = lr;
    }
}

/// Other platforms: an overflow aborts, as it always did.
#[cfg(not(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64"))))]
pub(crate) mod registers {
    use corosensei::trap::TrapHandlerRegs;
    use libc::c_void;

    /// Not known here: the overflow is not ended.
    ///
    /// # Safety
    ///
    /// None needed; `unsafe` for the same signature on every platform.
    pub(crate) unsafe fn pc_and_sp(_context: *mut c_void) -> Option<(usize, usize)> {
        None
    }

    /// Never called: [`pc_and_sp`] refuses first.
    ///
    /// # Safety
    ///
    /// None needed; `unsafe` for the same signature on every platform.
    pub(super) unsafe fn redirect(_context: *mut c_void, _regs: TrapHandlerRegs) {
        unreachable!("pc_and_sp refuses on this platform")
    }
}

/// The executable segments of the loaded object (the program, or a shared library) that
/// holds this crate's code, and so the Rust code built with it. A fault elsewhere is in a
/// C library or the vDSO, whose frames may hold locks the handler cannot know about.
struct OwnCode {
    ranges: [(usize, usize); 8],
    len: usize,
}

static OWN_CODE: OnceLock<OwnCode> = OnceLock::new();

impl OwnCode {
    fn contains(&self, pc: usize) -> bool {
        self.ranges[..self.len].iter().any(|&(low, high)| (low..high).contains(&pc))
    }

    /// Looks the object up with `dl_iterate_phdr`; empty (every overflow aborts) if it
    /// cannot be found.
    fn find() -> OwnCode {
        let mut found = OwnCode { ranges: [(0, 0); 8], len: 0 };
        // SAFETY: the callback only reads the program headers the loader hands it and
        // writes `found`, which outlives the call.
        unsafe { libc::dl_iterate_phdr(Some(visit), (&raw mut found).cast()) };
        found
    }
}

/// `dl_iterate_phdr`'s callback: keeps the executable segments of the object that
/// contains [`on_fault`], and stops there.
///
/// # Safety
///
/// `info` is a valid `dl_phdr_info` (the loader's) and `data` points to an `OwnCode`.
unsafe extern "C" fn visit(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut c_void,
) -> c_int {
    let probe = on_fault as *const () as usize;
    // SAFETY: the loader passes a valid `dl_phdr_info` for the duration of the call.
    let info = unsafe { &*info };
    let headers: &[_] = if info.dlpi_phdr.is_null() {
        &[]
    } else {
        // SAFETY: `dlpi_phdr` points to `dlpi_phnum` program headers of a loaded object.
        unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) }
    };
    let mut code = OwnCode { ranges: [(0, 0); 8], len: 0 };
    for header in headers {
        if header.p_type == libc::PT_LOAD && header.p_flags & libc::PF_X != 0 && code.len < 8 {
            let low = (info.dlpi_addr as usize).wrapping_add(header.p_vaddr as usize);
            code.ranges[code.len] = (low, low.wrapping_add(header.p_memsz as usize));
            code.len += 1;
        }
    }
    if !code.contains(probe) {
        return 0; // not this object: go on
    }
    // SAFETY: `data` is the `OwnCode` that `OwnCode::find` passed in.
    unsafe { *data.cast::<OwnCode>() = code };
    1
}

/// Writes what happened, which knob to turn and why the greenlet could not be ended
/// alone, then aborts. Runs in the signal handler (and after `end_overflowed` refuses):
/// no allocation, no locks, only `write(2)` and `abort(3)`.
fn report_overflow(core: &Core, why: &[&[u8]]) -> ! {
    let mut message = Message::default();
    message.put(b"\nverdant: greenlet ");
    match core.name() {
        Some(name) => {
            message.put(b"'");
            message.put(name.as_bytes());
            message.put(b"' (id ");
            message.put_number(core.id);
            message.put(b")");
        }
        None => message.put_number(core.id),
    }
    message.put(b" overflowed its stack of ");
    message.put_number((core.stack_size() / 1024) as u64);
    message.put(b" KiB (stack overflow: it hit its guard page). Give it a bigger stack with ");
    message.put(b"Builder::stack_size, or raise HubConfig::stack_size. It cannot be ended ");
    message.put(b"alone, because ");
    for part in why {
        message.put(part);
    }
    message.put(b". Aborting.\n");
    // SAFETY: write(2) and abort(3) are async-signal-safe; the buffer is valid.
    unsafe {
        libc::write(2, message.bytes.as_ptr().cast(), message.len);
        libc::abort();
    }
}

/// Called by `Hub::end_overflowed` when the abandoned frames left `what` (a part of the
/// hub's own state) borrowed: the hub cannot go on, so the process aborts as before.
pub(crate) fn abort_after_return(core: &Core, what: &str) -> ! {
    report_overflow(
        core,
        &[b"the hub's own bookkeeping (", what.as_bytes(), b") was in use when it overflowed"],
    )
}

/// A fixed buffer for the report (a signal handler must not allocate); text beyond its
/// end is cut.
struct Message {
    bytes: [u8; 1024],
    len: usize,
}

impl Default for Message {
    fn default() -> Message {
        Message { bytes: [0; 1024], len: 0 }
    }
}

impl Message {
    fn put(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.bytes.len() - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    fn put_number(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.put(&digits[start..]);
    }
}

/// Passes a fault that is not a greenlet overflow to whoever handled it before us.
///
/// # Safety
///
/// Must be called from the signal handler with the arguments the kernel passed to it.
unsafe fn forward(signum: c_int, info: *mut siginfo_t, context: *mut c_void) {
    let previous = PREVIOUS.get().map(|p| if signum == libc::SIGBUS { p.bus } else { p.segv });
    let Some(previous) = previous else { return restore_default(signum) };
    let handler = previous.sa_sigaction;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // Reinstall the old disposition and return: the faulting instruction runs again
        // and the kernel applies the default action (a core dump).
        // SAFETY: `previous` is a disposition the kernel gave us.
        unsafe { libc::sigaction(signum, &previous, std::ptr::null_mut()) };
        return;
    }
    // SAFETY: our caller's contract; `previous` installed a real handler.
    unsafe { call_handler(&previous, signum, info, context) };
}

/// Calls the handler `action` installs (neither `SIG_DFL` nor `SIG_IGN`), the way the
/// kernel would have: with one argument, or three under `SA_SIGINFO`. Also used by the
/// monitor's `SIGURG` probe to chain to a handler installed before it.
///
/// # Safety
///
/// Must be called from a signal handler with the arguments the kernel passed to it, and
/// `action` must be a disposition the kernel reported with a handler address.
pub(crate) unsafe fn call_handler(
    action: &libc::sigaction,
    signum: c_int,
    info: *mut siginfo_t,
    context: *mut c_void,
) {
    let handler = action.sa_sigaction;
    if action.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: with SA_SIGINFO the stored address is a three-argument handler.
        let f: extern "C" fn(c_int, *mut siginfo_t, *mut c_void) =
            unsafe { std::mem::transmute(handler) };
        f(signum, info, context);
    } else {
        // SAFETY: without SA_SIGINFO the stored address is a one-argument handler.
        let f: extern "C" fn(c_int) = unsafe { std::mem::transmute(handler) };
        f(signum);
    }
}

fn restore_default(signum: c_int) {
    // SAFETY: resetting a signal to SIG_DFL is always valid.
    unsafe { libc::signal(signum, libc::SIG_DFL) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_crates_code_is_found_and_libc_is_not() {
        install_handler();
        let code = OWN_CODE.get().expect("found at install");
        assert!(code.len > 0, "the object holding the hub's code was found");
        assert!(code.contains(on_fault as *const () as usize));
        fn here() {}
        assert!(code.contains(here as fn() as usize), "the tests' code is in it too");
        assert!(!code.contains(libc::malloc as *const () as usize), "libc is not");
    }
}
