//! The page and small HTTP endpoints: content types, /healthz, 404, 426, traversal refused.

use crate::common::*;

#[test]
fn page_assets_health_and_errors() {
    let server = start(|_| {});
    let addr = server.local_addr();

    let (status, head, body) = http_get(addr, "/");
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(head.contains("content-security-policy:"), "{head}");
    assert!(String::from_utf8_lossy(&body).contains("<html"));

    let (status, head, body) = http_get(addr, "/healthz");
    assert_eq!(status, 200);
    assert!(head.contains("content-type: application/json"));
    assert_eq!(body, br#"{"ok":1}"#);

    let (status, head, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/plain"));
    assert!(String::from_utf8_lossy(&body).contains("wschat_connections 0"));

    assert_eq!(http_get(addr, "/no-such-file.js").0, 404);
    // WebSocket endpoints asked for as pages say what they want.
    let (status, head, _) = http_get(addr, "/echo");
    assert_eq!(status, 426);
    assert!(head.contains("upgrade: websocket"));
}

#[test]
fn every_public_file_is_served_with_its_content_type() {
    let server = start(|_| {});
    let addr = server.local_addr();
    let public = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("public");
    let mut checked = 0;
    for entry in std::fs::read_dir(&public).unwrap().flatten() {
        let name = entry.file_name().into_string().unwrap();
        let expected = match name.rsplit('.').next().unwrap() {
            "html" => "text/html; charset=utf-8",
            "js" => "text/javascript; charset=utf-8",
            "css" => "text/css; charset=utf-8",
            "svg" => "image/svg+xml",
            "png" => "image/png",
            "json" => "application/json",
            _ => continue,
        };
        let (status, head, body) = http_get(addr, &format!("/{name}"));
        assert_eq!(status, 200, "{name}");
        assert!(
            head.contains(&format!("content-type: {expected}")),
            "{name}: {head}"
        );
        assert_eq!(body, std::fs::read(entry.path()).unwrap(), "{name}");
        checked += 1;
    }
    assert!(checked >= 1);
}

#[test]
fn path_traversal_is_refused() {
    let server = start(|_| {});
    let addr = server.local_addr();
    for path in [
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/%2E%2E/%2E%2E/etc/passwd",
        "//etc/passwd",
        "/..%2fCargo.toml",
        "/public/../Cargo.toml",
    ] {
        let (status, _, body) = http_get(addr, path);
        assert_eq!(status, 404, "{path}");
        assert!(
            !String::from_utf8_lossy(&body).contains("[package]"),
            "{path}"
        );
    }
}

#[test]
fn page_from_a_folder_on_disk_cannot_escape_it() {
    let dir = std::env::temp_dir().join(format!("wschat-public-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "<html>from disk</html>").unwrap();
    std::fs::write(dir.join("../wschat-secret.txt"), "secret").unwrap();
    let server = start(|c| c.public_dir = Some(dir.clone()));
    let addr = server.local_addr();
    let (status, _, body) = http_get(addr, "/");
    assert_eq!(status, 200);
    assert_eq!(body, b"<html>from disk</html>");
    assert_eq!(http_get(addr, "/../wschat-secret.txt").0, 404);
    assert_eq!(http_get(addr, "/%2e%2e/wschat-secret.txt").0, 404);
    let _ = std::fs::remove_dir_all(&dir);
}
