//! Embeds every file under `public/` into the binary, so that a copied binary serves the page.
//!
//! Generates `$OUT_DIR/assets.rs`: a sorted table of (path, bytes, etag) that `src/assets.rs`
//! includes. The ETag is an FNV-1a hash of the contents, computed here once instead of at start.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

fn walk(dir: &Path, base: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        println!("cargo:rerun-if-changed={}", path.display());
        if path.is_dir() {
            walk(&path, base, out);
        } else if path.is_file() {
            out.push(path.strip_prefix(base).expect("below base").to_path_buf());
        }
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

fn main() {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let public = root.join("public");
    println!("cargo:rerun-if-changed={}", public.display());
    let mut files = Vec::new();
    walk(&public, &public, &mut files);
    files.sort();
    let mut src = String::from("/// Files of `public/`: (path relative to it, contents, ETag).\n");
    src.push_str("pub(crate) static FILES: &[(&str, &[u8], &str)] = &[\n");
    for rel in files {
        let abs = public.join(&rel);
        let data = fs::read(&abs).expect("readable file under public/");
        let name = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        writeln!(
            src,
            "    ({name:?}, include_bytes!({:?}), \"\\\"{:016x}\\\"\"),",
            abs.display().to_string(),
            fnv1a(&data)
        )
        .expect("write to String");
    }
    src.push_str("];\n");
    let out = PathBuf::from(env::var("OUT_DIR").expect("set by cargo")).join("assets.rs");
    fs::write(out, src).expect("write generated assets.rs");
}
