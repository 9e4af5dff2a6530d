//! `tj-deploy status`: per host, the live release and its commit, when and by whom it went live
//! (from deployments.log), the PM2 workers and the release each one really runs
//! (`/proc/<pid>/cwd`; a worker outside the live release is flagged), the health answer, the
//! lock holder, disk use, and how many releases and backups are kept. Reads only.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use crate::config::{Config, HostSpec, Invocation};
use crate::error::{Error, Result};
use crate::remote::layout::Layout;
use crate::remote::{Mode, Transport, commands};
use crate::{history, lock, state, ui};

/// One PM2 process of the app, and where it really runs.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Worker {
    pub name: String,
    pub pm_id: i64,
    pub pid: i64,
    pub status: String,
    pub restarts: i64,
    pub uptime_seconds: Option<i64>,
    pub memory_bytes: Option<u64>,
    /// The release directory the process runs in (from `/proc/<pid>/cwd`).
    pub release: Option<String>,
    /// Runs outside the live release: the reload did not reach it.
    pub stale: bool,
    /// Started with the keep-alive drain preload (PM2's `node_args`).
    pub drain: bool,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Health {
    pub url: String,
    pub http_status: Option<u16>,
    pub status: Option<String>,
    pub revision: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct HostStatus {
    pub host: String,
    pub release: Option<String>,
    pub commit: Option<String>,
    pub deployed_at: Option<String>,
    pub deployed_by: Option<String>,
    pub deployed_kind: Option<String>,
    /// This and `health`, `releases`, `backups`: null when the host was not read.
    pub workers: Option<Vec<Worker>>,
    pub health: Option<Health>,
    pub lock: Option<String>,
    pub disk_used_percent: Option<u8>,
    pub disk_free_kib: Option<u64>,
    pub releases: Option<usize>,
    pub backups: Option<usize>,
    /// Not reached over SSH: the error; nothing else about the host is known.
    pub unreachable: Option<String>,
    /// Reached, but reading its state failed: why (the fields above are empty).
    pub error: Option<String>,
    /// What an interrupted `setup --adopt` left (its temporary copy, its snapshot), with the cleanup.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Warnings for what an interrupted `setup --adopt` left: a `*-tj-adopt` PM2 app among the
/// workers, its `adopt-old.json` (a `leftover` line of [`commands::pm2_worker_dirs`]).
pub fn adopt_leftovers(stdout: &str, workers: &[Worker], deploy_dir: &str) -> Vec<String> {
    let suffix = commands::ADOPT_SUFFIX;
    let mut w: Vec<String> = workers
        .iter()
        .filter(|w| w.name.ends_with(suffix))
        .map(|w| {
            format!(
                "PM2 runs '{}' (pm_id {}), the temporary copy of an interrupted `setup --adopt`: once the app's own workers are online, `pm2 delete {}` and `pm2 save`",
                w.name, w.pm_id, w.pm_id
            )
        })
        .collect();
    if stdout.lines().any(|l| l == "leftover adopt-old.json") {
        w.push(format!(
            "{deploy_dir}/.tj-deploy/adopt-old.json is left from an interrupted `setup --adopt`: run `setup --adopt` again (it names the cleanup), or `rm` it once the app serves from current"
        ));
    }
    w
}

/// Parses the output of [`commands::pm2_worker_dirs`]: the processes PM2 runs from under
/// `deploy_dir` (by their PM2 cwd, or a live process's real cwd), each with its release.
pub fn parse_workers(stdout: &str, deploy_dir: &str, live: Option<&str>, now_ms: i64) -> Vec<Worker> {
    let cwds: BTreeMap<i64, &str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("cwd ")?.split_once(' '))
        .filter_map(|(pid, dir)| Some((pid.parse().ok()?, dir)))
        .collect();
    let list = stdout.find('[').and_then(|i| {
        serde_json::Deserializer::from_str(&stdout[i..])
            .into_iter::<Value>()
            .next()?
            .ok()
    });
    let Some(Value::Array(procs)) = list else {
        return Vec::new();
    };
    let under = format!("{}/", deploy_dir.trim_end_matches('/'));
    procs
        .iter()
        .filter_map(|p| {
            let env = p.get("pm2_env")?;
            let pid = p.get("pid").and_then(Value::as_i64).unwrap_or(0);
            let pm_cwd = env.get("pm_cwd").and_then(Value::as_str).unwrap_or("");
            let real = cwds.get(&pid).copied();
            if real.is_none() && !pm_cwd.starts_with(&under) {
                return None;
            }
            let release = real
                .and_then(|d| d.split("/releases/").nth(1))
                .map(|r| r.split('/').next().unwrap_or(r).to_string());
            let online = env.get("status").and_then(Value::as_str) == Some("online");
            Some(Worker {
                name: p.get("name").and_then(Value::as_str).unwrap_or("?").to_string(),
                pm_id: p.get("pm_id").and_then(Value::as_i64).unwrap_or(-1),
                pid,
                status: env.get("status").and_then(Value::as_str).unwrap_or("?").to_string(),
                restarts: env.get("restart_time").and_then(Value::as_i64).unwrap_or(0),
                uptime_seconds: env
                    .get("pm_uptime")
                    .and_then(Value::as_i64)
                    .filter(|_| online)
                    .map(|t| ((now_ms - t) / 1000).max(0)),
                memory_bytes: p.get("monit").and_then(|m| m.get("memory")).and_then(Value::as_u64),
                stale: online && live.is_some() && release.as_deref() != live,
                drain: env.get("node_args").and_then(Value::as_array).is_some_and(|a| {
                    crate::drain::in_node_args(&a.iter().filter_map(Value::as_str).collect::<Vec<_>>())
                }),
                release,
            })
        })
        .collect()
}

async fn health(http: &reqwest::Client, config: &Config, h: &HostSpec) -> Health {
    let url = crate::health::url_for(&config.env.health_url, h);
    let mut out = Health {
        url: url.clone(),
        ..Health::default()
    };
    match http.get(&url).timeout(config.env.health_request_timeout).send().await {
        Ok(resp) => {
            out.http_status = Some(resp.status().as_u16());
            let body: Option<Value> = resp.bytes().await.ok().and_then(|b| serde_json::from_slice(&b).ok());
            let field = |k: &str| body.as_ref()?.get(k)?.as_str().map(str::to_string);
            (out.status, out.revision) = (field("status"), field("revision"));
        }
        Err(e) => out.error = Some(e.to_string()),
    }
    out
}

async fn one<T: Transport>(
    t: &T,
    l: &Layout,
    config: &Config,
    http: &reqwest::Client,
    h: &HostSpec,
) -> Result<HostStatus> {
    let st = state::inspect(t, l, None).await?;
    let live = st.current.map(|c| c.to_string());
    let mut s = HostStatus {
        host: h.to_string(),
        commit: st.current.and_then(|c| st.release(c)).and_then(|r| r.revision.clone()),
        releases: Some(st.releases.len()),
        backups: Some(st.backups.len()),
        lock: lock::show(t, l).await?.map(|held| held.holder),
        release: live.clone(),
        ..HostStatus::default()
    };
    let log = t
        .run(&commands::read_log(l), Mode::Capture)
        .await?
        .check("read deployments.log")?;
    let runs = history::dedupe(history::parse(&s.host, &log.stdout).0);
    if let Some(r) = runs.iter().rev().find(|r| {
        r.status == "success"
            && matches!(r.kind.as_str(), "deploy" | "rollback")
            && r.release.is_some()
            && r.release == live
    }) {
        s.deployed_at = Some(r.finished_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        s.deployed_by = r.actor.clone();
        s.deployed_kind = Some(r.kind.clone());
    }
    let disk = t.run(&commands::disk_use(l), Mode::Capture).await?;
    if let Some(rest) = disk.stdout.lines().find_map(|l| l.strip_prefix("disk ")) {
        let mut w = rest.split(' ');
        s.disk_used_percent = w.next().and_then(|p| p.parse().ok());
        s.disk_free_kib = w.next().and_then(|p| p.parse().ok());
    }
    let pm2 = t
        .run(&commands::pm2_worker_dirs(l), Mode::Capture)
        .await?
        .check("list PM2 workers")?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let workers = parse_workers(&pm2.stdout, l.deploy_dir.as_str(), live.as_deref(), now_ms);
    s.warnings = adopt_leftovers(&pm2.stdout, &workers, l.deploy_dir.as_str());
    s.workers = Some(workers);
    s.health = Some(health(http, config, h).await);
    Ok(s)
}

pub async fn command(config: &Config, inv: &Invocation, vars: &BTreeMap<String, String>) -> Result<()> {
    let l = Layout::new(config.env.deploy_dir.clone(), config.env.backup_dir.clone());
    let http = crate::health::client()?;
    let (fleet, mut down) = super::connect_reachable(config, inv, vars).await?;
    let mut all = Vec::new();
    // In the config's order, the hosts not reached among them.
    for h in &config.env.hosts {
        let host = h.to_string();
        let s = match fleet.hosts.iter().find(|(s, _)| s == h) {
            Some((_, t)) => match one(t, &l, config, &http, h).await {
                Ok(s) => s,
                Err(e) => {
                    let why = super::without_host(h, &e.message).to_string();
                    down.push((h.clone(), why.clone()));
                    HostStatus {
                        host,
                        error: Some(why),
                        ..HostStatus::default()
                    }
                }
            },
            None => HostStatus {
                host,
                unreachable: down.iter().find(|(s, _)| s == h).map(|(_, e)| e.clone()),
                ..HostStatus::default()
            },
        };
        all.push(s);
    }
    fleet.close().await;
    if inv.json {
        let text = serde_json::to_string_pretty(&all).map_err(|e| Error::failed(format!("status: {e}")))?;
        println!("{text}");
    } else {
        // Everything here comes from the hosts: foreign text.
        let text: Vec<String> = all.iter().map(|s| render(s) + &render_warnings(s)).collect();
        ui::print_foreign(text.join("\n").trim_end());
    }
    super::not_read("status", config.env.hosts.len(), &down)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_048_576.0)
}

/// One host's status as text.
pub fn render(s: &HostStatus) -> String {
    let short = |c: &Option<String>| c.as_deref().map(|c| ui::prefix(c, 7).to_string()).unwrap_or("-".into());
    let mut out = format!("{}\n", s.host);
    if let Some(e) = &s.unreachable {
        let _ = writeln!(out, "  UNREACHABLE: {e}");
        return out;
    }
    if let Some(e) = &s.error {
        let _ = writeln!(out, "  NOT READ: {e}");
        return out;
    }
    let when = match (&s.deployed_at, &s.deployed_by, &s.deployed_kind) {
        (Some(at), by, kind) => format!(
            ", live since {at} by {} ({})",
            by.as_deref().unwrap_or("?"),
            kind.as_deref().unwrap_or("?")
        ),
        _ => String::new(),
    };
    let live = s
        .release
        .as_deref()
        .map_or("none".to_string(), |r| format!("releases/{r}"));
    let _ = writeln!(out, "  live:     {live}, commit {}{when}", short(&s.commit));
    let hl = s.health.clone().unwrap_or_default();
    let answer = match (&hl.http_status, &hl.error) {
        (Some(code), _) => format!(
            "HTTP {code}, status {}, revision {}",
            hl.status.as_deref().unwrap_or("-"),
            short(&hl.revision)
        ),
        (None, Some(e)) => format!("no answer: {e}"),
        _ => "no answer".into(),
    };
    let _ = writeln!(out, "  health:   {answer} ({})", hl.url);
    let _ = writeln!(out, "  lock:     {}", s.lock.as_deref().unwrap_or("free"));
    if let (Some(p), Some(free)) = (s.disk_used_percent, s.disk_free_kib) {
        let _ = writeln!(out, "  disk:     {p}% used, {} free", mib(free * 1024));
    }
    let _ = writeln!(
        out,
        "  kept:     {} release(s), {} backup(s)",
        s.releases.unwrap_or(0),
        s.backups.unwrap_or(0)
    );
    let workers = s.workers.as_deref().unwrap_or_default();
    let _ = writeln!(
        out,
        "  workers:  {}",
        if workers.is_empty() {
            "none under deploy_dir"
        } else {
            ""
        }
    );
    for w in workers {
        let up = w.uptime_seconds.map_or("-".into(), |u| history::human(u as f64));
        let mem = w.memory_bytes.map_or("-".into(), mib);
        let rel = w
            .release
            .as_deref()
            .map_or("?".to_string(), |r| format!("releases/{r}"));
        let flag = if w.stale {
            "  ⚠ OLD RELEASE: not the live one (reload did not reach it)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "    {} #{} pid {} {}, {} restart(s), up {up}, {mem}, in {rel}, drain {}{flag}",
            w.name,
            w.pm_id,
            w.pid,
            w.status,
            w.restarts,
            if w.drain { "on" } else { "off" }
        );
    }
    out
}

/// The host's warnings, printed after [`render`]'s lines.
pub fn render_warnings(s: &HostStatus) -> String {
    s.warnings.iter().map(|w| format!("  ⚠ {w}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_are_matched_to_their_release_and_old_ones_flagged() {
        let out = concat!(
            "some pm2 banner\n",
            r#"[{"name":"tj","pm_id":0,"pid":11,"monit":{"memory":1048576},"pm2_env":{"status":"online","restart_time":2,"pm_uptime":1000,"pm_cwd":"/srv/app/current","node_args":["--require","/srv/app/.tj-deploy/drain.js"]}},"#,
            r#"{"name":"tj","pm_id":1,"pid":12,"monit":{"memory":0},"pm2_env":{"status":"online","restart_time":0,"pm_uptime":1000,"pm_cwd":"/srv/app/current"}},"#,
            r#"{"name":"other","pm_id":2,"pid":13,"pm2_env":{"status":"online","pm_cwd":"/elsewhere"}}]"#,
            "\ncwd 11 /srv/app/releases/20260102_000000\ncwd 12 /srv/app/releases/20260101_000000\n"
        );
        let w = parse_workers(out, "/srv/app", Some("20260102_000000"), 61_000);
        assert_eq!(w.len(), 2, "{w:?}");
        assert_eq!(
            (w[0].restarts, w[0].uptime_seconds, w[0].memory_bytes),
            (2, Some(60), Some(1_048_576))
        );
        assert!(!w[0].stale);
        assert!(w[1].stale);
        assert!(w[0].drain && !w[1].drain, "the drain is seen in node_args");
        assert_eq!(w[1].release.as_deref(), Some("20260101_000000"));
        let text = render(&HostStatus {
            workers: Some(w),
            ..HostStatus::default()
        });
        assert!(
            text.contains(
                "#1 pid 12 online, 0 restart(s), up 1m 00s, 0.0 MB, in releases/20260101_000000, drain off  ⚠ OLD RELEASE"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_host_not_reached_says_why_and_nothing_else() {
        let text = render(&HostStatus {
            host: "deploy@b".into(),
            unreachable: Some("ssh: connect to host b port 22: Connection refused".into()),
            ..HostStatus::default()
        });
        assert_eq!(
            text,
            "deploy@b\n  UNREACHABLE: ssh: connect to host b port 22: Connection refused\n"
        );
        let v = serde_json::to_value(HostStatus {
            host: "deploy@b".into(),
            unreachable: Some("refused".into()),
            ..HostStatus::default()
        })
        .unwrap();
        for unknown in ["releases", "backups", "workers", "health"] {
            assert!(v[unknown].is_null(), "{unknown} is not known, not zero: {v}");
        }
    }

    #[test]
    fn an_interrupted_adoption_is_warned_about() {
        let out = concat!(
            r#"[{"name":"tj-tj-adopt","pm_id":4,"pid":11,"pm2_env":{"status":"online","pm_cwd":"/srv/app/current"}}]"#,
            "\nleftover adopt-old.json\n"
        );
        let w = parse_workers(out, "/srv/app", Some("20260118_143000"), 0);
        let warnings = adopt_leftovers(out, &w, "/srv/app");
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].starts_with("PM2 runs 'tj-tj-adopt' (pm_id 4), the temporary copy"));
        assert!(warnings[0].contains("`pm2 delete 4` and `pm2 save`"));
        assert!(warnings[1].starts_with("/srv/app/.tj-deploy/adopt-old.json is left"));
        let s = HostStatus {
            warnings,
            ..HostStatus::default()
        };
        assert!(render_warnings(&s).starts_with("  ⚠ PM2 runs 'tj-tj-adopt'"), "{s:?}");
        assert!(adopt_leftovers("[]\n", &[], "/srv/app").is_empty());
    }

    #[test]
    fn no_pm2_means_no_workers() {
        assert!(parse_workers("", "/srv/app", None, 0).is_empty());
    }
}
