//! URL normalisation: one spelling per resource, so dedupe sees through cosmetic
//! differences.
//!
//! The `url` crate parses by the WHATWG URL standard, which already lowercases the scheme
//! and host, drops the scheme's default port and resolves `.` and `..` segments. On top:
//! the fragment goes (it never reaches the server), percent-escapes of unreserved
//! characters are decoded (`%7E` → `~`, RFC 3986 §6.2.2.2) and the others are written in
//! upper case (`%2f` → `%2F`), and an empty query (`?` alone) is dropped.

use url::Url;

/// Resolves `href` against `base` and normalises it; `None` for anything but http(s)
/// (`mailto:`, `javascript:`, `data:`…) or an unparsable reference.
pub fn resolve(base: &Url, href: &str) -> Option<Url> {
    let href = href.trim();
    if href.is_empty() {
        return None;
    }
    normalize(base.join(href).ok()?)
}

/// Normalises an absolute URL; `None` unless it is http or https with a host.
pub fn normalize(mut url: Url) -> Option<Url> {
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return None;
    }
    url.set_fragment(None);
    if url.query() == Some("") {
        url.set_query(None);
    }
    if url.path().contains('%') {
        let path = normalize_escapes(url.path());
        url.set_path(&path);
    }
    if let Some(query) = url.query().filter(|query| query.contains('%')) {
        let query = normalize_escapes(query);
        url.set_query(Some(&query));
    }
    Some(url)
}

/// Decodes escapes of unreserved characters and upper-cases the rest.
fn normalize_escapes(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                let byte = high << 4 | low;
                if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                    out.push(byte as char);
                } else {
                    out.push('%');
                    out.push(bytes[i + 1].to_ascii_uppercase() as char);
                    out.push(bytes[i + 2].to_ascii_uppercase() as char);
                }
                i += 3;
                continue;
            }
        }
        // Everything else is ASCII already (the parser escaped the rest), so a byte is a char.
        out.push(bytes[i] as char);
        i += 1;
    }
    out
}

fn hex(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|digit| digit as u8)
}

/// The host and, when not the scheme's default, the port: the unit of politeness, and the
/// same key weir-client limits a URL's requests under.
pub fn host_key(url: &Url) -> String {
    weir_client::Client::key_of(url).unwrap_or_default()
}

/// Whether `url` is on `site`'s host or one of its subdomains. Without the public suffix
/// list this is the conservative reading of "same site": `blog.example.com` belongs to a
/// crawl that started at `example.com`, `example.org` does not.
pub fn same_site(site: &str, url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    host == site
        || host
            .strip_suffix(site)
            .is_some_and(|prefix| prefix.ends_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(text: &str) -> String {
        normalize(Url::parse(text).unwrap())
            .map(String::from)
            .unwrap_or_default()
    }

    #[test]
    fn cosmetic_differences_vanish() {
        assert_eq!(
            norm("HTTP://Example.COM:80/a/./b/../c#frag"),
            "http://example.com/a/c"
        );
        assert_eq!(norm("https://example.com:443/?"), "https://example.com/");
        assert_eq!(
            norm("http://example.com/%7euser/%2f%41"),
            "http://example.com/~user/%2FA"
        );
        assert_eq!(
            norm("http://example.com/p?q=%3d%2D"),
            "http://example.com/p?q=%3D-"
        );
        assert_eq!(
            norm("http://example.com:8080/x"),
            "http://example.com:8080/x"
        );
    }

    #[test]
    fn only_web_links_resolve() {
        let base = Url::parse("http://example.com/dir/page").unwrap();
        assert_eq!(
            resolve(&base, "other#top").unwrap().as_str(),
            "http://example.com/dir/other"
        );
        assert_eq!(
            resolve(&base, "//cdn.example.com/x").unwrap().as_str(),
            "http://cdn.example.com/x"
        );
        for href in [
            "mailto:a@example.com",
            "javascript:void(0)",
            "data:text/plain,x",
            "",
            "  ",
        ] {
            assert_eq!(resolve(&base, href), None, "{href}");
        }
    }

    #[test]
    fn same_site_means_the_host_or_its_subdomains() {
        let url = |text| Url::parse(text).unwrap();
        assert!(same_site("example.com", &url("http://example.com/")));
        assert!(same_site("example.com", &url("https://blog.example.com/")));
        assert!(!same_site("example.com", &url("http://badexample.com/")));
        assert!(!same_site("example.com", &url("http://example.org/")));
    }
}
