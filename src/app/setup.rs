//! `tj-deploy setup`: a new server made ready for its first deploy, and checked. Creates what is
//! missing (the deploy_dir tree with `shared/`, a private backup_dir) unless `--check`, then
//! judges every host PASS / WARN / FAIL, each FAIL with the exact command that fixes it.
//! `--check` changes nothing and ends with exit 1 when anything FAILs.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::config::{Config, HostSpec, Invocation};
use crate::error::{Error, Result};
use crate::remote::layout::Layout;
use crate::remote::{Mode, Transport, commands};
use crate::ui;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Level {
    #[serde(rename = "PASS")]
    Pass,
    #[serde(rename = "WARN")]
    Warn,
    #[serde(rename = "FAIL")]
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub host: String,
    pub name: String,
    pub level: Level,
    pub detail: String,
    pub fix: Option<String>,
}

/// The facts [`commands::setup_probe`] printed.
#[derive(Debug, Default, Clone)]
pub struct Facts {
    pub user: String,
    pub deploy_writable: bool,
    pub backup_writable: bool,
    pub backup_mode: Option<u32>,
    /// (name, size, mode) — size `None` when missing.
    pub linked: Vec<(String, Option<u64>, Option<u32>)>,
    pub avail_kib: Option<u64>,
    pub live_kib: Option<u64>,
    pub node: Option<String>,
    pub pm2: Option<String>,
    pub pg_dump: Option<String>,
    pub managers: Vec<(String, Option<String>)>,
    pub startup: bool,
    /// The Node the running PM2 daemon uses (its workers inherit it).
    pub daemon_node: Option<String>,
    pub dump: Option<bool>,
    /// PM2's saved dump still starts the app with `setup --adopt`'s listen.js preload.
    pub adopt_listen: bool,
}

fn some(v: &str) -> Option<String> {
    (!v.is_empty() && v != "none" && v != "-").then(|| v.to_string())
}

pub fn parse_facts(stdout: &str) -> Facts {
    let mut f = Facts::default();
    let octal = |s: &str| u32::from_str_radix(s, 8).ok();
    for line in stdout.lines() {
        let (key, rest) = line.split_once(' ').unwrap_or((line, ""));
        let w: Vec<&str> = rest.splitn(3, ' ').collect();
        match (key, w.as_slice()) {
            ("user", _) => f.user = rest.to_string(),
            ("dir", ["deploy", v]) => f.deploy_writable = *v == "1",
            ("dir", ["backup", v]) => f.backup_writable = *v == "1",
            ("mode", ["backup", m]) => f.backup_mode = octal(m),
            ("linked", [size, mode, name]) => f.linked.push((name.to_string(), size.parse().ok(), octal(mode))),
            ("avail", [v]) => f.avail_kib = v.parse().ok(),
            ("live", [v]) => f.live_kib = v.parse().ok(),
            ("node", _) => f.node = some(rest),
            ("pm2", _) => f.pm2 = some(rest),
            ("pgdump", _) => f.pg_dump = some(rest),
            ("manager", [m, n]) => f.managers.push((m.to_string(), some(n))),
            ("startup", [v]) => f.startup = *v == "1",
            ("daemon", _) => f.daemon_node = some(rest),
            ("dump", [v]) => f.dump = (*v != "-").then_some(*v == "1"),
            ("adoptlisten", [v]) => f.adopt_listen = *v == "1",
            _ => {}
        }
    }
    f
}

/// The first number in a version or range (`v20.11.1`, `>=20`, `^18.17`, `lts/iron` → none).
pub fn major(v: &str) -> Option<u32> {
    let digits: String = v
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// Whether a Node of major `host` meets `spec` (`>=18`, `^20.11`, `20.x`, `18 || 20`, an
/// .nvmrc's `v20.19.0`): a lower bound wants at least that major, anything else exactly it.
pub fn node_meets(spec: &str, host: u32) -> bool {
    spec.split("||").any(|alt| {
        let alt = alt.trim();
        match major(alt) {
            None => true,
            Some(m) if alt.starts_with('>') => host >= m,
            Some(m) => host == m,
        }
    })
}

/// What Node the app asks for, and where it says so: `engines.node` of package.json, else
/// `.nvmrc`.
pub fn wanted_node(package_dir: &std::path::Path) -> Option<(String, String)> {
    let pkg: Option<serde_json::Value> = std::fs::read_to_string(package_dir.join("package.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    if let Some(e) = pkg
        .as_ref()
        .and_then(|p| p.pointer("/engines/node"))
        .and_then(|v| v.as_str())
    {
        return Some((e.to_string(), format!("package.json engines.node {e:?}")));
    }
    let nvmrc = std::fs::read_to_string(package_dir.join(".nvmrc")).ok()?;
    Some((nvmrc.trim().to_string(), format!(".nvmrc {:?}", nvmrc.trim())))
}

#[path = "setup_checks.rs"]
mod checks;
pub use checks::judge;

async fn one<T: Transport>(t: &T, l: &Layout, config: &Config, inv: &Invocation, h: &HostSpec) -> Result<Vec<Check>> {
    let mut created = Vec::new();
    if !inv.ops.check {
        let out = t.run(&commands::setup_create(l), Mode::Capture).await?;
        if !out.success() {
            // Not writable: the checks below say so, with the command that fixes it.
            ui::warn(&format!("{h}: could not create the layout: {}", out.tail()));
        }
        created = out
            .stdout
            .lines()
            .filter_map(|l| l.strip_prefix("created "))
            .map(str::to_string)
            .collect();
    }
    let facts = parse_facts(
        &t.run(&commands::setup_probe(l, &config.env.linked_files), Mode::Capture)
            .await?
            .check(&format!("{h}: setup check"))?
            .stdout,
    );
    let db = checks::database(t, l).await;
    let tool = checks::http_tool(t).await;
    // With health_from = "host" the health URL is asked on the host, as a deploy asks it.
    let health = match (&tool, config.env.health_from_host) {
        (Ok(Some(tool)), true) => checks::health_on_host(t, *tool, config, h).await,
        _ => checks::health(&crate::health::client()?, config, h).await,
    };
    let mut out = judge(&h.to_string(), config, &facts, db, health);
    out.push(checks::http_client(&h.to_string(), config, tool));
    for c in created {
        out.insert(
            0,
            Check {
                host: h.to_string(),
                name: "created".into(),
                level: Level::Pass,
                detail: c,
                fix: None,
            },
        );
    }
    Ok(out)
}

pub async fn command(config: &Config, inv: &Invocation, vars: &BTreeMap<String, String>) -> Result<()> {
    if inv.ops.adopt {
        return super::adopt::command(config, inv, vars).await;
    }
    if inv.dry_run {
        return Err(Error::invalid(
            "dry-run: `setup` has no dry run (`setup --adopt` has); `setup --check` checks every host and changes nothing",
        ));
    }
    let l = Layout::new(config.env.deploy_dir.clone(), config.env.backup_dir.clone());
    let (fleet, unreachable) = super::connect_reachable(config, inv, vars).await?;
    let mut all = Vec::new();
    for spec in &config.env.hosts {
        let Some((h, t)) = fleet.hosts.iter().find(|(h, _)| h == spec) else {
            let why = unreachable
                .iter()
                .find(|(h, _)| h == spec)
                .map_or_else(|| "not connected".to_string(), |(_, e)| e.clone());
            all.push(checks::ssh_login_failed(spec, why));
            continue;
        };
        all.push(Check {
            host: h.to_string(),
            name: "ssh login".into(),
            level: Level::Pass,
            detail: "connected".into(),
            fix: None,
        });
        match one(t, &l, config, inv, h).await {
            Ok(c) => all.extend(c),
            Err(e) => all.push(Check {
                host: h.to_string(),
                name: "checks".into(),
                level: Level::Fail,
                detail: e.message,
                fix: None,
            }),
        }
    }
    fleet.close().await;
    for w in lint(config) {
        all.push(Check {
            host: "package".into(),
            name: "ecosystem".into(),
            level: Level::Warn,
            detail: w,
            fix: None,
        });
    }
    if let Some(w) = crate::drain::fallback_reason(config.env.reload.as_deref(), config.env.drain) {
        all.push(Check {
            host: "config".into(),
            name: "drain".into(),
            level: Level::Warn,
            detail: w,
            fix: Some(crate::drain::FIX.into()),
        });
    }
    if inv.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&all).map_err(|e| Error::failed(format!("setup: {e}")))?
        );
    } else {
        ui::print_foreign(render(&all).trim_end());
    }
    let fails = all.iter().filter(|c| c.level == Level::Fail).count();
    match fails {
        0 => Ok(()),
        n => Err(Error::failed(format!(
            "setup: {n} check(s) FAIL; run the fixes above, then `tj-deploy setup -e {} --check`",
            config.env.name
        ))),
    }
}

fn lint(config: &Config) -> Vec<String> {
    let current = format!("{}/current", config.env.deploy_dir);
    match crate::ecosystem::lint_local(
        &config.package_dir,
        config.env.reload.as_deref(),
        &current,
        config.env.drain_timeout,
    ) {
        crate::ecosystem::Local::Checked(w) => w,
        crate::ecosystem::Local::Failed(e) => vec![format!("ecosystem file not checked: {e}")],
        _ => Vec::new(),
    }
}

pub fn render(all: &[Check]) -> String {
    let mut out = String::new();
    let mut host = "";
    for c in all {
        if c.host != host {
            host = &c.host;
            let _ = writeln!(out, "{host}");
        }
        let level = match c.level {
            Level::Pass => "PASS",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        let _ = writeln!(out, "  {level}  {}: {}", c.name, c.detail);
        if let Some(fix) = &c.fix {
            let _ = writeln!(out, "        fix: {fix}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ranges() {
        assert!(node_meets(">=18", 20));
        assert!(!node_meets(">=22", 20));
        assert!(node_meets("^20.11", 20));
        assert!(!node_meets("18.x", 20));
        assert!(node_meets("18 || 20", 20));
        assert!(node_meets("v20.19.0", 20));
        assert!(node_meets("lts/*", 20));
    }

    #[test]
    fn facts_parse() {
        let f = parse_facts(
            "user deploy\ndir deploy 1\ndir backup 0\nmode backup 755\nlinked - - .env\nlinked 12 644 a b\nnode v20.1.0\npm2 none\ndump -\n",
        );
        assert_eq!(f.user, "deploy");
        assert!(f.deploy_writable && !f.backup_writable);
        assert_eq!(f.backup_mode, Some(0o755));
        assert_eq!(
            f.linked,
            vec![(".env".into(), None, None), ("a b".into(), Some(12), Some(0o644))]
        );
        assert_eq!((f.node.as_deref(), f.pm2, f.dump), (Some("v20.1.0"), None, None));
        assert!(!f.adopt_listen);
    }

    /// After `setup --adopt`, the saved dump still preloads its listen.js: WARN with the fix.
    #[test]
    fn the_adopt_preload_is_warned_about() {
        let f = parse_facts("user deploy\ndump 1\nadoptlisten 1\n");
        assert!(f.adopt_listen);
        let (detail, fix) = checks::adopt_preload(&f, "/srv/app").expect("a warning");
        assert!(detail.contains("/srv/app/.tj-deploy/listen.js"), "{detail}");
        assert!(
            fix.contains("`pm2 start` its ecosystem file in /srv/app/current"),
            "{fix}"
        );
        assert!(checks::adopt_preload(&parse_facts("dump 1\n"), "/srv/app").is_none());
    }
}
