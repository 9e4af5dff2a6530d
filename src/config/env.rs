//! One environment's keys, validated: `[environments.<name>]` over `[defaults]` becomes an
//! [`EnvConfig`], with every error naming the key (`<file>: environments.<env>.<key>`).

use std::path::Path;
use std::time::Duration;

use super::file::RawEnv;
use super::values::{self, EnvName, HostSpec, RemotePath, SmokeCheck};
use super::{DEFAULT_INSTALL, DEFAULT_MIGRATE, DEFAULT_RELOAD, EnvConfig, Timeouts};
use crate::error::{Error, Result};

/// Names keys in errors and turns the simple kinds of values into typed ones.
struct Keys<'a> {
    origin: &'a str,
    name: &'a EnvName,
}

impl Keys<'_> {
    fn key(&self, k: &str) -> String {
        format!("{}: environments.{}.{k}", self.origin, self.name)
    }
    fn missing(&self, k: &str) -> Error {
        Error::invalid(format!(
            "{}: missing (set it in [environments.{}] or [defaults])",
            self.key(k),
            self.name
        ))
    }
    fn dur(&self, k: &str, v: &Option<String>, default: Duration) -> Result<Duration> {
        match v {
            Some(s) => values::duration(&self.key(k), s),
            None => Ok(default),
        }
    }
    fn count(&self, k: &str, v: Option<i64>, default: usize) -> Result<usize> {
        match v {
            None => Ok(default),
            Some(n) if (1..=1000).contains(&n) => Ok(n as usize),
            Some(n) => Err(Error::invalid(format!(
                "{}: {n} must be between 1 and 1000",
                self.key(k)
            ))),
        }
    }
    fn command(&self, k: &str, v: &Option<String>, default: &str) -> Result<Option<String>> {
        let c = v.clone().unwrap_or_else(|| default.to_string());
        if c.contains('\0') {
            return Err(Error::invalid(format!("{}: holds a NUL byte", self.key(k))));
        }
        Ok((!c.trim().is_empty()).then_some(c))
    }
}

/// Validates one environment's merged keys; relative paths are taken from `base`.
pub(super) fn validate(origin: &str, name: &EnvName, raw: &RawEnv, base: &Path) -> Result<EnvConfig> {
    let k = Keys { origin, name };
    let hosts = hosts(&k, raw)?;
    let (deploy_dir, backup_dir) = dirs(&k, raw)?;
    let health_from_host = health_from_host(&k, raw)?;
    let health_url = health_url(&k, raw, hosts.len(), health_from_host)?;
    let smoke = raw
        .smoke
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|s| SmokeCheck::parse(&k.key("smoke"), s))
        .collect::<Result<Vec<_>>>()?;
    let linked_files = raw
        .linked_files
        .clone()
        .unwrap_or_else(|| vec![".env".to_string()])
        .iter()
        .map(|f| values::relative_path(&k.key("linked_files"), f))
        .collect::<Result<Vec<_>>>()?;
    let health_timeout = k.dur("health_timeout", &raw.health_timeout, Duration::from_secs(60))?;
    Ok(EnvConfig {
        name: name.clone(),
        database_host: database_host(&k, raw, &hosts)?,
        hosts,
        deploy_dir,
        backup_dir,
        branch: branch(&k, raw)?,
        required_checks: raw.required_checks.clone().unwrap_or_default(),
        require_staging: raw.require_staging.unwrap_or(false),
        confirm_rollback: raw.confirm_rollback.clone(),
        health_url,
        health_timeout,
        health_interval: k.dur("health_interval", &raw.health_interval, Duration::from_secs(1))?,
        health_request_timeout: k.dur(
            "health_request_timeout",
            &raw.health_request_timeout,
            Duration::from_secs(5),
        )?,
        smoke,
        keep_releases: k.count("keep_releases", raw.keep_releases, 5)?,
        keep_backups: k.count("keep_backups", raw.keep_backups, 10)?,
        install: k.command("install", &raw.install, DEFAULT_INSTALL)?,
        migrate: k.command("migrate", &raw.migrate, DEFAULT_MIGRATE)?,
        reload: k.command("reload", &raw.reload, DEFAULT_RELOAD)?,
        linked_files,
        database_backup: raw.database_backup.unwrap_or(true),
        ssh_config: raw.ssh_config.as_ref().map(|p| base.join(p)),
        connect_timeout: k.dur("connect_timeout", &raw.connect_timeout, Duration::from_secs(15))?,
        local: transport_is_local(&k, raw)?,
        checks_timeout: k.dur("checks_timeout", &raw.checks_timeout, Duration::from_secs(600))?,
        checks_interval: k.dur("checks_interval", &raw.checks_interval, Duration::from_secs(10))?,
        parallel: k.count("parallel", raw.parallel, 1)?,
        reuse_dependencies: raw.reuse_dependencies.unwrap_or(true),
        availability_enforce: availability_enforce(&k, raw)?,
        migrations_dir: values::relative_path(
            &k.key("migrations_dir"),
            raw.migrations_dir.as_deref().unwrap_or("prisma/migrations"),
        )?,
        destructive_migrations: match raw.destructive_migrations.as_deref() {
            Some(p) => crate::migrations::Policy::parse(&k.key("destructive_migrations"), p)?,
            None if raw.confirm_rollback.is_some() => crate::migrations::Policy::Confirm,
            None => crate::migrations::Policy::Allow,
        },
        timeouts: Timeouts::parse(&k.key("timeouts"), raw.timeouts.as_ref(), health_timeout)?,
        health_from_host,
        public_url: public_url(&k, raw)?,
        watch: super::watch::parse(
            &k.key("watch"),
            raw.watch.as_ref(),
            &k.key("probe_rate"),
            raw.probe_rate.as_deref(),
        )?,
        drain: raw.drain.unwrap_or(true),
        drain_timeout: drain_timeout(&k, raw)?,
    })
}

fn hosts(k: &Keys, raw: &RawEnv) -> Result<Vec<HostSpec>> {
    let hosts_raw = raw.hosts.as_ref().ok_or_else(|| k.missing("hosts"))?;
    if hosts_raw.is_empty() {
        return Err(Error::invalid(format!("{}: needs at least one host", k.key("hosts"))));
    }
    hosts_raw.iter().map(|h| HostSpec::parse(&k.key("hosts"), h)).collect()
}

fn dirs(k: &Keys, raw: &RawEnv) -> Result<(RemotePath, RemotePath)> {
    let path =
        |key: &str, v: &Option<String>| RemotePath::parse(&k.key(key), v.as_deref().ok_or_else(|| k.missing(key))?);
    let deploy_dir = path("deploy_dir", &raw.deploy_dir)?;
    let backup_dir = path("backup_dir", &raw.backup_dir)?;
    if backup_dir == deploy_dir || backup_dir.as_str().starts_with(&format!("{}/", deploy_dir)) {
        return Err(Error::invalid(format!(
            "{}: must lie outside deploy_dir, so pruning releases never touches backups",
            k.key("backup_dir")
        )));
    }
    Ok((deploy_dir, backup_dir))
}

/// One URL requested from the runner cannot verify each of several hosts: with more than one,
/// it must hold `{host}`, or be requested on each host itself (`health_from = "host"`).
fn health_url(k: &Keys, raw: &RawEnv, hosts: usize, from_host: bool) -> Result<String> {
    let url = values::http_url(
        &k.key("health_url"),
        raw.health_url.as_deref().ok_or_else(|| k.missing("health_url"))?,
    )?;
    if hosts > 1 && !url.contains("{host}") && !from_host {
        return Err(Error::invalid(format!(
            "{}: one URL requested from the runner cannot verify each of {hosts} hosts: put {{host}} in it (e.g. http://{{host}}:3000/api/health), or set health_from = \"host\" to request it on each host over SSH (e.g. http://127.0.0.1:3000/api/health)",
            k.key("health_url"),
        )));
    }
    Ok(url)
}

/// Stricter than git: a deploy branch name needs nothing that a URL or a shell treats specially.
fn branch(k: &Keys, raw: &RawEnv) -> Result<Option<String>> {
    let Some(b) = raw.branch.clone() else { return Ok(None) };
    let ok = !b.is_empty()
        && b.len() <= 200
        && !b.starts_with(['-', '/', '.'])
        && !b.contains("..")
        && b.bytes().all(|c| c.is_ascii_alphanumeric() || b"._/-".contains(&c));
    if !ok {
        return Err(Error::invalid(format!(
            "{}: {b:?} is not a branch name",
            k.key("branch")
        )));
    }
    Ok(Some(b))
}

fn transport_is_local(k: &Keys, raw: &RawEnv) -> Result<bool> {
    match raw.transport.as_deref() {
        None | Some("ssh") => Ok(false),
        Some("local") => Ok(true),
        Some(other) => Err(Error::invalid(format!(
            "{}: {other:?} is not \"ssh\" or \"local\"",
            k.key("transport")
        ))),
    }
}

/// The host where the one database dump, migration and restore run: an index into `hosts`.
fn database_host(k: &Keys, raw: &RawEnv, hosts: &[HostSpec]) -> Result<usize> {
    let Some(h) = &raw.database_host else { return Ok(0) };
    let spec = HostSpec::parse(&k.key("database_host"), h)?;
    hosts.iter().position(|x| *x == spec).ok_or_else(|| {
        let names: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        Error::invalid(format!(
            "{}: {h:?} is not one of hosts ({})",
            k.key("database_host"),
            names.join(", ")
        ))
    })
}

/// `availability = "warn" | "enforce"` (default warn).
fn availability_enforce(k: &Keys, raw: &RawEnv) -> Result<bool> {
    match raw.availability.as_deref() {
        None | Some("warn") => Ok(false),
        Some("enforce") => Ok(true),
        Some(other) => Err(Error::invalid(format!(
            "{}: {other:?} is not \"warn\" or \"enforce\"",
            k.key("availability")
        ))),
    }
}

/// `health_from = "runner" | "host"` (default runner).
fn health_from_host(k: &Keys, raw: &RawEnv) -> Result<bool> {
    match raw.health_from.as_deref() {
        None | Some("runner") => Ok(false),
        Some("host") => Ok(true),
        Some(other) => Err(Error::invalid(format!(
            "{}: {other:?} is not \"runner\" or \"host\"",
            k.key("health_from")
        ))),
    }
}

/// `public_url`: one URL for the whole environment (the balancer), so no `{host}`.
fn public_url(k: &Keys, raw: &RawEnv) -> Result<Option<String>> {
    let Some(u) = raw.public_url.as_deref() else {
        return Ok(None);
    };
    let url = values::http_url(&k.key("public_url"), u)?;
    if url.contains("{host}") {
        return Err(Error::invalid(format!(
            "{}: one URL for the whole environment, checked once from the runner: no {{host}} in it",
            k.key("public_url")
        )));
    }
    Ok(Some(url))
}

/// `drain_timeout` (default 1500ms, inside PM2's default kill_timeout of 1600 ms): between
/// 1 ms and 10 minutes, as a ceiling that a reload only waits for when clients hold on.
fn drain_timeout(k: &Keys, raw: &RawEnv) -> Result<Duration> {
    let d = k.dur("drain_timeout", &raw.drain_timeout, crate::ecosystem::DRAIN_TIMEOUT)?;
    if d.is_zero() || d > Duration::from_secs(600) {
        return Err(Error::invalid(format!(
            "{}: must be between 1ms and 10m",
            k.key("drain_timeout")
        )));
    }
    Ok(d)
}
