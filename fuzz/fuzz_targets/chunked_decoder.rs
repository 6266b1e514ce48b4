//! The chunked decoder on arbitrary bytes fed in arbitrary pieces: it must never panic, never
//! produce more data than it was given, and give the same result however the input is split.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use weir_http::{Chunk, ChunkedDecoder};

/// Decodes `input` delivered in pieces of the given sizes; returns the data and whether the
/// body ended, or the error.
fn decode(input: &[u8], pieces: &[u8]) -> Result<(Vec<u8>, bool), weir_http::ChunkedError> {
    let mut decoder = ChunkedDecoder::default();
    let mut buffer = BytesMut::new();
    let mut out = Vec::new();
    let mut fed = 0;
    let mut sizes = pieces.iter().map(|&s| usize::from(s).max(1)).cycle();
    while fed < input.len() || !buffer.is_empty() {
        if fed < input.len() {
            let size = sizes.next().unwrap_or(1).min(input.len() - fed);
            buffer.extend_from_slice(&input[fed..fed + size]);
            fed += size;
        }
        loop {
            match decoder.decode(&mut buffer)? {
                Chunk::Data(data) => out.extend_from_slice(&data),
                Chunk::End => return Ok((out, true)),
                Chunk::NeedMore => break,
            }
        }
        if fed == input.len() {
            break;
        }
    }
    Ok((out, false))
}

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let split = usize::from(data[0]).min(data.len() - 1);
    let (pieces, input) = data[1..].split_at(split.min(data.len() - 1));
    let whole = decode(input, &[255]);
    let pieced = decode(input, if pieces.is_empty() { &[1] } else { pieces });
    if let Ok((out, _)) = &whole {
        assert!(out.len() <= input.len());
    }
    // Splitting may only turn a complete result into an incomplete one when the input ends
    // early; a decoded body and its data must not depend on the split.
    match (&whole, &pieced) {
        (Ok((a, true)), Ok((b, true))) => assert_eq!(a, b),
        (Ok((_, true)), other) => panic!("whole input ended, pieces gave {other:?}"),
        (Err(_), Ok((_, true))) => panic!("whole input failed, pieces ended"),
        _ => {}
    }
});
