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
}

impl Script {
    fn new(label: &str) -> Self {
        Script {
            label: label.to_string(),
            text: "set -eu\n".to_string(),
            repeatable: false,
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

/// Takes the host's deploy lock (atomic `mkdir`) and records its owner. Prints `acquired`, or
/// `held` followed by the holder's owner.json.
pub fn lock_acquire(l: &Layout, owner_json: &str) -> Script {
    with_dirs("lock", l)
        .var("OWNER", owner_json)
        .line("mkdir -p \"$D/.tj-deploy\"")
        .line("if mkdir \"$D/.tj-deploy/lock\" 2>/dev/null; then")
        .line("  printf '%s\\n' \"$OWNER\" > \"$D/.tj-deploy/lock/owner.json\"")
        .line("  echo acquired")
        .line("else")
        .line("  echo held")
        .line("  cat \"$D/.tj-deploy/lock/owner.json\" 2>/dev/null || true")
        .line("fi")
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

/// Prints the lock owner (or nothing) and removes the lock: the `unlock` command.
pub fn lock_force_remove(l: &Layout) -> Script {
    with_dirs("unlock", l)
        .line("if [ -d \"$D/.tj-deploy/lock\" ]; then")
        .line("  echo held")
        .line("  cat \"$D/.tj-deploy/lock/owner.json\" 2>/dev/null || true")
        .line("  rm -rf \"$D/.tj-deploy/lock\"")
        .line("fi")
}

/// Reports the host's state, one fact a line: `current <target>`,
/// `release <id> <revision|-> <bad 0|1>`, `backup <id>`, `package present`, `lock held`.
pub fn inspect(l: &Layout, package_sha256: Option<&str>) -> Script {
    let mut s = with_dirs("inspect", l)
        .line("if [ -L \"$D/current\" ]; then printf 'current %s\\n' \"$(readlink \"$D/current\")\"; fi")
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
            "  for b in \"$B\"/*; do if [ -f \"$b/manifest.json\" ]; then printf 'backup %s\\n' \"${b##*/}\"; fi; done",
        )
        .line("fi")
        .line("if [ -d \"$D/.tj-deploy/lock\" ]; then echo 'lock held'; fi");
    if let Some(sha) = package_sha256 {
        s = s
            .var("P", &l.package(sha))
            .line("if [ -f \"$P\" ]; then echo 'package present'; fi");
    }
    s
}

/// Writes the backup's files into a dot-named partial directory and prints
/// `file <name> <sha256> <size>` for each; the directory is removed if anything fails.
pub fn backup_files(l: &Layout, id: ReleaseId, live: Option<ReleaseId>, database: bool) -> Script {
    let mut s = with_dirs("backup", l)
        .var("P", &l.backup_partial(id))
        .var("F", &l.backup(id))
        .line("mkdir -p \"$B\"")
        .line("if [ -e \"$F\" ]; then echo \"backup $F already exists\" >&2; exit 1; fi")
        .line("rm -rf \"$B\"/.*.partial")
        .line("mkdir \"$P\"")
        .line("trap 'rm -rf \"$P\"' EXIT");
    if let Some(live) = live {
        s = s
            .var("LIVE", &l.release(live))
            .line("tar -czf \"$P/app.tar.gz\" -C \"$LIVE\" .");
    }
    if database {
        s = database_url(s, "database_backup is on but").line("pg_dump -Fc -f \"$P/db.dump\" -d \"$DATABASE_URL\"");
    }
    s.with_sum256()
        .line("for f in \"$P\"/*; do")
        .line("  [ -f \"$f\" ] || continue")
        .line("  s=$(sum256 \"$f\"); if [ -z \"$s\" ]; then echo \"cannot compute the sha256 of $f\" >&2; exit 1; fi")
        .line("  printf 'file %s %s %s\\n' \"${f##*/}\" \"$s\" \"$(wc -c < \"$f\" | tr -d ' ')\"")
        .line("done")
        .line("trap - EXIT")
}

/// Sets DATABASE_URL from `shared/.env`, failing with `why` when it is not there.
fn database_url(s: Script, why: &str) -> Script {
    s.var("WHY", why)
        .line("if [ ! -f \"$D/shared/.env\" ]; then echo \"$WHY $D/shared/.env does not exist\" >&2; exit 1; fi")
        // A subshell keeps the rest of .env out of this script's environment.
        .line("DATABASE_URL=$(set -a; . \"$D/shared/.env\" >/dev/null 2>&1; printf '%s' \"${DATABASE_URL:-}\")")
        .line(
            "if [ -z \"$DATABASE_URL\" ]; then echo \"$WHY DATABASE_URL is not set in $D/shared/.env\" >&2; exit 1; fi",
        )
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

/// Recreates a pruned release from a backup's app.tar.gz after checking its sha256.
pub fn restore_release(l: &Layout, backup: ReleaseId, release: ReleaseId, sha256: &str) -> Script {
    verify_backup_file(
        with_dirs("restore", l),
        &format!("{}/app.tar.gz", l.backup(backup)),
        sha256,
    )
    .var("R", &l.release(release))
    .line("mkdir -p \"$D/releases\"")
    .line("mkdir \"$R\"")
    .line("trap 'rm -rf \"$R\"' EXIT")
    .line("tar -xzf \"$F\" -C \"$R\" --no-same-owner")
    .line("trap - EXIT")
}

/// Restores the database from a backup's db.dump in one transaction.
pub fn restore_database(l: &Layout, backup: ReleaseId, sha256: &str) -> Script {
    let s = verify_backup_file(
        with_dirs("restore-database", l),
        &format!("{}/db.dump", l.backup(backup)),
        sha256,
    );
    database_url(s, "cannot restore the database:").line(
        "pg_restore --clean --if-exists --no-owner --exit-on-error --single-transaction -d \"$DATABASE_URL\" \"$F\"",
    )
}

/// Adds the manifest and publishes the backup under its id (one rename, so it is whole or absent).
pub fn backup_finish(l: &Layout, id: ReleaseId, manifest_json: &str) -> Script {
    with_dirs("backup", l)
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
        .line("tar -xzf \"$PKG\" -C \"$R\" --no-same-owner");
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

/// Runs a configured command (`install`, `migrate`) inside the new release.
pub fn hook(l: &Layout, label: &str, command: &str, env: &HookEnv) -> Script {
    hook_exports(with_dirs(label, l), l, env)
        .var("CMD", command)
        .line("cd \"$TJ_RELEASE_DIR\"")
        .line("exec sh -c \"$CMD\"")
}

/// Runs the `reload` command from `current` (PM2 must remember the symlink path, not a release).
pub fn reload(l: &Layout, command: &str, env: &HookEnv) -> Script {
    hook_exports(with_dirs("reload", l), l, env)
        .var("CMD", command)
        .line("cd \"$TJ_CURRENT\"")
        .line("exec sh -c \"$CMD\"")
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

// ---- Dependencies kept once per lockfile (src/deps.rs) ----

/// The lockfiles that pin an install, in the order npm, yarn and pnpm give them precedence.
pub const DEPS_LOCKFILES: [&str; 4] = [
    "npm-shrinkwrap.json",
    "package-lock.json",
    "yarn.lock",
    "pnpm-lock.yaml",
];

/// Prints `lockfile <name> <sha256>` for the release's lockfile (if any) and `node <version>`
/// (`node none` without node on the PATH): the parts of the dependency key found on the host.
pub fn deps_probe(l: &Layout, id: ReleaseId) -> Script {
    let mut s = with_dirs("install", l)
        .with_sum256()
        .var("R", &l.release(id))
        .line("cd \"$R\"")
        .line("found=");
    for f in DEPS_LOCKFILES {
        s = s.var("F", f).line(
            "if [ -z \"$found\" ] && [ -f \"$F\" ]; then found=1; printf 'lockfile %s %s\\n' \"$F\" \"$(sum256 \"$F\")\"; fi",
        );
    }
    s.line("v=$(node --version 2>/dev/null || true)")
        .line("printf 'node %s\\n' \"${v:-none}\"")
}

/// Hard-links `deps/<key>/node_modules` into the release when it is complete, records the key
/// in the release's DEPS file and prints `reused <release that installed it>`; prints `missing`
/// otherwise (nothing changed). A copy that fails midway is removed, and also says `missing`.
pub fn deps_reuse(l: &Layout, id: ReleaseId, key: &str) -> Script {
    with_dirs("install", l)
        .var("R", &l.release(id))
        .var("K", &format!("{}/{key}", l.deps()))
        .var("KEY", key)
        .line("if [ -f \"$K/COMPLETE\" ] && [ -d \"$K/node_modules\" ]; then")
        .line("  rm -rf \"$R/node_modules\"")
        .line("  if cp -al \"$K/node_modules\" \"$R/node_modules\"; then")
        .line("    printf '%s\\n' \"$KEY\" > \"$R/DEPS\"")
        .line("    printf 'reused %s\\n' \"$(head -c 64 \"$K/SOURCE\" 2>/dev/null | tr -cd '0-9_')\"")
        .line("    exit 0")
        .line("  fi")
        .line("  rm -rf \"$R/node_modules\"")
        .line("fi")
        .line("echo missing")
}

/// After a successful install: records the key in the release's DEPS file and stores its
/// node_modules (hard links) as `deps/<key>`, published by one rename with a COMPLETE marker.
pub fn deps_store(l: &Layout, id: ReleaseId, key: &str, lockfile_sha256: &str) -> Script {
    with_dirs("install", l)
        .var("R", &l.release(id))
        .var("LOCKSUM", lockfile_sha256)
        .var("S", &l.deps())
        .var("KEY", key)
        .var("ID", &id.to_string())
        .line("printf '%s\\n' \"$KEY\" > \"$R/DEPS\"")
        .line("if [ -f \"$S/$KEY/COMPLETE\" ]; then exit 0; fi")
        .line("mkdir -p \"$S\"")
        // Leftovers of a store cut off midway (we hold the lock).
        .line("rm -rf \"$S\"/.*.partial")
        .line("T=\"$S/.$KEY.partial\"")
        .line("trap 'rm -rf \"$T\"' EXIT")
        .line("mkdir \"$T\"")
        // Keeping them is an optimisation: hard links that cannot be made (another filesystem
        // mounted in between) leave the release as installed and say so.
        .line("if [ -d \"$R/node_modules\" ]; then")
        .line("  if ! cp -al \"$R/node_modules\" \"$T/node_modules\" 2>/dev/null; then echo 'not stored'; exit 0; fi")
        .line("else mkdir \"$T/node_modules\"; fi")
        .line("printf '%s\\n' \"$ID\" > \"$T/SOURCE\"")
        .line("printf '%s\\n' \"$LOCKSUM\" > \"$T/LOCKFILE\"")
        .line(": > \"$T/COMPLETE\"")
        .line("rm -rf \"$S/$KEY\"")
        .line("mv -T \"$T\" \"$S/$KEY\"")
        .line("trap - EXIT")
}

/// Removes every `deps/<key>` that no release (its DEPS file) and no backup names; prints
/// `removed <key>` for each. A backup names a key by holding it, or the sha256 of the lockfile
/// it was installed from (what a backup manifest records), in its manifest or a DEPS file.
pub fn deps_prune(l: &Layout) -> Script {
    with_dirs("prune", l)
        .var("S", &l.deps())
        .line("[ -d \"$S\" ] || exit 0")
        .line("for k in \"$S\"/*; do")
        .line("  [ -d \"$k\" ] || continue")
        .line("  key=${k##*/}")
        .line("  if cat \"$D\"/releases/*/DEPS 2>/dev/null | grep -qxF -- \"$key\"; then continue; fi")
        .line("  lock=$(head -c 64 \"$k/LOCKFILE\" 2>/dev/null | tr -cd '0-9a-f')")
        .line("  if [ -d \"$B\" ] && cat \"$B\"/*/manifest.json \"$B\"/*/DEPS 2>/dev/null | grep -qF -e \"$key\" ${lock:+-e \"$lock\"}; then continue; fi")
        .line("  rm -rf \"$k\"")
        .line("  printf 'removed %s\\n' \"$key\"")
        .line("done")
        .repeatable()
}

/// Evaluates the PM2 ecosystem file `file` with `node` inside the new release, with the hook
/// environment (TJ_CURRENT …) set, running `js` (see src/ecosystem.rs). Prints `node none`
/// when the host has no node, `file none` when the release lacks the file.
pub fn ecosystem_eval(l: &Layout, file: &str, js: &str, env: &HookEnv) -> Script {
    hook_exports(with_dirs("lint", l), l, env)
        .var("FILE", file)
        .var("JS", js)
        .line("cd \"$TJ_RELEASE_DIR\"")
        .line("if ! command -v node >/dev/null 2>&1; then echo 'node none'; exit 0; fi")
        .line("if [ ! -f \"$FILE\" ]; then echo 'file none'; exit 0; fi")
        .line("exec node -e \"$JS\" \"$FILE\" </dev/null")
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
}
