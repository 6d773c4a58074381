//! The files of `public/`, embedded at compile time (or opened from `--public DIR`), with their
//! content types. No request path can reach outside the folder or a dotfile.

use std::borrow::Cow;
use std::io;
use std::path::Path;

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// A file ready to serve.
pub(crate) struct Asset {
    pub body: Body,
    pub content_type: &'static str,
    pub etag: Cow<'static, str>,
}

/// The bytes of an [`Asset`].
pub(crate) enum Body {
    /// A file of the copy embedded in the binary.
    Embedded(&'static [u8]),
    /// A file of `--public DIR`, opened, `len` bytes long: streamed in pieces, never read whole
    /// into memory (a folder may hold large files, and slow readers must not pin them).
    File { file: std::fs::File, len: u64 },
}

/// The file for a URL path, from `dir` when given, else from the embedded copy.
///
/// `Ok(None)` for anything that is not a plain file below the folder: segments that start
/// with `.` (`..`, `.env`, `.git`; also percent-encoded), backslashes, NUL bytes, empty
/// segments (`//etc/passwd`), symlinks that lead outside the folder, files that cannot be
/// opened. `Err` only when the server is out of descriptors or memory (the caller answers 503:
/// the file is there, the server cannot open it now).
pub(crate) fn lookup(dir: Option<&Path>, url_path: &str) -> io::Result<Option<Asset>> {
    let Some(rel) = clean(url_path) else {
        return Ok(None);
    };
    let Some(dir) = dir else {
        return Ok(FILES
            .iter()
            .find(|(name, _, _)| *name == rel)
            .map(|&(_, body, etag)| Asset {
                body: Body::Embedded(body),
                content_type: content_type(&rel),
                etag: Cow::Borrowed(etag),
            }));
    };
    let Ok(root) = dir.canonicalize() else {
        return Ok(None);
    };
    let Ok(path) = root.join(&rel).canonicalize() else {
        return Ok(None);
    };
    if !path.starts_with(&root) {
        return Ok(None);
    }
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM)
            ) =>
        {
            return Err(e);
        }
        Err(_) => return Ok(None),
    };
    let Ok(meta) = file.metadata() else {
        return Ok(None);
    };
    if !meta.is_file() {
        return Ok(None);
    }
    // Size and modification time, as nginx does: hashing the content would mean reading all of
    // it for every request, even one answered 304.
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .unwrap_or_default();
    let etag = format!(
        "\"{:x}-{:x}.{:x}\"",
        meta.len(),
        modified.as_secs(),
        modified.subsec_nanos()
    );
    Ok(Some(Asset {
        body: Body::File {
            file,
            len: meta.len(),
        },
        content_type: content_type(&rel),
        etag: Cow::Owned(etag),
    }))
}

/// The relative file path for a URL path, or `None` if it tries to leave the folder.
fn clean(url_path: &str) -> Option<String> {
    let decoded = crate::http::percent_decode(url_path)?;
    let mut rel = decoded.strip_prefix('/')?.to_string();
    if rel.is_empty() || rel.ends_with('/') {
        rel.push_str("index.html");
    }
    // No segment may start with `.`: that refuses `.` and `..`, and also dotfiles and dot
    // folders (`/.env`, `/.git/config`), which a `--public` folder holds by accident, never as
    // part of the page.
    let ok = rel
        .split('/')
        .all(|seg| !seg.is_empty() && !seg.starts_with('.') && !seg.contains(['\\', '\0']));
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
            "/.env",
            "/%2eenv",
            "/.git/config",
            "/a/.hidden/b.txt",
        ] {
            assert_eq!(clean(bad), None, "{bad}");
        }
        assert_eq!(clean("/").as_deref(), Some("index.html"));
        assert_eq!(clean("/app.js").as_deref(), Some("app.js"));
    }

    #[test]
    fn index_is_embedded_as_html() {
        let a = lookup(None, "/")
            .unwrap()
            .expect("public/index.html is embedded");
        assert_eq!(a.content_type, "text/html; charset=utf-8");
        assert!(a.etag.starts_with('"'));
    }
}
