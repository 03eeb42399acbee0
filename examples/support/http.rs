//! The HTTP/1.1 hello-world logic shared by `http_hello` (verdant) and `tokio_http_hello`
//! (the comparison): parse requests with `httparse`, answer each with "Hello, world!".
//! Connection handling is the servers' own; this part is plain synchronous code.
//!
//! What it refuses, judged from the head alone (so a refused body is never buffered);
//! every refusal is an error response after which the server closes the connection:
//!
//! | request | answer |
//! |---|---|
//! | not an HTTP/1.0 or 1.1 request line and header fields | 400 Bad Request |
//! | HTTP/1.1 without exactly one `Host` (RFC 9112 §3.2) | 400 Bad Request |
//! | a `Content-Length` that is not all digits, or several that differ (RFC 9112 §6.3) | 400 Bad Request |
//! | `Transfer-Encoding` in HTTP/1.0 (RFC 9112 §6.1) | 400 Bad Request |
//! | `Transfer-Encoding` in HTTP/1.1: no transfer coding is implemented (RFC 9112 §6.1) | 501 Not Implemented |
//! | a head over [`MAX_HEAD`] bytes or [`MAX_HEADERS`] fields | 431 Request Header Fields Too Large |
//! | a body over [`MAX_BODY`] bytes (`Content-Length`, checked arithmetic) | 413 Content Too Large |
//!
//! Several `Content-Length` fields with the same value count as one (RFC 9110 §8.6 allows
//! it); a comma-separated list in one field is refused (it is not all digits).

/// The largest request head accepted (request line and header fields).
pub const MAX_HEAD: usize = 16 * 1024;

/// The most header fields accepted.
pub const MAX_HEADERS: usize = 32;

/// The largest request body accepted. Hello-world ignores bodies; a server that reads
/// them sizes this to what it can hold.
pub const MAX_BODY: usize = 64 * 1024;

/// What parsing the start of a buffer found.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole request of `len` bytes (head and body); `keep_alive` says whether the
    /// connection may serve another one.
    Request { len: usize, keep_alive: bool },
    /// More bytes are needed (never more than `MAX_HEAD + MAX_BODY` in all).
    Partial,
    /// Answer with this error and close.
    Refused(Refusal),
}

/// An error response, after which the connection is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    BadRequest,
    ContentTooLarge,
    HeadersTooLarge,
    NotImplemented,
    /// The request did not arrive in time (the server's own timeout: `http_hello` only).
    #[allow(dead_code, reason = "tokio_http_hello has no request timeout")]
    RequestTimeout,
}

impl Refusal {
    /// The whole response, `Connection: close` included.
    pub fn response(self) -> &'static [u8] {
        match self {
            Refusal::BadRequest => {
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            }
            Refusal::ContentTooLarge => {
                b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            }
            Refusal::HeadersTooLarge => {
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n\
                  Content-Length: 0\r\nConnection: close\r\n\r\n"
            }
            Refusal::NotImplemented => {
                b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            }
            Refusal::RequestTimeout => {
                b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            }
        }
    }
}

const HELLO: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, world!";
const HELLO_CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: close\r\n\r\nHello, world!";

/// Parses the request at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Parsed::Partial,
        Ok(_) | Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Refused(Refusal::HeadersTooLarge);
        }
        Err(_) => return Parsed::Refused(Refusal::BadRequest),
    };
    let http_1_1 = request.version == Some(1);
    let head = match Head::of(request.headers) {
        Ok(head) => head,
        Err(refusal) => return Parsed::Refused(refusal),
    };
    if let Some(refusal) = head.refusal(http_1_1) {
        return Parsed::Refused(refusal);
    }
    let body_len = head.content_length.unwrap_or(0) as usize; // at most MAX_BODY here
    if buf.len() - head_len < body_len {
        return Parsed::Partial;
    }
    let keep_alive = if http_1_1 { !head.close } else { head.keep_alive };
    Parsed::Request { len: head_len + body_len, keep_alive }
}

/// What the header fields say about framing and the connection.
#[derive(Default)]
struct Head {
    hosts: usize,
    content_length: Option<u64>,
    transfer_encoding: bool,
    /// `Connection: close` / `keep-alive` (as a token of any `Connection` field).
    close: bool,
    keep_alive: bool,
}

impl Head {
    /// Reads the header fields in one pass; fails on a bad or conflicting
    /// `Content-Length`.
    fn of(headers: &[httparse::Header<'_>]) -> Result<Head, Refusal> {
        let mut head = Head::default();
        for header in headers {
            let name = header.name;
            if name.eq_ignore_ascii_case("host") {
                head.hosts += 1;
            } else if name.eq_ignore_ascii_case("content-length") {
                let length = content_length(header.value)?;
                if head.content_length.is_some_and(|seen| seen != length) {
                    return Err(Refusal::BadRequest); // differing lengths: smuggling?
                }
                head.content_length = Some(length);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                head.transfer_encoding = true;
            } else if name.eq_ignore_ascii_case("connection") {
                for token in header.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                    head.close |= token.eq_ignore_ascii_case(b"close");
                    head.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
        }
        Ok(head)
    }

    /// Why the request must be refused, if it must.
    fn refusal(&self, http_1_1: bool) -> Option<Refusal> {
        if self.transfer_encoding {
            // RFC 9112 §6.1: an HTTP/1.0 message with it has faulty framing.
            return Some(if http_1_1 { Refusal::NotImplemented } else { Refusal::BadRequest });
        }
        if http_1_1 && self.hosts != 1 {
            return Some(Refusal::BadRequest);
        }
        if self.content_length.is_some_and(|len| len > MAX_BODY as u64) {
            return Some(Refusal::ContentTooLarge);
        }
        None
    }
}

/// A `Content-Length` value: one or more digits (optional whitespace around), with
/// checked arithmetic. A number too large for `u64` is certainly too large a body.
fn content_length(value: &[u8]) -> Result<u64, Refusal> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(Refusal::BadRequest);
    }
    digits
        .iter()
        .try_fold(0u64, |n, &d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
        .ok_or(Refusal::ContentTooLarge)
}

/// What the server does once it has written the output of [`answer`].
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Go on reading: the first `consumed` bytes of the input were answered.
    Read { consumed: usize },
    /// Close: the client asked to, or spoke HTTP/1.0.
    Close,
    /// Close after an error response; the client may still be sending.
    CloseAfterError,
}

/// Answers every complete request at the start of `input` (pipelining included) and
/// appends the responses to `output`. No allocation beyond `output`'s growth.
pub fn answer(input: &[u8], output: &mut Vec<u8>) -> Next {
    let mut consumed = 0;
    loop {
        match parse(&input[consumed..]) {
            Parsed::Request { len, keep_alive } => {
                consumed += len;
                output.extend_from_slice(if keep_alive { HELLO } else { HELLO_CLOSE });
                if !keep_alive {
                    return Next::Close;
                }
            }
            Parsed::Partial => return Next::Read { consumed },
            Parsed::Refused(refusal) => {
                output.extend_from_slice(refusal.response());
                return Next::CloseAfterError;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET: &str = "GET / HTTP/1.1\r\nHost: x\r\n";

    fn parse_str(request: &str) -> Parsed {
        parse(request.as_bytes())
    }

    fn refused(request: &str) -> Refusal {
        match parse_str(request) {
            Parsed::Refused(refusal) => refusal,
            other => panic!("{request:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn a_whole_request_with_a_body_is_one_request() {
        let post = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(parse_str(post), Parsed::Request { len: post.len(), keep_alive: true });
        assert_eq!(parse_str(&post[..post.len() - 1]), Parsed::Partial);
        assert_eq!(parse_str(&post[..10]), Parsed::Partial);
    }

    #[test]
    fn a_content_length_that_overflows_is_too_large_not_a_second_request() {
        let smuggled = format!(
            "{GET}Content-Length: 18446744073709551615\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n"
        );
        assert_eq!(refused(&smuggled), Refusal::ContentTooLarge);
        let beyond_u64 = format!("{GET}Content-Length: 99999999999999999999999\r\n\r\n");
        assert_eq!(refused(&beyond_u64), Refusal::ContentTooLarge);
        let mut output = Vec::new();
        assert_eq!(answer(smuggled.as_bytes(), &mut output), Next::CloseAfterError);
        assert!(output.starts_with(b"HTTP/1.1 413 "), "{}", String::from_utf8_lossy(&output));
        assert_eq!(output.windows(3).filter(|w| w == b"200").count(), 0, "nothing served");
    }

    #[test]
    fn content_length_must_be_one_all_digit_value() {
        for bad in ["-1", "+5", "5 5", "0x10", "5,5", "", "５"] {
            let request = format!("{GET}Content-Length: {bad}\r\n\r\n");
            assert_eq!(refused(&request), Refusal::BadRequest, "{bad:?}");
        }
        let differing = format!("{GET}Content-Length: 1\r\nContent-Length: 2\r\n\r\nab");
        assert_eq!(refused(&differing), Refusal::BadRequest);
        let same = format!("{GET}Content-Length: 2\r\ncontent-length: 2\r\n\r\nab");
        assert_eq!(parse_str(&same), Parsed::Request { len: same.len(), keep_alive: true });
    }

    #[test]
    fn a_body_over_the_limit_is_refused_from_the_head_alone() {
        let head = format!("{GET}Content-Length: {}\r\n\r\n", MAX_BODY + 1);
        assert_eq!(refused(&head), Refusal::ContentTooLarge); // no body byte needed
        let terabyte = format!("{GET}Content-Length: 1000000000000\r\n\r\n");
        assert_eq!(refused(&terabyte), Refusal::ContentTooLarge);
        let at_limit = format!("{GET}Content-Length: {MAX_BODY}\r\n\r\n");
        assert_eq!(parse_str(&at_limit), Parsed::Partial, "the limit itself is allowed");
    }

    #[test]
    fn transfer_encoding_is_not_implemented() {
        let chunked = format!("{GET}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
        assert_eq!(refused(&chunked), Refusal::NotImplemented);
        let both = format!("{GET}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(refused(&both), Refusal::NotImplemented);
        let http_1_0 = "GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(refused(http_1_0), Refusal::BadRequest);
    }

    #[test]
    fn heads_over_the_limits_are_431() {
        let long = format!("{GET}X-Long: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(refused(&long), Refusal::HeadersTooLarge, "complete but too long");
        assert_eq!(refused(&long[..MAX_HEAD]), Refusal::HeadersTooLarge, "partial at the limit");
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(refused(&format!("{GET}{many}\r\n")), Refusal::HeadersTooLarge);
    }

    #[test]
    fn bad_request_lines_and_fields_are_400() {
        for bad in [
            "\x00\x01 not http\r\n\r\n",
            "GET / HTTP/2.0\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",                       // no Host
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", // two
        ] {
            assert_eq!(refused(bad), Refusal::BadRequest, "{bad:?}");
        }
        assert!(matches!(parse_str("GET / HTTP/1.0\r\n\r\n"), Parsed::Request { .. }));
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection_tokens() {
        let keep = |request: &str| match parse_str(request) {
            Parsed::Request { keep_alive, .. } => keep_alive,
            other => panic!("{other:?}"),
        };
        assert!(keep(&format!("{GET}\r\n")));
        assert!(!keep(&format!("{GET}Connection: Upgrade, Close\r\n\r\n")));
        assert!(!keep("GET / HTTP/1.0\r\n\r\n"));
        assert!(keep("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    }

    #[test]
    fn pipelined_requests_are_answered_until_one_asks_to_close() {
        let two = format!("{GET}\r\n{GET}Connection: close\r\n\r\n{GET}\r\n");
        let mut output = Vec::new();
        assert_eq!(answer(two.as_bytes(), &mut output), Next::Close);
        assert_eq!(output.windows(13).filter(|w| w == b"Hello, world!").count(), 2);
        output.clear();
        let partial = format!("{GET}\r\nGET / HT");
        let next = answer(partial.as_bytes(), &mut output);
        assert_eq!(next, Next::Read { consumed: GET.len() + 2 });
    }
}
