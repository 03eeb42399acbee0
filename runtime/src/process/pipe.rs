//! The parent's ends of a child's standard streams: non-blocking pipes registered with the
//! hub, whose reads and writes park only the calling greenlet.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use verdant_hub::io::Green;

/// Registers the parent's end of a pipe with this thread's hub.
fn green(end: impl Into<OwnedFd>) -> io::Result<Green<File>> {
    Green::new(File::from(end.into()))
}

macro_rules! child_pipe {
    ($(#[$doc:meta])* $name:ident, $std:ty) => {
        $(#[$doc])*
        pub struct $name(Green<File>);

        impl $name {
            pub(super) fn new(end: $std) -> io::Result<$name> {
                green(end).map($name)
            }
        }

        impl AsFd for $name {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.0.get_ref().as_fd()
            }
        }

        impl AsRawFd for $name {
            fn as_raw_fd(&self) -> RawFd {
                self.0.as_raw_fd()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name)).field("fd", &self.as_raw_fd()).finish()
            }
        }
    };
}

child_pipe!(
    /// The child's standard input: writes park the calling greenlet while the pipe is
    /// full. Drop it to close the pipe, so the child sees end of file.
    ChildStdin,
    std::process::ChildStdin
);
child_pipe!(
    /// The child's standard output: reads park the calling greenlet until data comes;
    /// `Ok(0)` once the child closed it (usually by exiting).
    ChildStdout,
    std::process::ChildStdout
);
child_pipe!(
    /// The child's standard error, read like [`ChildStdout`].
    ChildStderr,
    std::process::ChildStderr
);

impl Write for ChildStdin {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_with(|mut pipe| pipe.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for ChildStdout {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read_buf(buf, |mut pipe, buf| pipe.read(buf))
    }
}

impl Read for ChildStderr {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read_buf(buf, |mut pipe, buf| pipe.read(buf))
    }
}
