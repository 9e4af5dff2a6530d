//! Real services for the end-to-end tests: an OpenSSH server on 127.0.0.1 (user `deploy`),
//! a PostgreSQL cluster, PM2 (from `.ci/tools`), and a sandbox per test with its own ports,
//! directories and PM2_HOME. A missing service makes the test fail loudly, naming it and the
//! command that installs it (`.ci/setup`). Everything started here is stopped on drop.

#![allow(dead_code)]

pub mod fleet;
pub mod github;
pub mod slack;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

pub const DEPLOY_USER: &str = "deploy";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tj-deploy"))
}

pub fn missing(what: &str) -> ! {
    panic!("required test service missing: {what}. Install everything with `sudo .ci/setup` (see README).");
}

pub fn sh(cmd: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .unwrap_or_else(|e| panic!("sh -c {cmd}: {e}"))
}

pub fn sh_ok(cmd: &str) -> String {
    let out = sh(cmd);
    assert!(
        out.status.success(),
        "command failed: {cmd}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// Waits until `ip:port` accepts connections (from this network namespace).
pub fn wait_for_addr(ip: &str, port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect((ip, port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "{what} did not listen on {ip}:{port}: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// Creates the `deploy` user once (sshd refuses a locked account: usermod -p '*').
pub fn ensure_deploy_user() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if !sh(&format!("id -u {DEPLOY_USER}")).status.success() {
            sh_ok(&format!("useradd -m -s /bin/sh {DEPLOY_USER}"));
        }
        sh_ok(&format!("usermod -p '*' {DEPLOY_USER}"));
    });
}

pub fn pm2_bin() -> PathBuf {
    let p = repo().join(".ci/tools/node_modules/.bin/pm2");
    if !p.exists() {
        missing(&format!("PM2 at {}", p.display()));
    }
    p
}

pub fn pg_bin(name: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.sort();
    match versions.pop() {
        Some(b) if b.join(name).exists() => b.join(name),
        _ => missing(&format!("PostgreSQL server binary {name} (apt-get install postgresql)")),
    }
}

/// A private PostgreSQL cluster on a free port; role `tj` with a password owns database `tj`.
pub struct Postgres {
    pub dir: PathBuf,
    pub port: u16,
    /// `listen_addresses`: 127.0.0.1 and any extra addresses given to [`Postgres::start_with`].
    listen: String,
}

pub const PG_PASSWORD: &str = "s3cret-pg-pass";

impl Postgres {
    pub fn start(root: &Path) -> Self {
        Self::start_with(root, &[], &[])
    }

    /// Like [`Postgres::start`], also listening on `extra_listen` (e.g. a bridge address the
    /// namespace hosts reach it on) and admitting clients by the extra `pg_hba.conf` lines.
    pub fn start_with(root: &Path, extra_listen: &[&str], hba: &[&str]) -> Self {
        let dir = root.join("pg");
        std::fs::create_dir_all(&dir).unwrap();
        sh_ok(&format!("chown postgres:postgres {}", dir.display()));
        let port = free_port();
        let initdb = pg_bin("initdb");
        sh_ok(&format!(
            "runuser -u postgres -- {} -D {}/data -A trust -U postgres >/dev/null",
            initdb.display(),
            dir.display()
        ));
        if !hba.is_empty() {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(dir.join("data/pg_hba.conf"))
                .unwrap();
            writeln!(f, "{}", hba.join("\n")).unwrap();
        }
        let listen = [&["127.0.0.1"], extra_listen].concat().join(",");
        let pg_ctl = pg_bin("pg_ctl");
        sh_ok(&format!(
            "runuser -u postgres -- {} -D {d}/data -l {d}/log -w -o \"-p {port} -c listen_addresses={listen} -k {d} -c fsync=off -c full_page_writes=off\" start >/dev/null",
            pg_ctl.display(),
            d = dir.display()
        ));
        let pg = Postgres { dir, port, listen };
        pg.psql("postgres", &format!("CREATE ROLE tj LOGIN PASSWORD '{PG_PASSWORD}'"));
        pg.psql("postgres", "CREATE DATABASE tj OWNER tj");
        pg
    }

    /// Stops the server (a fault test); [`Postgres::restart`] brings it back.
    pub fn stop(&self) {
        let pg_ctl = pg_bin("pg_ctl");
        sh_ok(&format!(
            "runuser -u postgres -- {} -D {}/data -m fast -w stop >/dev/null",
            pg_ctl.display(),
            self.dir.display()
        ));
    }

    pub fn restart(&self) {
        let pg_ctl = pg_bin("pg_ctl");
        sh_ok(&format!(
            "runuser -u postgres -- {} -D {d}/data -l {d}/log -w -o \"-p {port} -c listen_addresses={listen} -k {d} -c fsync=off\" start >/dev/null",
            pg_ctl.display(),
            d = self.dir.display(),
            port = self.port,
            listen = self.listen
        ));
    }

    pub fn url(&self, db: &str) -> String {
        self.url_at("127.0.0.1", db)
    }

    /// The URL of database `db` as a client reaches the server at `ip`.
    pub fn url_at(&self, ip: &str, db: &str) -> String {
        format!("postgresql://tj:{PG_PASSWORD}@{ip}:{}/{db}", self.port)
    }

    /// Runs SQL as the superuser; returns unaligned, tuples-only output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-p",
                &self.port.to_string(),
                "-d",
                db,
                "-c",
                sql,
            ])
            .output()
            .unwrap_or_else(|_| missing("psql (apt-get install postgresql-client)"));
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let pg_ctl = pg_bin("pg_ctl");
        let _ = sh(&format!(
            "runuser -u postgres -- {} -D {}/data -m immediate stop >/dev/null 2>&1",
            pg_ctl.display(),
            self.dir.display()
        ));
    }
}

/// The sshd command line for the config in `dir` (in the foreground, logging to `dir`/sshd.log).
pub fn sshd_argv(dir: &Path) -> Vec<String> {
    vec![
        "/usr/sbin/sshd".into(),
        "-D".into(),
        "-f".into(),
        dir.join("sshd_config").display().to_string(),
        "-E".into(),
        dir.join("sshd.log").display().to_string(),
    ]
}

/// Spawns `cmd` (which runs [`sshd_argv`], possibly wrapped, e.g. in a network namespace)
/// and waits until sshd listens on `ip:port`.
pub fn spawn_sshd_with(mut cmd: Command, dir: &Path, ip: &str, port: u16) -> Child {
    let child = cmd
        // Its sessions must not hold the test's output pipes open after it is gone.
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start sshd: {e}"));
    wait_for_addr(ip, port, "sshd", &dir.join("sshd.log"));
    child
}

/// Starts sshd with the config in `dir` and waits until it listens.
fn spawn_sshd(dir: &Path, port: u16) -> Child {
    let argv = sshd_argv(dir);
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    spawn_sshd_with(cmd, dir, "127.0.0.1", port)
}

/// Checks sshd is installed and the `deploy` user exists, and makes sshd's privilege
/// separation directory.
pub fn sshd_prerequisites() {
    if !Path::new("/usr/sbin/sshd").exists() {
        missing("OpenSSH server /usr/sbin/sshd (apt-get install openssh-server)");
    }
    ensure_deploy_user();
    std::fs::create_dir_all("/run/sshd").unwrap();
}

/// Writes into `dir` a host key, `authorized_keys` (a copy of `client_pub`) and an
/// `sshd_config` listening on `ip:port` that admits only `deploy` with that key; `set_env`
/// goes into every session's environment.
pub fn write_sshd_config(dir: &Path, ip: &str, port: u16, set_env: &[(&str, String)], client_pub: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let d = dir.display();
    sh_ok(&format!("ssh-keygen -q -t ed25519 -N '' -f {d}/host_key"));
    sh_ok(&format!(
        "cp {} {d}/authorized_keys && chmod 644 {d}/authorized_keys",
        client_pub.display()
    ));
    let env_line: Vec<String> = set_env.iter().map(|(k, v)| format!("\"{k}={v}\"")).collect();
    let config = format!(
        "Port {port}\nListenAddress {ip}\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\n\
         UsePAM no\nAllowUsers {DEPLOY_USER}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nStrictModes no\n\
         Subsystem sftp internal-sftp\nLogLevel ERROR\n{}",
        if env_line.is_empty() {
            String::new()
        } else {
            format!("SetEnv {}\n", env_line.join(" "))
        }
    );
    std::fs::write(dir.join("sshd_config"), config).unwrap();
}

/// The known_hosts line(s) of the sshd at `ip:port` (a port other than 22 is written `[ip]:port`).
pub fn keyscan(ip: &str, port: u16) -> String {
    let known = sh_ok(&format!("ssh-keyscan -T 5 -t ed25519 -p {port} {ip} 2>/dev/null"));
    assert!(known.contains("ssh-ed25519"), "ssh-keyscan {ip}:{port} gave nothing");
    known
}

/// An sshd on 127.0.0.1 that admits only `deploy` with the test's key.
pub struct Sshd {
    pub port: u16,
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    child: Child,
}

impl Sshd {
    pub fn start(dir: &Path, set_env: &[(&str, String)]) -> Self {
        sshd_prerequisites();
        std::fs::create_dir_all(dir).unwrap();
        sh_ok(&format!(
            "ssh-keygen -q -t ed25519 -N '' -f {}/client_key",
            dir.display()
        ));
        let port = free_port();
        write_sshd_config(dir, "127.0.0.1", port, set_env, &dir.join("client_key.pub"));
        let child = spawn_sshd(dir, port);
        std::fs::write(dir.join("known_hosts"), keyscan("127.0.0.1", port)).unwrap();
        Sshd {
            port,
            key: dir.join("client_key"),
            known_hosts: dir.join("known_hosts"),
            child,
        }
    }

    pub fn host(&self) -> String {
        format!("{DEPLOY_USER}@127.0.0.1:{}", self.port)
    }

    /// Kills the server and every connection it serves (a network fault), then starts it
    /// again on the same port with the same keys after `down`.
    pub fn crash_and_restart(&mut self, down: Duration) {
        let pid = self.child.id();
        // The whole tree: listener, per-connection monitors, sessions and what they run, listed
        // first and killed parents first. Children first would let a session's shell report a
        // killed command's exit status before its sshd died: a failed command, not a drop.
        let _ = sh(&format!(
            "t() {{ echo $1; for c in $(pgrep -P $1); do t $c; done; }}; kill -KILL $(t {pid}) 2>/dev/null"
        ));
        let _ = self.child.wait();
        std::thread::sleep(down);
        let dir = self.key.parent().unwrap().to_path_buf();
        self.child = spawn_sshd(&dir, self.port);
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One test's world: a host (sshd), a database, PM2, deploy and backup directories.
pub struct Sandbox {
    pub root: PathBuf,
    pub deploy_dir: PathBuf,
    pub backup_dir: PathBuf,
    pub build_dir: PathBuf,
    pub pm2_home: PathBuf,
    pub app_port: u16,
    pub app_name: String,
    pub pg: Postgres,
    pub sshd: Sshd,
    pub config: PathBuf,
    /// Dropped last, after PostgreSQL and sshd have stopped.
    _dir: RemoveOnDrop,
}

/// Removes a test's directory tree when dropped (kept when `TJ_KEEP_SANDBOX` is set).
pub struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if std::env::var_os("TJ_KEEP_SANDBOX").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn sha(n: u32) -> String {
    format!("{n:x}").repeat(40)[..40].to_string()
}

/// tj-deploy.toml for the sample app in `build` with one environment, `staging`, on `hosts`;
/// `extra` is appended to the staging table.
pub fn config_text(
    build: &Path,
    hosts: &[String],
    deploy_dir: &Path,
    backup_dir: &Path,
    health_url: &str,
    extra: &str,
) -> String {
    let hosts: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
    format!(
        r#"app = "trading-journal"

[package]
dir = "{build}"

[defaults]
install = "npm ci --omit=dev --no-audit --no-fund --offline"
migrate = "sh scripts/migrate.sh"
reload = "pm2 startOrReload ecosystem.config.js --update-env"
health_timeout = "20s"
health_interval = "250ms"
smoke = ["GET /api/me 401", "GET /api/brokers 200"]

[environments.staging]
hosts = [{hosts}]
deploy_dir = "{deploy}"
backup_dir = "{backup}"
branch = "develop"
health_url = "{health_url}"
{extra}
"#,
        build = build.display(),
        hosts = hosts.join(", "),
        deploy = deploy_dir.display(),
        backup = backup_dir.display(),
    )
}

/// Puts the sample app at `version` into `build_dir`; `broken` makes its health fail.
pub fn set_app(build_dir: &Path, version: &str, broken: bool) {
    let _ = std::fs::remove_dir_all(build_dir);
    sh_ok(&format!(
        "cp -r {}/examples/trading-journal {}",
        repo().display(),
        build_dir.display()
    ));
    let pkg = build_dir.join("package.json");
    let text = std::fs::read_to_string(&pkg)
        .unwrap()
        .replace("\"version\": \"1.0.0\"", &format!("\"version\": \"{version}\""));
    std::fs::write(&pkg, text).unwrap();
    if broken {
        std::fs::write(build_dir.join("UNHEALTHY"), "simulated failure\n").unwrap();
    }
}

/// Where `<deploy_dir>/current` points (e.g. `releases/20260118_143000`).
pub fn current_in(deploy_dir: &Path) -> Option<String> {
    std::fs::read_link(deploy_dir.join("current"))
        .ok()
        .map(|p| p.display().to_string())
}

/// The release directories under `<deploy_dir>/releases`, oldest first.
pub fn releases_in(deploy_dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(deploy_dir.join("releases"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The complete-or-not backups in `backup_dir` (dot-named partial ones left out), oldest first.
pub fn backups_in(backup_dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(backup_dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

impl Sandbox {
    pub fn new(name: &str) -> Self {
        let pm2 = pm2_bin();
        let root = PathBuf::from(sh_ok("mktemp -d /tmp/tjt.XXXXXX").trim());
        let _ = name;
        ensure_deploy_user();
        sh_ok(&format!("chmod 755 {}", root.display()));
        let deploy_dir = root.join("srv/app");
        let backup_dir = root.join("backups/app");
        let pm2_home = root.join("pm2");
        for d in [&deploy_dir, &backup_dir, &pm2_home] {
            std::fs::create_dir_all(d).unwrap();
        }
        let pg = Postgres::start(&root);
        let app_port = free_port();
        std::fs::create_dir_all(deploy_dir.join("shared")).unwrap();
        std::fs::write(
            deploy_dir.join("shared/.env"),
            format!("PORT={app_port}\nDATABASE_URL={}\n", pg.url("tj")),
        )
        .unwrap();
        sh_ok(&format!(
            "chown -R {DEPLOY_USER}: {}/srv {}/backups {}",
            root.display(),
            root.display(),
            pm2_home.display()
        ));
        let tools = pm2.parent().unwrap().display().to_string();
        let app_name = format!("tj-{name}");
        let sshd = Sshd::start(
            &root.join("sshd"),
            &[
                ("PM2_HOME", pm2_home.display().to_string()),
                // hostbin (empty unless a test puts wrappers there) comes first.
                (
                    "PATH",
                    format!("{}/hostbin:{tools}:/usr/local/bin:/usr/bin:/bin", root.display()),
                ),
                ("TJ_APP_NAME", app_name.clone()),
            ],
        );
        let build_dir = root.join("build");
        let config = root.join("tj-deploy.toml");
        let _dir = RemoveOnDrop(root.clone());
        let sb = Sandbox {
            root,
            deploy_dir,
            backup_dir,
            build_dir,
            pm2_home,
            app_port,
            app_name,
            pg,
            sshd,
            config,
            _dir,
        };
        sb.write_config("");
        sb.set_app("1.0.0", false);
        sb
    }

    /// Writes tj-deploy.toml for this sandbox; `extra` is appended to the staging table.
    pub fn write_config(&self, extra: &str) {
        let text = config_text(
            &self.build_dir,
            &[self.sshd.host()],
            &self.deploy_dir,
            &self.backup_dir,
            &format!("http://127.0.0.1:{}/api/health", self.app_port),
            extra,
        );
        std::fs::write(&self.config, text).unwrap();
    }

    /// Puts the sample app at `version` into the build dir; `broken` makes its health fail.
    pub fn set_app(&self, version: &str, broken: bool) {
        set_app(&self.build_dir, version, broken);
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_with_known_hosts(args, &self.sshd.known_hosts)
    }

    pub fn cmd_with_known_hosts(&self, args: &[&str], known_hosts: &Path) -> Command {
        let mut c = Command::new(bin());
        c.args(args)
            .arg("--config")
            .arg(&self.config)
            .arg("--ssh-key-file")
            .arg(&self.sshd.key)
            .arg("--known-hosts-file")
            .arg(known_hosts)
            .env_remove("GITHUB_ACTIONS")
            .env_remove("GITHUB_SHA")
            .stdin(Stdio::null());
        c
    }

    pub fn deploy(&self, sha: &str) -> Run {
        Run::of(
            self.cmd(&["deploy", "-e", "staging", "--sha", sha])
                .output()
                .expect("run tj-deploy"),
        )
    }

    /// Starts `tj-deploy deploy -e staging --sha <sha>` in the background and reads its stderr
    /// until a line satisfies `until` (panics, showing what it read, if the run ends first).
    pub fn start_deploy_until(&self, sha: &str, until: impl Fn(&str) -> bool) -> Running {
        use std::io::{BufRead, BufReader};
        let mut child = self
            .cmd(&["deploy", "-e", "staging", "--sha", sha])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run tj-deploy");
        let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let mut seen = String::new();
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            seen.push_str(&line);
            seen.push('\n');
            if until(&line) {
                return Running { child, lines, seen };
            }
        }
        let _ = child.wait();
        panic!("tj-deploy ended before the awaited line:\n{seen}");
    }

    /// GET /api/health: (status, JSON body).
    pub fn health(&self) -> Option<(u16, serde_json::Value)> {
        http_get(self.app_port, "/api/health")
    }

    pub fn revision(&self) -> Option<String> {
        self.health()
            .and_then(|(_, j)| j.get("revision").and_then(|r| r.as_str()).map(str::to_string))
    }

    pub fn current(&self) -> Option<String> {
        current_in(&self.deploy_dir)
    }

    pub fn lock_exists(&self) -> bool {
        self.deploy_dir.join(".tj-deploy/lock").exists()
    }

    pub fn releases(&self) -> Vec<String> {
        releases_in(&self.deploy_dir)
    }

    pub fn backups(&self) -> Vec<String> {
        backups_in(&self.backup_dir)
    }

    /// Everything about the host that a refused or invalid run must leave alone.
    pub fn snapshot(&self) -> String {
        sh_ok(&format!(
            "cd {} && find srv backups -printf '%p %s %m\\n' | sort; readlink srv/app/current || true",
            self.root.display()
        ))
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let pm2 = repo().join(".ci/tools/node_modules/.bin/pm2");
        let _ = sh(&format!(
            "runuser -u {DEPLOY_USER} -- env PM2_HOME={} {} kill >/dev/null 2>&1",
            self.pm2_home.display(),
            pm2.display()
        ));
    }
}

/// A plain HTTP/1.0 GET on 127.0.0.1 (no client dependency needed).
pub fn http_get(port: u16, path: &str) -> Option<(u16, serde_json::Value)> {
    http_get_at("127.0.0.1", port, path)
}

/// A plain HTTP/1.0 GET on `ip:port`.
pub fn http_get_at(ip: &str, port: u16, path: &str) -> Option<(u16, serde_json::Value)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect((ip, port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {ip}\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split("\r\n\r\n").nth(1)?;
    Some((status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null)))
}

/// A tj-deploy run in the background, its stderr read up to some line.
pub struct Running {
    pub child: Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStderr>>,
    /// The stderr lines read so far.
    pub seen: String,
}

impl Running {
    /// Sends `signal` (a `kill` name: TERM, KILL, …) to tj-deploy.
    pub fn signal(&self, signal: &str) {
        sh_ok(&format!("kill -{signal} {}", self.child.id()));
    }

    /// Reads the rest of stderr and waits: (exit code, the lines after `seen`).
    pub fn finish(mut self) -> (Option<i32>, String) {
        let rest: Vec<String> = self.lines.by_ref().map_while(|l| l.ok()).collect();
        let status = self.child.wait().expect("wait for tj-deploy");
        (status.code(), rest.join("\n"))
    }
}

/// A finished tj-deploy run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn of(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
    #[track_caller]
    pub fn expect(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
    /// The last `error:` line, which must be a single line naming the cause.
    pub fn error_line(&self) -> String {
        self.stderr
            .lines()
            .rev()
            .find(|l| l.starts_with("error: "))
            .unwrap_or("")
            .to_string()
    }
}

/// Starts load.js against the sandbox's health URL: 8 clients, a fresh connection per request,
/// until [`load_stats`] stops it (at most 120 s). At the lowest priority: in production clients
/// do not share the server's two cores, and a load that starves a booting worker would measure
/// this machine, not the reload.
pub fn load(sb: &Sandbox) -> Child {
    let child = Command::new("nice")
        .args(["-n", "19", "node"])
        .arg(repo().join("tests/support/load.js"))
        .arg(format!("http://127.0.0.1:{}/api/health", sb.app_port))
        .args(["8", "120"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("node must be installed");
    std::thread::sleep(Duration::from_millis(500));
    child
}

/// Lets the load run one more second after the measured run, then stops it: its figures.
pub fn load_stats(child: Child) -> serde_json::Value {
    std::thread::sleep(Duration::from_secs(1));
    sh_ok(&format!("kill -TERM {}", child.id()));
    let out = child.wait_with_output().expect("load.js output");
    serde_json::from_slice(&out.stdout).expect("load.js prints JSON")
}

/// Builds examples/nextjs once per run (idempotent: .ci/setup already did it in CI).
fn built_nextjs() -> std::path::PathBuf {
    static ONCE: Once = Once::new();
    let dir = repo().join("examples/nextjs");
    ONCE.call_once(|| {
        let out = sh(&format!("bash {}/scripts/build-nextjs 2>&1", repo().display()));
        assert!(
            out.status.success(),
            "scripts/build-nextjs failed (npm and the registry are needed):\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    });
    assert!(dir.join(".next/BUILD_ID").is_file(), "examples/nextjs is not built");
    dir
}

/// Puts the built app (without node_modules and Next's build cache) into the build dir; `note`
/// changes one shipped file, so each call with a new note is a code-only change.
pub fn put_nextjs(sb: &Sandbox, note: &str) {
    let src = built_nextjs();
    let _ = std::fs::remove_dir_all(&sb.build_dir);
    std::fs::create_dir_all(&sb.build_dir).unwrap();
    sh_ok(&format!(
        "tar -C {} --exclude=./node_modules --exclude=./.next/cache -cf - . | tar -C {} -xf -",
        src.display(),
        sb.build_dir.display()
    ));
    std::fs::write(sb.build_dir.join("public/release.txt"), format!("{note}\n")).unwrap();
}
