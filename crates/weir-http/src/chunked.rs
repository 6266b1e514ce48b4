//! The chunked transfer coding (RFC 9112 section 7.1), as a sans-I/O decoder.
//!
//! The decoder consumes bytes from a `BytesMut` and yields body data as zero-copy `Bytes`
//! slices of it. It never buffers more than one chunk-size line or one trailer line, each
//! bounded by [`ChunkedLimits`], so a hostile client cannot make it hold memory. It is strict
//! where leniency enables request smuggling: every line must end in CRLF, a chunk size needs at
//! least one hex digit and must fit in 64 bits, and chunk data must be followed by CRLF.

use bytes::{Bytes, BytesMut};

/// Bounds on the parts of a chunked body that are not data.
#[derive(Debug, Clone, Copy)]
pub struct ChunkedLimits {
    /// Bytes of one chunk-size line, extensions included. Default 4 KiB.
    pub max_line_bytes: usize,
    /// Bytes of the whole trailer section. Default 16 KiB.
    pub max_trailer_bytes: usize,
}

impl Default for ChunkedLimits {
    fn default() -> Self {
        Self {
            max_line_bytes: 4096,
            max_trailer_bytes: 16 * 1024,
        }
    }
}

/// What one call to [`ChunkedDecoder::decode`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// Body data (never empty).
    Data(Bytes),
    /// More input is needed.
    NeedMore,
    /// The last chunk and the trailer section have been read.
    End,
}

/// A malformed chunked body. Every variant means: answer 400 and close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkedError {
    /// The chunk-size line has no hex digit.
    #[error("chunk size has no hex digits")]
    MissingSize,
    /// The chunk size does not fit in 64 bits.
    #[error("chunk size overflows 64 bits")]
    SizeOverflow,
    /// Something other than an extension follows the chunk size.
    #[error("invalid character after the chunk size")]
    InvalidSizeLine,
    /// A line ended in LF without CR.
    #[error("line ends in a bare LF")]
    BareLineFeed,
    /// Chunk data was not followed by CRLF.
    #[error("chunk data is not followed by CRLF")]
    MissingDataCrlf,
    /// A chunk-size line is longer than the limit.
    #[error("chunk-size line exceeds {0} bytes")]
    LineTooLong(usize),
    /// The trailer section is longer than the limit.
    #[error("trailer section exceeds {0} bytes")]
    TrailersTooLarge(usize),
    /// A trailer line is not a valid header field.
    #[error("invalid trailer field")]
    InvalidTrailer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    SizeLine,
    Data { remaining: u64 },
    DataCrlf,
    Trailers,
    Done,
}

/// Decodes a chunked body incrementally.
///
/// ```
/// use bytes::BytesMut;
/// use weir_http::{Chunk, ChunkedDecoder};
///
/// let mut decoder = ChunkedDecoder::default();
/// let mut input = BytesMut::from(&b"5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n"[..]);
/// assert_eq!(decoder.decode(&mut input), Ok(Chunk::Data("hello".into())));
/// assert_eq!(decoder.decode(&mut input), Ok(Chunk::End));
/// assert_eq!(decoder.trailers(), &[("X-Sum".to_string(), "1".to_string())]);
/// ```
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    limits: ChunkedLimits,
    trailer_bytes: usize,
    trailers: Vec<(String, String)>,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new(ChunkedLimits::default())
    }
}

impl ChunkedDecoder {
    /// A decoder with the given limits.
    pub fn new(limits: ChunkedLimits) -> Self {
        Self {
            state: State::SizeLine,
            limits,
            trailer_bytes: 0,
            trailers: Vec::new(),
        }
    }

    /// Whether the whole body, trailers included, has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The trailer fields, once [`Chunk::End`] has been returned.
    pub fn trailers(&self) -> &[(String, String)] {
        &self.trailers
    }

    /// Decodes from the front of `input`, consuming what it uses.
    pub fn decode(&mut self, input: &mut BytesMut) -> Result<Chunk, ChunkedError> {
        loop {
            match self.state {
                State::Done => return Ok(Chunk::End),
                State::SizeLine => {
                    let Some(line) = take_line(input, self.limits.max_line_bytes)? else {
                        return Ok(Chunk::NeedMore);
                    };
                    let size = parse_size_line(&line)?;
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::Data { remaining: size }
                    };
                }
                State::Data { remaining } => {
                    if input.is_empty() {
                        return Ok(Chunk::NeedMore);
                    }
                    let take = remaining.min(input.len() as u64) as usize;
                    let left = remaining - take as u64;
                    self.state = if left == 0 {
                        State::DataCrlf
                    } else {
                        State::Data { remaining: left }
                    };
                    return Ok(Chunk::Data(input.split_to(take).freeze()));
                }
                State::DataCrlf => {
                    if input.len() < 2 {
                        // A lone LF can already be rejected.
                        if input.first() == Some(&b'\n') {
                            return Err(ChunkedError::MissingDataCrlf);
                        }
                        return Ok(Chunk::NeedMore);
                    }
                    if &input[..2] != b"\r\n" {
                        return Err(ChunkedError::MissingDataCrlf);
                    }
                    let _ = input.split_to(2);
                    self.state = State::SizeLine;
                }
                State::Trailers => {
                    let room = self.limits.max_trailer_bytes - self.trailer_bytes;
                    let line = match take_line(input, room) {
                        Ok(Some(line)) => line,
                        Ok(None) => return Ok(Chunk::NeedMore),
                        Err(ChunkedError::LineTooLong(_)) => {
                            return Err(ChunkedError::TrailersTooLarge(
                                self.limits.max_trailer_bytes,
                            ))
                        }
                        Err(other) => return Err(other),
                    };
                    self.trailer_bytes += line.len() + 2;
                    if line.is_empty() {
                        self.state = State::Done;
                        return Ok(Chunk::End);
                    }
                    self.trailers.push(parse_trailer(&line)?);
                }
            }
        }
    }
}

/// Takes one CRLF-terminated line (without the CRLF) from the front of `input`.
fn take_line(input: &mut BytesMut, max_len: usize) -> Result<Option<BytesMut>, ChunkedError> {
    let window = &input[..input.len().min(max_len.saturating_add(2))];
    match window.iter().position(|&b| b == b'\n') {
        Some(0) => Err(ChunkedError::BareLineFeed),
        Some(nl) if window[nl - 1] != b'\r' => Err(ChunkedError::BareLineFeed),
        Some(nl) => {
            let mut line = input.split_to(nl + 1);
            line.truncate(nl - 1);
            if line.contains(&b'\r') {
                return Err(ChunkedError::BareLineFeed);
            }
            Ok(Some(line))
        }
        None if window.len() >= max_len.saturating_add(2) => {
            Err(ChunkedError::LineTooLong(max_len))
        }
        None => Ok(None),
    }
}

/// `chunk-size [ BWS ; chunk-ext ]`: hex digits, then nothing or extensions.
fn parse_size_line(line: &[u8]) -> Result<u64, ChunkedError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(ChunkedError::MissingSize);
    }
    let mut size: u64 = 0;
    for &d in &line[..digits] {
        let value = (d as char).to_digit(16).unwrap_or(0) as u64;
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(value))
            .ok_or(ChunkedError::SizeOverflow)?;
    }
    let rest = &line[digits..];
    let after_ws = rest
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(rest.len());
    let rest = &rest[after_ws..];
    if !rest.is_empty() {
        // Extensions are ignored, but they must be extensions and hold no control bytes.
        if rest[0] != b';' || rest.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(ChunkedError::InvalidSizeLine);
        }
    }
    Ok(size)
}

fn parse_trailer(line: &[u8]) -> Result<(String, String), ChunkedError> {
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(ChunkedError::InvalidTrailer)?;
    let (name, value) = (&line[..colon], crate::head::trim_ows(&line[colon + 1..]));
    if name.is_empty() || !name.iter().all(|&b| is_token_byte(b)) {
        return Err(ChunkedError::InvalidTrailer);
    }
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(ChunkedError::InvalidTrailer);
    }
    Ok((
        String::from_utf8_lossy(name).into_owned(),
        String::from_utf8_lossy(value).into_owned(),
    ))
}

/// `tchar` of RFC 9110 section 5.6.2.
pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(raw: &[u8]) -> Result<Vec<u8>, ChunkedError> {
        let mut decoder = ChunkedDecoder::default();
        let mut input = BytesMut::from(raw);
        let mut out = Vec::new();
        loop {
            match decoder.decode(&mut input)? {
                Chunk::Data(data) => out.extend_from_slice(&data),
                Chunk::End => return Ok(out),
                Chunk::NeedMore => panic!("incomplete input in test"),
            }
        }
    }

    #[test]
    fn decodes_chunks_extensions_and_trailers() {
        assert_eq!(
            decode_all(b"3\r\nabc\r\nA;name=v\r\n0123456789\r\n0\r\n\r\n").unwrap(),
            b"abc0123456789"
        );
        let mut decoder = ChunkedDecoder::default();
        let mut input = BytesMut::from(&b"0\r\nA: 1\r\nB:2\r\n\r\nNEXT"[..]);
        assert_eq!(decoder.decode(&mut input), Ok(Chunk::End));
        assert_eq!(decoder.trailers().len(), 2);
        assert_eq!(
            &input[..],
            b"NEXT",
            "bytes after the body stay for the next request"
        );
    }

    #[test]
    fn byte_at_a_time_gives_the_same_result() {
        let raw = b"5\r\nhello\r\n6\r\n world\r\n0\r\nT: x\r\n\r\n";
        let mut decoder = ChunkedDecoder::default();
        let mut input = BytesMut::new();
        let mut out = Vec::new();
        for &b in raw.iter() {
            input.extend_from_slice(&[b]);
            loop {
                match decoder.decode(&mut input).unwrap() {
                    Chunk::Data(d) => out.extend_from_slice(&d),
                    Chunk::NeedMore => break,
                    Chunk::End => break,
                }
            }
        }
        assert!(decoder.is_done());
        assert_eq!(out, b"hello world");
    }

    #[test]
    fn rejects_malformed_bodies() {
        assert_eq!(
            decode_all(b"\r\nabc\r\n0\r\n\r\n"),
            Err(ChunkedError::MissingSize)
        );
        assert_eq!(decode_all(b"zz\r\n"), Err(ChunkedError::MissingSize));
        assert_eq!(
            decode_all(b"10000000000000000\r\n"),
            Err(ChunkedError::SizeOverflow)
        );
        assert_eq!(
            decode_all(b"3\nabc\r\n0\r\n\r\n"),
            Err(ChunkedError::BareLineFeed)
        );
        assert_eq!(
            decode_all(b"3 x\r\nabc\r\n"),
            Err(ChunkedError::InvalidSizeLine)
        );
        assert_eq!(
            decode_all(b"3\r\nabcXY0\r\n\r\n"),
            Err(ChunkedError::MissingDataCrlf)
        );
        assert_eq!(
            decode_all(b"3\r\nabc\n0\r\n\r\n"),
            Err(ChunkedError::MissingDataCrlf)
        );
        assert_eq!(
            decode_all(b"0\r\nbad trailer\r\n\r\n"),
            Err(ChunkedError::InvalidTrailer)
        );
        assert_eq!(
            decode_all(b"0\r\nX: 1\n\r\n"),
            Err(ChunkedError::BareLineFeed)
        );
        assert_eq!(decode_all(b"-1\r\n"), Err(ChunkedError::MissingSize));
    }

    #[test]
    fn bounds_lines_and_trailers() {
        let limits = ChunkedLimits {
            max_line_bytes: 8,
            max_trailer_bytes: 16,
        };
        let mut decoder = ChunkedDecoder::new(limits);
        let mut long = BytesMut::from(&b"1;aaaaaaaaaaaaaaaa"[..]);
        assert_eq!(decoder.decode(&mut long), Err(ChunkedError::LineTooLong(8)));
        let mut decoder = ChunkedDecoder::new(limits);
        let mut trailers = BytesMut::from(&b"0\r\nA: 1234567890\r\nB: 1234567890\r\n\r\n"[..]);
        assert_eq!(
            decoder.decode(&mut trailers),
            Err(ChunkedError::TrailersTooLarge(16))
        );
    }
}
