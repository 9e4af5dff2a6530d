//! `setup --adopt`'s scripts: read what a runbook-deployed host holds (the app unpacked in
//! `deploy_dir`, PM2 running it from there), hard-link it into `releases/<id>` with its linked
//! files in `shared/`, hand the running app over to `current` through a temporary PM2 name
//! (cluster apps of one PM2 daemon share their port), and put everything back on failure.

use super::*;
use crate::config::ReleaseId;
use crate::drain::{DRAIN_JS, WRAP_JS};
use crate::remote::layout::Layout;

/// Preloaded into the workers the adoption starts: marks each pid once it listens.
const LISTEN_JS: &str = include_str!("listen.js");
/// The ecosystem wrapper the adoption starts apps with (`.tj-deploy/adopt.config.js`).
const ADOPT_WRAP_JS: &str = include_str!("wrap.config.js");
/// Waits until the named apps' processes are online and listening.
const WAIT_JS: &str = include_str!("wait.js");
/// Lists (and snapshots) the PM2 processes running from deploy_dir itself.
const OLD_JS: &str = include_str!("old.js");
/// `twin` and `settle`: which originals (or release files) are hard-link twins of the other copy.
const TWIN_SH: &str = include_str!("twin.sh");
/// Prints `app <fork|cluster|npm> <cwd: - (none) | . (under TJ_CURRENT) | the other path>
/// <name>` per app of the ecosystem file given (`npm`: cluster mode with a package manager as
/// the script, whose server is its child; a cwd holding a space is printed as `?`), and `into
/// <field> <name>` per path field (or args/node_args word) naming deploy_dir or a path in it
/// outside `current` and `shared` (the originals finishing removes).
const APPS_JS: &str = "const path = require('path'); let m = require(path.resolve(process.argv[1]));
if (m && m.__esModule && m.default) m = m.default;
const apps = Array.isArray(m) ? m : m && Array.isArray(m.apps) ? m.apps : m && m.script ? [m] : [];
const cur = process.env.TJ_CURRENT; const D = process.env.TJ_DEPLOY_DIR;
const FIELDS = ['script', 'out_file', 'error_file', 'log_file', 'output', 'error', 'log', 'pid_file', 'interpreter',
  'exec_interpreter', 'node_args', 'interpreter_args', 'args'];
const under = (w, p) => w === p || w.startsWith(p + '/');
const into = (w) => under(w, D) && !under(w, cur) && !under(w, D + '/shared');
for (const a of apps) { const s = String(a.script || 'app'); const mode = String(a.exec_mode || a.execMode || '');
  const cluster = mode.startsWith('cluster') || (!mode && a.instances !== undefined);
  const pm = ['npm', 'yarn', 'pnpm', 'npx'].includes(s.split('/').pop());
  const c = a.cwd === undefined || a.cwd === null ? '-' : path.resolve(String(a.cwd));
  const cwd = c === '-' ? c : c === cur || c.startsWith(cur + '/') ? '.' : /\\s/.test(c) ? '?' : c;
  const name = a.name || path.basename(s, path.extname(s));
  console.log(`app ${cluster ? (pm ? 'npm' : 'cluster') : 'fork'} ${cwd} ${name}`);
  for (const f of FIELDS) { const v = a[f]; if (v === undefined || v === null) continue;
    const words = (Array.isArray(v) ? v : [v]).flatMap((w) => String(w).split(/[\\s=:,]+/));
    if (words.some(into)) console.log(`into ${f} ${name}`); } }";

/// The apps of the old app's snapshot as [`WAIT_JS`] takes them: a package manager as the
/// script (npm-cli.js once PM2 resolved it) never listens itself, so only `online` is awaited.
const OLD_APPS_JS: &str = "for (const a of require(process.argv[1]).apps) {
  const pm = /(^|\\/)(npm|yarn|pnpm|npx)(-cli)?(\\.c?js)?$/.test(String(a.script || ''));
  console.log(JSON.stringify({ name: a.name, cluster: a.exec_mode === 'cluster' && !pm }));
}";

/// Prints `<pm_id> <name>` per PM2 process of the apps given (JSON lines, as [`WAIT_JS`] takes
/// them) that runs from the directory given (`current`, resolved): what the adoption started.
const STARTED_JS: &str = "const { execFileSync } = require('child_process'); const fs = require('fs');
const [lines, dir] = process.argv.slice(1);
const want = new Set(lines.split('\\n').filter(Boolean).map((l) => JSON.parse(l).name));
const real = (p) => { try { return fs.realpathSync(p); } catch { return p; } };
const rd = real(dir);
const text = execFileSync('pm2', ['jlist'], { encoding: 'utf8', maxBuffer: 256 << 20 });
for (const p of JSON.parse(text.split('\\n').filter((l) => l.startsWith('[')).pop() || '[]')) {
  const c = p.pm2_env && p.pm2_env.pm_cwd ? real(p.pm2_env.pm_cwd) : '';
  if (want.has(p.name) && (c === rd || c.startsWith(rd + '/'))) console.log(`${p.pm_id} ${p.name}`);
}";

/// Prints the pm_id of each PM2 process named `*<suffix>` whose cwd (resolved) lies in the
/// directory given: a temporary copy started but not recorded.
const STRAY_JS: &str = "const { execFileSync } = require('child_process'); const fs = require('fs');
const [dir, suffix] = process.argv.slice(1);
const real = (p) => { try { return fs.realpathSync(p); } catch { return p; } };
const rd = real(dir);
const text = execFileSync('pm2', ['jlist'], { encoding: 'utf8', maxBuffer: 256 << 20 });
for (const p of JSON.parse(text.split('\\n').filter((l) => l.startsWith('[')).pop() || '[]')) {
  const c = p.pm2_env && p.pm2_env.pm_cwd ? real(p.pm2_env.pm_cwd) : '';
  if (String(p.name).endsWith(suffix) && (c === rd || c.startsWith(rd + '/'))) console.log(p.pm_id);
}";

/// The name suffix of the temporary copy.
pub const ADOPT_SUFFIX: &str = "-tj-adopt";

/// The entries of deploy_dir that make up the app: everything but tj-deploy's own names and
/// backup_dir. Runs `body` with each path as `$e`.
fn each_entry(s: Script, body: &str) -> Script {
    s.line("for e in \"$D\"/* \"$D\"/.[!.]* \"$D\"/..?*; do")
        .line("  [ -e \"$e\" ] || [ -L \"$e\" ] || continue")
        .line("  case \"${e##*/}\" in shared|.tj-deploy|releases|current|.current.*) continue ;; esac")
        .line("  [ \"$e\" != \"$B\" ] || continue")
        .line(body)
        .line("done")
}

/// Reads only. Prints `releases 1`, `current 1`, `shared 1` when present, `target <current's
/// link>`, `leftover <adopt-old.json|adopt-started>` (an interrupted adoption's), `entries <n>`,
/// `package 1`, `ecosystem 1`, `revision <git HEAD or REVISION|->`, `linked <state> <name>`
/// (state: linked | same | differs | shared | app | missing), `app <mode> <cwd> <name>`
/// per app of the ecosystem file (see `APPS_JS`), and `old <pm_id> <name>` per PM2 process running from deploy_dir.
pub fn adopt_probe(l: &Layout, file: &str, linked_files: &[String]) -> Script {
    let mut s = with_dirs("adopt-probe", l)
        .var("FILE", file)
        .line("for n in releases current shared; do if [ -e \"$D/$n\" ] || [ -L \"$D/$n\" ]; then printf '%s 1\\n' \"$n\"; fi; done")
        .line("[ -d \"$D\" ] || exit 0")
        // A name holding a newline could forge the lines below (and the twin listings): refuse.
        .line("nl=$(printf '\\nx'); nl=${nl%x}")
        .line("n=$(find \"$D\" -name \"*$nl*\" -printf x | wc -c)")
        .line("if [ \"$n\" != 0 ]; then printf 'newline %s\\n' \"$n\"; exit 0; fi")
        .line("for f in \"$D\"/.tj-deploy/adopting-*; do if [ -e \"$f\" ]; then printf 'adopting %s\\n' \"${f##*/adopting-}\"; fi; done")
        .line("if [ -L \"$D/current\" ]; then printf 'target %s\\n' \"$(readlink \"$D/current\")\"; fi")
        .line("for f in adopt-old.json adopt-started; do if [ -e \"$D/.tj-deploy/$f\" ]; then printf 'leftover %s\\n' \"$f\"; fi; done")
        .line("if [ -f \"$D/current/REVISION\" ]; then printf 'crev %s\\n' \"$(head -c 64 \"$D/current/REVISION\" | tr -cd '0-9A-Za-z._-')\"; fi")
        .line("n=0");
    s = each_entry(s, "  n=$((n + 1)); printf 'entry %s\\n' \"${e##*/}\"")
        .line("printf 'entries %s\\n' \"$n\"")
        // A database hard-linked under two names gets two -journal/-wal files: corruption.
        .line("(cd \"$D\" && find . \\( -path ./shared -o -path ./node_modules -o -path ./.tj-deploy -o -path ./releases -o -path ./current \\) -prune -o ! -type l \\( -name '*.db' -o -name '*.sqlite' -o -name '*.sqlite3' -o -name '*-wal' -o -name '*-journal' -o -name '*-shm' \\) -printf 'sqlite %P\\n') | head -n 20")
        // Finishing removes deploy_dir's entries: nothing the host needs may live in it.
        .line("rd=$(cd \"$D\" && pwd -P)")
        .line("inside() { r=$(cd \"$2\" 2>/dev/null && pwd -P) || r=$2; case \"$r/\" in \"$rd\"/*) printf 'inside %s %s\\n' \"$1\" \"$2\" ;; esac; }")
        .line("inside HOME \"${HOME:-/}\"; inside PM2_HOME \"${PM2_HOME:-${HOME:-/}/.pm2}\"; inside backup_dir \"$B\"")
        .line("if [ -f \"$D/package.json\" ]; then echo 'package 1'; fi")
        .line("if [ -f \"$D/$FILE\" ]; then echo 'ecosystem 1'; fi")
        .line("rev=; if [ -d \"$D/.git\" ] && command -v git >/dev/null 2>&1; then rev=$(git -C \"$D\" rev-parse HEAD 2>/dev/null || true); fi")
        .line("if [ -z \"$rev\" ] && [ -f \"$D/REVISION\" ]; then rev=$(head -c 64 \"$D/REVISION\" | tr -cd '0-9a-f'); fi")
        .line("printf 'revision %s\\n' \"${rev:--}\"");
    for f in linked_files {
        s = s
            .var("F", f)
            .line("st=missing")
            .line("if [ -L \"$D/$F\" ] && [ \"$D/$F\" -ef \"$D/shared/$F\" ]; then st=linked")
            .line("elif [ -f \"$D/shared/$F\" ]; then if [ ! -e \"$D/$F\" ]; then st=shared; elif cmp -s \"$D/$F\" \"$D/shared/$F\"; then st=same; else st=differs; fi")
            .line("elif [ -f \"$D/$F\" ]; then st=app; fi")
            .line("printf 'linked %s %s\\n' \"$st\" \"$F\"");
    }
    s.var("APPS_JS", APPS_JS)
        .var("OLD_JS", OLD_JS)
        .line("if [ -f \"$D/$FILE\" ] && command -v node >/dev/null 2>&1; then")
        .line("  (cd \"$D\" && TJ_DEPLOY_DIR=\"$D\" TJ_CURRENT=\"$D/current\" node -e \"$APPS_JS\" \"$D/$FILE\") || echo 'apps failed'")
        .line("fi")
        // `pm2 jlist` would start a daemon where none runs: read only a running one.
        .line("H=\"${PM2_HOME:-$HOME/.pm2}\"")
        .line("if [ -f \"$H/pm2.pid\" ] && kill -0 \"$(cat \"$H/pm2.pid\")\" 2>/dev/null && command -v pm2 >/dev/null 2>&1; then")
        .line("  node -e \"$OLD_JS\" \"$D\" \"$D/.tj-deploy/listen.js\" - || echo 'old failed'")
        .line("fi")
        .repeatable()
}

/// Hard-links the app into `releases/<id>` (no data copied, node_modules included; the
/// originals stay where the old workers read them until the handover is done), writes
/// REVISION (a new file, never through a link), links each linked file from `shared/` (hard
/// linking an app's own copy there first when `shared/` has none).
pub fn adopt_link(l: &Layout, id: ReleaseId, revision: &str, linked_files: &[String]) -> Script {
    let mut s = with_dirs("adopt-link", l)
        .var("R", &l.release(id))
        .var("REV", revision)
        .var("ID", &id.to_string())
        // The proof a rerun finishes only an adoption (of this release), never a managed host.
        // (Any other marker is stale: the probe found no adoption to finish.)
        .line("mkdir -p \"$D/.tj-deploy\"; rm -f \"$D/.tj-deploy\"/adopting-*; : > \"$D/.tj-deploy/adopting-$ID\"")
        .line("mkdir \"$D/releases\"")
        .line("mkdir \"$R\"")
        .line("mkdir -p \"$D/shared\"");
    s = each_entry(s, "  cp -al \"$e\" \"$R/${e##*/}\"")
        .line("rm -f \"$R/REVISION\"")
        .line("printf '%s\\n' \"$REV\" > \"$R/REVISION\"");
    for f in linked_files {
        s = s
            .var("F", f)
            .line("if [ ! -e \"$D/shared/$F\" ]; then mkdir -p \"$(dirname \"$D/shared/$F\")\"; ln \"$D/$F\" \"$D/shared/$F\"; fi")
            .line("mkdir -p \"$(dirname \"$R/$F\")\"")
            .line("rm -rf \"$R/$F\"")
            .line("ln -s \"$D/shared/$F\" \"$R/$F\"");
    }
    s
}

/// Writes the preloads and wrappers to `.tj-deploy/`, starts the app from `current` (names
/// with `suffix`, the drain wired in when `drain`), and waits up to `wait_ms` until every new
/// process is online and listening. Prints `listening <pid>` per process.
pub fn adopt_start(
    l: &Layout,
    file: &str,
    env: &HookEnv,
    drain: Option<std::time::Duration>,
    suffix: &str,
    wait_ms: u128,
) -> Script {
    let label = if suffix.is_empty() {
        "adopt-start"
    } else {
        "adopt-start-temporary"
    };
    let mut s = hook_exports(with_dirs(label, l), l, env)
        .var("TJ_DRAIN_ECOSYSTEM", file)
        .var("TJ_ADOPT_SUFFIX", suffix)
        .var("DRAIN_JS", DRAIN_JS)
        .var("WRAP_JS", WRAP_JS)
        .var("LISTEN_JS", LISTEN_JS)
        .var("ADOPT_WRAP_JS", ADOPT_WRAP_JS)
        .var("WAIT_JS", WAIT_JS)
        .var("WAIT_MS", &wait_ms.to_string())
        .line("M=\"$D/.tj-deploy\"")
        .line("mkdir -p \"$M/adopt-listen\"")
        .line("put() { printf '%s\\n' \"$2\" > \"$M/.$1.tmp\" && mv -f \"$M/.$1.tmp\" \"$M/$1\"; }")
        .line("put listen.js \"$LISTEN_JS\"; put adopt.config.js \"$ADOPT_WRAP_JS\"")
        .line("export TJ_DRAIN_ECOSYSTEM TJ_ADOPT_SUFFIX");
    s = match drain {
        Some(t) => s
            .var("TJ_DRAIN_TIMEOUT_MS", &t.as_millis().to_string())
            .line("put drain.js \"$DRAIN_JS\"; put drain.config.js \"$WRAP_JS\"")
            .line("TJ_ADOPT_BASE=\"$M/drain.config.js\"; export TJ_DRAIN_TIMEOUT_MS TJ_ADOPT_BASE"),
        None => s.line("TJ_ADOPT_BASE=\"$TJ_CURRENT/$TJ_DRAIN_ECOSYSTEM\"; export TJ_ADOPT_BASE"),
    };
    s.line("cd \"$TJ_CURRENT\"")
        .line("APPS=$(node \"$M/adopt.config.js\")")
        .line("if [ -z \"$APPS\" ]; then echo \"$TJ_DRAIN_ECOSYSTEM lists no app\" >&2; exit 1; fi")
        .var("STARTED_JS", STARTED_JS)
        // What undo and finish delete, by pm_id: never another app that has the same name.
        .line("st=0; pm2 start \"$M/adopt.config.js\" >&2 || st=$?")
        .line("node -e \"$STARTED_JS\" \"$APPS\" \"$TJ_CURRENT\" >> \"$M/adopt-started\"")
        .line("[ \"$st\" = 0 ] || exit \"$st\"")
        .line("node -e \"$WAIT_JS\" \"$APPS\" \"$M/adopt-listen\" \"$WAIT_MS\"")
}

/// Snapshots the PM2 processes running from deploy_dir itself to `.tj-deploy/adopt-old.json`
/// (private), then deletes them one by one (each drains: the new copy serves meanwhile).
/// Prints `old <pm_id> <name>` per process.
pub fn adopt_retire(l: &Layout) -> Script {
    with_dirs("adopt-retire-old", l)
        .var("OLD_JS", OLD_JS)
        .line("M=\"$D/.tj-deploy\"")
        .line("OLD=$(umask 077 && node -e \"$OLD_JS\" \"$D\" \"$M/listen.js\" \"$M/adopt-old.json\")")
        .line("printf '%s\\n' \"$OLD\"")
        .line("printf '%s\\n' \"$OLD\" | while read -r k id _; do if [ \"$k\" = old ] && [ -n \"$id\" ]; then pm2 delete \"$id\" </dev/null >&2; fi; done")
}

/// Deletes the temporary copy, saves PM2's process list, and removes the originals from
/// deploy_dir that the release holds as hard links (linked files equal to `shared/`'s copy);
/// any other entry (written by the old workers after the link step) is moved to
/// `.tj-deploy/adopted-<id>/` and printed as `kept <name>`. Removes the scratch files.
pub fn adopt_finish(l: &Layout, id: ReleaseId, temporary_ids: &[String], linked_files: &[String]) -> Script {
    let mut s = with_dirs("adopt-finish", l)
        .var("R", &l.release(id))
        .var("ID", &id.to_string())
        .line("M=\"$D/.tj-deploy\"; K=\"$M/adopted-$ID\"")
        .line(TWIN_SH);
    s = s.var("SUFFIX", ADOPT_SUFFIX).line(
        "if [ -f \"$M/adopt-started\" ]; then while read -r id n; do case \"$n\" in *\"$SUFFIX\") if pm2 describe \"$id\" </dev/null >/dev/null 2>&1; then pm2 delete \"$id\" </dev/null >&2; fi ;; esac; done < \"$M/adopt-started\"; fi",
    );
    // A rerun finishing an interrupted adoption: the temporary copies its probe found.
    for i in temporary_ids {
        s = s
            .var("I", i)
            .line("if pm2 describe \"$I\" >/dev/null 2>&1; then pm2 delete \"$I\" >&2; fi");
    }
    s = s
        .line("pm2 save >&2")
        .line("rm -rf \"$M/adopt-listen\" \"$M/adopt-old.json\" \"$M/adopt-started\"");
    for f in linked_files {
        s = s.var("F", f).line(
            "if [ -f \"$D/$F\" ] && { [ \"$D/$F\" -ef \"$D/shared/$F\" ] || cmp -s \"$D/$F\" \"$D/shared/$F\"; }; then rm -f \"$D/$F\"; fi",
        );
    }
    // The release has its own REVISION (written, never linked): the original is kept aside.
    let s = s.line("if [ -e \"$D/REVISION\" ]; then if [ \"$D/REVISION\" -ef \"$R/REVISION\" ]; then rm -f \"$D/REVISION\"; else keep \"$D/REVISION\"; fi; fi");
    // The marker goes last: until every entry is settled, a rerun knows to finish.
    each_entry(s, "  settle \"$e\" \"$R/${e##*/}\"")
        .line("rm -f \"$M/adopting-$ID\"")
        .repeatable()
}

/// Puts PM2 back as it was: deletes what the adoption started under the app's own names (by
/// the pm_ids `adopt-started` recorded), starts the old app again from its snapshot when it was
/// retired and waits until it listens, then deletes the temporary copy (by pm_id too). Never
/// fails on a process already gone.
pub fn adopt_undo_pm2(l: &Layout, id: ReleaseId, wait_ms: u128) -> Script {
    with_dirs("adopt-undo-pm2", l)
        .var("R", &l.release(id))
        .var("STRAY_JS", STRAY_JS)
        .var("WAIT_JS", WAIT_JS)
        .var("WAIT_MS", &wait_ms.to_string())
        .var("SUFFIX", ADOPT_SUFFIX)
        .line("M=\"$D/.tj-deploy\"")
        .line("gone() { if [ -f \"$M/adopt-started\" ]; then while read -r id n; do")
        .line("  case \"$n\" in *\"$SUFFIX\") t=1 ;; *) t=0 ;; esac")
        .line("  if [ \"$t\" = \"$1\" ] && pm2 describe \"$id\" </dev/null >/dev/null 2>&1; then pm2 delete \"$id\" </dev/null >&2 || true; fi")
        .line("done < \"$M/adopt-started\"; fi; }")
        .line("if [ -f \"$M/adopt-old.json\" ]; then")
        .line("  gone 0")
        .line("  mkdir -p \"$M/adopt-listen\"")
        .var("OLD_APPS_JS", OLD_APPS_JS)
        .line("  APPS=$(node -e \"$OLD_APPS_JS\" \"$M/adopt-old.json\")")
        .line("  if [ -n \"$APPS\" ]; then (cd \"$D\" && pm2 start \"$M/adopt-old.json\" >&2); node -e \"$WAIT_JS\" \"$APPS\" \"$M/adopt-listen\" \"$WAIT_MS\"; fi")
        .line("fi")
        .line("gone 1")
        // Killed between `pm2 start` and the record: the temporary copy it started, found by
        // both its name and its cwd (in this release), never another process.
        .line("ids=$(node -e \"$STRAY_JS\" \"$R\" \"$SUFFIX\" || true)")
        .line("for id in $ids; do pm2 delete \"$id\" </dev/null >&2 || true; done")
}

/// Removes what the adoption made on disk: `current` (when it points at the release), the
/// release (a file of it that is not a hard link of deploy_dir's original, written by the new
/// workers, is moved to `.tj-deploy/adopted-<id>/` and printed as `kept <name>`), `releases/`, the linked files it hard-linked into `shared/` (`created`, only while
/// the app's own copy is still the same file), `shared/` when it made it, and scratch files.
pub fn adopt_undo_files(
    l: &Layout,
    id: ReleaseId,
    linked_files: &[String],
    created: &[String],
    made_shared: bool,
) -> Script {
    let mut s = with_dirs("adopt-undo-files", l)
        .var("R", &l.release(id))
        .var("ID", &id.to_string())
        .var("TARGET", &Layout::release_link_target(id))
        .line("M=\"$D/.tj-deploy\"; K=\"$M/adopted-$ID\"")
        .line(TWIN_SH)
        .line("if [ \"$(readlink \"$D/current\" 2>/dev/null || true)\" = \"$TARGET\" ]; then rm -f \"$D/current\"; fi")
        .line("if [ -d \"$R\" ]; then")
        .line("  rm -f \"$R/REVISION\"");
    for f in linked_files {
        s = s.var("F", f).line("  if [ -L \"$R/$F\" ]; then rm -f \"$R/$F\"; fi");
    }
    s = s
        .line("  for e in \"$R\"/* \"$R\"/.[!.]* \"$R\"/..?*; do")
        .line("    if [ -e \"$e\" ] || [ -L \"$e\" ]; then settle \"$e\" \"$D/${e##*/}\"; fi")
        .line("  done")
        .line("  rmdir \"$R\"")
        .line("fi")
        .line("rmdir \"$D/releases\" 2>/dev/null || true");
    for f in created {
        s = s
            .var("F", f)
            .line("if [ -e \"$D/$F\" ] && [ \"$D/shared/$F\" -ef \"$D/$F\" ]; then rm -f \"$D/shared/$F\"; fi");
    }
    if made_shared {
        s = s.line("rmdir \"$D/shared\" 2>/dev/null || true");
    }
    s.line("rm -rf \"$M/adopt-listen\" \"$M/adopt-old.json\" \"$M/adopt-started\" \"$M/adopting-$ID\"")
        // Made for the marker when it did not exist (emptied, it goes).
        .line("rmdir \"$M\" 2>/dev/null || true")
        .repeatable()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RemotePath;

    fn sh(script: &str, home: &std::path::Path) -> String {
        sh_env(script, home, &[])
    }

    /// Runs `script` with PM2_HOME under `home` (no daemon) and a `pm2` on PATH that does
    /// nothing, plus `env`.
    fn sh_env(script: &str, home: &std::path::Path, env: &[(&str, &std::path::Path)]) -> String {
        let bin = home.join("fakebin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("pm2"), "#!/bin/sh\nexit 0\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(bin.join("pm2"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        let mut c = std::process::Command::new("sh");
        c.args(["-c", script])
            .env("PM2_HOME", home.join("no-pm2"))
            .env("PATH", path);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn tree(d: &std::path::Path) -> String {
        let out = std::process::Command::new("sh")
            .args(["-c", "find . -printf '%p %s %m %n\\n' | sort"])
            .current_dir(d)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// On a real directory: the probe reads a git checkout's HEAD, the linked file only the app
    /// has, the apps; the link step hard-links (same inode) and shares `.env`; undo restores the
    /// tree exactly.
    #[test]
    fn probe_link_and_undo_on_a_real_directory() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("app dir");
        std::fs::create_dir_all(d.join("node_modules/dep")).unwrap();
        std::fs::write(d.join("node_modules/dep/index.js"), "1").unwrap();
        std::fs::write(d.join("package.json"), "{}").unwrap();
        std::fs::write(d.join(".env"), "PORT=1\n").unwrap();
        std::fs::write(
            d.join("ecosystem.config.js"),
            "module.exports = { apps: [{ name: 'web', script: 'server.js', exec_mode: 'cluster', instances: 2, cwd: process.env.TJ_CURRENT }] };",
        )
        .unwrap();
        let git = |args: &str| {
            sh(
                &format!(
                    "cd {} && git -c user.name=t -c user.email=t@t {args} >/dev/null 2>&1 && git rev-parse HEAD 2>/dev/null || true",
                    quote(&d.display().to_string())
                ),
                dir.path(),
            )
        };
        git("init -q . && git add -A && git commit -qm x");
        let head = git("log -1").trim().to_string();
        let l = Layout::new(
            RemotePath::parse("d", d.to_str().unwrap()).unwrap(),
            RemotePath::parse("b", dir.path().join("backups").to_str().unwrap()).unwrap(),
        );
        let linked = vec![".env".to_string()];
        let before = tree(&d);
        let p = sh(adopt_probe(&l, "ecosystem.config.js", &linked).text(), dir.path());
        assert!(p.contains("entries 5\n"), "{p}");
        assert!(p.contains("package 1\necosystem 1\n"), "{p}");
        let has_git = !sh("command -v git || true", dir.path()).trim().is_empty();
        assert!(!has_git || head.len() == 40, "a commit was made: {head:?}");
        if has_git {
            assert!(p.contains(&format!("revision {head}\n")), "{p}");
        }
        assert!(p.contains("linked app .env\n"), "{p}");
        assert!(p.contains("app cluster . web\n"), "{p}");
        assert!(!p.contains("shared 1"), "{p}");

        let id = ReleaseId::parse("id", "20260118_143000").unwrap();
        sh(adopt_link(&l, id, "abc", &linked).text(), dir.path());
        let r = d.join("releases/20260118_143000");
        use std::os::unix::fs::MetadataExt;
        let ino = |p: std::path::PathBuf| std::fs::metadata(p).unwrap().ino();
        assert_eq!(
            ino(r.join("node_modules/dep/index.js")),
            ino(d.join("node_modules/dep/index.js"))
        );
        assert_eq!(ino(d.join("shared/.env")), ino(d.join(".env")));
        assert_eq!(std::fs::read_link(r.join(".env")).unwrap(), d.join("shared/.env"));
        assert_eq!(std::fs::read_to_string(r.join("REVISION")).unwrap(), "abc\n");
        let again = sh(adopt_probe(&l, "ecosystem.config.js", &linked).text(), dir.path());
        assert!(again.contains("releases 1") && again.contains("shared 1"), "{again}");

        sh(adopt_undo_files(&l, id, &linked, &linked, true).text(), dir.path());
        assert_eq!(tree(&d), before, "undo restores the tree");
    }

    /// A runbook-like app in `<tmp>/app`, its layout, and the release id.
    fn app_dir(dir: &std::path::Path) -> (std::path::PathBuf, Layout, ReleaseId) {
        let d = dir.join("app");
        std::fs::create_dir_all(d.join("node_modules/dep")).unwrap();
        std::fs::create_dir_all(d.join("data")).unwrap();
        std::fs::write(d.join("node_modules/dep/index.js"), "1").unwrap();
        std::fs::write(d.join("data/a"), "a").unwrap();
        std::fs::write(d.join("package.json"), "{}").unwrap();
        std::fs::write(d.join(".env"), "PORT=1\n").unwrap();
        std::fs::write(d.join("REVISION"), "abc\n").unwrap();
        let l = Layout::new(
            RemotePath::parse("d", d.to_str().unwrap()).unwrap(),
            RemotePath::parse("b", dir.join("backups").to_str().unwrap()).unwrap(),
        );
        (d, l, ReleaseId::parse("id", "20260118_143000").unwrap())
    }

    /// Finish removes only the originals the release holds as hard links (and the linked
    /// file shared/ holds); a file written after the link step (new, or replaced by a rename)
    /// keeps its top-level entry, moved to .tj-deploy/adopted-<id>/ and printed.
    #[test]
    fn finish_removes_only_hard_link_twins() {
        let dir = tempfile::tempdir().unwrap();
        let (d, l, id) = app_dir(dir.path());
        let linked = vec![".env".to_string()];
        sh(adopt_link(&l, id, "abc", &linked).text(), dir.path());
        std::fs::write(d.join("late.log"), "written by an old worker").unwrap();
        std::fs::write(d.join("data/a.tmp"), "b").unwrap();
        std::fs::rename(d.join("data/a.tmp"), d.join("data/a")).unwrap();
        let out = sh(adopt_finish(&l, id, &[], &linked).text(), dir.path());
        assert!(out.contains("kept data\n") && out.contains("kept late.log\n"), "{out}");
        assert_eq!(out.lines().count(), 2, "{out}");
        let k = d.join(".tj-deploy/adopted-20260118_143000");
        assert_eq!(std::fs::read_to_string(k.join("data/a")).unwrap(), "b");
        assert!(k.join("late.log").is_file());
        for gone in ["package.json", "node_modules", ".env", "data", "late.log", "REVISION"] {
            assert!(!d.join(gone).exists() && !d.join(gone).is_symlink(), "{gone} left");
        }
        let r = d.join("releases/20260118_143000");
        assert_eq!(
            std::fs::read_to_string(r.join("node_modules/dep/index.js")).unwrap(),
            "1"
        );
        assert_eq!(std::fs::read_to_string(r.join(".env")).unwrap(), "PORT=1\n");
        assert_eq!(std::fs::read_to_string(r.join("data/a")).unwrap(), "a");
    }

    /// Undo keeps what the new workers wrote into the release (a new directory, a file
    /// replaced by a rename) in .tj-deploy/adopted-<id>/ and leaves the originals as they were.
    #[test]
    fn undo_keeps_files_written_into_the_release() {
        let dir = tempfile::tempdir().unwrap();
        let (d, l, id) = app_dir(dir.path());
        let linked = vec![".env".to_string()];
        sh(adopt_link(&l, id, "abc", &linked).text(), dir.path());
        let r = d.join("releases/20260118_143000");
        std::fs::create_dir_all(r.join("uploads")).unwrap();
        std::fs::write(r.join("uploads/x"), "x").unwrap();
        std::fs::write(r.join("package.tmp"), "{\"new\":1}").unwrap();
        std::fs::rename(r.join("package.tmp"), r.join("package.json")).unwrap();
        let out = sh(adopt_undo_files(&l, id, &linked, &linked, true).text(), dir.path());
        assert!(
            out.contains("kept uploads\n") && out.contains("kept package.json\n"),
            "{out}"
        );
        assert_eq!(out.lines().count(), 2, "{out}");
        let k = d.join(".tj-deploy/adopted-20260118_143000");
        assert_eq!(std::fs::read_to_string(k.join("uploads/x")).unwrap(), "x");
        assert_eq!(std::fs::read_to_string(k.join("package.json")).unwrap(), "{\"new\":1}");
        assert_eq!(std::fs::read_to_string(d.join("package.json")).unwrap(), "{}");
        assert!(d.join("node_modules/dep/index.js").is_file() && d.join(".env").is_file());
        assert!(!d.join("releases").exists() && !d.join("shared").exists());
    }

    /// HOME, PM2_HOME or backup_dir inside deploy_dir (or equal to it) are named by the probe.
    #[test]
    fn probe_names_what_lies_inside_deploy_dir() {
        let dir = tempfile::tempdir().unwrap();
        let (d, l, _) = app_dir(dir.path());
        std::fs::write(
            d.join("ecosystem.config.js"),
            "const D = process.env.TJ_DEPLOY_DIR; module.exports = { apps: [{ name: 'web', script: 'server.js', cwd: process.env.TJ_CURRENT, \
             exec_mode: 'cluster', out_file: D + '/logs/out.log', error_file: D + '/shared/err.log', log_file: process.env.TJ_CURRENT + '/x.log', \
             node_args: ['--require', D + '/preload.js'], args: '--port=3000' }] };",
        )
        .unwrap();
        let p = sh(adopt_probe(&l, "ecosystem.config.js", &[]).text(), dir.path());
        assert!(!p.contains("inside"), "{p}");
        assert!(p.contains("into out_file web\ninto node_args web\n"), "{p}");
        assert_eq!(p.matches("into ").count(), 2, "{p}");
        assert!(p.contains("entry node_modules\n") && p.contains("entry .env\n"), "{p}");
        let pm2 = d.join(".pm2");
        let p = sh_env(
            adopt_probe(&l, "ecosystem.config.js", &[]).text(),
            dir.path(),
            &[("HOME", &d), ("PM2_HOME", &pm2)],
        );
        assert!(p.contains(&format!("inside HOME {}\n", d.display())), "{p}");
        assert!(p.contains(&format!("inside PM2_HOME {}\n", pm2.display())), "{p}");
        let inner = Layout::new(
            l.deploy_dir.clone(),
            RemotePath::parse("b", d.join("data/backups").to_str().unwrap()).unwrap(),
        );
        let p = sh(adopt_probe(&inner, "ecosystem.config.js", &[]).text(), dir.path());
        assert!(p.contains("inside backup_dir "), "{p}");
    }

    /// The link step writes the adoption's marker first; finish removes it last, keeps the
    /// original REVISION (no twin of the release's) and, on a rerun, never overwrites what
    /// `adopted-<id>/` holds already.
    #[test]
    fn marker_revision_and_kept_names_survive_a_rerun() {
        let dir = tempfile::tempdir().unwrap();
        let (d, l, id) = app_dir(dir.path());
        let m = d.join(".tj-deploy/adopting-20260118_143000");
        sh(adopt_link(&l, id, "abc", &[]).text(), dir.path());
        assert!(m.is_file(), "marker written");
        let p = sh(adopt_probe(&l, "ecosystem.config.js", &[]).text(), dir.path());
        assert!(p.contains("adopting 20260118_143000\n"), "{p}");
        let k = d.join(".tj-deploy/adopted-20260118_143000");
        std::fs::create_dir_all(&k).unwrap();
        std::fs::write(k.join("late.log"), "first run").unwrap();
        std::fs::write(d.join("late.log"), "second run").unwrap();
        let out = sh(adopt_finish(&l, id, &[], &[]).text(), dir.path());
        assert_eq!(out, "kept late.log\n");
        assert_eq!(std::fs::read_to_string(k.join("late.log")).unwrap(), "first run");
        assert_eq!(std::fs::read_to_string(k.join("late.log.1")).unwrap(), "second run");
        assert_eq!(std::fs::read_to_string(k.join("REVISION")).unwrap(), "abc\n");
        assert!(!d.join("REVISION").exists() && !m.exists(), "marker removed last");
    }

    /// The probe lists database files outside shared/ and node_modules/, and stops at a name
    /// holding a newline (counted, never printed).
    #[test]
    fn probe_finds_databases_and_newline_names() {
        let dir = tempfile::tempdir().unwrap();
        let (d, l, _) = app_dir(dir.path());
        std::fs::write(d.join("data/app.db"), "x").unwrap();
        std::fs::write(d.join("data/app.db-wal"), "x").unwrap();
        std::fs::create_dir_all(d.join("shared")).unwrap();
        std::fs::write(d.join("shared/ok.sqlite"), "x").unwrap();
        std::fs::write(d.join("node_modules/dep/t.sqlite3"), "x").unwrap();
        let p = sh(adopt_probe(&l, "ecosystem.config.js", &[]).text(), dir.path());
        let mut found: Vec<&str> = p.lines().filter(|l| l.starts_with("sqlite ")).collect();
        found.sort();
        assert_eq!(found, ["sqlite data/app.db", "sqlite data/app.db-wal"], "{p}");
        assert!(!p.contains("newline"), "{p}");
        std::fs::write(d.join("node_modules/dep/x\nentries 0"), "x").unwrap();
        let p = sh(adopt_probe(&l, "ecosystem.config.js", &[]).text(), dir.path());
        assert!(p.contains("newline 1\n") && !p.contains("entries"), "{p}");
    }

    /// Undo deletes a temporary copy started but not recorded (killed in between): named
    /// `*-tj-adopt` and running from the release (directly or through `current`), never another.
    #[test]
    fn undo_deletes_an_unrecorded_temporary_copy_only() {
        let dir = tempfile::tempdir().unwrap();
        let (d, l, id) = app_dir(dir.path());
        sh(adopt_link(&l, id, "abc", &[]).text(), dir.path());
        std::os::unix::fs::symlink("releases/20260118_143000", d.join("current")).unwrap();
        let r = d.join("releases/20260118_143000");
        let p = |i: u32, n: &str, c: &std::path::Path| serde_json::json!({ "pm_id": i, "name": n, "pm2_env": { "pm_cwd": c } });
        let list = serde_json::json!([
            p(0, "w-tj-adopt", &r),
            p(1, "w-tj-adopt", dir.path()),
            p(2, "w", &r),
            p(3, "w-tj-adopt", &d.join("current")),
            p(4, "w-tj-adopt", &d),
        ]);
        std::fs::write(dir.path().join("jlist"), list.to_string()).unwrap();
        let bin = dir.path().join("jbin");
        std::fs::create_dir_all(&bin).unwrap();
        let log = dir.path().join("deleted");
        std::fs::write(
            bin.join("pm2"),
            format!(
                "#!/bin/sh\ncase \"$1\" in jlist) cat {} ;; delete) echo \"$2\" >> {} ;; *) exit 1 ;; esac\n",
                dir.path().join("jlist").display(),
                log.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(bin.join("pm2"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::path::PathBuf::from(format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        ));
        sh_env(adopt_undo_pm2(&l, id, 1000).text(), dir.path(), &[("PATH", &path)]);
        assert_eq!(std::fs::read_to_string(&log).unwrap_or_default(), "0\n3\n");
    }

    /// The old app's snapshot keeps how it was started (interpreter, max_restarts,
    /// cron_restart, watch, …), drops what PM2 keeps at run time, and counts the instances;
    /// processes running elsewhere are printed as `other`.
    #[test]
    fn the_snapshot_keeps_the_old_apps_options() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("app");
        std::fs::create_dir_all(&d).unwrap();
        let env = |id: u32, cwd: &std::path::Path| {
            serde_json::json!({
                "pm_id": id, "status": "online", "restart_time": 3, "pm_uptime": 1, "axm_monitor": {},
                "pm_cwd": cwd, "pm_exec_path": cwd.join("server.js"), "exec_mode": "cluster_mode",
                "exec_interpreter": "/opt/node18/bin/node", "node_args": ["--max-old-space-size=512"],
                "max_restarts": 7, "cron_restart": "0 3 * * *", "watch": false, "kill_timeout": 9000,
                "env": { "PORT": "3000" }, "PORT": "3000", "pm_out_log_path": "/logs/out.log"
            })
        };
        let list = serde_json::json!([
            { "pm_id": 0, "name": "web", "pid": 11, "pm2_env": env(0, &d) },
            { "pm_id": 1, "name": "web", "pid": 12, "pm2_env": env(1, &d) },
            { "pm_id": 2, "name": "cron", "pid": 13, "pm2_env": env(2, dir.path()) },
        ]);
        std::fs::write(dir.path().join("jlist"), list.to_string()).unwrap();
        let bin = dir.path().join("jbin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(
            bin.join("pm2"),
            format!("#!/bin/sh\ncat {}\n", dir.path().join("jlist").display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(bin.join("pm2"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let snap = dir.path().join("old.json");
        let out = std::process::Command::new("node")
            .args(["-e", OLD_JS])
            .arg(&d)
            .arg("/x/listen.js")
            .arg(&snap)
            .env(
                "PATH",
                format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default()),
            )
            .output()
            .expect("node");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(
            stdout,
            format!("old 0 web\nold 1 web\nother 2 {} cron\n", dir.path().display())
        );
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&snap).unwrap()).unwrap();
        let a = &v["apps"][0];
        assert_eq!(v["apps"].as_array().map(Vec::len), Some(1), "{v}");
        assert_eq!(a["interpreter"], "/opt/node18/bin/node", "{a}");
        assert_eq!(
            (a["max_restarts"].as_u64(), a["cron_restart"].as_str()),
            (Some(7), Some("0 3 * * *"))
        );
        assert_eq!(
            (a["watch"].as_bool(), a["kill_timeout"].as_u64()),
            (Some(false), Some(9000))
        );
        assert_eq!(
            (a["instances"].as_u64(), a["exec_mode"].as_str()),
            (Some(2), Some("cluster"))
        );
        assert_eq!(
            a["node_args"],
            serde_json::json!(["--max-old-space-size=512", "--require", "/x/listen.js"])
        );
        assert_eq!(a["env"]["PORT"], "3000");
        for runtime in [
            "pm_id",
            "status",
            "restart_time",
            "pm_uptime",
            "axm_monitor",
            "PORT",
            "exec_interpreter",
        ] {
            assert!(a.get(runtime).is_none(), "{runtime} copied: {a}");
        }
    }
}
