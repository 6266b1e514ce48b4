//! Dedupe in bounded memory: the set of URLs seen, kept as 64-bit fingerprints.
//!
//! A fingerprint is 8 bytes however long the URL, and the set has a stated capacity:
//! past it, new URLs are refused (the crawler reports them as skipped for the budget)
//! rather than memory growing without bound. At the default capacity of 5 million the set
//! takes about 80 MB at most; the chance that two of 5 million URLs share a fingerprint
//! is below one in a million.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

/// A fingerprint of a normalised URL: FNV-1a, stable across runs and Rust versions, so a
/// saved frontier's fingerprints still match when the crawl resumes.
pub fn fingerprint(url: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in url.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // FNV's low bits mix poorly for short inputs; fold the high half in before the
    // set uses the low bits as the bucket index.
    hash ^ (hash >> 32)
}

/// The fingerprints are already hashes: the set uses them as they are.
#[derive(Debug, Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 fingerprints are hashed");
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// What inserting a URL found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First time: crawl it.
    New,
    /// Its fingerprint is already in the set: the URL was met before (crawled, queued or
    /// skipped), or, very rarely, another URL shares its fingerprint.
    Duplicate,
    /// The set is full: the URL cannot be tracked, so it is not crawled.
    Full,
}

/// The set of fingerprints, with a capacity.
#[derive(Debug)]
pub struct SeenSet {
    set: HashSet<u64, BuildHasherDefault<Identity>>,
    capacity: usize,
}

impl SeenSet {
    /// An empty set holding at most `capacity` URLs.
    pub fn new(capacity: usize) -> SeenSet {
        SeenSet {
            set: HashSet::default(),
            capacity,
        }
    }

    /// Records `url` (normalised) and says whether it is new.
    pub fn insert(&mut self, url: &str) -> Seen {
        let print = fingerprint(url);
        if self.set.contains(&print) {
            Seen::Duplicate
        } else if self.set.len() >= self.capacity {
            Seen::Full
        } else {
            self.set.insert(print);
            Seen::New
        }
    }

    /// Adds a fingerprint from a saved frontier.
    pub fn restore(&mut self, print: u64) {
        self.set.insert(print);
    }

    /// Every fingerprint, to save.
    pub fn fingerprints(&self) -> impl Iterator<Item = u64> + '_ {
        self.set.iter().copied()
    }

    /// Fingerprints held: URLs seen, counting those restored from a saved frontier.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether nothing was seen yet.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_found_and_the_capacity_holds() {
        let mut seen = SeenSet::new(2);
        assert_eq!(seen.insert("http://a/1"), Seen::New);
        assert_eq!(seen.insert("http://a/1"), Seen::Duplicate);
        assert_eq!(seen.insert("http://a/2"), Seen::New);
        assert_eq!(seen.insert("http://a/3"), Seen::Full);
        assert_eq!(seen.insert("http://a/2"), Seen::Duplicate);
        assert_eq!(seen.len(), 2);
    }

    #[test]
    fn fingerprints_are_stable() {
        // Saved frontiers depend on this value never changing.
        assert_eq!(
            fingerprint(""),
            0xcbf2_9ce4_8422_2325 ^ (0xcbf2_9ce4_8422_2325 >> 32)
        );
        assert_ne!(fingerprint("http://a/1"), fingerprint("http://a/2"));
    }
}
