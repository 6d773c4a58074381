//! The files of `public/`, embedded at compile time (or read from `--public DIR`), with their
//! content types. No request path can reach outside the folder.

use std::borrow::Cow;
use std::path::Path;

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// A file ready to serve.
pub(crate) struct Asset {
    pub body: Cow<'static, [u8]>,
    pub content_type: &'static str,
    pub etag: Cow<'static, str>,
}

/// The file for a URL path, from `dir` when given, else from the embedded copy.
///
/// `None` for anything that is not a plain file below the folder: `..` or `.` segments (also
/// percent-encoded), backslashes, NUL bytes, empty segments (`//etc/passwd`), symlinks that lead
/// outside the folder.
pub(crate) fn lookup(dir: Option<&Path>, url_path: &str) -> Option<Asset> {
    let rel = clean(url_path)?;
    match dir {
        None => {
            let &(_, body, etag) = FILES.iter().find(|(name, _, _)| *name == rel)?;
            Some(Asset {
                body: Cow::Borrowed(body),
                content_type: content_type(&rel),
                etag: Cow::Borrowed(etag),
            })
        }
        Some(dir) => {
            let root = dir.canonicalize().ok()?;
            let path = root.join(&rel).canonicalize().ok()?;
            if !path.starts_with(&root) || !path.is_file() {
                return None;
            }
            let body = std::fs::read(&path).ok()?;
            let etag = format!("\"{:016x}\"", fnv1a(&body));
            Some(Asset {
                body: Cow::Owned(body),
                content_type: content_type(&rel),
                etag: Cow::Owned(etag),
            })
        }
    }
}

/// The relative file path for a URL path, or `None` if it tries to leave the folder.
fn clean(url_path: &str) -> Option<String> {
    let decoded = crate::http::percent_decode(url_path)?;
    let mut rel = decoded.strip_prefix('/')?.to_string();
    if rel.is_empty() || rel.ends_with('/') {
        rel.push_str("index.html");
    }
    let ok = rel
        .split('/')
        .all(|seg| !seg.is_empty() && seg != "." && seg != ".." && !seg.contains(['\\', '\0']));
    ok.then_some(rel)
}

fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit('.').next().unwrap_or("");
    match ext {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_is_refused() {
        for bad in [
            "/../Cargo.toml",
            "/%2e%2e/Cargo.toml",
            "/%2E%2E/Cargo.toml",
            "//etc/passwd",
            "/a/../../x",
            "/.%2f..%2fx",
            "/..\\Cargo.toml",
            "/%00",
            "/%zz",
            "relative",
        ] {
            assert_eq!(clean(bad), None, "{bad}");
        }
        assert_eq!(clean("/").as_deref(), Some("index.html"));
        assert_eq!(clean("/app.js").as_deref(), Some("app.js"));
    }

    #[test]
    fn index_is_embedded_as_html() {
        let a = lookup(None, "/").expect("public/index.html is embedded");
        assert_eq!(a.content_type, "text/html; charset=utf-8");
        assert!(a.etag.starts_with('"'));
    }
}
