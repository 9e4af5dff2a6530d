//! Every command tj-deploy runs on a host, built as a plain value: a POSIX `sh` script whose
//! every variable part is quoted by [`quote`]. Nothing here talks to a host, so each builder is
//! unit-tested as text. Scripts start with `set -eu`, so a failing line fails the step.

use std::fmt::Write as _;

use crate::config::ReleaseId;
use crate::remote::layout::Layout;

mod adopt;
mod backup;
mod db;
mod deps;
mod drain;
mod http;
mod lock;
mod log;
mod ops;
mod release;
mod setup;
mod watch;

pub use adopt::*;
pub use backup::*;
pub use db::*;
pub use deps::*;
pub use drain::*;
pub use http::*;
pub use lock::*;
pub use log::*;
pub use ops::*;
pub use release::*;
pub use setup::*;
pub use watch::*;

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
