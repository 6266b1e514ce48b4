//! The check that keeps `docs/guide.md` true as code moves: every link in a Markdown file
//! must point at a file in the repository, and its fragment at something that file holds.
//!
//! The guide links code by *item*, not by line, so that a link survives edits around it:
//! `../crates/weir-http/src/conn.rs#serve_connection` or `…/hub.rs#Hub::publish`. A line
//! number would go stale silently; an item that is renamed or moved fails this check.
//!
//! The rules:
//! - A link is `[text](target)` outside code (reference-style links are not read; the guide
//!   does not use them). External links (`scheme://`) are refused: the guide should be
//!   readable and checkable from the checkout alone.
//! - A target without a fragment must be an existing file or directory, relative to the
//!   Markdown file.
//! - In a `.rs` file, the fragment `Name` must be defined there: a line that starts, after
//!   qualifiers such as `pub(crate) async`, with `fn`, `struct`, `enum`, `trait`, `type`,
//!   `const`, `static`, `mod` or `macro_rules!` and the name (a mention in a comment does not
//!   count). `Type::name` needs `Type` defined or named on an `impl` line, and `fn name`
//!   somewhere in the file (not necessarily in that `impl`: a line-based check).
//! - In a Markdown file (or the same file, `#fragment`), the fragment must be the slug of
//!   one of its headings, as GitHub makes them.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::Path;

/// A link that points at nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLink {
    /// The line of the Markdown file the link is on, from 1.
    pub line: usize,
    /// The link's target as written.
    pub target: String,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for BrokenLink {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "line {}: ({}) {}",
            self.line, self.target, self.problem
        )
    }
}

/// Checks every link of the Markdown file at `markdown`, returning the broken ones.
///
/// # Errors
/// Fails only when `markdown` itself cannot be read; an unreadable target is a broken link.
pub fn check_markdown_file(markdown: &Path) -> io::Result<Vec<BrokenLink>> {
    let text = fs::read_to_string(markdown)?;
    let base = markdown.parent().unwrap_or(Path::new("."));
    let mut sources = HashMap::new();
    let own_headings = heading_slugs(&text);
    let mut broken = Vec::new();
    for (line, target) in links(&text) {
        if let Err(problem) = check_target(base, &target, &own_headings, &mut sources) {
            broken.push(BrokenLink {
                line,
                target,
                problem,
            });
        }
    }
    Ok(broken)
}

/// The `(line, target)` of each inline link outside fenced code blocks and code spans.
pub fn links(markdown: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut in_fence = false;
    for (index, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        // Split on backticks: the odd-numbered pieces are code spans, which hold no links.
        for (piece_index, piece) in line.split('`').enumerate() {
            if piece_index % 2 == 1 {
                continue;
            }
            let mut rest = piece;
            while let Some(start) = rest.find("](") {
                let after = &rest[start + 2..];
                let Some(end) = after.find(')') else { break };
                found.push((index + 1, after[..end].trim().to_owned()));
                rest = &after[end + 1..];
            }
        }
    }
    found
}

fn check_target(
    base: &Path,
    target: &str,
    own_headings: &[String],
    sources: &mut HashMap<String, Result<String, String>>,
) -> Result<(), String> {
    if target.contains("://") || target.starts_with("mailto:") {
        return Err("an external link: the guide links only into the repository".to_owned());
    }
    let (path, fragment) = match target.split_once('#') {
        Some((path, fragment)) => (path, Some(fragment)),
        None => (target, None),
    };
    if path.is_empty() {
        let fragment = fragment.unwrap_or_default();
        return match own_headings.iter().any(|slug| slug == fragment) {
            true => Ok(()),
            false => Err(format!("no heading of this file has the slug `{fragment}`")),
        };
    }
    let file = base.join(path);
    if !file.exists() {
        return Err(format!("{} does not exist", file.display()));
    }
    let Some(fragment) = fragment else {
        return Ok(());
    };
    let source = sources
        .entry(path.to_owned())
        .or_insert_with(|| fs::read_to_string(&file).map_err(|error| error.to_string()))
        .as_ref()
        .map_err(|error| format!("cannot read {}: {error}", file.display()))?;
    if path.ends_with(".rs") {
        check_item(source, fragment)
    } else if path.ends_with(".md") {
        match heading_slugs(source).iter().any(|slug| slug == fragment) {
            true => Ok(()),
            false => Err(format!("no heading of {path} has the slug `{fragment}`")),
        }
    } else {
        Err("a fragment on a file that is neither Rust nor Markdown cannot be checked".to_owned())
    }
}

/// The keywords that introduce a named item.
const ITEM_KEYWORDS: [&str; 9] = [
    "fn",
    "struct",
    "enum",
    "trait",
    "type",
    "const",
    "static",
    "mod",
    "macro_rules!",
];

fn check_item(source: &str, item: &str) -> Result<(), String> {
    match item.split_once("::") {
        None if ITEM_KEYWORDS
            .iter()
            .any(|keyword| defines(source, keyword, item)) =>
        {
            Ok(())
        }
        None => Err(format!("the file defines no item named `{item}`")),
        Some((owner, function)) => {
            let owner_present = ITEM_KEYWORDS
                .iter()
                .any(|keyword| defines(source, keyword, owner))
                || source.lines().any(|line| {
                    let line = line.trim_start();
                    (line.starts_with("impl") || line.starts_with("unsafe impl"))
                        && contains_word(line, owner)
                });
            if !owner_present {
                return Err(format!("the file neither defines nor implements `{owner}`"));
            }
            match defines(source, "fn", function) {
                true => Ok(()),
                false => Err(format!("the file has no `fn {function}`")),
            }
        }
    }
}

/// Qualifiers that may come before an item's keyword (`pub(crate) async fn`).
const QUALIFIERS: [&str; 7] = [
    "pub(crate)",
    "pub(super)",
    "pub",
    "async",
    "const",
    "unsafe",
    "extern \"C\"",
];

/// Whether a line of `source` defines `name` with `keyword`: it starts, after qualifiers,
/// with `keyword name` as whole words. A mention in a `//` comment or inside a line does not
/// count; a line of a multi-line string or a `/* */` block that starts so would (the check
/// reads lines, not Rust, which is enough to keep links from going stale).
fn defines(source: &str, keyword: &str, name: &str) -> bool {
    let wanted = format!("{keyword} {name}");
    source.lines().any(|line| {
        let mut rest = line.trim_start();
        loop {
            if starts_with_word(rest, &wanted) {
                return true;
            }
            let after_qualifier = QUALIFIERS.iter().find_map(|qualifier| {
                rest.strip_prefix(qualifier)
                    .filter(|after| after.starts_with(char::is_whitespace))
            });
            match after_qualifier {
                Some(after) => rest = after.trim_start(),
                None => return false,
            }
        }
    })
}

fn starts_with_word(text: &str, word: &str) -> bool {
    text.strip_prefix(word)
        .is_some_and(|after| !after.starts_with(|c: char| c.is_alphanumeric() || c == '_'))
}

fn contains_word(haystack: &str, word: &str) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    haystack.match_indices(word).any(|(start, _)| {
        let before = haystack[..start].chars().next_back();
        let after = haystack[start + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

/// The anchors GitHub gives the headings of `markdown`: lower case, spaces to hyphens,
/// punctuation other than `-` and `_` dropped, and `-1`, `-2`… on repeats.
pub fn heading_slugs(markdown: &str) -> Vec<String> {
    let mut slugs = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut in_fence = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        }
        if in_fence || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#');
        if !title.starts_with(' ') {
            continue;
        }
        let slug: String = title
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let repeats = seen.entry(slug.clone()).or_default();
        slugs.push(match *repeats {
            0 => slug,
            n => format!("{slug}-{n}"),
        });
        *repeats += 1;
    }
    slugs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_links_outside_code_only() {
        let markdown = "See [a](x.rs#f) and `[b](y.rs)`.\n```\n[c](z.rs)\n```\n[d](w.md)";
        assert_eq!(
            links(markdown),
            [(1, "x.rs#f".to_owned()), (5, "w.md".to_owned())]
        );
    }

    #[test]
    fn items_must_be_defined_as_whole_words() {
        let source = "pub struct Hub;\nimpl Hub {\n    pub async fn publish(&self) {}\n}\n\
                      fn helper_two() {}\nmacro_rules! row { () => {} }";
        assert!(check_item(source, "Hub").is_ok());
        assert!(check_item(source, "Hub::publish").is_ok());
        assert!(check_item(source, "row").is_ok());
        assert!(
            check_item(source, "helper").is_err(),
            "a prefix is not the item"
        );
        assert!(check_item(source, "Hub::subscribe").is_err());
        assert!(check_item(source, "Topic::publish").is_err());
        let mentions = "// fn ghost() is gone\nlet text = \"struct Phantom\";\n\
                        pub(crate) const fn limit() {}\npub const MAX: u8 = 1;";
        assert!(
            check_item(mentions, "ghost").is_err(),
            "a comment is not a definition"
        );
        assert!(
            check_item(mentions, "Phantom").is_err(),
            "a string is not a definition"
        );
        assert!(check_item(mentions, "limit").is_ok());
        assert!(check_item(mentions, "MAX").is_ok());
    }

    #[test]
    fn heading_slugs_follow_github() {
        let markdown = "# The `Future` trait\n## Select and race (`select!`)\n## Notes\n## Notes";
        assert_eq!(
            heading_slugs(markdown),
            [
                "the-future-trait",
                "select-and-race-select",
                "notes",
                "notes-1"
            ]
        );
    }

    #[test]
    fn reports_missing_files_items_and_external_links() {
        let directory =
            std::env::temp_dir().join(format!("weir-guide-links-{}", std::process::id()));
        fs::create_dir_all(&directory).unwrap();
        fs::write(directory.join("code.rs"), "fn present() {}\n").unwrap();
        let guide = directory.join("guide.md");
        fs::write(
            &guide,
            "# Top\n[ok](code.rs#present) [ok](#top) [ok](code.rs)\n\
             [gone](code.rs#absent) [gone](missing.rs) [ext](https://example.invalid) [gone](#bottom)\n",
        )
        .unwrap();
        let broken = check_markdown_file(&guide).unwrap();
        fs::remove_dir_all(&directory).unwrap();
        let targets: Vec<&str> = broken.iter().map(|link| link.target.as_str()).collect();
        assert_eq!(
            targets,
            [
                "code.rs#absent",
                "missing.rs",
                "https://example.invalid",
                "#bottom"
            ]
        );
        assert!(broken.iter().all(|link| link.line == 3));
    }
}
