//! The `tj-deploy.toml` file as written: every key optional, unknown keys rejected by name.
//! Turning these raw values into a validated [`super::EnvConfig`] happens in `config/mod.rs`.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    pub app: Option<String>,
    #[serde(default)]
    pub package: RawPackage,
    #[serde(default)]
    pub defaults: RawEnv,
    #[serde(default)]
    pub environments: BTreeMap<String, RawEnv>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPackage {
    pub dir: Option<String>,
    pub exclude: Option<Vec<String>>,
}

/// Keys that may stand in `[defaults]` or in `[environments.<name>]`; the latter wins.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnv {
    pub hosts: Option<Vec<String>>,
    pub deploy_dir: Option<String>,
    pub backup_dir: Option<String>,
    pub branch: Option<String>,
    pub required_checks: Option<Vec<String>>,
    pub require_staging: Option<bool>,
    pub confirm_rollback: Option<String>,
    pub health_url: Option<String>,
    pub health_timeout: Option<String>,
    pub health_interval: Option<String>,
    pub health_request_timeout: Option<String>,
    pub smoke: Option<Vec<String>>,
    pub keep_releases: Option<i64>,
    pub keep_backups: Option<i64>,
    pub install: Option<String>,
    pub migrate: Option<String>,
    pub reload: Option<String>,
    pub linked_files: Option<Vec<String>>,
    pub database_backup: Option<bool>,
    pub ssh_config: Option<String>,
    pub connect_timeout: Option<String>,
    pub transport: Option<String>,
    pub checks_timeout: Option<String>,
    pub checks_interval: Option<String>,
    pub parallel: Option<i64>,
    pub database_host: Option<String>,
    pub migrations_dir: Option<String>,
    pub destructive_migrations: Option<String>,
    /// Per-step time limits; merged key by key over `[defaults]` (see `config::timeouts`).
    pub timeouts: Option<BTreeMap<String, String>>,
    pub reuse_dependencies: Option<bool>,
    pub availability: Option<String>,
    pub health_from: Option<String>,
    pub public_url: Option<String>,
    /// The post-deploy watch; merged key by key over `[defaults.watch]` (see `config::watch`).
    pub watch: Option<super::watch::RawWatch>,
    pub probe_rate: Option<String>,
    pub drain: Option<bool>,
    pub drain_timeout: Option<String>,
}

macro_rules! overlay {
    ($base:expr, $over:expr, $($field:ident),*) => {
        RawEnv { $($field: $over.$field.clone().or_else(|| $base.$field.clone()),)* }
    };
}

impl RawEnv {
    /// This environment's keys over the defaults.
    pub fn over(&self, defaults: &RawEnv) -> RawEnv {
        let mut merged = overlay!(
            defaults,
            self,
            hosts,
            deploy_dir,
            backup_dir,
            branch,
            required_checks,
            require_staging,
            confirm_rollback,
            health_url,
            health_timeout,
            health_interval,
            health_request_timeout,
            smoke,
            keep_releases,
            keep_backups,
            install,
            migrate,
            reload,
            linked_files,
            database_backup,
            ssh_config,
            connect_timeout,
            transport,
            checks_timeout,
            checks_interval,
            parallel,
            database_host,
            migrations_dir,
            destructive_migrations,
            timeouts,
            reuse_dependencies,
            availability,
            health_from,
            public_url,
            watch,
            probe_rate,
            drain,
            drain_timeout
        );
        if let (Some(base), Some(over)) = (&defaults.timeouts, &self.timeouts) {
            let mut t = base.clone();
            t.extend(over.clone());
            merged.timeouts = Some(t);
        }
        if let (Some(base), Some(over)) = (&defaults.watch, &self.watch) {
            merged.watch = Some(over.over(base));
        }
        merged
    }
}

/// Parses the file's text; `origin` names it in errors.
pub fn parse(origin: &str, text: &str) -> Result<RawFile> {
    toml::from_str(text).map_err(|e| {
        // toml's message spans several lines with a source excerpt; keep the first line and the
        // location so the error stays one line and names the key.
        let msg = did_you_mean(e.message().trim());
        let location = e
            .span()
            .map(|s| {
                let start = s.start.min(text.len());
                let line = text[..start].matches('\n').count() + 1;
                // Name the key too: toml's type errors say what was wrong, not where.
                let line_text = text.lines().nth(line - 1).unwrap_or("");
                let key = line_text.split_once('=').map(|(k, _)| k.trim()).filter(|k| {
                    !k.is_empty()
                        && k.len() <= 64
                        && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.\"".contains(&b))
                });
                let table = line_text.trim().starts_with('[').then(|| line_text.trim());
                match (key, table) {
                    (Some(k), _) => format!(" (line {line}, {})", k.trim_matches('"')),
                    (None, Some(t)) if t.len() <= 80 => format!(" (line {line}, {t})"),
                    _ => format!(" (line {line})"),
                }
            })
            .unwrap_or_default();
        Error::invalid(format!("{origin}{location}: {msg}"))
    })
}

/// Serde's "unknown field `keep_release`, expected one of `hosts`, …" with the closest valid
/// key named before the list: "…, did you mean `keep_releases`? expected one of …".
fn did_you_mean(msg: &str) -> String {
    let Some(rest) = msg.strip_prefix("unknown field `") else {
        return msg.to_string();
    };
    let Some((field, list)) = rest.split_once('`') else {
        return msg.to_string();
    };
    let Some(list) = list.strip_prefix(", ") else {
        return msg.to_string();
    };
    let valid = list.split('`').skip(1).step_by(2);
    match crate::suggest::closest(field, valid) {
        Some(key) => format!("unknown field `{field}`, did you mean `{key}`? {list}"),
        None => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_suggest_the_closest() {
        let e = parse("t.toml", "[defaults]\nkeep_release = 3\n").unwrap_err();
        let (before, after) = e.message.split_once("keep_releases").expect("names keep_releases");
        assert!(before.contains("did you mean"), "{}", e.message);
        assert!(after.contains("expected one of"), "{}", e.message);
        assert!(e.message.contains("line 2"), "{}", e.message);
        let e = parse("t.toml", "ap = \"x\"\n").unwrap_err();
        assert!(e.message.contains("did you mean `app`?"), "{}", e.message);
        let e = parse("t.toml", "[package]\nexclud = []\n").unwrap_err();
        assert!(e.message.contains("did you mean `exclude`?"), "{}", e.message);
        let e = parse("t.toml", "[defaults]\nbogus = 1\n").unwrap_err();
        assert!(!e.message.contains("did you mean"), "{}", e.message);
        assert!(e.message.contains("bogus"), "{}", e.message);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = parse(
            "tj-deploy.toml",
            "app = \"x\"\n[environments.staging]\nrequired_check = [\"lint\"]\n",
        )
        .unwrap_err();
        assert!(e.message.contains("required_check"), "{}", e.message);
        assert!(e.message.contains("line 3"), "{}", e.message);
        assert!(!e.message.contains('\n'));
    }

    #[test]
    fn duplicate_tables_and_wrong_types_are_errors() {
        assert!(parse("f", "[defaults]\n[defaults]\n").is_err());
        let e = parse("f", "[defaults]\nkeep_releases = \"five\"\n").unwrap_err();
        assert!(e.message.contains("line 2"), "{}", e.message);
    }

    #[test]
    fn environment_keys_override_defaults() {
        let f = parse(
            "f",
            "[defaults]\nkeep_releases = 5\nbranch = \"main\"\n[environments.s]\nbranch = \"develop\"\n",
        )
        .unwrap();
        let env = f.environments["s"].over(&f.defaults);
        assert_eq!(env.branch.as_deref(), Some("develop"));
        assert_eq!(env.keep_releases, Some(5));
    }
}
