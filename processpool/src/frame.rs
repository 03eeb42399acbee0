//! The wire format between the pool and a worker: length-prefixed frames over a Unix
//! socket, the same in both directions.
//!
//! ```text
//!   length: u32 LE  (of everything after it: 9 + payload)
//!   kind:   u8      (Kind)
//!   id:     u64 LE  (the task id; 0 for control frames)
//!   payload
//! ```
//!
//! Payloads: `Task` = trampoline offset (i64 LE), function offset (i64 LE), argument bytes;
//! `Init` = 0, or 1 followed by a `Task` payload for the initializer; `Hello` = the worker's
//! binary identity; `Done` = result bytes; `Failed` and `InitFailed` = a failure kind byte
//! and a UTF-8 message. Arguments and results are postcard-encoded by the trampolines.

use std::fmt;
use std::io;

use crate::function::{Call, Failure, FailureKind};

/// The largest frame either side accepts: anything longer means the stream is corrupt.
pub(crate) const MAX_FRAME: usize = 1 << 30;

const HEADER: usize = 4 + 1 + 8;

/// What a frame says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    /// Parent → worker, once, after `Hello`: the initializer to run, if any.
    Init = 1,
    /// Parent → worker: run a call.
    Task = 2,
    /// Parent → worker: finish and exit.
    Quit = 3,
    /// Worker → parent, first: its binary identity.
    Hello = 10,
    /// Worker → parent: the initializer ran; tasks may come.
    Ready = 11,
    /// Worker → parent: the initializer failed; the worker exits.
    InitFailed = 12,
    /// Worker → parent: a task's result.
    Done = 13,
    /// Worker → parent: a task failed.
    Failed = 14,
}

impl Kind {
    fn from_byte(byte: u8) -> Option<Kind> {
        Some(match byte {
            1 => Kind::Init,
            2 => Kind::Task,
            3 => Kind::Quit,
            10 => Kind::Hello,
            11 => Kind::Ready,
            12 => Kind::InitFailed,
            13 => Kind::Done,
            14 => Kind::Failed,
            _ => return None,
        })
    }
}

/// The stream cannot be parsed any more.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FrameError {
    TooLong(usize),
    TooShort(usize),
    UnknownKind(u8),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLong(n) => write!(f, "a frame of {n} bytes (the limit is {MAX_FRAME})"),
            FrameError::TooShort(n) => write!(f, "a frame of {n} bytes, shorter than its header"),
            FrameError::UnknownKind(k) => write!(f, "a frame of unknown kind {k}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Appends one frame to `out`; the payload is the concatenation of `parts`.
pub(crate) fn encode(out: &mut Vec<u8>, kind: Kind, id: u64, parts: &[&[u8]]) {
    let payload: usize = parts.iter().map(|p| p.len()).sum();
    let length = u32::try_from(1 + 8 + payload).expect("frames are shorter than 4 GiB");
    out.reserve(HEADER + payload);
    out.extend_from_slice(&length.to_le_bytes());
    out.push(kind as u8);
    out.extend_from_slice(&id.to_le_bytes());
    for part in parts {
        out.extend_from_slice(part);
    }
}

/// A `Task` frame for `call` on `argument`.
pub(crate) fn task(id: u64, call: Call, argument: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode(&mut out, Kind::Task, id, &[&call_bytes(call), argument]);
    out
}

/// How a call starts a `Task` payload: the two offsets.
pub(crate) fn call_bytes(call: Call) -> [u8; 16] {
    let mut bytes = [0; 16];
    bytes[..8].copy_from_slice(&call.trampoline.to_le_bytes());
    bytes[8..].copy_from_slice(&call.function.to_le_bytes());
    bytes
}

/// Splits a `Task` payload into the call and the argument bytes.
pub(crate) fn split_task(payload: &[u8]) -> Option<(Call, &[u8])> {
    let offset = |range: std::ops::Range<usize>| {
        Some(i64::from_le_bytes(payload.get(range)?.try_into().ok()?))
    };
    let call = Call { trampoline: offset(0..8)?, function: offset(8..16)? };
    Some((call, &payload[16..]))
}

/// A `Failed`/`InitFailed` payload.
pub(crate) fn failure_payload(failure: &Failure) -> Vec<u8> {
    let mut payload = vec![failure.0 as u8];
    payload.extend_from_slice(failure.1.as_bytes());
    payload
}

/// Reads a `Failed`/`InitFailed` payload (lossy about bad UTF-8 or an unknown kind).
pub(crate) fn parse_failure(payload: &[u8]) -> Failure {
    let kind = payload.first().and_then(|&b| FailureKind::from_byte(b));
    let message = String::from_utf8_lossy(payload.get(1..).unwrap_or_default()).into_owned();
    (kind.unwrap_or(FailureKind::Panicked), message)
}

/// One parsed frame; its payload is `FrameReader::payload(&frame)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    pub(crate) kind: Kind,
    pub(crate) id: u64,
    payload: std::ops::Range<usize>,
}

/// Accumulates bytes from a stream and cuts them into frames, with no copy per frame.
#[derive(Debug)]
pub(crate) struct FrameReader {
    /// Always fully initialized; the bytes received and not yet parsed are `start..end`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl FrameReader {
    pub(crate) fn new() -> FrameReader {
        FrameReader { buf: vec![0; 64 * 1024], start: 0, end: 0 }
    }

    /// The next complete frame, if the buffer holds one.
    pub(crate) fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        let rest = &self.buf[self.start..self.end];
        let Some(length) = rest.get(..4) else { return Ok(None) };
        let length = u32::from_le_bytes(length.try_into().expect("4 bytes")) as usize;
        if length > MAX_FRAME {
            return Err(FrameError::TooLong(length));
        }
        if length < 9 {
            return Err(FrameError::TooShort(length));
        }
        if rest.len() < 4 + length {
            return Ok(None);
        }
        let kind = Kind::from_byte(rest[4]).ok_or(FrameError::UnknownKind(rest[4]))?;
        let id = u64::from_le_bytes(rest[5..13].try_into().expect("8 bytes"));
        let payload = self.start + HEADER..self.start + 4 + length;
        self.start += 4 + length;
        Ok(Some(Frame { kind, id, payload }))
    }

    /// How many bytes of the next frame are buffered, and its whole length once its
    /// length prefix has come (after `next_frame` returned `None`: an incomplete frame).
    pub(crate) fn partial(&self) -> (usize, Option<usize>) {
        let rest = &self.buf[self.start..self.end];
        let length = rest.get(..4).map(|l| u32::from_le_bytes(l.try_into().expect("4 bytes")));
        (rest.len(), length.map(|length| 4 + length as usize))
    }

    /// The payload of a frame returned by `next_frame` since the last `fill`.
    pub(crate) fn payload(&self, frame: &Frame) -> &[u8] {
        &self.buf[frame.payload.clone()]
    }

    /// Reads more bytes with `read` (which fills the slice it is given, like
    /// `Read::read`). Returns how many came; 0 means end of stream.
    pub(crate) fn fill(
        &mut self,
        read: impl FnOnce(&mut [u8]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0); // a frame longer than the buffer
        }
        let n = read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// Reads until a whole frame is buffered and returns it; `None` at a clean end of
    /// stream (between frames).
    pub(crate) fn read_frame(
        &mut self,
        mut read: impl FnMut(&mut [u8]) -> io::Result<usize>,
    ) -> io::Result<Option<Frame>> {
        loop {
            if let Some(frame) = self.next_frame().map_err(io::Error::other)? {
                return Ok(Some(frame));
            }
            let pending = self.end - self.start;
            if self.fill(&mut read)? == 0 {
                return match pending {
                    0 => Ok(None),
                    _ => Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the stream ended in the middle of a frame",
                    )),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader_over(bytes: &[u8]) -> FrameReader {
        let mut reader = FrameReader::new();
        reader
            .fill(|buf| {
                buf[..bytes.len()].copy_from_slice(bytes);
                Ok(bytes.len())
            })
            .unwrap();
        reader
    }

    #[test]
    fn frames_round_trip_and_split_anywhere() {
        let call = Call { trampoline: -12, function: 345 };
        let mut stream = task(7, call, b"args");
        encode(&mut stream, Kind::Quit, 0, &[]);
        // Fed one byte at a time, the reader still finds both frames.
        let mut reader = FrameReader::new();
        let mut fed = stream.iter();
        let first = reader
            .read_frame(|buf| Ok(fed.next().map(|&b| buf[0] = b).map_or(0, |()| 1)))
            .unwrap()
            .unwrap();
        assert_eq!((first.kind, first.id), (Kind::Task, 7));
        assert_eq!(split_task(reader.payload(&first)), Some((call, &b"args"[..])));
        let second = reader
            .read_frame(|buf| Ok(fed.next().map(|&b| buf[0] = b).map_or(0, |()| 1)))
            .unwrap()
            .unwrap();
        assert_eq!((second.kind, second.id), (Kind::Quit, 0));
        assert!(reader.read_frame(|_| Ok(0)).unwrap().is_none(), "a clean end");
    }

    #[test]
    fn corrupt_streams_are_errors_not_hangs() {
        let mut huge = Vec::new();
        huge.extend_from_slice(&(MAX_FRAME as u32 + 1).to_le_bytes());
        assert_eq!(reader_over(&huge).next_frame(), Err(FrameError::TooLong(MAX_FRAME + 1)));
        assert_eq!(reader_over(&[3, 0, 0, 0, 1]).next_frame(), Err(FrameError::TooShort(3)));
        let mut unknown = Vec::new();
        encode(&mut unknown, Kind::Done, 1, &[]);
        unknown[4] = 99;
        assert_eq!(reader_over(&unknown).next_frame(), Err(FrameError::UnknownKind(99)));
        let mut cut = Vec::new();
        encode(&mut cut, Kind::Done, 1, &[b"partial"]);
        let mut reader = reader_over(&cut[..cut.len() - 2]);
        assert_eq!(reader.next_frame(), Ok(None));
        assert_eq!(reader.partial(), (cut.len() - 2, Some(cut.len())));
        let err = reader.read_frame(|_| Ok(0)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn failures_round_trip() {
        let failure = (FailureKind::EncodeResult, "no".to_string());
        assert_eq!(parse_failure(&failure_payload(&failure)), failure);
        assert_eq!(parse_failure(&[]).0, FailureKind::Panicked);
        assert_eq!(split_task(&[1, 2, 3]), None);
    }
}
