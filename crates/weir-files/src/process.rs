//! The work done on one file, shared by both programs: a single pass over the file in large
//! buffers, feeding the counters, the hasher and the line search together.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::Path;

use memchr::{memchr, memchr_iter, memrchr};
use regex::bytes::Regex;
use sha2::Digest;

use crate::budget::Budget;
use crate::found::FoundFile;
use crate::options::{HashKind, Options};
use crate::report::{describe_read, FileReport, Match};

/// Read size. 64 KiB, as ripgrep reads: the buffer stays in the CPU's L2 cache beside the
/// page-cache pages it is copied from. Measured on the bench tree: 256 KiB spent about
/// twice the kernel time (0.6 s against 0.33 s for 800 MiB) copying into it.
const BUFFER: usize = 64 * 1024;
/// A line kept for searching across buffer boundaries is cut here: memory stays bounded on
/// a huge file without newlines (its matches are looked for in the first MiB).
const MAX_CARRY: usize = 1 << 20;
/// Characters kept of a matching line.
const MATCH_TEXT: usize = 1024;

/// Whether `byte` is a space in the C locale (`isspace`, the bytes `wc` separates words
/// with): ' ', or \t \n \v \f \r (9 to 13).
#[inline(always)]
pub(crate) fn is_space(byte: u8) -> bool {
    byte == b' ' || byte.wrapping_sub(b'\t') < 5
}

/// Whether `byte` makes a word: printable ASCII (`!` to `~`, C's `isgraph`) or any byte
/// from 0x80, the bytes of every non-ASCII character in UTF-8, so that `привет` and `日本語`
/// are words as `wc` counts them in a UTF-8 locale. The others (control bytes, NUL, DEL)
/// neither start a word nor end one, as in every locale.
#[inline(always)]
pub(crate) fn is_graphic(byte: u8) -> bool {
    byte.wrapping_sub(b'!') < 94 || byte >= 0x80
}

/// Reads `path` once and computes what `options` ask. Never panics on I/O: a failure is
/// the report's `error`. Links are followed wherever they lead (the operator's own use);
/// no limit applies.
pub fn process_file(path: &Path, options: &Options) -> FileReport {
    let file = FoundFile::anywhere(path.to_owned());
    process_until(&file, options, &Budget::unlimited()).expect("never stopped")
}

/// [`process_file`] of a file the walk found, checking `budget` at every buffer: `None`
/// when it stopped the run before the end (a huge file does not hold up Ctrl-C).
pub(crate) fn process_until(
    found: &FoundFile,
    options: &Options,
    budget: &Budget,
) -> Option<FileReport> {
    match found.open() {
        Ok(file) => process_open(file, found, options, budget),
        Err(error) => Some(FileReport::failed(found.name(), found.describe(&error))),
    }
}

/// [`process_until`] on a file already open.
pub(crate) fn process_open(
    mut file: File,
    found: &FoundFile,
    options: &Options,
    budget: &Budget,
) -> Option<FileReport> {
    let counter = options.count.then(Counter::default);
    let hasher = options.hash.map(Hasher::new);
    let search = options
        .grep
        .as_ref()
        .map(|regex| Search::new(regex, options.max_matches));
    let name = found.name();
    with_buffer(|buffer| read_through(&mut file, buffer, name, counter, hasher, search, budget))
}

/// Runs `work` with this thread's read buffer of [`BUFFER`] bytes.
pub(crate) fn with_buffer<T>(work: impl FnOnce(&mut [u8]) -> T) -> T {
    BUFFER_OF_THIS_THREAD.with_borrow_mut(|buffer| {
        if buffer.len() != BUFFER {
            *buffer = vec![0; BUFFER];
        }
        work(buffer)
    })
}

thread_local! {
    /// One read buffer per thread, reused for every file: allocating (and zeroing) a buffer
    /// per file cost more than counting a small file's bytes.
    static BUFFER_OF_THIS_THREAD: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn read_through(
    file: &mut File,
    buffer: &mut [u8],
    name: String,
    mut counter: Option<Counter>,
    mut hasher: Option<Hasher>,
    mut search: Option<Search<'_>>,
    budget: &Budget,
) -> Option<FileReport> {
    let mut bytes = 0u64;
    loop {
        if budget.stopped() {
            return None;
        }
        let read = match file.read(buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => return Some(FileReport::failed(name, describe_read(&error))),
        };
        if !budget.take_bytes(read as u64) {
            return None;
        }
        let chunk = &buffer[..read];
        bytes += read as u64;
        if let Some(counter) = counter.as_mut() {
            counter.feed(chunk);
        }
        if let Some(hasher) = hasher.as_mut() {
            hasher.update(chunk);
        }
        if let Some(search) = search.as_mut() {
            search.feed(chunk);
        }
    }
    let mut report = FileReport {
        path: name,
        bytes: Some(bytes),
        ..FileReport::default()
    };
    if let Some(counter) = counter {
        report.lines = Some(counter.lines);
        report.words = Some(counter.words);
    }
    report.hash = hasher.map(Hasher::finish);
    if let Some(search) = search {
        let (matches, count) = search.finish();
        report.matches = matches;
        report.match_count = Some(count);
    }
    Some(report)
}

/// Bytes judged together by [`Counter::feed`]'s fast path: sums of up to 255 word starts
/// fit its 8-bit lanes.
const BLOCK: usize = 255;

/// Lines and words as GNU `wc` counts them in a UTF-8 locale, on bytes: lines are `\n`
/// bytes; a word is a run of bytes between ASCII spaces (`isspace`) holding at least one
/// printable ASCII byte or byte from 0x80 ([`is_graphic`]). Other bytes (NUL, control
/// bytes, DEL) are neither: they continue a word without starting one, so `a\0b` is one
/// word and `\0` none. The state is carried across buffers. Where this differs from `wc`
/// (invalid UTF-8, Unicode spaces) is in docs/files.md.
#[derive(Debug, Default)]
pub(crate) struct Counter {
    pub(crate) lines: u64,
    pub(crate) words: u64,
    /// A printable byte came since the last space: the next one continues its word.
    pub(crate) in_word: bool,
    /// The first byte fed that is a space or printable: `Some(true)` when printable. A file
    /// split into pieces joins their counts with it (`split.rs`).
    pub(crate) first: Option<bool>,
}

impl Counter {
    pub(crate) fn feed(&mut self, chunk: &[u8]) {
        self.lines += memchr_iter(b'\n', chunk).count() as u64;
        if self.first.is_none() {
            self.first = chunk
                .iter()
                .find(|&&byte| is_space(byte) || is_graphic(byte))
                .map(|&byte| is_graphic(byte));
        }
        for block in chunk.chunks(BLOCK) {
            self.feed_block(block);
        }
    }

    fn feed_block(&mut self, block: &[u8]) {
        let (Some(&first), Some(&last)) = (block.first(), block.last()) else {
            return;
        };
        // Text holds only spaces and printable bytes: then a word starts at each printable
        // byte after a space, each pair of neighbours judged on its own, without state
        // carried from byte to byte, so the compiler turns both loops into vector compares
        // (measured: 4× a byte-at-a-time state machine). A block holding any other byte
        // takes the state machine.
        let neither = block.iter().fold(0u8, |any, &byte| {
            any | u8::from(!is_space(byte) & !is_graphic(byte))
        });
        if neither == 0 {
            let mut words = u64::from(!self.in_word && is_graphic(first));
            let (before, after) = (&block[..block.len() - 1], &block[1..]);
            let starts = before
                .iter()
                .zip(after)
                .map(|(&before, &after)| u8::from(is_space(before) & !is_space(after)))
                .fold(0u8, u8::wrapping_add);
            words += u64::from(starts);
            self.words += words;
            self.in_word = !is_space(last);
            return;
        }
        for &byte in block {
            if is_space(byte) {
                self.in_word = false;
            } else if is_graphic(byte) && !self.in_word {
                self.words += 1;
                self.in_word = true;
            }
        }
    }
}

enum Hasher {
    Blake3(Box<blake3::Hasher>),
    Sha256(sha2::Sha256),
}

impl Hasher {
    fn new(kind: HashKind) -> Hasher {
        match kind {
            HashKind::Blake3 => Hasher::Blake3(Box::new(blake3::Hasher::new())),
            HashKind::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
        }
    }

    fn update(&mut self, chunk: &[u8]) {
        match self {
            Hasher::Blake3(hasher) => {
                hasher.update(chunk);
            }
            Hasher::Sha256(hasher) => hasher.update(chunk),
        }
    }

    fn finish(self) -> String {
        match self {
            Hasher::Blake3(hasher) => hasher.finalize().to_hex().to_string(),
            Hasher::Sha256(hasher) => hasher
                .finalize()
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect(),
        }
    }
}

/// Finds matching lines, line by line in meaning, buffer by buffer in practice: the regex
/// runs over every whole line of a buffer at once (its literal prefilters then skip most
/// bytes), and a candidate is checked against its line alone, so a match never spans lines.
struct Search<'a> {
    regex: &'a Regex,
    /// Lines before the current buffer.
    line: u64,
    /// The start of a line that continues into the next buffer.
    carry: Vec<u8>,
    matches: Vec<Match>,
    count: u64,
    max: usize,
}

impl<'a> Search<'a> {
    fn new(regex: &'a Regex, max: usize) -> Search<'a> {
        Search {
            regex,
            line: 0,
            carry: Vec::new(),
            matches: Vec::new(),
            count: 0,
            max,
        }
    }

    fn record(&mut self, number: u64, line: &[u8]) {
        self.count += 1;
        if self.matches.len() < self.max {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let text = String::from_utf8_lossy(&line[..line.len().min(MATCH_TEXT * 4)]);
            let text: String = text.chars().take(MATCH_TEXT).collect();
            self.matches.push(Match { line: number, text });
        }
    }

    fn keep(&mut self, piece: &[u8]) {
        let room = MAX_CARRY.saturating_sub(self.carry.len());
        self.carry
            .extend_from_slice(&piece[..piece.len().min(room)]);
    }

    fn feed(&mut self, chunk: &[u8]) {
        let Some(first) = memchr(b'\n', chunk) else {
            self.keep(chunk);
            return;
        };
        let mut start = 0;
        if !self.carry.is_empty() {
            // The line that began in an earlier buffer ends here.
            self.keep(&chunk[..first]);
            let line = std::mem::take(&mut self.carry);
            self.line += 1;
            if self.regex.is_match(&line) {
                self.record(self.line, &line);
            }
            start = first + 1;
        }
        let last = memrchr(b'\n', chunk).expect("there is a newline");
        if start <= last {
            self.search(&chunk[start..=last]);
        }
        self.keep(&chunk[last + 1..]);
    }

    /// Searches whole lines, each ending with `\n`.
    fn search(&mut self, region: &[u8]) {
        let mut position = 0;
        let mut counted_to = 0;
        let mut lines_before = 0u64;
        while position < region.len() {
            let Some(found) = self.regex.find_at(region, position) else {
                break;
            };
            let line_start = memrchr(b'\n', &region[..found.start()]).map_or(0, |at| at + 1);
            let line_end = memchr(b'\n', &region[found.start()..])
                .map_or(region.len(), |at| found.start() + at);
            lines_before += memchr_iter(b'\n', &region[counted_to..line_start]).count() as u64;
            counted_to = line_start;
            let line = &region[line_start..line_end];
            if found.end() <= line_end || self.regex.is_match(line) {
                self.record(self.line + lines_before + 1, line);
            }
            position = line_end + 1;
        }
        self.line += lines_before + memchr_iter(b'\n', &region[counted_to..]).count() as u64;
    }

    fn finish(mut self) -> (Vec<Match>, u64) {
        if !self.carry.is_empty() {
            let line = std::mem::take(&mut self.carry);
            self.line += 1;
            if self.regex.is_match(&line) {
                self.record(self.line, &line);
            }
        }
        (self.matches, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grep(pattern: &str, text: &[u8], buffer: usize) -> Vec<(u64, String)> {
        let regex = regex::bytes::RegexBuilder::new(pattern)
            .multi_line(true)
            .build()
            .unwrap();
        let mut search = Search::new(&regex, 100);
        for chunk in text.chunks(buffer) {
            search.feed(chunk);
        }
        search
            .finish()
            .0
            .into_iter()
            .map(|m| (m.line, m.text))
            .collect()
    }

    #[test]
    fn matches_are_per_line_whatever_the_buffer_size() {
        let text = b"alpha\nbeta gamma\n\ngamma\r\nno\ndelta gamma";
        let want = vec![
            (2, "beta gamma".to_owned()),
            (4, "gamma".to_owned()),
            (6, "delta gamma".to_owned()),
        ];
        for buffer in [1, 2, 3, 5, 7, 64] {
            assert_eq!(grep("gamma", text, buffer), want, "buffer {buffer}");
        }
        assert_eq!(grep("^gamma", text, 4), vec![(4, "gamma".to_owned())]);
        // A match across a newline is not a match of either line.
        assert_eq!(
            grep(r"beta\s+gamma\s+gamma", b"beta\ngamma gamma\n", 64),
            vec![]
        );
        assert_eq!(
            grep(r"a\sg", b"beta\ngamma\nbeta gamma\n", 64),
            vec![(3, "beta gamma".to_owned())]
        );
    }

    #[test]
    fn block_counting_equals_byte_at_a_time_counting() {
        let mut seed = 3u64;
        // Text first (blocks of only spaces and printable bytes: the fast path), then
        // every kind of byte: spaces, control bytes, NUL, DEL, high bytes.
        let text: Vec<u8> = (0..6000)
            .map(|n| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                let pick = (seed >> 59) as usize;
                match n < 2000 {
                    true => b"ab \t\n\x0b\x0c\rxyzq.!~ \n"[pick % 16],
                    false => b"ab \t\n\x0b\x0c\rxyz\x08\x0e\xa0\xff\x00\x7f"[pick % 16],
                }
            })
            .collect();
        // GNU wc's loop, with bytes from 0x80 as printable.
        let reference = |bytes: &[u8]| {
            let mut words = 0;
            let mut in_word = false;
            for &byte in bytes {
                if matches!(byte, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r') {
                    in_word = false;
                } else if ((0x21..=0x7e).contains(&byte) || byte >= 0x80) && !in_word {
                    words += 1;
                    in_word = true;
                }
            }
            words
        };
        for split in [
            0, 1, 63, 64, 65, 127, 254, 255, 256, 1000, 1999, 2000, 4999, 5999,
        ] {
            let mut counter = Counter::default();
            counter.feed(&text[..split]);
            counter.feed(&text[split..]);
            assert_eq!(counter.words, reference(&text), "split at {split}");
            let mut counter = Counter::default();
            counter.feed(&text[..split]);
            assert_eq!(
                counter.words,
                reference(&text[..split]),
                "first {split} bytes"
            );
        }
    }

    #[test]
    fn bytes_that_are_neither_space_nor_printable_neither_start_nor_end_words() {
        for (text, words) in [
            (&b"\0"[..], 0),
            (b"\x01\x02 \x7f", 0),
            (b"a\0b", 1),
            (b"\0a", 1),
            (b"a \0 b", 2),
            (b"\xc3\xa9t\xc3\xa9", 1),
            // Non-ASCII letters make words, as in a UTF-8 locale.
            (b"\xd0\xbc\xd0\xb8\xd1\x80", 1),
            (b"\x01\x02 \xff", 1),
            // A no-break space (U+00A0) does not separate words here.
            (b"a\xc2\xa0b", 1),
        ] {
            let mut counter = Counter::default();
            counter.feed(text);
            assert_eq!(counter.words, words, "{text:?}");
        }
    }

    #[test]
    fn counts_are_wc_counts_across_buffers() {
        let text = b"  one two\tthree\n\nfour\x0bfive  \nsix";
        for split in 1..text.len() {
            let mut counter = Counter::default();
            counter.feed(&text[..split]);
            counter.feed(&text[split..]);
            assert_eq!((counter.lines, counter.words), (3, 6), "split at {split}");
        }
    }
}
