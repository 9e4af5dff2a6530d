//! Several real hosts on this machine: each host is a network namespace joined to a bridge in
//! the root namespace by a veth pair (subnet 10.213.X.0/24, X random per fleet, the bridge is
//! .1, host i is .(i+2)), and runs its own sshd on port 22 inside its own private mount
//! namespace, where the host's own directory is bind-mounted over the fleet's common path.
//! So the one `deploy_dir`/`backup_dir` of the environment is a different tree on each host,
//! as on real machines, and PM2 (its own PM2_HOME per host) runs the app on port 3000 on every
//! host, each reached at its own address. One PostgreSQL cluster in the root namespace listens
//! on the bridge address; each host's `shared/.env` names its own database.
//!
//! Everything is torn down on drop, also when a test panics: PM2 (`pm2 kill` inside the
//! namespace), sshd, whatever else still runs in the namespace, the namespace (and with it
//! the veth pair and the private mount namespace), the bridge, PostgreSQL, the directories.

use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::{
    DEPLOY_USER, PG_PASSWORD, Postgres, RemoveOnDrop, Run, backups_in, bin, config_text, current_in, http_get_at,
    keyscan, missing, pm2_bin, releases_in, sh, sh_ok, spawn_sshd_with, sshd_argv, sshd_prerequisites,
    write_sshd_config,
};

/// The port the app listens on, the same on every host.
pub const APP_PORT: u16 = 3000;

/// Where the reservations of 10.213.X.0/24 subnets live, one directory per X, so that fleets
/// of tests running at the same time never share a subnet.
const RESERVATIONS: &str = "/run/tj-fleet-subnets";

fn random() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    h.finish()
}

fn require_tools() {
    for (tool, package) in [
        ("ip", "iproute2"),
        ("unshare", "util-linux"),
        ("mount", "mount"),
        ("ssh-keyscan", "openssh-client"),
    ] {
        if !sh(&format!("command -v {tool}")).status.success() {
            missing(&format!(
                "{tool} (apt-get install {package}), needed for namespace hosts"
            ));
        }
    }
}

/// The bridge in the root namespace and the subnet it reserves; removed on drop.
pub struct Bridge {
    pub name: String,
    /// X of 10.213.X.0/24.
    pub net: u8,
    reservation: PathBuf,
}

impl Bridge {
    fn new(tag: &str) -> Self {
        std::fs::create_dir_all(RESERVATIONS).unwrap();
        let in_use = sh_ok("ip -o -4 addr show");
        let mut seed = random();
        let net = loop {
            let x = (seed % 254 + 1) as u8;
            seed = seed.rotate_right(8) ^ random();
            if in_use.contains(&format!(" 10.213.{x}.")) {
                continue;
            }
            if std::fs::create_dir(Path::new(RESERVATIONS).join(x.to_string())).is_ok() {
                break x;
            }
        };
        let bridge = Bridge {
            name: format!("tjb{tag}"),
            net,
            reservation: Path::new(RESERVATIONS).join(net.to_string()),
        };
        sh_ok(&format!(
            "ip link add {b} type bridge && ip addr add {ip}/24 dev {b} && ip link set {b} up",
            b = bridge.name,
            ip = bridge.ip()
        ));
        bridge
    }

    /// The root namespace's address on the fleet's subnet (where PostgreSQL listens).
    pub fn ip(&self) -> String {
        format!("10.213.{}.1", self.net)
    }

    pub fn subnet(&self) -> String {
        format!("10.213.{}.0/24", self.net)
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = sh(&format!("ip link del {} 2>/dev/null", self.name));
        let _ = std::fs::remove_dir(&self.reservation);
    }
}

/// One host: a network namespace with its own sshd, mount namespace, PM2 and database.
pub struct Host {
    /// The network namespace.
    pub ns: String,
    pub ip: String,
    /// This host's own tree, seen from the test; inside the host it is the fleet's `mnt`.
    pub dir: PathBuf,
    pub pm2_home: PathBuf,
    /// Its database on the fleet's PostgreSQL.
    pub db: String,
    veth: String,
    mnt: PathBuf,
    sshd_dir: PathBuf,
    sshd: Option<Child>,
}

impl Host {
    pub fn deploy_dir(&self) -> PathBuf {
        self.dir.join("srv/app")
    }

    pub fn backup_dir(&self) -> PathBuf {
        self.dir.join("backups/app")
    }

    /// `deploy@<ip>:22`, as the environment's `hosts` names it.
    pub fn spec(&self) -> String {
        format!("{DEPLOY_USER}@{}:22", self.ip)
    }

    pub fn current(&self) -> Option<String> {
        current_in(&self.deploy_dir())
    }

    pub fn releases(&self) -> Vec<String> {
        releases_in(&self.deploy_dir())
    }

    pub fn backups(&self) -> Vec<String> {
        backups_in(&self.backup_dir())
    }

    pub fn lock_exists(&self) -> bool {
        self.deploy_dir().join(".tj-deploy/lock").exists()
    }

    pub fn is_bad(&self, release: &str) -> bool {
        self.deploy_dir()
            .join("releases")
            .join(release)
            .join("BAD_RELEASE")
            .is_file()
    }

    /// GET /api/health on this host's own address: (status, JSON body).
    pub fn health(&self) -> Option<(u16, serde_json::Value)> {
        http_get_at(&self.ip, APP_PORT, "/api/health")
    }

    /// (revision, version) the app on this host answers with.
    pub fn serving(&self) -> Option<(String, String)> {
        let (status, json) = self.health()?;
        if status != 200 {
            return None;
        }
        Some((
            json.get("revision")?.as_str()?.to_string(),
            json.get("version")?.as_str()?.to_string(),
        ))
    }

    /// Every path under the host's tree with its type, size, mode and link target, plus the
    /// sha256 of every file: equal snapshots mean a byte-identical host.
    pub fn snapshot(&self) -> String {
        sh_ok(&format!(
            "cd {} && find srv backups -printf '%y %p %s %m %l\\n' | sort && find srv backups -type f -exec sha256sum {{}} + | sort -k2",
            self.dir.display()
        ))
    }

    /// Starts this host's sshd in its namespace, in a fresh private mount namespace where the
    /// host's tree is bind-mounted over the common path.
    pub fn start_sshd(&mut self) {
        assert!(self.sshd.is_none(), "{}: sshd already runs", self.ns);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns, "unshare", "-m", "--propagation", "private"])
            .arg("sh")
            .arg("-c")
            .arg(format!(
                "mount --bind {} {} && exec {}",
                self.dir.display(),
                self.mnt.display(),
                sshd_argv(&self.sshd_dir).join(" ")
            ));
        self.sshd = Some(spawn_sshd_with(cmd, &self.sshd_dir, &self.ip, 22));
    }

    /// Stops this host's sshd (the host becomes unreachable over SSH; the app keeps running).
    pub fn stop_sshd(&mut self) {
        if let Some(mut c) = self.sshd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Host {
    /// `pm2 kill` for this host's PM2, inside its namespace; `None` when no PM2 runs.
    fn pm2_kill(&self) -> Option<Child> {
        if !self.pm2_home.join("pm2.pid").exists() {
            return None;
        }
        Command::new("ip")
            .args(["netns", "exec", &self.ns, "runuser", "-u", DEPLOY_USER, "--", "env"])
            .arg(format!("PM2_HOME={}", self.pm2_home.display()))
            .arg(super::repo().join(".ci/tools/node_modules/.bin/pm2"))
            .arg("kill")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut c) = self.pm2_kill() {
            let _ = c.wait();
        }
        self.stop_sshd();
        // Whatever is left (sessions, a hook's `sleep`): the namespace must be empty to go.
        let _ = sh(&format!(
            "ip netns pids {ns} 2>/dev/null | xargs -r kill -KILL 2>/dev/null; ip netns del {ns} 2>/dev/null; ip link del {v} 2>/dev/null",
            ns = self.ns,
            v = self.veth
        ));
    }
}

/// The hosts, the database, the build dir and the config of one test.
pub struct Fleet {
    pub root: PathBuf,
    /// Unique per fleet; in every name it creates (namespaces, links).
    pub tag: String,
    /// The environment's deploy_dir and backup_dir: the same paths on every host.
    pub deploy_dir: PathBuf,
    pub backup_dir: PathBuf,
    pub build_dir: PathBuf,
    pub config: PathBuf,
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    /// An ssh config the environment may `Include` (`ssh_config`): `User deploy` for the
    /// fleet's subnet.
    pub ssh_config: PathBuf,
    // Dropped in this order: hosts (PM2, sshd, namespaces), PostgreSQL, bridge, directories.
    pub hosts: Vec<Host>,
    pub pg: Postgres,
    pub bridge: Bridge,
    _dir: RemoveOnDrop,
}

impl Fleet {
    /// `n` hosts serving nothing yet, each with its own database; the build dir holds the
    /// sample app at 1.0.0.
    pub fn new(name: &str, n: usize) -> Self {
        Self::build(name, n, false)
    }

    /// `n` hosts sharing one database, as the Trading Journal's app servers do.
    pub fn shared(name: &str, n: usize) -> Self {
        Self::build(name, n, true)
    }

    fn build(name: &str, n: usize, shared_database: bool) -> Self {
        require_tools();
        sshd_prerequisites();
        let pm2 = pm2_bin();
        let tag = format!("{:06x}", random() & 0xff_ffff);
        let root = PathBuf::from(sh_ok("mktemp -d /tmp/tjf.XXXXXX").trim());
        let _dir = RemoveOnDrop(root.clone());
        sh_ok(&format!("chmod 755 {}", root.display()));
        let bridge = Bridge::new(&tag);
        let pg = Postgres::start_with(
            &root,
            &[&bridge.ip()],
            &[&format!("host all all {} scram-sha-256", bridge.subnet())],
        );
        let mnt = root.join("host");
        std::fs::create_dir_all(&mnt).unwrap();
        let deploy_dir = mnt.join("srv/app");
        let backup_dir = mnt.join("backups/app");
        let key = root.join("client_key");
        sh_ok(&format!("ssh-keygen -q -t ed25519 -N '' -f {}", key.display()));
        let tools = pm2.parent().unwrap().display().to_string();
        let app_name = format!("tj-{name}");

        let mut hosts: Vec<Host> = Vec::new();
        for i in 0..n {
            let ns = format!("tj-{tag}-h{i}");
            let ip = format!("10.213.{}.{}", bridge.net, i + 2);
            let dir = root.join(format!("h{i}"));
            let pm2_home = root.join(format!("h{i}-pm2"));
            let db = if shared_database {
                "tj_shared".to_string()
            } else {
                format!("tj_h{i}")
            };
            let veth = format!("tjv{tag}{i}");
            sh_ok(&format!("ip netns add {ns}"));
            let host = Host {
                ns: ns.clone(),
                ip: ip.clone(),
                dir: dir.clone(),
                pm2_home: pm2_home.clone(),
                db: db.clone(),
                veth: veth.clone(),
                mnt: mnt.clone(),
                sshd_dir: root.join(format!("h{i}-sshd")),
                sshd: None,
            };
            hosts.push(host);
            sh_ok(&format!(
                "ip link add {veth} type veth peer name eth0 netns {ns} && ip link set {veth} master {b} up && \
                 ip -n {ns} addr add {ip}/24 dev eth0 && ip -n {ns} link set eth0 up && ip -n {ns} link set lo up",
                b = bridge.name
            ));
            if i == 0 || !shared_database {
                pg.psql("postgres", &format!("CREATE DATABASE {db} OWNER tj"));
            }
            let host_deploy = dir.join("srv/app");
            std::fs::create_dir_all(host_deploy.join("shared")).unwrap();
            std::fs::create_dir_all(dir.join("backups/app")).unwrap();
            std::fs::create_dir_all(&pm2_home).unwrap();
            std::fs::write(
                host_deploy.join("shared/.env"),
                format!(
                    "PORT={APP_PORT}\nDATABASE_URL=postgresql://tj:{PG_PASSWORD}@{}:{}/{db}\n",
                    bridge.ip(),
                    pg.port
                ),
            )
            .unwrap();
            sh_ok(&format!(
                "chown -R {DEPLOY_USER}: {d}/srv {d}/backups {p}",
                d = dir.display(),
                p = pm2_home.display()
            ));
            let host = hosts.last_mut().unwrap();
            write_sshd_config(
                &host.sshd_dir,
                &ip,
                22,
                &[
                    ("PM2_HOME", pm2_home.display().to_string()),
                    ("PATH", format!("{tools}:/usr/local/bin:/usr/bin:/bin")),
                    ("TJ_APP_NAME", app_name.clone()),
                    ("TJ_INSTANCES", "1".to_string()),
                ],
                &key.with_extension("pub"),
            );
            host.start_sshd();
        }
        let known: String = hosts.iter().map(|h| keyscan(&h.ip, 22)).collect();
        let known_hosts = root.join("known_hosts");
        std::fs::write(&known_hosts, known).unwrap();
        let ssh_config = root.join("ssh_config");
        std::fs::write(
            &ssh_config,
            format!("Host 10.213.{}.*\n  User {DEPLOY_USER}\n  Port 22\n", bridge.net),
        )
        .unwrap();

        let fleet = Fleet {
            build_dir: root.join("build"),
            config: root.join("tj-deploy.toml"),
            root,
            tag,
            deploy_dir,
            backup_dir,
            key,
            known_hosts,
            ssh_config,
            hosts,
            pg,
            bridge,
            _dir,
        };
        fleet.write_config(&fleet.specs(), "");
        fleet.set_app("1.0.0");
        fleet
    }

    /// `deploy@<ip>:22` of every host.
    pub fn specs(&self) -> Vec<String> {
        self.hosts.iter().map(Host::spec).collect()
    }

    /// Writes tj-deploy.toml: environment `staging` on `hosts`, health at `http://{host}:3000`;
    /// `extra` is appended to the staging table.
    pub fn write_config(&self, hosts: &[String], extra: &str) {
        let text = config_text(
            &self.build_dir,
            hosts,
            &self.deploy_dir,
            &self.backup_dir,
            &format!("http://{{host}}:{APP_PORT}/api/health"),
            extra,
        );
        std::fs::write(&self.config, text).unwrap();
    }

    /// Puts the sample app at `version` into the build dir.
    pub fn set_app(&self, version: &str) {
        super::set_app(&self.build_dir, version, false);
    }

    /// Adds a migration to the app in the build dir.
    pub fn add_migration(&self, name: &str, sql: &str) {
        let dir = self.build_dir.join("prisma/migrations").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("migration.sql"), sql).unwrap();
    }

    /// Runs SQL as the superuser in host `i`'s database.
    pub fn psql(&self, i: usize, sql: &str) -> String {
        self.pg.psql(&self.hosts[i].db, sql)
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args)
            .arg("--config")
            .arg(&self.config)
            .arg("--ssh-key-file")
            .arg(&self.key)
            .arg("--known-hosts-file")
            .arg(&self.known_hosts)
            .env_remove("GITHUB_ACTIONS")
            .env_remove("GITHUB_SHA")
            .env_remove("GITHUB_TOKEN")
            .env_remove("SLACK_WEBHOOK_URL")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let t0 = std::time::Instant::now();
        let run = Run::of(self.cmd(args).output().expect("run tj-deploy"));
        println!("{args:?} took {:?} (exit {})", t0.elapsed(), run.code);
        run
    }

    pub fn deploy(&self, sha: &str) -> Run {
        self.run(&["deploy", "-e", "staging", "--sha", sha])
    }

    pub fn snapshots(&self) -> Vec<String> {
        self.hosts.iter().map(Host::snapshot).collect()
    }
}

impl Drop for Fleet {
    /// Stops every host's PM2 at once (each `pm2 kill` takes about a second); the rest of each
    /// host goes when it is dropped.
    fn drop(&mut self) {
        let kills: Vec<Child> = self.hosts.iter().filter_map(Host::pm2_kill).collect();
        for mut c in kills {
            let _ = c.wait();
        }
    }
}
