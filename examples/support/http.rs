//! The HTTP/1.1 hello-world logic shared by `http_hello` (verdant) and `tokio_http_hello`
//! (the comparison): parse requests with `httparse`, answer each with "Hello, world!".
//! Connection handling is the servers' own; this part is plain synchronous code.

/// What parsing the start of a buffer found.
pub enum Parsed {
    /// A whole request of `len` bytes (headers and body); `keep_alive` says whether the
    /// connection may serve another one.
    Request { len: usize, keep_alive: bool },
    /// More bytes are needed.
    Partial,
    /// Not HTTP: answer 400 and close.
    Invalid,
}

/// The largest request head accepted.
pub const MAX_HEAD: usize = 16 * 1024;

const HELLO: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, world!";
const HELLO_CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: close\r\n\r\nHello, world!";
pub const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Parses the request at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Parsed::Partial,
        _ => return Parsed::Invalid,
    };
    let header = |name: &str| {
        request.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
    };
    let body_len = match header("content-length")
        .map(|v| std::str::from_utf8(v).ok()?.trim().parse::<usize>().ok())
    {
        None => 0,
        Some(Some(len)) => len,
        Some(None) => return Parsed::Invalid,
    };
    if header("transfer-encoding").is_some() {
        return Parsed::Invalid; // chunked request bodies are out of scope for hello-world
    }
    if buf.len() < head_len + body_len {
        return Parsed::Partial;
    }
    let connection = header("connection").map(|v| v.to_ascii_lowercase());
    let keep_alive = match request.version {
        Some(1) => connection.as_deref() != Some(b"close"),
        _ => connection.as_deref() == Some(b"keep-alive"), // HTTP/1.0
    };
    Parsed::Request { len: head_len + body_len, keep_alive }
}

/// Answers every complete request at the start of `input` (pipelining included), appends
/// the responses to `output`, and returns how many bytes were consumed and whether the
/// connection stays open. `None`: the input was not HTTP (`BAD_REQUEST` was appended).
pub fn answer(input: &[u8], output: &mut Vec<u8>) -> Option<(usize, bool)> {
    let mut consumed = 0;
    loop {
        match parse(&input[consumed..]) {
            Parsed::Request { len, keep_alive } => {
                consumed += len;
                output.extend_from_slice(if keep_alive { HELLO } else { HELLO_CLOSE });
                if !keep_alive {
                    return Some((consumed, false));
                }
            }
            Parsed::Partial => return Some((consumed, true)),
            Parsed::Invalid => {
                output.extend_from_slice(BAD_REQUEST);
                return None;
            }
        }
    }
}
