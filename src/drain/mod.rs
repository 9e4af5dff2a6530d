//! The keep-alive drain (issue #19, DESIGN.md §7 "Drain"): the Node preload tj-deploy ships to
//! `<deploy_dir>/.tj-deploy/drain.js`, the wrapper that hands it to the app's PM2 workers
//! without the app or its ecosystem file mentioning it, and how to tell a worker runs it.
//!
//! Why a wrapper and not `NODE_OPTIONS`: PM2 forks cluster workers with its daemon's
//! environment and copies the app's environment in only once Node runs, after preloads, so
//! `NODE_OPTIONS` never reaches Node's own option parsing (measured: the same failures with and
//! without), and a reload does not pass its own environment to the workers anyway.
//! `node_args` and `env` of the ecosystem file, which PM2 updates on every `startOrReload`, do.

/// The preload itself.
pub const DRAIN_JS: &str = include_str!("drain.js");

/// The ecosystem wrapper, written beside `drain.js` as `drain.config.js`.
pub const WRAP_JS: &str = include_str!("wrap.config.js");

/// Whether PM2's `node_args` of a worker (`pm2 jlist`: `pm2_env.node_args`) preload the drain.
pub fn in_node_args<S: AsRef<str>>(node_args: &[S]) -> bool {
    node_args.iter().any(|a| is_drain_path(a.as_ref()))
}

/// Whether a process runs the drain, from its `/proc/<pid>/environ` (`NODE_OPTIONS`, set where
/// the reload names no ecosystem file) or `/proc/<pid>/cmdline` (node's own arguments before
/// PM2 renames the process): both are NUL-separated.
pub fn in_proc(environ_or_cmdline: &[u8]) -> bool {
    environ_or_cmdline.split(|b| *b == 0).any(|field| {
        let f = String::from_utf8_lossy(field);
        match f.strip_prefix("NODE_OPTIONS=") {
            Some(opts) => opts.split_whitespace().any(|w| is_drain_path(w.trim_matches('"'))),
            None => is_drain_path(&f),
        }
    })
}

/// The one fix for a reload command without an ecosystem file the wrapper can load, as the
/// warning names it.
pub const FIX: &str = "name a .config.js (or .json) ecosystem file in `reload`, e.g. `pm2 startOrReload ecosystem.config.js --update-env`";

/// Why the drain will not reach the workers although `drain` is on: the `reload` command names
/// no ecosystem file the wrapper can `require` (none, or by PM2's rule a YAML or `.mjs` one),
/// so the preload can only travel in `NODE_OPTIONS`, which PM2 cluster workers never see (see
/// the module doc). `setup` shows it with [`FIX`] on a line of its own.
pub fn fallback_reason(reload: Option<&str>, drain: bool) -> Option<String> {
    let reload = reload.filter(|_| drain)?;
    let what = match crate::ecosystem::config_file(reload) {
        Some((_, f)) if f.loadable() => return None,
        Some((file, _)) => {
            format!("`reload` names {file}, which the drain's wrapper cannot load; use a .config.js")
        }
        None => format!("`reload` ({reload}) names no ecosystem file"),
    };
    Some(format!(
        "{what}, so the keep-alive drain can only go through NODE_OPTIONS, which PM2 cluster \
         workers ignore: keep-alive requests can fail on every reload"
    ))
}

/// [`fallback_reason`] with its fix, as the deploy's and restart's summaries and `check` say
/// it, instead of the drain failing silently.
pub fn fallback_warning(reload: Option<&str>, drain: bool) -> Option<String> {
    fallback_reason(reload, drain).map(|r| format!("drain: {r}; fix: {FIX}"))
}

fn is_drain_path(s: &str) -> bool {
    // Also `--require=<path>`.
    s.ends_with("/.tj-deploy/drain.js")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_without_an_ecosystem_file_is_said() {
        let w = fallback_warning(Some("pm2 reload all"), true).unwrap();
        assert!(
            w.contains("(pm2 reload all)") && w.contains("NODE_OPTIONS") && w.contains(FIX),
            "{w}"
        );
        assert_eq!(fallback_warning(Some("pm2 reload all"), false), None, "drain off");
        assert_eq!(fallback_warning(None, true), None, "no reload at all");
        let named = "pm2 startOrReload ecosystem.config.js --update-env";
        assert_eq!(fallback_warning(Some(named), true), None);
        for loadable in [
            "pm2 reload process.json",
            "pm2 startOrReload pm2.json --env production",
            "pm2 startOrReload ecosystem.config.js&&pm2 save",
            "npx pm2 startOrReload ecosystem.config.js --update-env",
            "PM2_HOME=/x pm2 reload ecosystem.config.js",
            "pm2 reload \"$TJ_CURRENT/ecosystem.config.js\"",
            "pm2 reload deploy/pm2.config.cjs",
        ] {
            assert_eq!(fallback_warning(Some(loadable), true), None, "{loadable}");
        }
        for (reload, file) in [
            ("pm2 reload process.yml", "process.yml"),
            ("pm2 startOrReload deploy/pm2.yaml --env production", "deploy/pm2.yaml"),
            (
                "pm2 startOrReload ecosystem.config.mjs;pm2 save",
                "ecosystem.config.mjs",
            ),
        ] {
            let w = fallback_warning(Some(reload), true).unwrap_or_else(|| panic!("{reload}"));
            assert!(
                w.contains(&format!(
                    "`reload` names {file}, which the drain's wrapper cannot load; use a .config.js"
                )) && w.contains(FIX),
                "{w}"
            );
        }
        let w = fallback_warning(Some("pm2 reload trading-journal-prod"), true).unwrap();
        assert!(w.contains("names no ecosystem file"), "{w}");
    }

    #[test]
    fn tells_whether_a_worker_runs_the_drain() {
        assert!(in_node_args(&[
            "--max-old-space-size=512",
            "--require",
            "/srv/a b/.tj-deploy/drain.js"
        ]));
        assert!(!in_node_args::<&str>(&[]));
        assert!(!in_node_args(&["--require", "/srv/app/current/tracing.js"]));
        assert!(in_proc(
            b"PATH=/usr/bin\0NODE_OPTIONS=--max-old-space-size=512 --require \"/srv/a b/.tj-deploy/drain.js\"\0"
        ));
        assert!(in_proc(b"node\0--require\0/srv/app/.tj-deploy/drain.js\0server.js\0"));
        assert!(!in_proc(b"PATH=/usr/bin\0NODE_OPTIONS=--enable-source-maps\0"));
        assert!(!in_proc(b"node /srv/app/current/server.js"));
    }

    /// A client on a keep-alive connection, an app given by `app_js` under the preload
    /// (`TJ_DRAIN_TIMEOUT_MS` 800): prints the `Connection` header before the signal and of a
    /// request 100 ms into the drain (none with `idle`), then the exit code and its delay.
    const CLIENT_JS: &str = r#"
const { spawn } = require('child_process');
const http = require('http');
const [drain, app, idle] = process.argv.slice(1);
const child = spawn(process.execPath, ['--require', drain, '-e', app],
  { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, TJ_DRAIN_TIMEOUT_MS: '800' } });
child.on('message', async (port) => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const get = () => new Promise((res, rej) => http.get({ port, agent }, (r) => {
    r.resume(); r.on('end', () => res(r.headers.connection)); }).on('error', rej));
  console.log('before', await get());
  const t0 = Date.now();
  child.on('exit', (code) => console.log('exit', code, Date.now() - t0 >= 700 ? 'at timeout' : 'drained'));
  child.kill('SIGINT');
  await new Promise((r) => setTimeout(r, 100));
  if (idle !== 'idle') console.log('during', await get());
});
"#;

    fn run_drain(app: &str, idle: bool) -> String {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("drain.js");
        std::fs::write(&f, DRAIN_JS).unwrap();
        let out = std::process::Command::new("node")
            .args(["-e", CLIENT_JS])
            .arg(&f)
            .arg(app)
            .arg(if idle { "idle" } else { "busy" })
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    const LISTEN: &str = ".listen(0, '127.0.0.1', function () { process.send(this.address().port); });";

    #[test]
    fn a_stopping_worker_says_connection_close_and_exits_once_drained() {
        let plain = format!("require('http').createServer((q, s) => s.end('ok')){LISTEN}");
        assert_eq!(
            run_drain(&plain, false),
            "before keep-alive\nduring close\nexit 0 drained\n"
        );
        // An idle connection nobody uses again holds the drain until drain_timeout.
        assert_eq!(run_drain(&plain, true), "before keep-alive\nexit 0 at timeout\n");
        // Next.js-like: its own handler closes the server and exits at once; the exit waits.
        let next = format!(
            "const srv = require('http').createServer((q, s) => s.end('ok')){LISTEN} \
             process.on('SIGINT', () => srv.close(() => process.exit(3)));"
        );
        assert_eq!(
            run_drain(&next, false),
            "before keep-alive\nduring close\nexit 3 drained\n"
        );
    }

    #[test]
    fn the_preload_parses() {
        for (name, text) in [("drain.js", DRAIN_JS), ("wrap.config.js", WRAP_JS)] {
            let dir = tempfile::tempdir().unwrap();
            let f = dir.path().join(name);
            std::fs::write(&f, text).unwrap();
            let out = std::process::Command::new("node")
                .arg("--check")
                .arg(&f)
                .output()
                .unwrap();
            assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}
