//! The name-resolution hooks: `getaddrinfo` and `gethostbyname`. glibc's resolver blocks
//! inside libc, on sockets and files opened by libc's own internal calls, which no hook
//! can reach; so, as gevent's default resolver does, a greenlet's look-up runs on a small
//! pool of resolver threads while only that greenlet waits.
//!
//! Numeric hosts (`"127.0.0.1"`, `"::1"`, `AI_NUMERICHOST`) and calls outside a greenlet
//! pass straight through. Everything a resolver thread reads is copied first (the caller's
//! strings and hints may live on a greenlet stack that another greenlet uses while this one
//! waits, in shared-stack mode); the result is handed over only once the greenlet runs
//! again. A kill or timeout during the wait fails the call — `getaddrinfo` with
//! `EAI_SYSTEM` and `errno` `ECANCELED`, `gethostbyname` with `h_errno` `TRY_AGAIN` — and
//! the look-up's result, when it comes, is freed by the thread.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::ffi::{CStr, CString, c_char, c_int};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use libc::{addrinfo, hostent};
use verdant_hub::{GreenletRef, RemoteWaker, park};

use crate::gate::{self, Hooked};
use crate::real;

/// At most this many resolver threads (gevent's thread pool default is 10).
const MAX_THREADS: usize = 10;

type Job = Box<dyn FnOnce() + Send>;

/// The resolver threads' queue.
struct Resolver {
    queue: Mutex<Queue>,
    ready: Condvar,
}

struct Queue {
    jobs: VecDeque<Job>,
    threads: usize,
    idle: usize,
}

fn resolver() -> &'static Resolver {
    static RESOLVER: OnceLock<Resolver> = OnceLock::new();
    RESOLVER.get_or_init(|| Resolver {
        queue: Mutex::new(Queue { jobs: VecDeque::new(), threads: 0, idle: 0 }),
        ready: Condvar::new(),
    })
}

/// Runs `job` on a resolver thread, starting one if all are busy (up to the limit).
fn submit(job: Job) {
    let resolver = resolver();
    let mut queue = resolver.queue.lock().unwrap_or_else(|e| e.into_inner());
    queue.jobs.push_back(job);
    if queue.idle == 0 && queue.threads < MAX_THREADS {
        let started =
            std::thread::Builder::new().name("verdant-dns".into()).spawn(move || work(resolver));
        if started.is_ok() {
            queue.threads += 1;
        }
    }
    drop(queue);
    resolver.ready.notify_one();
}

fn work(resolver: &Resolver) {
    let mut queue = resolver.queue.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some(job) = queue.jobs.pop_front() {
            drop(queue);
            job();
            queue = resolver.queue.lock().unwrap_or_else(|e| e.into_inner());
            continue;
        }
        queue.idle += 1;
        queue = resolver.ready.wait(queue).unwrap_or_else(|e| e.into_inner());
        queue.idle -= 1;
    }
}

/// Where a resolver thread leaves a result for the greenlet waiting on it.
struct Handoff<T> {
    state: Mutex<(Option<T>, Option<RemoteWaker>)>,
}

/// Runs `look_up` on a resolver thread and parks the calling greenlet (quietly) until it
/// is done. `Err(())`: a kill or timeout came first; the result, when it comes, is
/// dropped on the resolver thread (so `T`'s `Drop` frees what it holds).
fn off_thread<T: Send + 'static>(
    hooked: &Hooked,
    look_up: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ()> {
    let handoff = Arc::new(Handoff { state: Mutex::new((None, None)) });
    let theirs = handoff.clone();
    submit(Box::new(move || {
        let value = look_up();
        let waker = {
            let mut state = theirs.state.lock().unwrap_or_else(|e| e.into_inner());
            state.0 = Some(value);
            state.1.take()
        };
        if let Some(waker) = waker {
            let _ = waker.wake();
        }
    }));
    loop {
        {
            let mut state = handoff.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(value) = state.0.take() {
                return Ok(value);
            }
            // A new waker for each wait (a waker works for one wait only).
            state.1 = Some(RemoteWaker::new(park::waker()));
        }
        let interrupted =
            hooked.parked(|| park::park_until_quietly(&"a name look-up", None)).is_err();
        if interrupted {
            handoff.state.lock().unwrap_or_else(|e| e.into_inner()).1 = None;
            return Err(());
        }
    }
}

/// An `addrinfo` list from the real `getaddrinfo`, freed unless handed to the caller.
struct AddrInfo(*mut addrinfo);

// SAFETY: the list is plain heap memory owned by this value alone; glibc's freeaddrinfo
// may run on any thread.
unsafe impl Send for AddrInfo {}

impl Drop for AddrInfo {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: a list from getaddrinfo, not handed out, freed once.
            unsafe { real::freeaddrinfo(self.0) };
        }
    }
}

/// Whether `node` is a numeric address, which `getaddrinfo` resolves without blocking.
fn is_numeric(node: &CStr) -> bool {
    node.to_str().is_ok_and(|s| s.parse::<std::net::IpAddr>().is_ok())
}

/// `getaddrinfo(3)`: in a greenlet, for a host name, resolved on a resolver thread while
/// only the greenlet waits.
///
/// # Safety
///
/// As for libc's `getaddrinfo`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getaddrinfo(
    node: *const c_char,
    service: *const c_char,
    hints: *const addrinfo,
    res: *mut *mut addrinfo,
) -> c_int {
    // SAFETY: the caller's hints, if any.
    let hint = unsafe { hints.as_ref() };
    let numeric_only = hint.is_some_and(|h| h.ai_flags & libc::AI_NUMERICHOST != 0);
    // SAFETY: the caller's node string, if any.
    let node_name = (!node.is_null()).then(|| unsafe { CStr::from_ptr(node) });
    let cooperative = !res.is_null()
        && node_name.is_some_and(|name| !is_numeric(name))
        && !numeric_only
        && gate::may_suspend();
    if !cooperative {
        // SAFETY: the caller's own call.
        return unsafe { real::getaddrinfo(node, service, hints, res) };
    }
    let hooked = Hooked::enter();
    // SAFETY: the caller's service string and hints, if any.
    let look_up = unsafe { addrinfo_look_up(node_name, service, hint) };
    match off_thread(&hooked, look_up) {
        Ok((0, _, mut list)) => {
            // SAFETY: the caller's result pointer.
            unsafe { *res = std::mem::replace(&mut list.0, std::ptr::null_mut()) };
            hooked.ok(0)
        }
        Ok((code, errno, _)) => hooked.fail(errno, code),
        Err(()) => hooked.fail(libc::ECANCELED, libc::EAI_SYSTEM),
    }
}

/// A `getaddrinfo` look-up to run on a resolver thread, on copies of the caller's
/// arguments; it returns the result code, the `errno` it left and the list.
///
/// # Safety
///
/// `service` is null or a C string.
unsafe fn addrinfo_look_up(
    node: Option<&CStr>,
    service: *const c_char,
    hints: Option<&addrinfo>,
) -> impl FnOnce() -> (c_int, c_int, AddrInfo) + Send + 'static {
    let node = node.map(CStr::to_owned);
    // SAFETY: the caller's promise.
    let service = (!service.is_null()).then(|| unsafe { CStr::from_ptr(service) }.to_owned());
    let hints = hints.map(|h| (h.ai_flags, h.ai_family, h.ai_socktype, h.ai_protocol));
    move || {
        let ptr = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
        // SAFETY: addrinfo is plain data; all-zero is a valid (empty) hints value.
        let mut h: addrinfo = unsafe { std::mem::zeroed() };
        if let Some((flags, family, socktype, protocol)) = hints {
            (h.ai_flags, h.ai_family, h.ai_socktype, h.ai_protocol) =
                (flags, family, socktype, protocol);
        }
        let hints_ptr = if hints.is_some() { &raw const h } else { std::ptr::null() };
        let mut list = std::ptr::null_mut();
        // SAFETY: owned strings and hints, a local result pointer.
        let code = unsafe { real::getaddrinfo(ptr(&node), ptr(&service), hints_ptr, &mut list) };
        (code, gate::errno(), AddrInfo(list))
    }
}

unsafe extern "C" {
    fn __h_errno_location() -> *mut c_int;
}

/// `<netdb.h>`'s "temporary failure, try again" `h_errno`.
const TRY_AGAIN: c_int = 2;

/// A `hostent` and everything it points to, in memory owned here.
struct HostBlob {
    entry: hostent,
    _name: CString,
    _aliases: Vec<CString>,
    _alias_ptrs: Vec<*mut c_char>,
    _addrs: Vec<Vec<u8>>,
    _addr_ptrs: Vec<*mut c_char>,
}

// SAFETY: every pointer inside points into the blob's own heap data, moved with it.
unsafe impl Send for HostBlob {}

impl HostBlob {
    /// A deep copy of `h`.
    ///
    /// # Safety
    ///
    /// `h` is a valid hostent with null-terminated lists.
    unsafe fn copy(h: &hostent) -> Box<HostBlob> {
        // SAFETY: by the caller's promise, `h_name` is a C string and both lists are
        // null-terminated arrays of valid pointers (names; addresses of `h_length` bytes).
        let (name, alias_list, addr_list) = unsafe {
            (
                CStr::from_ptr(h.h_name).to_owned(),
                null_terminated(h.h_aliases),
                null_terminated(h.h_addr_list),
            )
        };
        // SAFETY: as above.
        let aliases: Vec<CString> =
            alias_list.into_iter().map(|a| unsafe { CStr::from_ptr(a) }.to_owned()).collect();
        let len = h.h_length.max(0) as usize;
        let addrs: Vec<Vec<u8>> = addr_list
            .into_iter()
            // SAFETY: as above.
            .map(|a| unsafe { std::slice::from_raw_parts(a.cast::<u8>(), len) }.to_vec())
            .collect();
        let mut blob = Box::new(HostBlob {
            entry: *h,
            _name: name,
            _aliases: aliases,
            _alias_ptrs: Vec::new(),
            _addrs: addrs,
            _addr_ptrs: Vec::new(),
        });
        let blob_ref = &mut *blob;
        blob_ref._alias_ptrs = blob_ref._aliases.iter().map(|a| a.as_ptr().cast_mut()).collect();
        blob_ref._alias_ptrs.push(std::ptr::null_mut());
        blob_ref._addr_ptrs = blob_ref._addrs.iter_mut().map(|a| a.as_mut_ptr().cast()).collect();
        blob_ref._addr_ptrs.push(std::ptr::null_mut());
        blob_ref.entry.h_name = blob_ref._name.as_ptr().cast_mut();
        blob_ref.entry.h_aliases = blob_ref._alias_ptrs.as_mut_ptr();
        blob_ref.entry.h_addr_list = blob_ref._addr_ptrs.as_mut_ptr();
        blob
    }
}

/// The entries of a null-terminated array of pointers (none if the array is null).
///
/// # Safety
///
/// `list` is null or a valid null-terminated array.
unsafe fn null_terminated(mut list: *mut *mut c_char) -> Vec<*mut c_char> {
    let mut items = Vec::new();
    // SAFETY: the caller's promise: every entry up to the null one is readable.
    while !list.is_null() && !unsafe { *list }.is_null() {
        // SAFETY: as above.
        unsafe {
            items.push(*list);
            list = list.add(1);
        }
    }
    items
}

thread_local! {
    /// The last `gethostbyname` result of each greenlet of this thread: glibc's result is
    /// valid until the caller's next call, and here "the caller" is a greenlet (a static
    /// buffer shared by all of them would be overwritten by another's call while the first
    /// still reads it). Entries of dead greenlets are dropped at the next call.
    static HOSTS: RefCell<Vec<(GreenletRef, Box<HostBlob>)>> = const { RefCell::new(Vec::new()) };
}

/// `gethostbyname(3)`: in a greenlet, resolved on a resolver thread (with
/// `gethostbyname_r`) while only the greenlet waits. The result stays valid until the same
/// greenlet's next call.
///
/// # Safety
///
/// As for libc's `gethostbyname`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gethostbyname(name: *const c_char) -> *mut hostent {
    // SAFETY: the caller's name.
    let cooperative =
        !name.is_null() && !is_numeric(unsafe { CStr::from_ptr(name) }) && gate::may_suspend();
    if !cooperative {
        // SAFETY: the caller's own call.
        return unsafe { real::gethostbyname(name) };
    }
    let hooked = Hooked::enter();
    // SAFETY: the caller's name.
    let name = unsafe { CStr::from_ptr(name) }.to_owned();
    let h_errno = match off_thread(&hooked, move || look_up_host(&name)) {
        Ok(Ok(blob)) => return hooked.ok(keep_for_caller(blob)),
        Ok(Err(h_errno)) => h_errno,
        Err(()) => TRY_AGAIN,
    };
    // SAFETY: glibc's thread-local h_errno.
    unsafe { *__h_errno_location() = h_errno };
    hooked.ok(std::ptr::null_mut())
}

/// `gethostbyname_r` for `name` (on a resolver thread): a copy of the entry, or `h_errno`.
fn look_up_host(name: &CStr) -> Result<Box<HostBlob>, c_int> {
    let mut buf = vec![0 as c_char; 1024];
    loop {
        // SAFETY: hostent is plain data.
        let mut entry: hostent = unsafe { std::mem::zeroed() };
        let mut result = std::ptr::null_mut();
        let mut h_errno = 0;
        // SAFETY: a C string, a buffer of `buf.len()` bytes, locals for the results.
        let r = unsafe {
            real::gethostbyname_r(
                name.as_ptr(),
                &mut entry,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
                &mut h_errno,
            )
        };
        if r == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if result.is_null() {
            return Err(h_errno);
        }
        // SAFETY: gethostbyname_r filled `entry` with pointers into `buf`.
        return Ok(unsafe { HostBlob::copy(&entry) });
    }
}

/// Keeps `blob` as the calling greenlet's last result (dropping the one before, and those
/// of greenlets that ended); returns its entry.
fn keep_for_caller(blob: Box<HostBlob>) -> *mut hostent {
    let me = verdant_hub::current();
    HOSTS.with(|hosts| {
        let mut hosts = hosts.borrow_mut();
        hosts.retain(|(owner, _)| !owner.ready() && owner.id() != me.id());
        hosts.push((me, blob));
        let last = hosts.last_mut().expect("just pushed");
        &raw mut last.1.entry
    })
}
