//! `docs/guide.md` stays true: every link resolves, and every runnable example is in it.

use std::path::Path;

use weir_examples::{check_markdown_file, links};

fn guide() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/guide.md")
}

#[test]
fn every_link_in_the_guide_resolves() {
    let broken = check_markdown_file(&guide()).expect("docs/guide.md is readable");
    let report: Vec<String> = broken.iter().map(ToString::to_string).collect();
    assert!(
        report.is_empty(),
        "broken links in docs/guide.md:\n{}",
        report.join("\n")
    );
}

#[test]
fn the_guide_links_every_runnable_example() {
    let text = std::fs::read_to_string(guide()).expect("docs/guide.md is readable");
    let targets: Vec<String> = links(&text).into_iter().map(|(_, target)| target).collect();
    // Every example of the package: its `.rs` files other than the link check itself.
    let directory = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut examples: Vec<String> = std::fs::read_dir(directory)
        .expect("the examples directory is readable")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".rs") && !name.starts_with("guide_"))
        .collect();
    examples.sort();
    assert!(examples.len() >= 4, "examples found: {examples:?}");
    for example in examples {
        let path = format!("../examples/{example}");
        assert!(
            targets.iter().any(|target| target.starts_with(&path)),
            "docs/guide.md does not link {path}"
        );
    }
}
