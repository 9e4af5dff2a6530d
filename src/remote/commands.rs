//! Every command tj-deploy runs on a host, built as a plain value: a POSIX `sh` script whose
//! every variable part is quoted by [`quote`]. Nothing here talks to a host, so each builder is
//! unit-tested as text. Scripts start with `set -eu`, so a failing line fails the step.

use std::fmt::Write as _;

use crate::config::ReleaseId;
use crate::remote::layout::Layout;

/// A script to run with `sh -c`, and a short label for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    pub label: String,
    text: String,
    repeatable: bool,
    secret: Option<SecretLine>,
}

/// One line a script reads from its standard input into `$TJ_SECRET` before anything else
/// (see [`crate::remote::watched`]): how a password reaches the host without being an argument
/// or an environment variable of any process, where `ps` or `/proc` would show it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretLine(String);

impl std::fmt::Debug for SecretLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretLine(<redacted>)")
    }
}

impl Script {
    fn new(label: &str) -> Self {
        Script {
            label: label.to_string(),
            text: "set -eu\n".to_string(),
            repeatable: false,
            secret: None,
        }
    }
    /// Appends fixed shell text; variable parts must come through [`quote`] or [`Script::var`].
    fn line(mut self, line: &str) -> Self {
        self.text.push_str(line);
        self.text.push('\n');
        self
    }
    /// Appends `NAME=<quoted value>`.
    fn var(mut self, name: &str, value: &str) -> Self {
        let _ = writeln!(self.text, "{name}={}", quote(value));
        self
    }
    pub fn text(&self) -> &str {
        &self.text
    }
    /// Marks a script that leaves the same state however often it runs (remove, switch to a
    /// given release, unlock, …): the SSH transport may run it again on a fresh connection when
    /// the connection died under it. The failure path depends on that.
    fn repeatable(mut self) -> Self {
        self.repeatable = true;
        self
    }
    pub fn is_repeatable(&self) -> bool {
        self.repeatable
    }
    /// Sends `line` on the script's standard input (it must hold no line break).
    fn with_secret(mut self, line: &str) -> Self {
        self.secret = Some(SecretLine(line.replace(['\n', '\r'], "")));
        self
    }
    /// The line to write to stdin, newline included, for the transports.
    pub fn secret_input(&self) -> Option<String> {
        self.secret.as_ref().map(|s| format!("{}\n", s.0))
    }
    /// Defines `sum256 FILE`, printing the file's sha256 in hex. OpenSSL's digest uses the CPU's
    /// SHA instructions and runs about 5× faster than coreutils' `sha256sum` on a package, so it
    /// is preferred where installed. A failure prints nothing, which every caller treats as a
    /// mismatch.
    fn with_sum256(self) -> Self {
        self.line(
            "sum256() { if command -v openssl >/dev/null 2>&1; then openssl dgst -sha256 -r \"$1\"; else sha256sum \"$1\"; fi | cut -c1-64; }",
        )
    }
}

/// Quotes `s` for a POSIX shell: safe characters pass through, anything else goes in single
/// quotes with embedded `'` written as `'\''`. NUL cannot be passed to a shell at all; config
/// validation rejects it, and here it is dropped rather than cutting the string short.
pub fn quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./:=@%+,".contains(&b));
    if safe {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars().filter(|c| *c != '\0') {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

fn with_dirs(label: &str, l: &Layout) -> Script {
    Script::new(label)
        .var("D", l.deploy_dir.as_str())
        .var("B", l.backup_dir.as_str())
}

/// Takes the host's deploy lock and records its owner in one atomic step: owner.json is written
/// into a private directory that is then renamed onto `lock` (`mv -T`, i.e. rename(2), which
/// fails when `lock` exists and is not empty). So a lock is never ownerless, even when we die
/// halfway; a lock directory is never empty (an empty one, from an older tj-deploy that died
/// between its mkdir and its write, is simply taken over). Prints `acquired`, or `held`
/// followed by the holder's owner.json.
pub fn lock_acquire(l: &Layout, owner_json: &str) -> Script {
    with_dirs("lock", l)
        .var("OWNER", owner_json)
        .line("mkdir -p \"$D/.tj-deploy\"")
        // Others may not plant packages or logs; the lock names the actor and the run.
        .line("chmod go-w \"$D/.tj-deploy\" 2>/dev/null || true")
        .line("umask 077")
        // Leftovers of an acquirer that died between its mkdir and its rename.
        .line("find \"$D/.tj-deploy\" -maxdepth 1 -name '.lock.*.tmp' -mmin +60 -exec rm -rf {} + 2>/dev/null || true")
        .line("T=\"$D/.tj-deploy/.lock.$$.tmp\"")
        .line("rm -rf \"$T\"")
        .line("mkdir \"$T\"")
        .line("printf '%s\\n' \"$OWNER\" > \"$T/owner.json\"")
        .line("if mv -T \"$T\" \"$D/.tj-deploy/lock\" 2>/dev/null; then")
        .line("  echo acquired")
        .line("else")
        .line("  rm -rf \"$T\"")
        .line("  echo held")
        .line("  cat \"$D/.tj-deploy/lock/owner.json\" 2>/dev/null || true")
        .line("fi")
}

/// Prints `held` and the lock's owner.json when a lock is there; changes nothing.
pub fn lock_show(l: &Layout) -> Script {
    with_dirs("lock", l)
        .line("if [ -d \"$D/.tj-deploy/lock\" ]; then")
        .line("  echo held")
        .line("  cat \"$D/.tj-deploy/lock/owner.json\" 2>/dev/null || true")
        .line("fi")
        .repeatable()
}

/// Releases the lock only if it still carries our token (an `unlock` may have cleared it and
/// another run taken it since).
pub fn lock_release(l: &Layout, token: &str) -> Script {
    with_dirs("unlock", l)
        .var("TOKEN", token)
        .line("if [ -f \"$D/.tj-deploy/lock/owner.json\" ] && grep -qF -- \"$TOKEN\" \"$D/.tj-deploy/lock/owner.json\"; then")
        .line("  rm -rf \"$D/.tj-deploy/lock\"")
        .line("fi")
        .repeatable()
}

/// Prints the names of the migrations (directories holding a `migration.sql`) under
/// `releases/<id>/<dir>`, one a line; nothing when there are none. Reads only.
pub fn list_migrations(l: &Layout, id: ReleaseId, dir: &str) -> Script {
    with_dirs("list migrations", l)
        .var("M", &format!("{}/{dir}", l.release(id)))
        .line("[ -d \"$M\" ] || exit 0")
        .line("for f in \"$M\"/*/migration.sql; do")
        .line("  [ -f \"$f\" ] || continue")
        .line("  d=${f%/migration.sql}")
        .line("  printf '%s\\n' \"${d##*/}\"")
        .line("done")
        .repeatable()
}

/// Prints the lock owner (or nothing) and removes the lock: the `unlock` command.
pub fn lock_force_remove(l: &Layout) -> Script {
    with_dirs("unlock", l)
        .line("if [ -d \"$D/.tj-deploy/lock\" ]; then")
        .line("  echo held")
        .line("  cat \"$D/.tj-deploy/lock/owner.json\" 2>/dev/null || true")
        .line("  rm -rf \"$D/.tj-deploy/lock\"")
        .line("fi")
}

/// Reports the host's state, one fact a line: `current <target>` (or `current-unmanaged
/// directory|file` when `current` is not a symlink),
/// `release <id> <revision|-> <bad 0|1>`, `backup <id>`, `package present`, `lock held`.
pub fn inspect(l: &Layout, package_sha256: Option<&str>) -> Script {
    let mut s = with_dirs("inspect", l)
        .line("if [ -L \"$D/current\" ]; then printf 'current %s\\n' \"$(readlink \"$D/current\")\";")
        .line("elif [ -d \"$D/current\" ]; then echo 'current-unmanaged directory';")
        .line("elif [ -e \"$D/current\" ]; then echo 'current-unmanaged file'; fi")
        .line("if [ -d \"$D/releases\" ]; then")
        .line("  for r in \"$D\"/releases/*; do")
        .line("    [ -d \"$r\" ] || continue")
        .line("    rev=-; if [ -f \"$r/REVISION\" ]; then rev=$(head -c 64 \"$r/REVISION\" | tr -cd '0-9a-f'); fi")
        .line("    bad=0; if [ -e \"$r/BAD_RELEASE\" ]; then bad=1; fi")
        .line("    printf 'release %s %s %s\\n' \"${r##*/}\" \"${rev:--}\" \"$bad\"")
        .line("  done")
        .line("fi")
        .line("if [ -d \"$B\" ]; then")
        .line(
            "  for b in \"$B\"/*; do if [ -f \"$b/manifest.json\" ]; then printf 'backup %s %s\\n' \"${b##*/}\" \"$(head -c 65536 \"$b/manifest.json\" | tr -d '\\n' | sed -n 's/.*\"release\":\"\\([0-9_]*\\)\".*/\\1/p')\"; fi; done",
        )
        .line("fi")
        .var("BAD", &l.bad_ledger())
        .line("if [ -d \"$BAD\" ]; then for f in \"$BAD\"/*; do if [ -f \"$f\" ]; then printf 'bad %s\\n' \"${f##*/}\"; fi; done; fi")
        .line("if [ -d \"$D/.tj-deploy/lock\" ]; then echo 'lock held'; fi");
    if let Some(sha) = package_sha256 {
        s = s
            .var("P", &l.package(sha))
            .line("if [ -f \"$P\" ]; then echo 'package present'; fi");
    }
    s
}

/// The lockfiles whose sha256 identifies a release's dependencies, in npm's order of precedence.
pub const LOCKFILES: [&str; 4] = [
    "npm-shrinkwrap.json",
    "package-lock.json",
    "yarn.lock",
    "pnpm-lock.yaml",
];

/// Tightens what tj-deploy owns under `backup_dir` (the id-named backups and partial dirs, and
/// the directory itself when it is ours) to the deploy user: backups written before modes
/// were private stay readable otherwise. Prints `tightened <count of backups> <dir 0|1>`.
fn tighten_backups(s: Script) -> Script {
    s.line("n=0; for d in \"$B\"/[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]_[0-9][0-9][0-9][0-9][0-9][0-9] \"$B\"/.*.partial; do")
        .line("  [ -e \"$d\" ] || continue")
        .line("  if [ -n \"$(find \"$d\" -perm /077 -print 2>/dev/null | head -n 1)\" ]; then chmod -R go-rwx \"$d\"; n=$((n+1)); fi")
        .line("done")
        .line("t=0; if [ -O \"$B\" ] && [ -n \"$(find \"$B\" -maxdepth 0 -perm /077 2>/dev/null)\" ]; then chmod go-rwx \"$B\"; t=1; fi")
        .line("echo \"tightened $n $t\"")
}

/// Prints `file <sha256> <size> <name>` for every file under the partial backup `$P`, taking
/// the package's sha256 from its name (content-addressed and verified when it was extracted).
fn list_backup_files(s: Script) -> Script {
    s.with_sum256()
        .line("find \"$P\" -type f | while IFS= read -r f; do")
        .line("  n=${f#\"$P\"/}")
        .line("  if [ \"$n\" = package.tar.gz ] && [ -n \"$SUM\" ]; then h=$SUM; else h=$(sum256 \"$f\"); fi")
        .line("  if [ -z \"$h\" ]; then echo \"cannot compute the sha256 of $f\" >&2; exit 1; fi")
        .line("  printf 'file %s %s %s\\n' \"$h\" \"$(wc -c < \"$f\" | tr -d ' ')\" \"$n\"")
        .line("done")
}

/// The application part of a backup, written private (umask 077) into a dot-named partial
/// directory: a hard link of the live release's package (a copy when `backup_dir` is on
/// another filesystem), or, for a release tj-deploy did not make, a tar.gz of it without
/// `node_modules`; its linked files; the lockfile's sha256. Prints `tightened …`,
/// `app package <sha> linked|copied` or `app tree`, `lockfile <name> <sha>`,
/// `readable <linked file>` for a shared file others can read, and the `file` lines.
pub fn backup_app(l: &Layout, id: ReleaseId, live: Option<ReleaseId>, linked_files: &[String]) -> Script {
    let mut s = with_dirs("backup", l)
        .line("umask 077")
        .var("P", &l.backup_partial(id))
        .var("F", &l.backup(id))
        .var("K", &l.packages())
        .line("mkdir -p \"$B\"");
    s = tighten_backups(s)
        .line("if [ -e \"$F\" ]; then echo \"backup $F already exists\" >&2; exit 1; fi")
        .line("rm -rf \"$B\"/.*.partial")
        .line("mkdir \"$P\"")
        .line("trap 'rm -rf \"$P\"' EXIT")
        .line("SUM=");
    for f in linked_files {
        s = s
            .var("LF", f)
            .line("if [ -n \"$(find -L \"$D/shared/$LF\" -perm /004 -print 2>/dev/null | head -n 1)\" ]; then printf 'readable %s\\n' \"$LF\"; fi");
    }
    if let Some(live) = live {
        s = s
            .with_sum256()
            .var("LIVE", &l.release(live))
            .line("if [ -f \"$LIVE/PACKAGE\" ]; then SUM=$(head -c 64 \"$LIVE/PACKAGE\" | tr -cd '0-9a-f'); fi")
            .line("if [ ${#SUM} -eq 64 ] && [ -f \"$K/$SUM.tar.gz\" ]; then")
            .line("  chmod go-rwx \"$K/$SUM.tar.gz\" 2>/dev/null || true")
            .line("  if ln \"$K/$SUM.tar.gz\" \"$P/package.tar.gz\" 2>/dev/null; then echo \"app package $SUM linked\";")
            .line("  else cp --reflink=auto \"$K/$SUM.tar.gz\" \"$P/package.tar.gz\"; echo \"app package $SUM copied\"; fi")
            .line("else")
            .line("  SUM=")
            .line("  tar -czf \"$P/app.tar.gz\" -C \"$LIVE\" --exclude=node_modules .")
            .line("  echo 'app tree'")
            .line("fi");
        for f in linked_files {
            s = s
                .var("LF", f)
                .line("if [ -e \"$D/shared/$LF\" ]; then mkdir -p \"$(dirname \"$P/shared/$LF\")\"; cp -RL \"$D/shared/$LF\" \"$P/shared/$LF\"; fi");
        }
        s = s.line(&format!("for lf in {}; do", LOCKFILES.join(" "))).line(
            "  if [ -f \"$LIVE/$lf\" ]; then printf 'lockfile %s %s\\n' \"$lf\" \"$(sum256 \"$LIVE/$lf\")\"; break; fi",
        );
        s = s.line("done");
    }
    list_backup_files(s).line("trap - EXIT")
}

/// Writes the private `.pgpass` from the script's secret line and points libpq at it; the
/// caller's EXIT trap removes `$W`.
fn pgpass(s: Script, conn: &crate::pgconn::PgConn) -> Result<Script, crate::error::Error> {
    let line = conn.pgpass_line()?;
    Ok(s.with_secret(&line)
        .var("CONN", &conn.conninfo())
        .line("printf '%s\\n' \"$TJ_SECRET\" > \"$W/pgpass\"; TJ_SECRET=")
        .line("PGPASSFILE=\"$W/pgpass\"; export PGPASSFILE"))
}

/// `pg_dump -Fc` into backup `id` (created, private, when the host had no live release), the
/// password through [`pgpass`]. Prints `created` when it made the directory, the `file` line of
/// db.dump, and `manifest <json>` when the backup already has one.
pub fn backup_database(l: &Layout, id: ReleaseId, conn: &crate::pgconn::PgConn) -> Result<Script, crate::error::Error> {
    let s = with_dirs("backup-database", l)
        .line("umask 077")
        .var("F", &l.backup(id))
        .line("mkdir -p \"$B\"")
        .line("created=0; if [ ! -d \"$F\" ]; then mkdir \"$F\"; created=1; echo created; fi")
        .line("W=$(mktemp -d \"${TMPDIR:-/tmp}/tj-pg.XXXXXX\")")
        .line("trap 'rm -rf \"$W\" \"$F/.db.dump.partial\"; if [ $created = 1 ]; then rm -rf \"$F\"; fi' EXIT");
    Ok(pgpass(s, conn)?
        .line("pg_dump -Fc -f \"$F/.db.dump.partial\" -d \"$CONN\"")
        .line("mv -f \"$F/.db.dump.partial\" \"$F/db.dump\"")
        .line("rm -rf \"$W\"; trap - EXIT")
        .line("P=$F; SUM=")
        .with_sum256()
        .line("printf 'file %s %s db.dump\\n' \"$(sum256 \"$F/db.dump\")\" \"$(wc -c < \"$F/db.dump\" | tr -d ' ')\"")
        .line("if [ -f \"$F/manifest.json\" ]; then printf 'manifest '; head -c 65536 \"$F/manifest.json\" | tr -d '\\n'; echo; fi"))
}

/// Replaces a backup's manifest.json atomically (temp file + rename).
pub fn manifest_write(l: &Layout, id: ReleaseId, manifest_json: &str) -> Script {
    with_dirs("backup", l)
        .line("umask 077")
        .var("F", &l.backup(id))
        .var("MANIFEST", manifest_json)
        .line("printf '%s\\n' \"$MANIFEST\" > \"$F/.manifest.json.tmp\"")
        .line("mv -f \"$F/.manifest.json.tmp\" \"$F/manifest.json\"")
}

/// Reads `shared/.env` (at most 1 MiB + 1 byte, so the caller can tell it was cut); exit 3
/// when it does not exist. Its text goes to tj-deploy's dotenv parser, never to a shell.
pub fn read_env(l: &Layout) -> Script {
    with_dirs("read-env", l)
        .line("if [ ! -f \"$D/shared/.env\" ]; then exit 3; fi")
        .line("head -c 1048577 \"$D/shared/.env\"")
}
/// Prints `manifest <id> <manifest.json on one line>` for each complete backup.
pub fn read_manifests(l: &Layout) -> Script {
    with_dirs("backups", l)
        .line("if [ -d \"$B\" ]; then for b in \"$B\"/*; do")
        .line("  [ -f \"$b/manifest.json\" ] || continue")
        .line("  printf 'manifest %s ' \"${b##*/}\"; head -c 65536 \"$b/manifest.json\" | tr -d '\\n'; echo")
        .line("done; fi")
}

/// Checks a backup file against the sha256 its manifest recorded.
fn verify_backup_file(s: Script, path: &str, sha256: &str) -> Script {
    s.with_sum256()
        .var("F", path)
        .var("SUM", sha256)
        .line("got=$(sum256 \"$F\")")
        .line("if [ \"$got\" != \"$SUM\" ]; then echo \"$F does not match its manifest (sha256 $got, expected $SUM)\" >&2; exit 1; fi")
}

/// What a backup keeps of its release, as the manifest recorded it.
pub struct AppArchive<'a> {
    /// `package.tar.gz` (the package: no linked files, no dependencies, no REVISION) or
    /// `app.tar.gz` (the release's tree; without node_modules since backups hold packages).
    pub name: &'a str,
    pub sha256: &'a str,
    pub commit: Option<&'a str>,
}

/// Recreates a pruned release from a backup after checking its sha256: extracts it, writes
/// PACKAGE (and REVISION for a package), puts the package back under `.tj-deploy/packages/`
/// when it was pruned there, and links the shared files (restoring a missing one from the
/// backup's private copy).
pub fn restore_release(
    l: &Layout,
    backup: ReleaseId,
    release: ReleaseId,
    archive: &AppArchive,
    linked_files: &[String],
) -> Script {
    let mut s = verify_backup_file(
        with_dirs("restore", l),
        &format!("{}/{}", l.backup(backup), archive.name),
        archive.sha256,
    )
    .var("BK", &l.backup(backup))
    .var("R", &l.release(release))
    .var("K", &l.packages())
    .line("mkdir -p \"$D/releases\"")
    .line("mkdir \"$R\"")
    .line("trap 'rm -rf \"$R\"' EXIT")
    .line("tar -xzf \"$F\" -C \"$R\" --no-same-owner");
    if archive.name == "package.tar.gz" {
        s = s
            .line("printf '%s\\n' \"$SUM\" > \"$R/PACKAGE\"")
            .line("( umask 077; mkdir -p \"$K\"; if [ ! -f \"$K/$SUM.tar.gz\" ]; then ln \"$F\" \"$K/$SUM.tar.gz\" 2>/dev/null || cp \"$F\" \"$K/$SUM.tar.gz\"; fi )");
        if let Some(c) = archive.commit {
            s = s.var("REV", c).line("printf '%s\\n' \"$REV\" > \"$R/REVISION\"");
        }
    }
    for f in linked_files {
        s = s
            .var("LF", f)
            .line("if [ ! -e \"$D/shared/$LF\" ] && [ -e \"$BK/shared/$LF\" ]; then ( umask 077; mkdir -p \"$(dirname \"$D/shared/$LF\")\"; cp -R \"$BK/shared/$LF\" \"$D/shared/$LF\" ); fi")
            .line("if [ -e \"$D/shared/$LF\" ]; then mkdir -p \"$(dirname \"$R/$LF\")\"; rm -rf \"$R/$LF\"; ln -s \"$D/shared/$LF\" \"$R/$LF\"; fi");
    }
    s.line("trap - EXIT")
}

/// Restores the database from a backup's db.dump in one transaction, the password through
/// a private `.pgpass` (see [`backup_database`]).
pub fn restore_database(
    l: &Layout,
    backup: ReleaseId,
    sha256: &str,
    conn: &crate::pgconn::PgConn,
) -> Result<Script, crate::error::Error> {
    let s = verify_backup_file(
        with_dirs("restore-database", l),
        &format!("{}/db.dump", l.backup(backup)),
        sha256,
    )
    .line("umask 077")
    .line("W=$(mktemp -d \"${TMPDIR:-/tmp}/tj-pg.XXXXXX\")")
    .line("trap 'rm -rf \"$W\"' EXIT");
    Ok(pgpass(s, conn)?
        .line("pg_restore --clean --if-exists --no-owner --exit-on-error --single-transaction -d \"$CONN\" \"$F\""))
}

/// Adds the manifest and publishes the backup under its id (one rename, so it is whole or absent).
pub fn backup_finish(l: &Layout, id: ReleaseId, manifest_json: &str) -> Script {
    with_dirs("backup", l)
        .line("umask 077")
        .var("P", &l.backup_partial(id))
        .var("F", &l.backup(id))
        .var("MANIFEST", manifest_json)
        .line("printf '%s\\n' \"$MANIFEST\" > \"$P/manifest.json\"")
        .line("mv -T \"$P\" \"$F\"")
}

/// Removes a partial backup left by a failed step.
pub fn backup_discard(l: &Layout, id: ReleaseId) -> Script {
    with_dirs("backup", l)
        .var("P", &l.backup_partial(id))
        .line("rm -rf \"$P\"")
        .repeatable()
}

/// Receives the package on stdin into a temp name, checks its sha256, then renames it into place.
pub fn upload(l: &Layout, sha256: &str) -> Script {
    with_dirs("upload", l)
        .with_sum256()
        .var("K", &l.packages())
        .var("SUM", sha256)
        // Packages are private (0600 in a 0700 directory), and so are the backups' hard links.
        .line("umask 077")
        .line("mkdir -p \"$K\"")
        // Leftovers of an upload cut off by a dropped connection (we hold the lock).
        .line("rm -f \"$K\"/.*.upload.*")
        .line("T=\"$K/.$SUM.upload.$$\"")
        .line("trap 'rm -f \"$T\"' EXIT")
        .line("cat > \"$T\"")
        .line("got=$(sum256 \"$T\")")
        .line("if [ \"$got\" != \"$SUM\" ]; then echo \"sha256 mismatch after upload: expected $SUM, got $got\" >&2; exit 1; fi")
        .line("mv -f \"$T\" \"$K/$SUM.tar.gz\"")
        .line("trap - EXIT")
}

/// Checks a package already on the host and extracts it into a fresh release directory,
/// then links the shared files into it. A failure removes the partial release.
pub fn extract(l: &Layout, sha256: &str, id: ReleaseId, linked_files: &[String]) -> Script {
    let mut s = with_dirs("extract", l)
        .with_sum256()
        .var("R", &l.release(id))
        .var("PKG", &l.package(sha256))
        .var("SUM", sha256)
        .line("got=$(sum256 \"$PKG\")")
        .line("if [ \"$got\" != \"$SUM\" ]; then rm -f \"$PKG\"; echo \"package $PKG is corrupt on the host (sha256 $got); not extracted\" >&2; exit 1; fi")
        .line("mkdir -p \"$D/releases\" \"$D/shared\"")
        .line("mkdir \"$R\"")
        .line("trap 'rm -rf \"$R\"' EXIT")
        .line("tar -xzf \"$PKG\" -C \"$R\" --no-same-owner")
        // Which package the release came from: its backup hard-links that package.
        .line("printf '%s\\n' \"$SUM\" > \"$R/PACKAGE\"");
    for f in linked_files {
        s = s
            .var("F", f)
            .line("if [ ! -e \"$D/shared/$F\" ]; then echo \"linked file $D/shared/$F does not exist on the host: create it first\" >&2; exit 1; fi")
            .line("mkdir -p \"$(dirname \"$R/$F\")\"")
            .line("rm -rf \"$R/$F\"")
            .line("ln -s \"$D/shared/$F\" \"$R/$F\"");
    }
    s.line("trap - EXIT")
}

/// Environment passed to every hook so apps and ecosystem files can find their way.
pub struct HookEnv<'a> {
    pub environment: &'a str,
    pub release: ReleaseId,
    pub revision: &'a str,
}

fn hook_exports(s: Script, l: &Layout, env: &HookEnv) -> Script {
    s.var("TJ_DEPLOY_DIR", l.deploy_dir.as_str())
        .var("TJ_CURRENT", &l.current())
        .var("TJ_RELEASE_DIR", &l.release(env.release))
        .var("TJ_RELEASE_ID", &env.release.to_string())
        .var("TJ_REVISION", env.revision)
        .var("TJ_ENVIRONMENT", env.environment)
        .line("export TJ_DEPLOY_DIR TJ_CURRENT TJ_RELEASE_DIR TJ_RELEASE_ID TJ_REVISION TJ_ENVIRONMENT")
}

/// Runs a configured command (`install`, `migrate`) inside the new release. `sh -e`: a
/// command list like `npm ci; npm run build` stops at its first failure, as the README says.
pub fn hook(l: &Layout, label: &str, command: &str, env: &HookEnv) -> Script {
    hook_exports(with_dirs(label, l), l, env)
        .var("CMD", command)
        .line("cd \"$TJ_RELEASE_DIR\"")
        .line("exec sh -ec \"$CMD\"")
}

/// Runs the `reload` command from `current` (PM2 must remember the symlink path, not a release).
pub fn reload(l: &Layout, command: &str, env: &HookEnv) -> Script {
    hook_exports(with_dirs("reload", l), l, env)
        .var("CMD", command)
        .line("cd \"$TJ_CURRENT\"")
        .line("exec sh -ec \"$CMD\"")
}

/// Writes REVISION (which marks the release complete) and points `current` at it atomically.
pub fn switch(l: &Layout, id: ReleaseId, revision: Option<&str>) -> Script {
    let mut s = with_dirs("switch", l)
        .var("R", &l.release(id))
        .var("TARGET", &Layout::release_link_target(id));
    s = s.line("if [ ! -d \"$R\" ]; then echo \"release $R does not exist\" >&2; exit 1; fi");
    if let Some(rev) = revision {
        s = s.var("REV", rev).line("printf '%s\\n' \"$REV\" > \"$R/REVISION\"");
    }
    s.line("T=\"$D/.current.$$.tmp\"")
        .line("rm -f \"$T\"")
        .line("ln -s \"$TARGET\" \"$T\"")
        .line("mv -T \"$T\" \"$D/current\"")
        .repeatable()
}

/// Marks a release that failed its checks, so `latest` never picks it.
pub fn mark_bad(l: &Layout, id: ReleaseId, json: &str) -> Script {
    with_dirs("mark-bad", l)
        .var("R", &l.release(id))
        .var("WHY", json)
        .var("L", &l.bad(id))
        .line("mkdir -p \"${L%/*}\"")
        .line("printf '%s\\n' \"$WHY\" > \"$L\"")
        .line("if [ -d \"$R\" ]; then printf '%s\\n' \"$WHY\" > \"$R/BAD_RELEASE\"; fi")
        .repeatable()
}

/// Removes releases and backups, never the one `current` points at.
pub fn remove(l: &Layout, releases: &[ReleaseId], backups: &[ReleaseId]) -> Script {
    let mut s = with_dirs("prune", l).line("cur=$(readlink \"$D/current\" 2>/dev/null || true)");
    for id in releases {
        s = s
            .var("R", &l.release(*id))
            .var("T", &Layout::release_link_target(*id))
            .line("if [ \"$cur\" != \"$T\" ]; then rm -rf \"$R\"; fi");
    }
    for id in backups {
        s = s.var("K", &l.backup(*id)).line("rm -rf \"$K\"");
    }
    s.repeatable()
}

/// Prints PM2's process list as JSON (`pm2 jlist`; other output may precede the `[`), then
/// `cwd <pid> <resolved dir>` for each running process whose PM2 cwd lies under `deploy_dir`,
/// read from `/proc/<pid>/cwd`: where each worker really runs.
pub fn pm2_worker_dirs(l: &Layout) -> Script {
    with_dirs("workers", l)
        .line("J=$(pm2 jlist 2>/dev/null || true)")
        .line("printf '%s\\n' \"$J\" | tr ',{' '\\n\\n' | sed -n 's/^\"pid\":\\([0-9][0-9]*\\)$/\\1/p' | while read -r p; do")
        .line("  c=$(readlink \"/proc/$p/cwd\" 2>/dev/null || true)")
        .line("  case \"$c\" in \"$D\"/*|\"$(cd \"$D\" && pwd -P)\"/*) printf 'cwd %s %s\\n' \"$p\" \"$c\" ;; esac")
        .line("done")
}

/// Appends one JSON line to the deployment log.
pub fn append_log(l: &Layout, json_line: &str) -> Script {
    with_dirs("log", l)
        .var("LINE", json_line)
        .line("mkdir -p \"$D/.tj-deploy\"")
        .line("printf '%s\\n' \"$LINE\" >> \"$D/.tj-deploy/deployments.log\"")
}

/// Puts a run's markdown summary at the top of deployments.md, keeping at most `keep` bytes.
pub fn prepend_markdown(l: &Layout, markdown: &str, keep: usize) -> Script {
    with_dirs("log", l)
        .var("MD", markdown)
        .var("KEEP", &keep.to_string())
        .line("mkdir -p \"$D/.tj-deploy\"")
        .line("F=\"$D/.tj-deploy/deployments.md\"; T=\"$F.$$.tmp\"")
        .line("{ printf '%s\\n\\n---\\n\\n' \"$MD\"; if [ -f \"$F\" ]; then cat \"$F\"; fi; } | head -c \"$KEEP\" > \"$T\"")
        .line("mv -f \"$T\" \"$F\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RemotePath;

    fn layout() -> Layout {
        Layout::new(
            RemotePath::parse("d", "/srv/app dir").unwrap(),
            RemotePath::parse("b", "/srv/backups").unwrap(),
        )
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("plain/path-1.2"), "plain/path-1.2");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("$(touch /tmp/pwned)"), "'$(touch /tmp/pwned)'");
        assert_eq!(quote("`x`;\n"), "'`x`;\n'");
    }

    #[test]
    fn quoted_values_survive_a_real_shell() {
        for hostile in [
            "$(touch /tmp/pwned)",
            "a'b\"c",
            "`id`",
            "x;y|z&",
            "line\nbreak",
            "ünï cödé",
            "--help",
            "*",
        ] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf '%s' {}", quote(hostile)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), hostile);
        }
    }

    #[test]
    fn scripts_quote_paths_and_fail_fast() {
        let id = ReleaseId::parse("id", "20260118_143000").unwrap();
        let s = switch(&layout(), id, Some("abc"));
        assert!(s.text().starts_with("set -eu\n"));
        assert!(s.text().contains("D='/srv/app dir'"));
        assert!(s.text().contains("R='/srv/app dir/releases/20260118_143000'"));
        assert!(s.text().contains("mv -T"));
        let h = hook(
            &layout(),
            "install",
            "npm ci --omit=dev && echo '$(x)'",
            &HookEnv {
                environment: "staging",
                release: id,
                revision: "abc",
            },
        );
        assert!(
            h.text().contains("CMD='npm ci --omit=dev && echo '\\''$(x)'\\'''"),
            "{}",
            h.text()
        );
    }

    /// `sum256` must give the same digest with OpenSSL and with the coreutils fallback (a host
    /// without OpenSSL), and nothing at all for a missing file.
    #[test]
    fn sum256_agrees_with_and_without_openssl() {
        use sha2::Digest as _;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pkg name.tar.gz");
        std::fs::write(&file, b"tj-deploy\n").unwrap();
        let bare = dir.path().join("bin");
        std::fs::create_dir(&bare).unwrap();
        for tool in ["sha256sum", "cut"] {
            std::os::unix::fs::symlink(format!("/usr/bin/{tool}"), bare.join(tool)).unwrap();
        }
        let script = Script::new("t").with_sum256().line("sum256 \"$1\"");
        let run = |path: &str, arg: &std::path::Path| {
            let out = std::process::Command::new("/bin/sh")
                .args(["-c", script.text(), "sh"])
                .arg(arg)
                .env("PATH", path)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        let want = crate::package::hex(&sha2::Sha256::digest(b"tj-deploy\n"));
        assert_eq!(run("/usr/bin:/bin", &file), want, "with openssl");
        assert_eq!(run(&bare.display().to_string(), &file), want, "sha256sum fallback");
        assert_eq!(run("/usr/bin:/bin", &dir.path().join("missing")), "");
    }

    /// The password reaches the script on stdin only: not in its text, not in any process's
    /// command line or environment, and the .pgpass is private.
    #[tokio::test]
    async fn the_password_travels_on_stdin_only() {
        use crate::remote::{Mode, Transport, local::LocalTransport};
        let conn = crate::pgconn::PgConn::parse("postgresql://u:s%3Acr3t-xyz@h/db?schema=public").unwrap();
        let s = Script::new("t")
            .line("umask 077")
            .line("W=$(mktemp -d)")
            .line("trap 'rm -rf \"$W\"' EXIT");
        let s = pgpass(s, &conn)
            .unwrap()
            .line("stat -c 'mode %a' \"$PGPASSFILE\"; cat \"$PGPASSFILE\"; printf 'conn %s\\n' \"$CONN\"")
            .line("for p in /proc/[0-9]*; do { tr '\\0' ' ' < $p/cmdline; tr '\\0' ' ' < $p/environ; } 2>/dev/null || true; echo; done > \"$W/procs\"")
            .line("printf 'visible %s\\n' \"$(grep -c 'cr3[t]-xyz' \"$W/procs\" || true)\"");
        assert!(!s.text().contains("cr3t-xyz"));
        assert!(!format!("{s:?}").contains("cr3t-xyz"));
        let out = LocalTransport::new("local").run(&s, Mode::Capture).await.unwrap();
        assert!(out.success(), "{out:?}");
        assert!(
            out.stdout.contains("mode 600\n*:*:*:*:s\\:cr3t-xyz\n"),
            "{}",
            out.stdout
        );
        assert!(out.stdout.contains("conn dbname='db' host='h'") || out.stdout.contains("conn user='u'"));
        assert!(out.stdout.contains("visible 0\n"), "{}", out.stdout);
    }

    #[test]
    fn lock_and_backup_dirs_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("app");
        let b = dir.path().join("backups");
        let l = Layout::new(
            RemotePath::parse("d", d.to_str().unwrap()).unwrap(),
            RemotePath::parse("b", b.to_str().unwrap()).unwrap(),
        );
        let run = |s: &Script| {
            let out = std::process::Command::new("sh")
                .args(["-c", s.text()])
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        std::fs::create_dir_all(d.join(".tj-deploy")).unwrap();
        std::fs::create_dir_all(b.join("20200101_000000")).unwrap();
        std::fs::write(b.join("20200101_000000/db.dump"), "x").unwrap();
        std::fs::create_dir_all(b.join("not-ours")).unwrap();
        run(&Script::new("t")
            .line(&format!("chmod 777 {}", quote(&l.meta())))
            .line(&format!(
                "chmod 755 {b}/20200101_000000 {b}/not-ours {b}; chmod 644 {b}/20200101_000000/db.dump",
                b = quote(l.backup_dir.as_str())
            )));
        assert_eq!(run(&lock_acquire(&l, "{}")).trim(), "acquired");
        let mode = |p: &std::path::Path| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(p).unwrap().permissions().mode() & 0o777
        };
        assert_eq!(mode(&d.join(".tj-deploy")), 0o755);
        assert_eq!(mode(&d.join(".tj-deploy/lock")), 0o700);
        assert_eq!(mode(&d.join(".tj-deploy/lock/owner.json")), 0o600);
        let id = ReleaseId::parse("id", "20260118_143000").unwrap();
        let out = run(&backup_app(&l, id, None, &[]));
        assert!(out.contains("tightened 1 1"), "{out}");
        assert_eq!(mode(&b), 0o700);
        assert_eq!(mode(&b.join("20200101_000000")), 0o700);
        assert_eq!(mode(&b.join("20200101_000000/db.dump")), 0o600);
        assert_eq!(mode(&b.join("not-ours")), 0o755, "only our id-named backups");
        assert_eq!(mode(&b.join(".20260118_143000.partial")), 0o700);
        assert!(run(&backup_app(&l, id.next(), None, &[])).contains("tightened 0 0"));
    }

    #[test]
    fn list_migrations_prints_only_directories_with_a_migration_sql() {
        let d = tempfile::tempdir().unwrap();
        let id = ReleaseId::parse("id", "20260118_143000").unwrap();
        let m = d.path().join("releases/20260118_143000/prisma/migrations");
        for name in ["1_init", "2 it's odd", "3_empty"] {
            std::fs::create_dir_all(m.join(name)).unwrap();
        }
        std::fs::write(m.join("1_init/migration.sql"), "").unwrap();
        std::fs::write(m.join("2 it's odd/migration.sql"), "").unwrap();
        std::fs::write(m.join("migration_lock.toml"), "").unwrap();
        let l = Layout::new(
            crate::config::RemotePath::parse("d", d.path().to_str().unwrap()).unwrap(),
            crate::config::RemotePath::parse("b", "/nonexistent/b").unwrap(),
        );
        let run = |dir: &str| {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(list_migrations(&l, id, dir).text())
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        assert_eq!(run("prisma/migrations"), "1_init\n2 it's odd\n");
        assert_eq!(run("db/none"), "");
    }
}
