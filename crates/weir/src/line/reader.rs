//! Reading bounded lines from a socket, cancel-safely.

use tokio::io::{AsyncRead, AsyncReadExt};

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

/// Reads lines of at most `max` bytes.
///
/// Cancel safety: all state lives in `self` and the only await is one `read_buf`, which
/// either appends bytes or does not, so `next_line` may be dropped in a `select!` and called
/// again without losing input.
#[derive(Debug)]
pub(crate) struct LineReader<R> {
    source: R,
    buf: Vec<u8>,
    max: usize,
    discarding: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub(crate) fn new(source: R, max: usize) -> Self {
        Self {
            source,
            buf: Vec::with_capacity(1024),
            max,
            discarding: false,
        }
    }

    pub(crate) async fn next_line(&mut self) -> std::io::Result<Line> {
        loop {
            if let Some(newline) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=newline).collect();
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
            if self.buf.len() > self.max {
                // Keep memory bounded: drop what we have and remember to report the line.
                self.discarding = true;
                self.buf.clear();
            }
            self.buf.reserve(1024);
            if self.source.read_buf(&mut self.buf).await? == 0 {
                return Ok(Line::End);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn splits_bounds_and_checks_lines() {
        let input: &[u8] = b"NICK ada\r\nhello\n\xff\xfe\n0123456789ABCDEF\nok\n";
        let mut reader = LineReader::new(input, 10);
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
