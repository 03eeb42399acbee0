//! The parent's ends of a child's standard streams: non-blocking pipes registered with the
//! hub, whose reads and writes park only the calling greenlet.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use verdant_hub::io::Green;

/// The parent's end of one of a child's standard streams; which one is `S`
/// ([`Stdin`], [`Stdout`] or [`Stderr`]), and with it whether it is read or written. Use the
/// aliases [`ChildStdin`], [`ChildStdout`] and [`ChildStderr`].
pub struct ChildPipe<S: Stream> {
    pipe: Green<File>,
    stream: PhantomData<S>,
}

/// Which standard stream a [`ChildPipe`] is; sealed: the three below are all there are.
pub trait Stream: sealed::Sealed {
    /// The stream's name, for `Debug`.
    const NAME: &'static str;
    /// std's end of this stream, which a [`ChildPipe`] is made from.
    type Std: Into<OwnedFd>;
}

/// The child's standard input ([`ChildStdin`]).
#[derive(Debug)]
pub enum Stdin {}
/// The child's standard output ([`ChildStdout`]).
#[derive(Debug)]
pub enum Stdout {}
/// The child's standard error ([`ChildStderr`]).
#[derive(Debug)]
pub enum Stderr {}

impl Stream for Stdin {
    const NAME: &'static str = "ChildStdin";
    type Std = std::process::ChildStdin;
}

impl Stream for Stdout {
    const NAME: &'static str = "ChildStdout";
    type Std = std::process::ChildStdout;
}

impl Stream for Stderr {
    const NAME: &'static str = "ChildStderr";
    type Std = std::process::ChildStderr;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Stdin {}
    impl Sealed for super::Stdout {}
    impl Sealed for super::Stderr {}
}

/// The child's standard input: writes park the calling greenlet while the pipe is full.
/// Drop it to close the pipe, so the child sees end of file.
pub type ChildStdin = ChildPipe<Stdin>;
/// The child's standard output: reads park the calling greenlet until data comes; `Ok(0)`
/// once the child closed it (usually by exiting).
pub type ChildStdout = ChildPipe<Stdout>;
/// The child's standard error, read like [`ChildStdout`].
pub type ChildStderr = ChildPipe<Stderr>;

impl<S: Stream> ChildPipe<S> {
    pub(super) fn new(end: S::Std) -> io::Result<ChildPipe<S>> {
        let pipe = Green::new(File::from(end.into()))?;
        Ok(ChildPipe { pipe, stream: PhantomData })
    }
}

impl<S: Stream> AsFd for ChildPipe<S> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.pipe.get_ref().as_fd()
    }
}

impl<S: Stream> AsRawFd for ChildPipe<S> {
    fn as_raw_fd(&self) -> RawFd {
        self.pipe.as_raw_fd()
    }
}

impl<S: Stream> fmt::Debug for ChildPipe<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(S::NAME).field("fd", &self.as_raw_fd()).finish()
    }
}

impl Write for ChildStdin {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pipe.write_with(|mut pipe| pipe.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The streams the parent reads: [`Stdout`] and [`Stderr`].
pub trait Readable: Stream {}
impl Readable for Stdout {}
impl Readable for Stderr {}

impl<S: Readable> Read for ChildPipe<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.pipe.read_buf(buf, |mut pipe, buf| pipe.read(buf))
    }
}
