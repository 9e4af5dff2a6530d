//! `setup`'s judgement: the facts of one host turned into PASS / WARN / FAIL lines, each FAIL
//! with the command that fixes it.

use super::{Check, Facts, Level, major, node_meets, wanted_node};
use crate::config::{Config, HostSpec};
use crate::remote::commands::HttpTool;
use crate::remote::layout::Layout;
use crate::remote::{Mode, Transport, commands};

/// What the database answered: `server_version_num`, or why there is none.
pub type Db = std::result::Result<u32, String>;

pub async fn database<T: Transport>(t: &T, l: &Layout) -> Db {
    let conn = crate::backup::database_conn(t, l, "database check:")
        .await
        .map_err(|e| e.message)?;
    let script = commands::db_probe(l, &conn).map_err(|e| e.message)?;
    let out = t.run(&script, Mode::Capture).await.map_err(|e| e.message)?;
    if !out.success() {
        return Err(format!("SELECT 1 failed: {}", out.stderr.trim()));
    }
    let field = |k: &str| out.stdout.lines().find_map(|l| l.strip_prefix(k)).map(str::trim);
    if field("select1 ") != Some("1") {
        return Err("SELECT 1 gave no answer".into());
    }
    field("server ")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| "server_version_num unreadable".into())
}

/// The health URL's HTTP status, or why there is none.
pub async fn health(http: &reqwest::Client, config: &Config, h: &HostSpec) -> std::result::Result<u16, String> {
    let url = crate::health::url_for(&config.env.health_url, h);
    match http.get(&url).timeout(config.env.health_request_timeout).send().await {
        Ok(r) => Ok(r.status().as_u16()),
        Err(e) => Err(e.to_string()),
    }
}

/// The health URL's HTTP status asked on the host with its own client (`health_from = "host"`).
pub async fn health_on_host<T: Transport>(
    t: &T,
    tool: HttpTool,
    config: &Config,
    h: &HostSpec,
) -> std::result::Result<u16, String> {
    let url = crate::health::url_for(&config.env.health_url, h);
    crate::health_host::request(t, tool, "GET", &url, config.env.health_request_timeout)
        .await
        .map(|a| a.status)
}

struct Out<'a> {
    host: &'a str,
    list: Vec<Check>,
}

impl Out<'_> {
    fn add(&mut self, name: &str, level: Level, detail: String, fix: Option<String>) {
        self.list.push(Check {
            host: self.host.to_string(),
            name: name.to_string(),
            level,
            detail,
            fix,
        });
    }
}

pub fn judge(host: &str, config: &Config, f: &Facts, db: Db, health: std::result::Result<u16, String>) -> Vec<Check> {
    let mut o = Out { host, list: Vec::new() };
    dirs(&mut o, config, f);
    files(&mut o, config, f);
    tools(&mut o, config, f, &db);
    let env_file = format!("{}/shared/.env", config.env.deploy_dir);
    match db {
        Ok(n) => o.add(
            "database",
            Level::Pass,
            format!("SELECT 1 answered; server_version_num {n}"),
            None,
        ),
        Err(e) => o.add(
            "database",
            Level::Fail,
            e,
            Some(format!("set a reachable DATABASE_URL in {env_file}")),
        ),
    }
    let live = f.live_kib.is_some();
    match health {
        Ok(200) => o.add("health_url", Level::Pass, "HTTP 200".into(), None),
        Ok(code) => o.add(
            "health_url",
            if live { Level::Fail } else { Level::Warn },
            format!("HTTP {code}"),
            None,
        ),
        Err(e) if live => o.add("health_url", Level::Fail, e, Some("pm2 logs --err --lines 50".into())),
        Err(_) => o.add(
            "health_url",
            Level::Warn,
            "no answer (nothing deployed yet)".into(),
            None,
        ),
    }
    o.list
}

fn dirs(o: &mut Out, config: &Config, f: &Facts) {
    let u = &f.user;
    for (name, dir, ok) in [
        ("deploy_dir", config.env.deploy_dir.as_str(), f.deploy_writable),
        ("backup_dir", config.env.backup_dir.as_str(), f.backup_writable),
    ] {
        if ok {
            o.add(name, Level::Pass, format!("{dir} writable by {u}"), None);
        } else {
            let fix = format!("sudo mkdir -p {dir} && sudo chown {u}: {dir}");
            o.add(name, Level::Fail, format!("{dir} is not writable by {u}"), Some(fix));
        }
    }
    if let Some(m) = f.backup_mode.filter(|m| m & 0o077 != 0) {
        let b = config.env.backup_dir.as_str();
        o.add(
            "backup_dir mode",
            Level::Fail,
            format!("{b} is {m:o}: others can read the backups"),
            Some(format!("chmod 700 {b}")),
        );
    }
    // Three packages plus node_modules: three times the live release, or 1 GiB before one.
    let need = f.live_kib.map_or(1 << 20, |k| k * 3);
    match f.avail_kib {
        Some(a) if a >= need => o.add("disk", Level::Pass, format!("{} MiB free", a / 1024), None),
        Some(a) => o.add(
            "disk",
            Level::Fail,
            format!("{} MiB free, {} MiB needed", a / 1024, need / 1024),
            Some("free disk space (old logs, apt caches)".into()),
        ),
        None => o.add("disk", Level::Warn, "free space unknown".into(), None),
    }
}

fn files(o: &mut Out, config: &Config, f: &Facts) {
    let shared = format!("{}/shared", config.env.deploy_dir);
    for (name, size, mode) in &f.linked {
        let path = format!("{shared}/{name}");
        match size {
            None => o.add(
                "linked file",
                Level::Fail,
                format!("{path} is missing (never created empty)"),
                Some(format!("scp {name} {}:{path} && chmod 600 {path}", o.host)),
            ),
            Some(0) => o.add(
                "linked file",
                Level::Fail,
                format!("{path} is empty"),
                Some(format!("scp {name} {}:{path}", o.host)),
            ),
            Some(_) if mode.is_some_and(|m| m & 0o077 != 0) => o.add(
                "linked file",
                Level::Fail,
                format!("{path} is readable by others ({:o})", mode.unwrap_or(0)),
                Some(format!("chmod 600 {path}")),
            ),
            Some(s) => o.add("linked file", Level::Pass, format!("{path} ({s} bytes)"), None),
        }
    }
}

fn tools(o: &mut Out, config: &Config, f: &Facts, db: &Db) {
    match (&f.node, wanted_node(&config.package_dir)) {
        (None, _) => {
            let nvm = f
                .managers
                .iter()
                .find_map(|(m, v)| (m == ".nvm").then_some(v.clone()).flatten());
            let fix = match nvm {
                Some(v) => format!("add to the environment: path = [\"~/.nvm/versions/node/{v}/bin\"]"),
                None => "install Node (e.g. apt-get install nodejs) or set the environment's `path`".into(),
            };
            o.add(
                "node",
                Level::Fail,
                "no node on the non-interactive PATH".into(),
                Some(fix),
            );
        }
        (Some(v), Some((want, from))) if !major(v).is_some_and(|m| node_meets(&want, m)) => {
            let fix = format!(
                "install a Node that meets {want:?} (e.g. nvm install {}) and point the environment's `path` at it",
                major(&want).unwrap_or(20)
            );
            o.add(
                "node",
                Level::Fail,
                format!("node {v}, the app asks for {want} ({from})"),
                Some(fix),
            );
        }
        (Some(v), Some((want, from))) => o.add(
            "node",
            Level::Pass,
            format!("{v} (the app asks for {want}, {from})"),
            None,
        ),
        (Some(v), None) => o.add(
            "node",
            Level::Pass,
            format!("{v} (the app states no Node version)"),
            None,
        ),
    }
    pm2(o, config, f);
    let server = db.as_ref().ok().map(|n| n / 10_000);
    pg_dump(o, f, server);
}

/// PM2's daemon keeps the Node it started with, whatever `node` on the PATH is now: judged
/// against the app's requirement, or (when the app states none) against `node` on the PATH.
fn daemon(o: &mut Out, config: &Config, f: &Facts) {
    let Some(d) = &f.daemon_node else {
        return;
    };
    let Some((want, from)) = wanted_node(&config.package_dir) else {
        match f.node.as_deref().filter(|n| major(n) != major(d)) {
            Some(n) => o.add(
                "pm2 daemon node",
                Level::Warn,
                format!("the PM2 daemon runs node {d}, `node` on the PATH is {n}: the app runs on {d}"),
                Some("pm2 update (restarts the daemon with the node on the PATH)".into()),
            ),
            None => o.add("pm2 daemon node", Level::Pass, d.clone(), None),
        }
        return;
    };
    if major(d).is_some_and(|m| node_meets(&want, m)) {
        o.add(
            "pm2 daemon node",
            Level::Pass,
            format!("{d} (the app asks for {want})"),
            None,
        );
    } else {
        let detail = format!("the PM2 daemon runs node {d}, the app asks for {want} ({from})");
        o.add(
            "pm2 daemon node",
            Level::Fail,
            detail,
            Some("pm2 update (restarts the daemon with the node on the PATH)".into()),
        );
    }
}

/// PM2 itself, then the Node its daemon runs (right after `node`, which it is compared with),
/// then whether the app comes back after a reboot.
fn pm2(o: &mut Out, config: &Config, f: &Facts) {
    match &f.pm2 {
        Some(v) => o.add("pm2", Level::Pass, format!("PM2 {v}"), None),
        None => o.add(
            "pm2",
            Level::Fail,
            "pm2 not on the PATH".into(),
            Some("npm install -g pm2".into()),
        ),
    }
    daemon(o, config, f);
    if f.startup {
        o.add(
            "pm2 startup",
            Level::Pass,
            format!("pm2-{}.service installed", f.user),
            None,
        );
    } else {
        o.add(
            "pm2 startup",
            Level::Warn,
            "no pm2 startup unit: the app does not come back after a reboot".into(),
            Some(format!(
                "sudo env PATH=$PATH pm2 startup systemd -u {u} --hp ~{u}",
                u = f.user
            )),
        );
    }
    match f.dump {
        Some(true) => o.add("pm2 save", Level::Pass, "the app is in PM2's saved dump".into(), None),
        _ => o.add(
            "pm2 save",
            Level::Warn,
            "the app is not in PM2's saved dump".into(),
            Some("pm2 save (after the first deploy)".into()),
        ),
    }
    if let Some((detail, fix)) = adopt_preload(f, config.env.deploy_dir.as_str()) {
        o.add("adopt preload", Level::Warn, detail, Some(fix));
    }
}

/// `setup --adopt` started the app with its listen.js preloaded (PM2 keeps a process's
/// node_args across reloads and `pm2 save`): harmless, but it stays until a hard restart.
pub fn adopt_preload(f: &Facts, deploy_dir: &str) -> Option<(String, String)> {
    f.adopt_listen.then(|| {
        (
            format!("PM2 starts the app with `--require {deploy_dir}/.tj-deploy/listen.js` (left by setup --adopt; it marks nothing outside an adoption, but the app fails to start if that file goes)"),
            format!("keep {deploy_dir}/.tj-deploy/listen.js (tj-deploy never removes it); to drop the preload, at a quiet moment `pm2 delete` the app, `pm2 start` its ecosystem file in {deploy_dir}/current, `pm2 save` (reload and restart --hard keep node_args)"),
        )
    })
}

fn pg_dump(o: &mut Out, f: &Facts, server: Option<u32>) {
    match (
        f.pg_dump
            .as_deref()
            .and_then(|v| major(v.rsplit(' ').next().unwrap_or(v))),
        server,
    ) {
        (None, _) => o.add(
            "pg_dump",
            Level::Fail,
            "pg_dump not on the PATH".into(),
            Some("apt-get install postgresql-client".into()),
        ),
        (Some(d), Some(s)) if d < s => o.add(
            "pg_dump",
            Level::Fail,
            format!("pg_dump {d} is older than the server ({s}): pg_dump aborts on a version mismatch"),
            Some(format!("apt-get install postgresql-client-{s}")),
        ),
        (Some(d), _) => o.add("pg_dump", Level::Pass, format!("pg_dump {d}"), None),
    }
}

/// A host that could not be reached: FAIL, with what to try from the runner.
pub fn ssh_login_failed(h: &HostSpec, why: String) -> Check {
    let port = h.port.map(|p| format!("-p {p} ")).unwrap_or_default();
    let user = h.user.clone().unwrap_or_else(|| "$USER".into());
    Check {
        host: h.to_string(),
        name: "ssh login".into(),
        level: Level::Fail,
        detail: why,
        fix: Some(format!(
            "check `ssh {port}{user}@{host} true` works from here: the host up and reachable, its key in known-hosts (`ssh-keyscan {port}{host}`), the deploy key in ~{user}/.ssh/authorized_keys",
            host = h.host
        )),
    }
}

/// The host's HTTP client (`curl`, else `wget`, else `node`), `None` when it has none; an
/// error reading it counts as none, with why.
pub async fn http_tool<T: Transport>(t: &T) -> std::result::Result<Option<HttpTool>, String> {
    let out = t
        .run(&commands::http_tool_probe(), Mode::Capture)
        .await
        .map_err(|e| e.message)?;
    Ok(HttpTool::parse(&out.stdout))
}

/// Which HTTP client `health_from = "host"` probes would use; FAIL without one when they must.
pub fn http_client(host: &str, config: &Config, tool: std::result::Result<Option<HttpTool>, String>) -> Check {
    let from_host = config.env.health_from_host;
    let (level, detail, fix) = match tool {
        Ok(Some(t)) if from_host => (
            Level::Pass,
            format!("{} (health_from = \"host\" probes with it)", t.name()),
            None,
        ),
        Ok(Some(t)) => (
            Level::Pass,
            format!("{} (would serve health_from = \"host\")", t.name()),
            None,
        ),
        Ok(None) if !from_host => (
            Level::Pass,
            "none of curl, wget, node (not needed: health_from = \"runner\")".into(),
            None,
        ),
        Ok(None) => (
            Level::Fail,
            "none of curl, wget, node on the non-interactive PATH: health_from = \"host\" cannot probe".into(),
            Some("sudo apt-get install curl".into()),
        ),
        Err(e) => (
            if from_host { Level::Fail } else { Level::Warn },
            format!("could not tell: {e}"),
            None,
        ),
    };
    Check {
        host: host.to_string(),
        name: "http client".into(),
        level,
        detail,
        fix,
    }
}
