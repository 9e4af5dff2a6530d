//! Backups on a host, private to the deploy user: the app part (the release's package as a hard
//! link, linked files, the lockfile hash), manifests, and restoring a release from a backup.

use super::*;
use crate::config::ReleaseId;
use crate::remote::layout::Layout;

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
pub(super) fn tighten_backups(s: Script) -> Script {
    s.line("n=0; for d in \"$B\"/[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]_[0-9][0-9][0-9][0-9][0-9][0-9] \"$B\"/.*.partial; do")
        .line("  [ -e \"$d\" ] || continue")
        // Only what the deploy user owns: a file another account put there is not ours to
        // change (and a chmod of it would fail the run).
        .line("  if [ -n \"$(find \"$d\" -user \"$(id -u)\" -perm /077 -print 2>/dev/null | head -n 1)\" ]; then find \"$d\" -user \"$(id -u)\" -perm /077 -exec chmod go-rwx {} + 2>/dev/null || true; n=$((n+1)); fi")
        .line("done")
        .line("t=0; if [ -O \"$B\" ] && [ -n \"$(find \"$B\" -maxdepth 0 -perm /077 2>/dev/null)\" ]; then chmod go-rwx \"$B\"; t=1; fi")
        .line("echo \"tightened $n $t\"")
}

/// Prints `file <sha256> <size> <name>` for every file under the partial backup `$P`, taking
/// the package's sha256 from its name (content-addressed and verified when it was extracted).
pub(super) fn list_backup_files(s: Script) -> Script {
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

/// Replaces a backup's manifest.json atomically (temp file + rename).
pub fn manifest_write(l: &Layout, id: ReleaseId, manifest_json: &str) -> Script {
    with_dirs("backup", l)
        .line("umask 077")
        .var("F", &l.backup(id))
        .var("MANIFEST", manifest_json)
        .line("printf '%s\\n' \"$MANIFEST\" > \"$F/.manifest.json.tmp\"")
        .line("mv -f \"$F/.manifest.json.tmp\" \"$F/manifest.json\"")
}

/// Prints `manifest <id> <manifest.json on one line>` for each complete backup.
pub fn read_manifests(l: &Layout) -> Script {
    with_dirs("backups", l)
        .line("if [ -d \"$B\" ]; then for b in \"$B\"/*; do")
        .line("  [ -f \"$b/manifest.json\" ] || continue")
        .line("  printf 'manifest %s ' \"${b##*/}\"; head -c 4194304 \"$b/manifest.json\" | tr -d '\\n'; echo")
        .line("done; fi")
}

/// Checks a backup file against the sha256 its manifest recorded.
pub(super) fn verify_backup_file(s: Script, path: &str, sha256: &str) -> Script {
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
