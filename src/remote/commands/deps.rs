//! Dependencies kept once per lockfile (src/deps.rs): probe the key's parts on the host, reuse
//! stored node_modules by hard links, store a fresh install, prune what nothing names; and the
//! PM2 ecosystem file evaluated with the host's node (src/ecosystem.rs).

use super::*;
use crate::config::ReleaseId;
use crate::remote::layout::Layout;

/// Prints `lockfile <name> <sha256>` for the release's lockfile (if any) and `node <version>`
/// (`node none` without node on the PATH): the parts of the dependency key found on the host.
pub fn deps_probe(l: &Layout, id: ReleaseId) -> Script {
    let mut s = with_dirs("install", l)
        .with_sum256()
        .var("R", &l.release(id))
        .line("cd \"$R\"")
        .line("found=");
    for f in LOCKFILES {
        s = s.var("F", f).line(
            "if [ -z \"$found\" ] && [ -f \"$F\" ]; then found=1; printf 'lockfile %s %s\\n' \"$F\" \"$(sum256 \"$F\")\"; fi",
        );
    }
    // Prisma's client is generated into node_modules from the schema by `install`
    // (postinstall): a changed schema must not reuse the old client.
    s.line("if [ -f prisma/schema.prisma ]; then printf 'schema %s\\n' \"$(sum256 prisma/schema.prisma)\"; fi")
        .line("v=$(node --version 2>/dev/null || true)")
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
