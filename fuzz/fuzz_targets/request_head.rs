//! The request-head parser on arbitrary bytes: it must never panic, and what it accepts
//! must be self-consistent (ranges inside the input, text ranges valid UTF-8).
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_http::{parse_request_head, HeadLimits};

fuzz_target!(|data: &[u8]| {
    let limits = HeadLimits { max_head_bytes: 8 * 1024, max_headers: 32, max_target_bytes: 2048, max_body_bytes: 1 << 20 };
    if let Ok(Some(head)) = parse_request_head(data, &limits) {
        assert!(head.head_len <= data.len());
        assert!(head.head_len <= limits.max_head_bytes);
        assert!(head.path.end <= head.head_len);
        assert!(std::str::from_utf8(&data[head.path.clone()]).is_ok());
        if let Some(query) = head.query {
            assert!(query.start >= head.path.end && query.end <= head.head_len);
        }
        assert!(head.headers.end == head.head_len);
        // The head ends with an empty line; lines may end in CRLF or a bare LF.
        let head_bytes = &data[..head.head_len];
        assert!(head_bytes.ends_with(b"\n\n") || head_bytes.ends_with(b"\n\r\n"));
    }
});
