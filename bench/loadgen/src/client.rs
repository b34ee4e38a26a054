//! A lean HTTP/1.1 keep-alive client: one request in flight per connection,
//! the request written as prepared bytes, the response read just far enough
//! to know its status and where it ends (`Content-Length`, or no body for
//! 1xx/204/304). Enough for beacon endpoints; chunked answers are refused
//! as errors rather than half-supported.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why a request got no status.
#[derive(Debug)]
pub enum Failure {
    Io,
    /// The server closed the connection before answering.
    Closed,
    /// An answer this client does not read (malformed, chunked, too big).
    Unparsed(&'static str),
}

impl Failure {
    pub fn label(&self) -> &'static str {
        match self {
            Failure::Io => "io",
            Failure::Closed => "closed",
            Failure::Unparsed(what) => what,
        }
    }
}

pub struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
}

const MAX_HEAD: usize = 16 << 10;

impl Connection {
    pub async fn open(addr: SocketAddr) -> std::io::Result<Connection> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends one request and reads its answer. Returns the status and
    /// whether the server will keep the connection open.
    pub async fn request(&mut self, request: &[u8]) -> Result<(u16, bool), Failure> {
        self.stream
            .write_all(request)
            .await
            .map_err(|_| Failure::Io)?;
        self.buf.clear();
        let head_end = loop {
            if let Some(end) = find_head_end(&self.buf) {
                break end;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(Failure::Unparsed("head_too_big"));
            }
            if self.read_more().await? == 0 {
                return Err(Failure::Closed);
            }
        };
        let head = parse_head(&self.buf[..head_end])?;
        if head.chunked {
            return Err(Failure::Unparsed("chunked"));
        }
        let body = if matches!(head.status, 100..=199 | 204 | 304) {
            0
        } else {
            head.content_length.unwrap_or(0)
        };
        while self.buf.len() < head_end + body {
            if self.read_more().await? == 0 {
                return Err(Failure::Closed);
            }
        }
        Ok((head.status, !head.close))
    }

    async fn read_more(&mut self) -> Result<usize, Failure> {
        let start = self.buf.len();
        self.buf.resize(start + 4096, 0);
        let n = self
            .stream
            .read(&mut self.buf[start..])
            .await
            .map_err(|_| Failure::Io);
        self.buf.truncate(start + *n.as_ref().unwrap_or(&0));
        n
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

#[derive(Debug, PartialEq, Eq)]
struct Head {
    status: u16,
    content_length: Option<usize>,
    chunked: bool,
    close: bool,
}

fn parse_head(head: &[u8]) -> Result<Head, Failure> {
    let text = std::str::from_utf8(head).map_err(|_| Failure::Unparsed("bad_head"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or(Failure::Unparsed("bad_status_line"))?;
    let mut parsed = Head {
        status,
        content_length: None,
        chunked: false,
        close: status_line.starts_with("HTTP/1.0"),
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            parsed.content_length = Some(
                value
                    .parse()
                    .map_err(|_| Failure::Unparsed("bad_content_length"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            parsed.chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            parsed.close = value.eq_ignore_ascii_case("close");
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_status_length_and_connection() {
        let head =
            b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\naccess-control-allow-origin: *\r\n\r\n";
        assert_eq!(
            parse_head(head).unwrap(),
            Head {
                status: 202,
                content_length: Some(0),
                chunked: false,
                close: false
            }
        );
        let head = b"HTTP/1.1 204 No Content\r\nServer: nginx\r\nConnection: close\r\n\r\n";
        let h = parse_head(head).unwrap();
        assert_eq!((h.status, h.close), (204, true));
        assert!(matches!(
            parse_head(b"garbage\r\n\r\n"),
            Err(Failure::Unparsed("bad_status_line"))
        ));
        assert_eq!(find_head_end(b"HTTP/1.1 200 OK\r\n\r\nbody"), Some(19));
    }
}
