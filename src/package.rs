//! The release package: a reproducible gzip'd tar of `package.dir` plus its sha256.
//!
//! Reproducible means the bytes depend only on the tree's names, contents, symlink targets and
//! executable bits: entries are sorted by name, and owners, mtimes and other modes are fixed.
//! It is streamed (file → tar → gzip → sha256 → disk), so memory does not grow with the build.
//! Symlinks are stored as symlinks and never followed, so nothing outside the tree gets in.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use flate2::{Compression, GzBuilder};
use sha2::{Digest, Sha256};
use tar::{EntryType, Header, HeaderMode};
use walkdir::WalkDir;

use crate::error::{Context, Error, Result};

/// A built package on local disk.
#[derive(Debug, Clone)]
pub struct Package {
    pub path: PathBuf,
    pub name: String,
    pub sha256: String,
    pub size: u64,
    pub files: u64,
    /// Sum of the file sizes that went in (before compression).
    pub input_bytes: u64,
}

/// `<app>-<sha7>.tar.gz`
pub fn file_name(app: &str, sha7: &str) -> String {
    format!("{app}-{sha7}.tar.gz")
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Whether `rel` (a path relative to the package root) is excluded: a pattern without `/`
/// matches any path component (like `.gitignore`), one with `/` matches a leading path.
fn excluded(rel: &Path, exclude: &[String]) -> bool {
    exclude.iter().any(|pattern| {
        if pattern.contains('/') {
            rel.starts_with(pattern)
        } else {
            rel.components().any(|c| c.as_os_str() == pattern.as_str())
        }
    })
}

struct Entry {
    rel: PathBuf,
    abs: PathBuf,
    meta: std::fs::Metadata,
}

/// Lists the tree in archive order, refusing what cannot be shipped.
fn scan(dir: &Path, exclude: &[String]) -> Result<Vec<Entry>> {
    let meta = std::fs::metadata(dir).map_err(|e| Error::invalid(format!("package.dir: {}: {e}", dir.display())))?;
    if !meta.is_dir() {
        return Err(Error::invalid(format!(
            "package.dir: {} is not a directory",
            dir.display()
        )));
    }
    let mut entries = Vec::new();
    let walker = WalkDir::new(dir)
        .follow_links(false)
        .sort_by_file_name()
        .min_depth(1)
        .into_iter();
    let walker = walker.filter_entry(|e| {
        e.path()
            .strip_prefix(dir)
            .map(|rel| !excluded(rel, exclude))
            .unwrap_or(false)
    });
    for item in walker {
        let item = item.map_err(|e| Error::invalid(format!("package.dir: {e}")))?;
        let rel = item
            .path()
            .strip_prefix(dir)
            .map_err(|e| Error::failed(e.to_string()))?
            .to_path_buf();
        let meta = item
            .path()
            .symlink_metadata()
            .context(format!("package: {}", item.path().display()))?;
        let ft = meta.file_type();
        if !(ft.is_file() || ft.is_dir() || ft.is_symlink()) {
            return Err(Error::invalid(format!(
                "package.dir: {} is not a file, directory or symlink (sockets, pipes and devices cannot be shipped)",
                item.path().display()
            )));
        }
        entries.push(Entry {
            rel,
            abs: item.path().to_path_buf(),
            meta,
        });
    }
    let files = entries.iter().filter(|e| !e.meta.is_dir()).count();
    if files == 0 {
        return Err(Error::invalid(format!(
            "package.dir: {} holds no files to ship",
            dir.display()
        )));
    }
    Ok(entries)
}

/// Counts and hashes what passes through to the file.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reports input bytes as they are read.
struct ProgressReader<'a, R> {
    inner: R,
    progress: &'a dyn Fn(u64),
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.progress)(n as u64);
        Ok(n)
    }
}

/// Total input size, for progress bars.
pub fn input_size(dir: &Path, exclude: &[String]) -> Result<u64> {
    Ok(scan(dir, exclude)?
        .iter()
        .filter(|e| e.meta.is_file())
        .map(|e| e.meta.len())
        .sum())
}

/// Builds the package of `dir` into `out_dir/<name>`; `progress` gets input byte counts.
pub fn build(dir: &Path, exclude: &[String], out_dir: &Path, name: &str, progress: &dyn Fn(u64)) -> Result<Package> {
    let entries = scan(dir, exclude)?;
    let path = out_dir.join(name);
    let file = File::create(&path).context(format!("package: create {}", path.display()))?;
    let hashing = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        hasher: Sha256::new(),
        written: 0,
    };
    // mtime 0 and a fixed OS byte keep the gzip header reproducible.
    let gz = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(hashing, Compression::new(6));
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    let (mut files, mut input_bytes) = (0u64, 0u64);
    for e in &entries {
        let mut header = Header::new_gnu();
        header.set_metadata_in_mode(&e.meta, HeaderMode::Deterministic);
        let ctx = || format!("package: {}", e.abs.display());
        if e.meta.file_type().is_symlink() {
            let target = std::fs::read_link(&e.abs).context(ctx())?;
            header.set_entry_type(EntryType::Symlink);
            header.set_size(0);
            tar.append_link(&mut header, &e.rel, &target).context(ctx())?;
        } else if e.meta.is_dir() {
            header.set_entry_type(EntryType::Directory);
            header.set_size(0);
            tar.append_data(&mut header, &e.rel, io::empty()).context(ctx())?;
        } else {
            let f = File::open(&e.abs).context(ctx())?;
            // A file that changes size while we read it would corrupt the archive: tar's
            // append_data pads/limits to the header size, and we check the count afterwards.
            let len = e.meta.len();
            header.set_size(len);
            let reader = ProgressReader {
                inner: f.take(len),
                progress,
            };
            tar.append_data(&mut header, &e.rel, reader).context(ctx())?;
            files += 1;
            input_bytes += len;
        }
    }
    let gz = tar.into_inner().context("package: finish tar")?;
    let mut hashing = gz.finish().context("package: finish gzip")?;
    hashing.flush().context("package: flush")?;
    let HashingWriter { inner, hasher, written } = hashing;
    inner
        .into_inner()
        .map_err(|e| Error::failed(format!("package: write {}: {}", path.display(), e.error())))?
        .sync_all()
        .context("package: sync")?;
    Ok(Package {
        path,
        name: name.to_string(),
        sha256: hex(&hasher.finalize()),
        size: written,
        files,
        input_bytes,
    })
}

/// sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).context(format!("open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).context(format!("read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn tree(root: &Path, order: &[&str]) {
        for name in order {
            let p = root.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, format!("content of {name}\n").repeat(50)).unwrap();
        }
        symlink("/etc/passwd", root.join("passwd-link")).unwrap();
        std::fs::set_permissions(root.join("bin/run"), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::create_dir_all(root.join("node_modules/x")).unwrap();
        std::fs::write(root.join("node_modules/x/index.js"), "excluded").unwrap();
    }

    #[test]
    fn same_tree_same_bytes_whatever_order_and_mtimes() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        tree(
            a.path(),
            &["z.js", "a/b.json", "bin/run", "name with space.txt", "ünï.js"],
        );
        tree(
            b.path(),
            &["ünï.js", "bin/run", "name with space.txt", "a/b.json", "z.js"],
        );
        touch_all(b.path());
        let pa = build(a.path(), &["node_modules".into()], out.path(), "a.tar.gz", &|_| {}).unwrap();
        let pb = build(b.path(), &["node_modules".into()], out.path(), "b.tar.gz", &|_| {}).unwrap();
        assert_eq!(pa.sha256, pb.sha256);
        assert_eq!(pa.sha256, sha256_file(&pa.path).unwrap());
        assert_eq!(pa.files, 5);

        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(File::open(&pa.path).unwrap()));
        let mut names = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let name = entry.path().unwrap().display().to_string();
            if name == "passwd-link" {
                assert_eq!(entry.header().entry_type(), EntryType::Symlink);
                assert_eq!(entry.link_name().unwrap().unwrap().to_str(), Some("/etc/passwd"));
            }
            if name == "bin/run" {
                assert_eq!(entry.header().mode().unwrap(), 0o755);
            }
            assert_eq!(entry.header().uid().unwrap(), 0);
            names.push(name);
        }
        assert!(!names.iter().any(|n| n.contains("node_modules")), "{names:?}");
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }

    fn touch_all(root: &Path) {
        for e in WalkDir::new(root).into_iter().filter_map(|e| e.ok()) {
            if e.file_type().is_file() {
                let f = File::options().append(true).open(e.path()).unwrap();
                f.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000))
                    .unwrap();
            }
        }
    }

    #[test]
    fn missing_and_empty_dirs_are_invalid() {
        let out = tempfile::tempdir().unwrap();
        let e = build(Path::new("/nonexistent/dir"), &[], out.path(), "x.tar.gz", &|_| {}).unwrap_err();
        assert_eq!(e.kind, crate::error::Kind::Invalid);
        let empty = tempfile::tempdir().unwrap();
        std::fs::create_dir(empty.path().join("sub")).unwrap();
        let e = build(empty.path(), &[], out.path(), "x.tar.gz", &|_| {}).unwrap_err();
        assert!(e.message.contains("no files"), "{}", e.message);
    }
}
