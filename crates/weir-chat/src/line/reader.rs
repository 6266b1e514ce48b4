//! Reading bounded lines from a socket, cancel-safely, with no buffer held while idle.

use std::future::poll_fn;
use std::io;
use std::task::{Context, Poll};

use tokio::net::tcp::OwnedReadHalf;

/// What one read produced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// A line of UTF-8 text, without its line ending.
    Text(String),
    /// A line longer than the limit: it was discarded up to its end.
    TooLong,
    /// A line that is not UTF-8.
    NotUtf8,
    /// The client closed the connection.
    End,
}

/// A socket that says when it is readable, then reads without waiting: the buffer is taken
/// only once there are bytes to put in it.
pub(crate) trait ReadySource {
    /// Ready when a read would not block. Polled directly rather than through a
    /// `readable()` future, whose waiter node made every connection's task 170 bytes
    /// larger.
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Reads what is there; `WouldBlock` when nothing is.
    fn try_read_buf(&self, buf: &mut Vec<u8>) -> io::Result<usize>;
}

impl ReadySource for OwnedReadHalf {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.as_ref().poll_read_ready(cx)
    }

    fn try_read_buf(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        OwnedReadHalf::try_read_buf(self, buf)
    }
}

/// Reads lines of at most `max` bytes.
///
/// Cancel safety: all state lives in `self`; the only await is on readiness, and the read
/// after it does not wait, so `next_line` may be dropped in a `select!` and called again
/// without losing input.
///
/// Memory: the buffer is freed whenever it is empty and allocated when bytes arrive, so an
/// idle connection (most of them, most of the time) holds none.
///
/// Lines are taken from the front by moving `start`, not by shifting the rest of the
/// buffer down after each one (a read holds many pipelined lines: shifting after each cost
/// the rest of the buffer per line). What is left moves down once, before the next read.
#[derive(Debug)]
pub(crate) struct LineReader<R> {
    source: R,
    buf: Vec<u8>,
    /// Where the unread part of `buf` begins.
    start: usize,
    max: usize,
    discarding: bool,
}

/// Room made for each read: a client that pipelines commands gets many in one read.
const READ_ROOM: usize = 16 << 10;

impl<R: ReadySource> LineReader<R> {
    pub(crate) fn new(source: R, max: usize) -> Self {
        Self {
            source,
            buf: Vec::new(),
            start: 0,
            max,
            discarding: false,
        }
    }

    /// Whether a whole line has been read and waits to be taken: then [`Self::next_line`]
    /// answers without waiting.
    pub(crate) fn has_line(&self) -> bool {
        self.buf[self.start..].contains(&b'\n')
    }

    pub(crate) async fn next_line(&mut self) -> std::io::Result<Line> {
        loop {
            let unread = &self.buf[self.start..];
            if let Some(newline) = unread.iter().position(|&b| b == b'\n') {
                let mut line = unread[..=newline].to_vec();
                self.start += newline + 1;
                if self.start == self.buf.len() {
                    self.buf = Vec::new();
                    self.start = 0;
                }
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if std::mem::take(&mut self.discarding) || line.len() > self.max {
                    return Ok(Line::TooLong);
                }
                return Ok(match String::from_utf8(line) {
                    Ok(text) => Line::Text(text),
                    Err(_) => Line::NotUtf8,
                });
            }
            if self.buf.len() - self.start > self.max {
                // Keep memory bounded: drop what we have and remember to report the line.
                self.discarding = true;
                self.buf.clear();
                self.start = 0;
            }
            poll_fn(|cx| self.source.poll_read_ready(cx)).await?;
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            self.buf.reserve(READ_ROOM);
            match self.source.try_read_buf(&mut self.buf) {
                Ok(0) => return Ok(Line::End),
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error),
            }
            if self.buf.is_empty() {
                self.buf = Vec::new();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn splits_bounds_and_checks_lines() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        client
            .write_all(b"NICK ada\r\nhello\n\xff\xfe\n0123456789ABCDEF\nok\n")
            .await
            .unwrap();
        client.shutdown().await.unwrap();
        let (read, _write) = server.into_split();
        let mut reader = LineReader::new(read, 10);
        assert_eq!(
            reader.next_line().await.unwrap(),
            Line::Text("NICK ada".into())
        );
        assert_eq!(
            reader.next_line().await.unwrap(),
            Line::Text("hello".into())
        );
        assert_eq!(reader.next_line().await.unwrap(), Line::NotUtf8);
        assert_eq!(reader.next_line().await.unwrap(), Line::TooLong);
        assert_eq!(
            reader.next_line().await.unwrap(),
            Line::Text("ok".into()),
            "the connection goes on"
        );
        assert_eq!(reader.next_line().await.unwrap(), Line::End);
    }
}
