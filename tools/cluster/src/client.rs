//! A blocking RESP client for the launcher's own questions (INFO) and the demo's probe:
//! one request at a time, every wait bounded by the timeout it was made with.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use usec_replication::apps::resp::reply;
use usec_replication::apps::resp::scan::reply_len;

/// A reply, decoded at the top level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+text`.
    Simple(String),
    /// `-text`: the error word and its message.
    Error(String),
    /// `:n`.
    Integer(i64),
    /// `$…`, `None` for the null bulk.
    Bulk(Option<Vec<u8>>),
    /// `*…`, kept whole.
    Array(Vec<u8>),
}

/// One connection.
#[derive(Debug)]
pub struct RespClient {
    stream: TcpStream,
    buffer: Vec<u8>,
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl RespClient {
    /// Connects to `address`; connecting, each write and each wait for a reply give up
    /// after `timeout` (a stopped process accepts connections but never answers).
    pub fn connect(address: SocketAddr, timeout: Duration) -> io::Result<RespClient> {
        let stream = TcpStream::connect_timeout(&address, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(RespClient { stream, buffer: Vec::new() })
    }

    /// Sends `args` as one request and waits for its reply.
    pub fn request(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        let mut out = Vec::new();
        reply::request(&mut out, args.iter().copied());
        self.stream.write_all(&out)?;
        let frame = self.read_frame()?;
        decode(&frame)
    }

    fn read_frame(&mut self) -> io::Result<Vec<u8>> {
        loop {
            match reply_len(&self.buffer) {
                Ok(Some(len)) => return Ok(self.buffer.drain(..len).collect()),
                Ok(None) => {}
                Err(error) => return Err(invalid(error.to_string())),
            }
            let mut chunk = [0u8; 16 << 10];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection"));
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Decodes a whole frame (as [`reply_len`] cut it).
fn decode(frame: &[u8]) -> io::Result<Reply> {
    let line_end =
        frame.windows(2).position(|pair| pair == b"\r\n").ok_or_else(|| invalid("no line end".into()))?;
    let line = String::from_utf8_lossy(&frame[1..line_end]).into_owned();
    Ok(match frame[0] {
        b'+' => Reply::Simple(line),
        b'-' => Reply::Error(line),
        b':' => Reply::Integer(line.parse().map_err(|_| invalid(format!("integer {line:?}")))?),
        b'$' if line == "-1" => Reply::Bulk(None),
        b'$' => Reply::Bulk(Some(frame[line_end + 2..frame.len() - 2].to_vec())),
        b'*' => Reply::Array(frame.to_vec()),
        other => return Err(invalid(format!("reply starting with {:?}", char::from(other)))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_each_kind() {
        assert_eq!(decode(b"+OK\r\n").unwrap(), Reply::Simple("OK".into()));
        assert_eq!(
            decode(b"-MOVED 0 127.0.0.1:7001\r\n").unwrap(),
            Reply::Error("MOVED 0 127.0.0.1:7001".into())
        );
        assert_eq!(decode(b":-42\r\n").unwrap(), Reply::Integer(-42));
        assert_eq!(decode(b"$-1\r\n").unwrap(), Reply::Bulk(None));
        assert_eq!(decode(b"$4\r\na\r\nb\r\n").unwrap(), Reply::Bulk(Some(b"a\r\nb".to_vec())));
        assert_eq!(decode(b"*0\r\n").unwrap(), Reply::Array(b"*0\r\n".to_vec()));
        assert!(decode(b"?\r\n").is_err());
    }
}
