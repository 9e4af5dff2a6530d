//! The release package: a reproducible gzip'd tar of `package.dir` plus its sha256.
//!
//! Reproducible means the bytes depend only on the tree's names, contents, symlink targets and
//! executable bits: entries are sorted by name, and owners, mtimes and other modes are fixed.
//! It is streamed (file → tar → gzip → sha256 → disk), so memory does not grow with the build.
//! Symlinks are stored as symlinks and never followed, so nothing outside the tree gets in.
//!
//! Compression is parallel and still one standard gzip stream ([`gzip`]).

mod gzip;

use gzip::{ParallelGz, worker_threads};

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

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

/// One archive member, kept small (a tree of 100 000 files must not cost much memory): its
/// metadata is read again when it is archived.
struct Entry {
    rel: Box<Path>,
    kind: Kind,
    len: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
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
        let kind = if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_dir() {
            Kind::Dir
        } else {
            Kind::File
        };
        entries.push(Entry {
            rel: rel.into_boxed_path(),
            kind,
            len: meta.len(),
        });
    }
    let files = entries.iter().filter(|e| e.kind != Kind::Dir).count();
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
        .filter(|e| e.kind == Kind::File)
        .map(|e| e.len)
        .sum())
}

/// Appends one regular file of `len` bytes. tar writes the header's size and pads whatever the
/// reader gives to it, so a file that shrank or grew while it was read would make an archive
/// that does not hold the file (with a valid sha256): count what was read and check for more.
fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    header: &mut Header,
    rel: &Path,
    abs: &Path,
    len: u64,
    progress: &dyn Fn(u64),
) -> Result<()> {
    let ctx = || format!("package: {}", abs.display());
    let f = File::open(abs).context(ctx())?;
    header.set_size(len);
    let mut reader = ProgressReader {
        inner: f.take(len),
        progress,
    };
    tar.append_data(header, rel, &mut reader).context(ctx())?;
    let read = len - reader.inner.limit();
    let mut more = [0u8; 1];
    let grew = reader.inner.into_inner().read(&mut more).context(ctx())? > 0;
    if read != len || grew {
        return Err(Error::failed(format!(
            "package: {} changed size while it was packaged ({len} bytes when listed, {}); nothing was uploaded, package again once the build is finished",
            abs.display(),
            if grew {
                "more when read".to_string()
            } else {
                format!("{read} when read")
            }
        )));
    }
    Ok(())
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
    let gz = ParallelGz::new(hashing, 6, worker_threads())?;
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    let (mut files, mut input_bytes) = (0u64, 0u64);
    for e in &entries {
        let mut header = Header::new_gnu();
        let abs = dir.join(&e.rel);
        let ctx = || format!("package: {}", abs.display());
        let meta = abs.symlink_metadata().context(ctx())?;
        let ft = meta.file_type();
        let same_kind = match e.kind {
            Kind::File => ft.is_file(),
            Kind::Dir => ft.is_dir(),
            Kind::Symlink => ft.is_symlink(),
        };
        if !same_kind {
            return Err(Error::failed(format!(
                "package: {} changed type while packaging",
                abs.display()
            )));
        }
        header.set_metadata_in_mode(&meta, HeaderMode::Deterministic);
        if e.kind == Kind::Symlink {
            let target = std::fs::read_link(&abs).context(ctx())?;
            header.set_entry_type(EntryType::Symlink);
            header.set_size(0);
            tar.append_link(&mut header, &e.rel, &target).context(ctx())?;
        } else if e.kind == Kind::Dir {
            header.set_entry_type(EntryType::Directory);
            header.set_size(0);
            tar.append_data(&mut header, &e.rel, io::empty()).context(ctx())?;
        } else {
            let len = meta.len();
            append_file(&mut tar, &mut header, &e.rel, &abs, len, progress)?;
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
    use super::gzip::BLOCK;
    use super::*;
    use flate2::Compression;
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

    fn parallel_gz(data: &[u8], threads: usize, write_size: usize) -> Vec<u8> {
        let mut gz = ParallelGz::new(Vec::new(), 6, threads).unwrap();
        for chunk in data.chunks(write_size.max(1)) {
            gz.write_all(chunk).unwrap();
        }
        gz.finish().unwrap()
    }

    #[test]
    fn parallel_gzip_is_one_standard_stream_whatever_the_threads() {
        // Compressible text with repeats that cross block boundaries, plus an incompressible run.
        let mut data = Vec::new();
        let mut x: u32 = 7;
        while data.len() < 3 * BLOCK + 12345 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            if data.len() > BLOCK && data.len() < BLOCK + 200_000 {
                data.push((x >> 16) as u8);
            } else {
                data.extend_from_slice(format!("line {} of the journal;", x % 1000).as_bytes());
            }
        }
        for len in [0, 1, BLOCK, BLOCK + 1, data.len()] {
            let input = &data[..len];
            let one = parallel_gz(input, 1, 4096);
            let many = parallel_gz(input, 3, 1 << 20 | 17);
            assert_eq!(one, many, "len {len}: bytes depend on threads or write sizes");
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&one[..]).read_to_end(&mut back).unwrap();
            assert_eq!(back, input, "len {len}: round trip");
            // gzip's own trailer check (CRC-32 + length) via the multi-member-aware decoder too.
            let mut again = Vec::new();
            flate2::read::MultiGzDecoder::new(&one[..])
                .read_to_end(&mut again)
                .unwrap();
            assert_eq!(again.len(), len);
        }
        // Priming with the previous block keeps the ratio close to a single-stream deflate.
        let single = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), Compression::new(6));
            e.write_all(&data).unwrap();
            e.finish().unwrap()
        };
        let par = parallel_gz(&data, 2, 65536);
        assert!(
            par.len() <= single.len() + single.len() / 100 + 64,
            "{} vs {}",
            par.len(),
            single.len()
        );
    }

    /// Issue #14, item 13: a file that shrinks or grows while it is read fails the packaging,
    /// naming the file, instead of producing an archive that does not hold it. The progress
    /// callback, called after each chunk read, changes the file at a fixed point.
    #[test]
    fn a_file_whose_size_changes_while_packaged_fails_packaging() {
        let out = tempfile::tempdir().unwrap();
        for grow in [true, false] {
            let src = tempfile::tempdir().unwrap();
            let log = src.path().join("build.log");
            std::fs::write(&log, vec![b'x'; 4 << 20]).unwrap();
            std::fs::write(src.path().join("a.js"), "ok\n").unwrap();
            // Only build.log's chunks are large; the first of them triggers the change.
            let changed = std::cell::Cell::new(false);
            let progress = |n: u64| {
                if n >= 4096 && !changed.replace(true) {
                    let f = File::options().append(true).open(&log).unwrap();
                    if grow {
                        (&f).write_all(b"more output\n").unwrap();
                    } else {
                        f.set_len(10).unwrap();
                    }
                }
            };
            let e = build(src.path(), &[], out.path(), "x.tar.gz", &progress).unwrap_err();
            assert!(
                e.message.contains("build.log") && e.message.contains("changed size"),
                "grow {grow}: {}",
                e.message
            );
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
