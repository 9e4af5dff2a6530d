//! `setup`'s scripts: create the remote layout a first deploy needs, and report the facts its
//! checks judge (directories, linked files, disk, node, PM2, pg_dump, the database).

use super::*;
use crate::remote::layout::Layout;

/// Creates what is missing of the layout, as the deploy user (so it owns it): the deploy_dir
/// tree with `shared/`, and `backup_dir` private (0700). Prints `created <path>` for each.
/// Never creates a linked file.
pub fn setup_create(l: &Layout) -> Script {
    with_dirs("setup", l)
        .line("for p in \"$D\" \"$D/releases\" \"$D/shared\" \"$D/.tj-deploy\" \"$B\"; do")
        .line("  if [ ! -d \"$p\" ]; then mkdir -p \"$p\"; printf 'created %s\\n' \"$p\"; fi")
        .line("done")
        .line("chmod 700 \"$B\"")
        .repeatable()
}

/// Prints one fact a line: `user`, `dir deploy|backup <writable 0|1>`, `mode backup <octal>`,
/// `linked <size|-> <octal|-> <name>`, `avail <KiB>`, `live <KiB>`, `node`, `pm2`, `pgdump`,
/// `manager <dir> <newest nvm node|->`, `startup 0|1`, `daemon <the PM2 daemon's node>`,
/// `dump 0|1|-`. Changes nothing.
pub fn setup_probe(l: &Layout, linked_files: &[String]) -> Script {
    let mut s = with_dirs("setup-check", l)
        .line("U=$(id -un); printf 'user %s\\n' \"$U\"")
        .line("w() { if [ -d \"$1\" ] && [ -w \"$1\" ]; then echo 1; else echo 0; fi; }")
        .line("printf 'dir deploy %s\\n' \"$(w \"$D\")\"; printf 'dir backup %s\\n' \"$(w \"$B\")\"")
        .line("if [ -d \"$B\" ]; then printf 'mode backup %s\\n' \"$(stat -c %a \"$B\")\"; fi");
    for f in linked_files {
        s = s
            .var("F", f)
            .line("if [ -f \"$D/shared/$F\" ]; then printf 'linked %s %s %s\\n' \"$(wc -c < \"$D/shared/$F\" | tr -d ' ')\" \"$(stat -c %a \"$D/shared/$F\")\" \"$F\"; else printf 'linked - - %s\\n' \"$F\"; fi");
    }
    s.line("P=\"$D\"; while [ ! -d \"$P\" ]; do P=$(dirname \"$P\"); done")
        .line("printf 'avail %s\\n' \"$(df -Pk \"$P\" | awk 'NR==2 {print $4}')\"")
        .line("if [ -d \"$D/current\" ]; then printf 'live %s\\n' \"$(du -skL \"$D/current/\" 2>/dev/null | cut -f1)\"; fi")
        .line("printf 'node %s\\n' \"$(node --version 2>/dev/null || echo none)\"")
        // PM2's version from its package.json: `pm2 --version` connects to (and so starts) the
        // daemon, and a check must change nothing.
        .line("if command -v pm2 >/dev/null 2>&1; then v=$(node -p \"require(require('path').resolve(require('fs').realpathSync(process.argv[1]), '../../package.json')).version\" \"$(command -v pm2)\" 2>/dev/null || echo unknown); printf 'pm2 %s\\n' \"$v\"; else echo 'pm2 none'; fi")
        .line("printf 'pgdump %s\\n' \"$(pg_dump --version 2>/dev/null || echo none)\"")
        .line("for m in .nvm .volta .asdf; do if [ -d \"$HOME/$m\" ]; then case $m in .nvm) n=$(ls \"$HOME/.nvm/versions/node\" 2>/dev/null | sort -V | tail -n 1);; *) n=;; esac; printf 'manager %s %s\\n' \"$m\" \"${n:--}\"; fi; done")
        .line("if [ -f \"/etc/systemd/system/pm2-$U.service\" ]; then echo 'startup 1'; else echo 'startup 0'; fi")
        .line("H=\"${PM2_HOME:-$HOME/.pm2}\"")
        .line("if [ -f \"$H/pm2.pid\" ]; then e=$(readlink \"/proc/$(cat \"$H/pm2.pid\")/exe\" 2>/dev/null || true); if [ -n \"$e\" ]; then printf 'daemon %s\\n' \"$(\"$e\" --version 2>/dev/null || echo none)\"; fi; fi")
        .line("if [ ! -f \"$H/dump.pm2\" ]; then echo 'dump -'; elif grep -qF \"$D\" \"$H/dump.pm2\"; then echo 'dump 1'; else echo 'dump 0'; fi")
        .line("if [ -f \"$H/dump.pm2\" ] && grep -qF \"$D/.tj-deploy/listen.js\" \"$H/dump.pm2\"; then echo 'adoptlisten 1'; fi")
        .repeatable()
}

/// `SELECT 1` and the server's `server_version_num`, the password through a private PGPASSFILE.
/// Prints `select1 <answer>` and `server <num>`; fails with psql's message when unreachable.
pub fn db_probe(l: &Layout, conn: &crate::pgconn::PgConn) -> Result<Script, crate::error::Error> {
    let s = with_dirs("setup-database", l)
        .line("W=$(mktemp -d \"${TMPDIR:-/tmp}/tj-pg.XXXXXX\")")
        .line("trap 'rm -rf \"$W\"' EXIT");
    Ok(db::pgpass(s, conn)?
        .line("printf 'select1 %s\\n' \"$(psql -X -At -d \"$CONN\" -c 'SELECT 1')\"")
        .line("printf 'server %s\\n' \"$(psql -X -At -d \"$CONN\" -c 'SHOW server_version_num')\""))
}
