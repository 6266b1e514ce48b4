//! A large file cut into pieces that several workers process at once, and the exact merge
//! of their results (async program only).
//!
//! Only work that merges exactly is split:
//! - Line, word and byte counts. Lines and bytes add up; a word cut in two by a piece
//!   boundary was counted by both pieces, so the merge subtracts one wherever a piece's
//!   first space-or-printable byte is printable while the pieces before it end inside a
//!   word (bytes that are neither, such as NUL, carry the state through, even a whole
//!   piece of them).
//! - BLAKE3. Its input is a binary tree of 1 KiB chunks, and any subtree can be hashed on
//!   its own. The pieces are cut along that tree (`blake3::hazmat::left_subtree_len`), each
//!   hashed to a chaining value, then merged pairwise up to the root.
//!
//! SHA-256 is one sequential chain, and a search needs whole lines, so a file asked for
//! either is read in one pass as before.
//!
//! Why: a file's processing was one sequential task, and a 200 MiB file left for the end
//! ran on one core while the other idled. Pieces let every worker share the last file.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use blake3::hazmat::{
    left_subtree_len, merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode,
};

use crate::budget::Budget;
use crate::found::FoundFile;
use crate::lock::lock;
use crate::options::{HashKind, Options};
use crate::process::{with_buffer, Counter};
use crate::report::describe_read;
use crate::report::FileReport;

/// The largest piece. 8 MiB: a 200 MiB file gives 25 pieces, so the last file is shared
/// out finely, while a piece costs one `pread` loop and no more than a few milliseconds.
/// A power of two, so the pieces are whole BLAKE3 subtrees.
pub(crate) const PIECE: u64 = 8 << 20;

/// Whether `options` ask only for what merges exactly.
pub(crate) fn can_split(options: &Options) -> bool {
    options.grep.is_none() && options.hash != Some(HashKind::Sha256)
}

/// How the pieces join: BLAKE3's tree, cut down to pieces of at most [`PIECE`] bytes.
#[derive(Debug)]
enum Shape {
    Piece(usize),
    Join(Box<Shape>, Box<Shape>),
}

/// Cuts `range` as BLAKE3's tree does, down to pieces of at most [`PIECE`] bytes.
fn cut(range: Range<u64>, pieces: &mut Vec<Range<u64>>) -> Shape {
    let len = range.end - range.start;
    if len <= PIECE {
        pieces.push(range);
        return Shape::Piece(pieces.len() - 1);
    }
    // The left subtree is the largest power-of-two number of chunks shorter than `len`.
    let middle = range.start + left_subtree_len(len);
    Shape::Join(
        Box::new(cut(range.start..middle, pieces)),
        Box::new(cut(middle..range.end, pieces)),
    )
}

/// What one piece found.
#[derive(Debug, Clone, Copy)]
struct PieceResult {
    lines: u64,
    words: u64,
    /// The piece's first space-or-printable byte is printable (`None`: it has neither).
    first: Option<bool>,
    /// Counted from outside a word, the piece ends inside one.
    ends_in_word: bool,
    chaining_value: Option<ChainingValue>,
}

/// A large file being processed in pieces. Workers [`take`](SplitFile::take) piece numbers
/// and [`process`](SplitFile::process) them; whoever finishes the last piece gets the
/// file's report.
#[derive(Debug)]
pub(crate) struct SplitFile {
    name: String,
    file: File,
    pieces: Vec<Range<u64>>,
    shape: Shape,
    /// The next piece to hand out.
    next: AtomicUsize,
    /// Each piece's result, once processed.
    results: Mutex<Vec<Option<PieceResult>>>,
    /// The first piece's error: the file's report says it, and later pieces are not read.
    error: Mutex<Option<String>>,
    /// Pieces not yet finished (handed out or not): the worker that takes it to zero
    /// merges.
    unfinished: AtomicUsize,
}

/// What opening a file for splitting gave.
#[derive(Debug)]
pub(crate) enum Opened {
    /// Ready for its pieces to be taken.
    Split(SplitFile),
    /// Too small to be worth splitting: process it whole (it is open).
    Whole(File),
    /// It cannot be read; the report says why.
    Failed(FileReport),
}

impl SplitFile {
    /// Opens `found`, and when it is large enough, sets it up for splitting. The size
    /// comes from the open file (`fstat`), which costs less than a `stat` of the path: this
    /// runs for every file.
    pub(crate) fn open(found: &FoundFile) -> Opened {
        let name = found.name();
        // The size when opened is the size processed: a file that grows meanwhile is read
        // to that size, one that shrinks is an error.
        let opened = found
            .open()
            .and_then(|file| Ok((file.metadata()?.len(), file)));
        let (len, file) = match opened {
            Ok((len, file)) if len <= PIECE => return Opened::Whole(file),
            Ok(opened) => opened,
            Err(error) => return Opened::Failed(FileReport::failed(name, found.describe(&error))),
        };
        let mut pieces = Vec::new();
        let shape = cut(0..len, &mut pieces);
        Opened::Split(SplitFile {
            name,
            file,
            results: Mutex::new(vec![None; pieces.len()]),
            unfinished: AtomicUsize::new(pieces.len()),
            pieces,
            shape,
            next: AtomicUsize::new(0),
            error: Mutex::new(None),
        })
    }

    /// The next piece to process, if any is left to hand out.
    pub(crate) fn take(&self) -> Option<usize> {
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        (index < self.pieces.len()).then_some(index)
    }

    /// Processes piece `index`. Returns the file's report when this was the last piece to
    /// finish; `None` otherwise, and when `budget` stopped the run (the file is then left
    /// out).
    pub(crate) fn process(
        &self,
        index: usize,
        options: &Options,
        budget: &Budget,
    ) -> Option<FileReport> {
        // After another piece's error, this one is only counted off.
        let failed_already = lock(&self.error).is_some();
        let outcome = match failed_already {
            true => Ok(None),
            false => self.read_piece(index, options, budget),
        };
        match outcome {
            Ok(Some(result)) => lock(&self.results)[index] = Some(result),
            Ok(None) if failed_already => {}
            Ok(None) => return None,
            Err(error) => {
                lock(&self.error).get_or_insert(error);
            }
        }
        // AcqRel: the last finisher must see every other piece's result (they are behind a
        // mutex too, so this is belt and braces).
        if self.unfinished.fetch_sub(1, Ordering::AcqRel) != 1 {
            return None;
        }
        if let Some(error) = lock(&self.error).take() {
            return Some(FileReport::failed(self.name.clone(), error));
        }
        let results: Vec<PieceResult> = lock(&self.results)
            .iter()
            .map(|result| result.expect("every piece finished without error"))
            .collect();
        Some(self.merge(&results, options))
    }

    fn read_piece(
        &self,
        index: usize,
        options: &Options,
        budget: &Budget,
    ) -> Result<Option<PieceResult>, String> {
        let range = self.pieces[index].clone();
        let mut counter = options.count.then(Counter::default);
        let mut hasher = (options.hash == Some(HashKind::Blake3)).then(|| {
            let mut hasher = blake3::Hasher::new();
            hasher.set_input_offset(range.start);
            hasher
        });
        with_buffer(|buffer| {
            let mut offset = range.start;
            while offset < range.end {
                if budget.stopped() {
                    return Ok(None);
                }
                let want = buffer
                    .len()
                    .min(usize::try_from(range.end - offset).unwrap_or(usize::MAX));
                let read = match self.file.read_at(&mut buffer[..want], offset) {
                    Ok(0) => return Err("the file shrank while it was read".to_owned()),
                    Ok(read) => read,
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                    // Worded as the one-pass read words it (`read_through`).
                    Err(error) => return Err(describe_read(&error)),
                };
                if !budget.take_bytes(read as u64) {
                    return Ok(None);
                }
                let chunk = &buffer[..read];
                if let Some(counter) = counter.as_mut() {
                    counter.feed(chunk);
                }
                if let Some(hasher) = hasher.as_mut() {
                    hasher.update(chunk);
                }
                offset += read as u64;
            }
            Ok(Some(PieceResult {
                lines: counter.as_ref().map_or(0, |counter| counter.lines),
                words: counter.as_ref().map_or(0, |counter| counter.words),
                first: counter.as_ref().and_then(|counter| counter.first),
                ends_in_word: counter.as_ref().is_some_and(|counter| counter.in_word),
                chaining_value: hasher.map(|hasher| hasher.finalize_non_root()),
            }))
        })
    }

    fn merge(&self, results: &[PieceResult], options: &Options) -> FileReport {
        let mut report = FileReport {
            path: self.name.clone(),
            bytes: self.pieces.last().map(|piece| piece.end),
            ..FileReport::default()
        };
        if options.count {
            // Each piece was counted from outside a word; where the pieces before it end
            // inside one and it starts with a printable byte, it counted that word again.
            let mut words = 0;
            let mut in_word = false;
            for result in results {
                words += result.words;
                if let Some(printable) = result.first {
                    words -= u64::from(in_word && printable);
                    in_word = result.ends_in_word;
                }
            }
            report.lines = Some(results.iter().map(|result| result.lines).sum());
            report.words = Some(words);
        }
        if options.hash == Some(HashKind::Blake3) {
            let Shape::Join(left, right) = &self.shape else {
                unreachable!("a split file has at least two pieces")
            };
            let chaining_value = |shape| subtree(shape, results);
            let root =
                merge_subtrees_root(&chaining_value(left), &chaining_value(right), Mode::Hash);
            report.hash = Some(root.to_hex().to_string());
        }
        report
    }
}

/// The chaining value of the subtree `shape`, from its pieces' values.
fn subtree(shape: &Shape, results: &[PieceResult]) -> ChainingValue {
    match shape {
        Shape::Piece(index) => results[*index]
            .chaining_value
            .expect("every piece was hashed"),
        Shape::Join(left, right) => merge_subtrees_non_root(
            &subtree(left, results),
            &subtree(right, results),
            Mode::Hash,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::process_file;

    /// Text with words cut at every kind of boundary, and a size that is not a multiple of
    /// anything.
    fn sample(len: usize) -> Vec<u8> {
        let words = [
            &b"alpha "[..],
            b"be",
            b"ta\n",
            b"  gamma\t",
            b"x",
            b"\n\n",
            b"delta",
        ];
        words
            .iter()
            .cycle()
            .flat_map(|word| word.iter().copied())
            .take(len)
            .collect()
    }

    #[test]
    fn pieces_are_blake3_subtrees_of_at_most_a_piece() {
        for len in [PIECE + 1, 2 * PIECE, 3 * PIECE + 1024, 25 * PIECE - 7] {
            let mut pieces = Vec::new();
            cut(0..len, &mut pieces);
            assert!(pieces.len() >= 2);
            assert_eq!(pieces.first().unwrap().start, 0);
            assert_eq!(pieces.last().unwrap().end, len);
            for pair in pieces.windows(2) {
                assert_eq!(pair[0].end, pair[1].start, "pieces are contiguous");
            }
            for piece in &pieces {
                let size = piece.end - piece.start;
                assert!(size <= PIECE && size > 0);
                // A subtree starts at a multiple of its own (power-of-two) size.
                assert_eq!(
                    piece.start % size.next_power_of_two().max(1024),
                    0,
                    "{piece:?}"
                );
            }
        }
    }

    /// Bytes that are neither space nor printable (NUL, control, high bytes) inside words
    /// and between them, with the word cut at piece boundaries.
    fn binary_sample(len: usize) -> Vec<u8> {
        let words = [
            &b"ab\0"[..],
            b"\xff",
            b" x",
            b"\x01y\n",
            b"\0\0",
            b"\xc3\xa9 ",
            b"q",
        ];
        words
            .iter()
            .cycle()
            .flat_map(|word| word.iter().copied())
            .take(len)
            .collect()
    }

    /// `a`, then NULs past two piece boundaries (a whole piece of them), then `b c`: the
    /// word `a…b` spans three pieces.
    fn across_a_piece_of_nuls() -> Vec<u8> {
        let mut bytes = vec![b'a'];
        bytes.resize(2 * PIECE as usize + 5, 0);
        bytes.extend_from_slice(b"b c");
        bytes
    }

    #[test]
    fn split_results_equal_the_one_pass_results() {
        let directory =
            std::env::temp_dir().join(format!("weir-files-split-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let options = Options {
            count: true,
            hash: Some(HashKind::Blake3),
            ..Options::default()
        };
        // Sizes around the piece size and BLAKE3's boundaries.
        let mut files: Vec<(String, Vec<u8>)> = [
            PIECE as usize + 1,
            2 * PIECE as usize,
            2 * PIECE as usize + 1025,
        ]
        .into_iter()
        .map(|len| (format!("{len}.txt"), sample(len)))
        .collect();
        files.push(("binary".into(), binary_sample(2 * PIECE as usize + 777)));
        files.push(("nuls".into(), across_a_piece_of_nuls()));
        for (name, bytes) in files {
            let path = directory.join(&name);
            std::fs::write(&path, &bytes).unwrap();
            let found = FoundFile::anywhere(path.clone());
            let Opened::Split(split) = SplitFile::open(&found) else {
                panic!("{name} is large enough to split")
            };
            let budget = Budget::unlimited();
            let mut reports = Vec::new();
            // Out of order, as several workers would finish them.
            let mut indexes: Vec<usize> = std::iter::from_fn(|| split.take()).collect();
            indexes.reverse();
            for index in indexes {
                reports.extend(split.process(index, &options, &budget));
            }
            assert_eq!(reports.len(), 1, "one report, from the last piece");
            assert_eq!(reports[0], process_file(&path, &options), "{name}");
            assert_eq!(
                reports[0].hash.as_deref(),
                Some(blake3::hash(&bytes).to_hex().as_str())
            );
            if name == "nuls" {
                assert_eq!(reports[0].words, Some(2), "`a…b` and `c`");
            }
        }
        std::fs::remove_dir_all(&directory).unwrap();
    }

    #[test]
    fn a_file_that_shrinks_while_split_is_reported_not_merged() {
        let directory =
            std::env::temp_dir().join(format!("weir-files-shrink-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join("shrinks.txt");
        std::fs::write(&path, sample(2 * PIECE as usize + 10)).unwrap();
        let Opened::Split(split) = SplitFile::open(&FoundFile::anywhere(path.clone())) else {
            panic!("large enough to split")
        };
        // Cut to less than one piece after the pieces were laid out.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(PIECE / 2)
            .unwrap();
        let budget = Budget::unlimited();
        let options = Options::default();
        let reports: Vec<FileReport> = std::iter::from_fn(|| split.take())
            .collect::<Vec<_>>()
            .into_iter()
            .filter_map(|index| split.process(index, &options, &budget))
            .collect();
        std::fs::remove_dir_all(&directory).unwrap();
        assert_eq!(reports.len(), 1, "one report, from the last piece");
        assert_eq!(
            reports[0].error.as_deref(),
            Some("the file shrank while it was read")
        );
        assert_eq!(reports[0].lines, None, "no partial counts");
    }

    #[test]
    fn small_files_and_unsplittable_work_are_not_split() {
        let directory =
            std::env::temp_dir().join(format!("weir-files-nosplit-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join("small.txt");
        std::fs::write(&path, sample(1000)).unwrap();
        assert!(matches!(
            SplitFile::open(&FoundFile::anywhere(path)),
            Opened::Whole(..)
        ));
        assert!(matches!(
            SplitFile::open(&FoundFile::anywhere(directory.join("absent"))),
            Opened::Failed(FileReport { error: Some(_), .. })
        ));
        std::fs::remove_dir_all(&directory).unwrap();
        let sha = Options {
            hash: Some(HashKind::Sha256),
            ..Options::default()
        };
        assert!(!can_split(&sha));
        let grep = Options {
            grep: Some(regex::bytes::Regex::new("a").unwrap()),
            ..Options::default()
        };
        assert!(!can_split(&grep));
        assert!(can_split(&Options::default()));
    }
}
