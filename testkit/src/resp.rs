//! Just enough of RESP, Redis' protocol, for the kit to send administrative commands over a raw
//! TCP connection and read whole replies (nested arrays included), without a Redis client.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::process::within_io_timeout;

/// A RESP reply, as much of it as the kit needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Resp {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<String>),
    Array(Vec<Resp>),
}

impl Resp {
    pub(crate) fn text(&self) -> Option<String> {
        match self {
            Self::Simple(s) | Self::Bulk(Some(s)) => Some(s.clone()),
            Self::Integer(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// A flat array of field/value pairs as pairs of texts.
    pub(crate) fn pairs(&self) -> Vec<(String, String)> {
        match self {
            Self::Array(items) => items
                .chunks_exact(2)
                .filter_map(|pair| Some((pair[0].text()?, pair[1].text()?)))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Parses one reply from the start of `buf`: the reply and the bytes it took, `None` if `buf`
/// does not hold a whole reply yet.
pub(crate) fn parse(buf: &[u8]) -> Option<(Resp, usize)> {
    let line_end = buf.windows(2).position(|w| w == b"\r\n")?;
    let line = String::from_utf8_lossy(&buf[1..line_end]).into_owned();
    let after = line_end + 2;
    match buf.first()? {
        b'+' => Some((Resp::Simple(line), after)),
        b'-' => Some((Resp::Error(line), after)),
        b':' => Some((Resp::Integer(line.parse().ok()?), after)),
        b'$' => {
            let len: i64 = line.parse().ok()?;
            if len < 0 {
                return Some((Resp::Bulk(None), after));
            }
            let end = after + usize::try_from(len).ok()?;
            (buf.len() >= end + 2).then(|| {
                (
                    Resp::Bulk(Some(String::from_utf8_lossy(&buf[after..end]).into_owned())),
                    end + 2,
                )
            })
        }
        b'*' => {
            let len: i64 = line.parse().ok()?;
            if len < 0 {
                return Some((Resp::Bulk(None), after));
            }
            let mut items = Vec::new();
            let mut at = after;
            for _ in 0..len {
                let (item, used) = parse(&buf[at..])?;
                items.push(item);
                at += used;
            }
            Some((Resp::Array(items), at))
        }
        _ => Some((Resp::Error(format!("unknown reply type: {line}")), after)),
    }
}

impl Resp {
    /// The first line of the reply as Redis wrote it: `+OK`, `-ERR ...`, `:1`, `$5`, `*3`.
    pub(crate) fn first_line(&self) -> String {
        match self {
            Self::Simple(s) => format!("+{s}"),
            Self::Error(e) => format!("-{e}"),
            Self::Integer(n) => format!(":{n}"),
            Self::Bulk(None) => "$-1".to_owned(),
            Self::Bulk(Some(s)) => format!("${}", s.len()),
            Self::Array(items) => format!("*{}", items.len()),
        }
    }
}

/// Writes one command on `stream` and reads its whole reply.
pub(crate) async fn send(stream: &mut TcpStream, args: &[&str]) -> io::Result<Resp> {
    match exchange(stream, args).await? {
        Resp::Error(e) => Err(io::Error::other(e)),
        resp => Ok(resp),
    }
}

/// Writes one command on `stream` and reads its whole reply, an error reply included.
pub(crate) async fn exchange(stream: &mut TcpStream, args: &[&str]) -> io::Result<Resp> {
    let mut request = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        request.extend_from_slice(arg.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    within_io_timeout("write timed out", stream.write_all(&request)).await?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some((resp, _)) = parse(&reply) {
            return Ok(resp);
        }
        let n = within_io_timeout("no reply", stream.read(&mut buf)).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a whole reply",
            ));
        }
        reply.extend_from_slice(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_replies() {
        let (reply, used) =
            parse(b"*3\r\n$6\r\nmaster\r\n:42\r\n*1\r\n*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6380\r\n")
                .unwrap();
        assert_eq!(used, 54);
        let Resp::Array(parts) = reply else { panic!() };
        assert_eq!(parts[0].text().as_deref(), Some("master"));
        assert_eq!(parts[1], Resp::Integer(42));
        assert!(parse(b"*2\r\n$6\r\nmaster\r\n").is_none(), "incomplete");
        assert_eq!(parse(b"$-1\r\n").unwrap().0, Resp::Bulk(None));
    }
}
