//! Where a mailbox lives: a store path from the directory, checked, under a shard root.
//!
//! A store path comes from the directory (`mailfoldMailStore`), so a mistake or a hostile
//! write there must not reach outside the shard. Before any file operation the path is
//! checked as text (relative, no `..`, no empty or dot segments, no NUL or control
//! characters, bounded length) and, once joined to the root, the part of it that exists is
//! resolved through symlinks and must still be inside the root.

use std::path::{Component, Path, PathBuf};

use crate::error::StoreError;

/// Longest store path accepted, in bytes.
pub const MAX_STORE_PATH: usize = 1024;
/// Longest segment accepted, in bytes (the usual file-name limit).
pub const MAX_SEGMENT: usize = 255;

/// Checks a store path as text; the `Ok` value is the path to join to a shard root.
pub fn validate_store_path(text: &str) -> Result<&Path, StoreError> {
    let invalid = |reason: &str| StoreError::InvalidStorePath(format!("{text:?}: {reason}"));
    if text.is_empty() {
        return Err(invalid("empty"));
    }
    if text.len() > MAX_STORE_PATH {
        return Err(invalid("too long"));
    }
    if text.chars().any(|c| c.is_control() || c == '\\') {
        return Err(invalid("control character or backslash"));
    }
    if text.starts_with('/') {
        return Err(invalid("absolute"));
    }
    for segment in text.split('/') {
        if segment.is_empty() {
            return Err(invalid("empty segment"));
        }
        if segment.len() > MAX_SEGMENT {
            return Err(invalid("segment too long"));
        }
        // A leading dot would nest one mailbox inside another's Maildir++ folders, and the
        // Maildir's own folders must not be a path component either.
        if segment.starts_with('.') || matches!(segment, "cur" | "new" | "tmp") {
            return Err(invalid("reserved segment"));
        }
    }
    let path = Path::new(text);
    if !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(invalid("not a plain relative path"));
    }
    Ok(path)
}

/// `root/path`, refused when the existing part of it resolves (through symlinks) outside the
/// root. The root itself must exist.
pub fn resolve_within(root: &Path, path: &Path) -> Result<PathBuf, StoreError> {
    let canonical_root = root
        .canonicalize()
        .map_err(|e| StoreError::Unavailable(format!("shard root {}: {e}", root.display())))?;
    let joined = canonical_root.join(path);
    check_within(&canonical_root, &joined)?;
    Ok(joined)
}

/// Resolves the deepest existing ancestor of `path` and checks it is inside `root`.
pub fn check_within(root: &Path, path: &Path) -> Result<(), StoreError> {
    let mut existing = path;
    loop {
        match existing.canonicalize() {
            Ok(real) if real.starts_with(root) => return Ok(()),
            Ok(real) => {
                return Err(StoreError::InvalidStorePath(format!(
                    "{} leaves the shard root (resolves to {})",
                    path.display(),
                    real.display()
                )));
            }
            Err(_) => match existing.parent() {
                Some(parent) => existing = parent,
                None => return Err(StoreError::InvalidStorePath("no existing ancestor".into())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_store_paths_are_accepted() {
        for path in ["2a/4c/u-0001", "u1", "a/b/c/d/e"] {
            assert!(validate_store_path(path).is_ok(), "{path}");
        }
    }

    #[test]
    fn traversal_absolute_and_odd_paths_are_refused() {
        let long_segment = "a".repeat(256);
        let long_path = ["ab"; 400].join("/");
        for path in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "a//b",
            "a/",
            "a\0b",
            "a\nb",
            "a\\b",
            "a/.Sent",
            "a/cur",
            ".hidden",
            long_segment.as_str(),
            long_path.as_str(),
        ] {
            assert!(validate_store_path(path).is_err(), "{path:?} was accepted");
        }
    }

    #[test]
    fn a_symlink_out_of_the_root_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("ab")).unwrap();
        let error = resolve_within(root.path(), Path::new("ab/cd/u1")).unwrap_err();
        assert!(matches!(error, StoreError::InvalidStorePath(_)), "{error}");

        std::fs::create_dir(root.path().join("ok")).unwrap();
        let inside = resolve_within(root.path(), Path::new("ok/u1")).unwrap();
        assert!(inside.ends_with("ok/u1"));
    }

    #[test]
    fn a_missing_root_is_a_temporary_failure() {
        let error = resolve_within(Path::new("/nonexistent/shard"), Path::new("a")).unwrap_err();
        assert!(error.is_temporary());
    }
}
