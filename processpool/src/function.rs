//! Naming a function so that a worker process running the same binary can call it.
//!
//! A function pointer is meaningless in another process: address-space randomization loads
//! a position-independent executable at a different base each time. But the whole
//! executable moves as one block, so the distance from any of its functions to a fixed
//! *anchor* function is the same in every process running that binary. A [`Call`] is two
//! such distances: the task function, and a *trampoline* monomorphized for its argument and
//! result types, which decodes the argument, calls the function, catches a panic and
//! encodes the result.
//!
//! That is only sound when both processes run the very same file: the handshake compares
//! the workers' [`BinaryIdentity`] with the parent's before sending any call.

use std::cell::RefCell;
use std::collections::HashSet;
use std::io;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{TaskError, WorkerPanic};

/// What every offset is measured from. Its body is distinct so that the linker cannot fold
/// it together with another function.
#[inline(never)]
fn anchor() -> u64 {
    std::hint::black_box(0x7665_7264_616e_7401)
}

/// A second function, whose offset from the anchor is part of the binary's identity: a
/// different build moves it.
#[inline(never)]
fn probe() -> u64 {
    std::hint::black_box(0x7665_7264_616e_7402)
}

fn anchor_address() -> usize {
    anchor as fn() -> u64 as usize
}

/// The distance of a code address from the anchor.
pub(crate) type Offset = i64;

fn offset_of(address: usize) -> Offset {
    address.wrapping_sub(anchor_address()) as Offset
}

fn address_of(offset: Offset) -> usize {
    anchor_address().wrapping_add(offset as usize)
}

/// Why a call failed inside the worker; sent back to the parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum FailureKind {
    /// The function panicked.
    Panicked = 1,
    /// The argument bytes could not be decoded into the argument type.
    DecodeArgument = 2,
    /// The result could not be encoded.
    EncodeResult = 3,
}

impl FailureKind {
    pub(crate) fn from_byte(byte: u8) -> Option<FailureKind> {
        match byte {
            1 => Some(FailureKind::Panicked),
            2 => Some(FailureKind::DecodeArgument),
            3 => Some(FailureKind::EncodeResult),
            _ => None,
        }
    }

    /// The parent-side error for a failure of this kind with `message`.
    pub(crate) fn into_error(self, message: String) -> TaskError {
        match self {
            FailureKind::Panicked => TaskError::Panicked(decode_panic(&message)),
            FailureKind::DecodeArgument => TaskError::Serialization(format!(
                "the worker could not decode the argument: {message}"
            )),
            FailureKind::EncodeResult => TaskError::Serialization(format!(
                "the worker could not encode the result: {message}"
            )),
        }
    }
}

/// A failed call: what kind of failure, and its message.
pub(crate) type Failure = (FailureKind, String);

/// Decodes an argument, calls the function at the given address, encodes the result.
type Trampoline = fn(usize, &[u8]) -> Result<Vec<u8>, Failure>;

/// A function and its trampoline, as offsets from the anchor: what a task frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Call {
    pub(crate) trampoline: Offset,
    pub(crate) function: Offset,
}

impl Call {
    /// `f` applied to one argument.
    pub(crate) fn single<A, R>(f: fn(A) -> R) -> Result<Call, TaskError>
    where
        A: DeserializeOwned,
        R: Serialize,
    {
        Call::new(f as usize, run_single::<A, R>)
    }

    /// `f` mapped over a chunk of arguments (a `Vec<A>` in, a `Vec<R>` out).
    pub(crate) fn chunk<A, R>(f: fn(A) -> R) -> Result<Call, TaskError>
    where
        A: DeserializeOwned,
        R: Serialize,
    {
        Call::new(f as usize, run_chunk::<A, R>)
    }

    fn new(function: usize, trampoline: Trampoline) -> Result<Call, TaskError> {
        check_in_executable(function)?;
        Ok(Call { trampoline: offset_of(trampoline as usize), function: offset_of(function) })
    }

    /// Runs the call on `input`, in a worker.
    ///
    /// # Safety
    ///
    /// The call must have been made by [`Call::single`] or [`Call::chunk`] in a process
    /// running the same executable file as this one (the handshake checks it), so both
    /// offsets lead to the functions they named there.
    pub(crate) unsafe fn invoke(self, input: &[u8]) -> Result<Vec<u8>, Failure> {
        // SAFETY: by this function's contract, the offset names a `Trampoline` of this
        // executable; function pointers and `usize` have the same size.
        let trampoline: Trampoline =
            unsafe { std::mem::transmute::<usize, Trampoline>(address_of(self.trampoline)) };
        trampoline(address_of(self.function), input)
    }
}

fn run_single<A: DeserializeOwned, R: Serialize>(
    function: usize,
    input: &[u8],
) -> Result<Vec<u8>, Failure> {
    // SAFETY: `function` is the `fn(A) -> R` this trampoline was instantiated for (they
    // travel together in one `Call`).
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(function) };
    let argument: A = decode_argument(input)?;
    let result = verdant_hub::catch_panic(|| f(argument)).map_err(panicked)?;
    encode_result(&result)
}

fn run_chunk<A: DeserializeOwned, R: Serialize>(
    function: usize,
    input: &[u8],
) -> Result<Vec<u8>, Failure> {
    // SAFETY: as in `run_single`.
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(function) };
    let arguments: Vec<A> = decode_argument(input)?;
    let results: Vec<R> =
        verdant_hub::catch_panic(|| arguments.into_iter().map(f).collect()).map_err(panicked)?;
    encode_result(&results)
}

fn decode_argument<A: DeserializeOwned>(input: &[u8]) -> Result<A, Failure> {
    postcard::from_bytes(input).map_err(|e| {
        (FailureKind::DecodeArgument, format!("(a {}) {e}", std::any::type_name::<A>()))
    })
}

fn encode_result<R: Serialize>(result: &R) -> Result<Vec<u8>, Failure> {
    postcard::to_allocvec(result)
        .map_err(|e| (FailureKind::EncodeResult, crate::probe::failure_message(result, e)))
}

fn panicked(payload: Box<dyn std::any::Any + Send>) -> Failure {
    let message = verdant_hub::panic_message(&*payload);
    let site = PANIC_SITE.with(|site| site.borrow_mut().take());
    let (location, backtrace) = site.map_or((None, None), |(l, b)| (Some(l), b));
    (FailureKind::Panicked, encode_panic(&message, location.as_deref(), backtrace.as_deref()))
}

thread_local! {
    /// Where the last panic on this thread happened (`file:line:column`) and its
    /// backtrace, if one was captured: set by the hook of [`record_panic_sites`].
    static PANIC_SITE: RefCell<Option<(String, Option<String>)>> = const { RefCell::new(None) };
}

/// In a worker: every panic records where it happened, and a backtrace when
/// `RUST_BACKTRACE` asks for one, for the failure that goes back to the pool (which
/// reports it, so the worker prints nothing).
pub(crate) fn record_panic_sites() {
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(ToString::to_string);
        let backtrace = std::backtrace::Backtrace::capture();
        let captured = backtrace.status() == std::backtrace::BacktraceStatus::Captured;
        let backtrace = captured.then(|| backtrace.to_string());
        PANIC_SITE.with(|site| *site.borrow_mut() = location.map(|l| (l, backtrace)));
    }));
}

/// A panic as the text of a `Failed` frame: location, backtrace and message, separated
/// by NULs (the message last, so that a NUL in it stays there).
fn encode_panic(message: &str, location: Option<&str>, backtrace: Option<&str>) -> String {
    format!("{}\0{}\0{message}", location.unwrap_or(""), backtrace.unwrap_or(""))
}

/// Reads what [`encode_panic`] wrote (text without the separators is a bare message).
pub(crate) fn decode_panic(text: &str) -> WorkerPanic {
    let mut parts = text.splitn(3, '\0');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(location), Some(backtrace), Some(message)) => {
            let given = |s: &str| (!s.is_empty()).then(|| s.to_string());
            WorkerPanic::new(message.to_string(), given(location), given(backtrace))
        }
        _ => WorkerPanic::from(text),
    }
}

/// Refuses a function that is not code of the main executable (say, of a shared library):
/// its offset from the anchor would mean nothing in the worker.
fn check_in_executable(function: usize) -> Result<(), TaskError> {
    thread_local! {
        static CHECKED: RefCell<HashSet<usize>> = RefCell::new(HashSet::new());
    }
    if CHECKED.with(|c| c.borrow().contains(&function)) {
        return Ok(());
    }
    match (object_base(function), object_base(anchor_address())) {
        (Some(base), Some(anchor_base)) if base != anchor_base => {
            Err(TaskError::Serialization(format!(
                "the function at {function:#x} is not in the main executable (it is in a shared \
                 object loaded at {base:#x}): a worker process cannot find it"
            )))
        }
        _ => {
            CHECKED.with(|c| c.borrow_mut().insert(function));
            Ok(())
        }
    }
}

/// The load address of the object (executable or shared library) containing `address`.
fn object_base(address: usize) -> Option<usize> {
    // SAFETY: an all-zero Dl_info is valid; dladdr only fills it in.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr reads no memory at `address`; it looks it up in the loader's tables.
    let found = unsafe { libc::dladdr(address as *const libc::c_void, &mut info) };
    (found != 0).then_some(info.dli_fbase as usize)
}

/// What makes two processes "the same binary": the executable file (device, inode, size,
/// modification time) and where the linker put a probe function relative to the anchor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BinaryIdentity([u64; 6]);

/// Set in a worker's environment by tests only, to make it look like another binary.
pub const TEST_IDENTITY_SALT_ENV: &str = "VERDANT_PROCESSPOOL_TEST_IDENTITY_SALT";

impl BinaryIdentity {
    /// Encoded length.
    pub(crate) const LEN: usize = 48;

    /// This process's identity.
    pub(crate) fn of_this_process() -> io::Result<BinaryIdentity> {
        use std::os::unix::fs::MetadataExt;
        let exe = std::fs::metadata("/proc/self/exe")?;
        Ok(BinaryIdentity([
            exe.dev(),
            exe.ino(),
            exe.size(),
            exe.mtime() as u64,
            exe.mtime_nsec() as u64,
            offset_of(probe as fn() -> u64 as usize) as u64,
        ]))
    }

    /// This worker's identity, as it reports it in the handshake.
    pub(crate) fn of_this_worker() -> io::Result<BinaryIdentity> {
        let mut identity = BinaryIdentity::of_this_process()?;
        if let Some(salt) = std::env::var_os(TEST_IDENTITY_SALT_ENV) {
            identity.0[1] ^= salt.len() as u64 | 1 << 63;
        }
        Ok(identity)
    }

    pub(crate) fn to_bytes(self) -> [u8; Self::LEN] {
        let mut bytes = [0; Self::LEN];
        for (chunk, value) in bytes.chunks_exact_mut(8).zip(self.0) {
            chunk.copy_from_slice(&value.to_le_bytes());
        }
        bytes
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<BinaryIdentity> {
        if bytes.len() != Self::LEN {
            return None;
        }
        let mut values = [0; 6];
        for (value, chunk) in values.iter_mut().zip(bytes.chunks_exact(8)) {
            *value = u64::from_le_bytes(chunk.try_into().expect("8-byte chunk"));
        }
        Some(BinaryIdentity(values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn double(x: u32) -> u32 {
        x * 2
    }

    fn boom(_: u32) -> u32 {
        panic!("boom")
    }

    #[test]
    fn a_call_round_trips_through_offsets_in_this_process() {
        let call = Call::single(double).unwrap();
        let input = postcard::to_allocvec(&21u32).unwrap();
        // SAFETY: made above, in this very process.
        let output = unsafe { call.invoke(&input) }.unwrap();
        assert_eq!(postcard::from_bytes::<u32>(&output).unwrap(), 42);
    }

    #[test]
    fn a_chunk_call_maps_and_a_panic_is_a_failure() {
        let call = Call::chunk(double).unwrap();
        let input = postcard::to_allocvec(&[1u32, 2, 3][..]).unwrap();
        // SAFETY: made above, in this very process.
        let output = unsafe { call.invoke(&input) }.unwrap();
        assert_eq!(postcard::from_bytes::<Vec<u32>>(&output).unwrap(), [2, 4, 6]);
        let input = postcard::to_allocvec(&7u32).unwrap();
        // SAFETY: as above.
        let failure = unsafe { Call::single(boom).unwrap().invoke(&input) }.unwrap_err();
        assert_eq!(failure.0, FailureKind::Panicked);
        assert_eq!(decode_panic(&failure.1).message(), "boom");
        // SAFETY: as above.
        let failure = unsafe { Call::single(double).unwrap().invoke(&[]) }.unwrap_err();
        assert_eq!(failure.0, FailureKind::DecodeArgument);
    }

    #[test]
    fn a_panic_site_travels_with_its_message() {
        let text = encode_panic("a\0b", Some("src/x.rs:1:2"), None);
        let panic = decode_panic(&text);
        assert_eq!((panic.message(), panic.location()), ("a\0b", Some("src/x.rs:1:2")));
        assert_eq!(panic.backtrace(), None);
        assert_eq!(decode_panic("bare").message(), "bare");
    }

    #[test]
    fn identities_encode_and_compare() {
        let me = BinaryIdentity::of_this_process().unwrap();
        assert_eq!(BinaryIdentity::from_bytes(&me.to_bytes()), Some(me));
        let mut other = me;
        other.0[5] += 16; // a build where the probe moved
        assert_ne!(me, other);
        assert_eq!(BinaryIdentity::from_bytes(&[0; 47]), None);
    }
}
