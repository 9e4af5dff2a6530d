//! Releases on a host: read the host's state, receive and extract a package, switch `current`,
//! mark a release bad, remove releases and backups, and find where the PM2 workers run.

use super::*;
use crate::config::ReleaseId;
use crate::remote::layout::Layout;

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
        .line("    rev=-; if [ -f \"$r/REVISION\" ]; then rev=$(head -c 64 \"$r/REVISION\" | tr -cd '0-9a-z'); fi")
        .line("    bad=0; if [ -e \"$r/BAD_RELEASE\" ]; then bad=1; fi")
        .line("    printf 'release %s %s %s\\n' \"${r##*/}\" \"${rev:--}\" \"$bad\"")
        .line("  done")
        .line("fi")
        .line("if [ -d \"$B\" ]; then")
        .line(
            "  for b in \"$B\"/*; do if [ -f \"$b/manifest.json\" ]; then printf 'backup %s %s\\n' \"${b##*/}\" \"$(head -c 4194304 \"$b/manifest.json\" | tr -d '\\n' | sed -n 's/.*\"release\":\"\\([0-9_]*\\)\".*/\\1/p')\"; fi; done",
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
            .var("L", &l.bad(*id))
            // A mark from before the ledger existed outlives the release in the ledger.
            .line("if [ \"$cur\" != \"$T\" ] && [ -f \"$R/BAD_RELEASE\" ] && [ ! -e \"$L\" ]; then mkdir -p \"${L%/*}\"; cp \"$R/BAD_RELEASE\" \"$L\"; fi")
            .line("if [ \"$cur\" != \"$T\" ]; then rm -rf \"$R\"; fi");
    }
    for id in backups {
        s = s.var("K", &l.backup(*id)).line("rm -rf \"$K\"");
    }
    s.repeatable()
}

/// Keeps of `pm2 jlist` only what `status` shows: the full list carries every process's
/// environment (DATABASE_URL and all), which must not travel back or reach an error message.
pub(super) const PM2_FIELDS_JS: &str = r#"let s = '';
process.stdin.on('data', (d) => { s += d; }).on('end', () => {
  const line = s.split('\n').filter((l) => l.startsWith('[')).pop();
  try {
    const e = (p) => p.pm2_env || {};
    console.log(JSON.stringify(JSON.parse(line).map((p) => ({ name: p.name, pm_id: p.pm_id, pid: p.pid, monit: p.monit,
      pm2_env: { status: e(p).status, restart_time: e(p).restart_time, unstable_restarts: e(p).unstable_restarts, pm_uptime: e(p).pm_uptime, pm_cwd: e(p).pm_cwd, node_args: e(p).node_args } }))));
  } catch (err) { /* no list: no workers shown */ }
});
"#;

/// Prints PM2's process list as JSON (`pm2 jlist`, cut to the fields `status` shows), then
/// `cwd <pid> <resolved dir>` for each running process whose PM2 cwd lies under `deploy_dir`,
/// read from `/proc/<pid>/cwd`: where each worker really runs.
pub fn pm2_worker_dirs(l: &Layout) -> Script {
    with_dirs("workers", l)
        .line("J=$(pm2 jlist 2>/dev/null || true)")
        .var("JS", PM2_FIELDS_JS)
        .line("printf '%s\\n' \"$J\" | node -e \"$JS\" 2>/dev/null || true")
        .line("printf '%s\\n' \"$J\" | tr ',{' '\\n\\n' | sed -n 's/^\"pid\":\\([0-9][0-9]*\\)$/\\1/p' | while read -r p; do")
        .line("  c=$(readlink \"/proc/$p/cwd\" 2>/dev/null || true)")
        .line("  case \"$c\" in \"$D\"/*|\"$(cd \"$D\" && pwd -P)\"/*) printf 'cwd %s %s\\n' \"$p\" \"$c\" ;; esac")
        .line("done")
        // An interrupted `setup --adopt`'s snapshot of the old app: `status` warns about it.
        .line("if [ -e \"$D/.tj-deploy/adopt-old.json\" ]; then echo 'leftover adopt-old.json'; fi")
}
