//! The `timeouts` key: a time limit for every remote step, so a hung `npm ci`, migration or
//! reload fails the deploy (and runs its failure path) instead of holding the lock forever.
//! `timeouts = { install = "20m", migrate = "10m", reload = "5m", backup = "30m" }`, in an
//! environment or in `[defaults]` (merged key by key, the environment's wins).
//!
//! `verify` is the ceiling of the whole verify step (health wait plus smoke checks).
//! `health_timeout` still bounds the wait for a healthy answer inside it, so `timeouts.verify`
//! may not be shorter than `health_timeout`; by default it is `health_timeout` plus a minute.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::{Error, Result};

const MINUTE: u64 = 60;

/// The steps `timeouts` may name, with their default limits. Every other step (lock,
/// inspect, switch, prune, cleanup, …) gets [`OTHER`].
pub const STEPS: [(&str, u64); 8] = [
    ("backup", 30 * MINUTE),
    ("upload", 30 * MINUTE),
    ("extract", 10 * MINUTE),
    ("install", 20 * MINUTE),
    ("migrate", 10 * MINUTE),
    ("reload", 5 * MINUTE),
    ("restore", 30 * MINUTE),
    ("verify", 0),
];

/// The limit of a step `timeouts` does not name.
pub const OTHER: Duration = Duration::from_secs(10 * MINUTE);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    set: BTreeMap<String, Duration>,
    verify: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            set: BTreeMap::new(),
            verify: Duration::from_secs(60 + MINUTE),
        }
    }
}

impl Timeouts {
    /// Validates the merged `timeouts` table; `key` names it in errors.
    pub fn parse(key: &str, raw: Option<&BTreeMap<String, String>>, health_timeout: Duration) -> Result<Self> {
        let mut set = BTreeMap::new();
        for (name, value) in raw.into_iter().flatten() {
            if !STEPS.iter().any(|(s, _)| s == name) {
                let known: Vec<&str> = STEPS.iter().map(|(s, _)| *s).collect();
                return Err(Error::invalid(format!(
                    "{key}.{name}: not a step with a time limit (one of: {})",
                    known.join(", ")
                )));
            }
            set.insert(name.clone(), super::values::duration(&format!("{key}.{name}"), value)?);
        }
        let verify = match set.get("verify") {
            Some(v) if *v < health_timeout => {
                return Err(Error::invalid(format!(
                    "{key}.verify: {} is shorter than health_timeout ({}), which it must contain",
                    text(*v),
                    text(health_timeout)
                )));
            }
            Some(v) => *v,
            None => health_timeout + Duration::from_secs(MINUTE),
        };
        Ok(Timeouts { set, verify })
    }

    /// The limit of the step named `step` (as the run's log names it).
    pub fn limit(&self, step: &str) -> Duration {
        let key = match step {
            "safety backup" | "database backup" => "backup",
            "restore database" => "restore",
            "re-verify" => "verify",
            other => other,
        };
        if key == "verify" {
            return self.verify;
        }
        if let Some(d) = self.set.get(key) {
            return *d;
        }
        STEPS
            .iter()
            .find(|(s, _)| *s == key)
            .map(|(_, secs)| Duration::from_secs(*secs))
            .unwrap_or(OTHER)
    }
}

/// A limit as a person would write it: `20m`, `90s`, `1h`, `1500ms`.
pub fn text(d: Duration) -> String {
    let (ms, s) = (d.as_millis(), d.as_secs());
    if ms % 1000 != 0 {
        format!("{ms}ms")
    } else if s > 0 && s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else if s > 0 && s % 60 == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn limits_defaults_and_errors_naming_the_key() {
        let h = Duration::from_secs(60);
        let t = Timeouts::parse("t", Some(&raw(&[("install", "2s"), ("verify", "3m")])), h).unwrap();
        assert_eq!(t.limit("install"), Duration::from_secs(2));
        assert_eq!(t.limit("migrate"), Duration::from_secs(600));
        assert_eq!(t.limit("safety backup"), Duration::from_secs(1800));
        assert_eq!(t.limit("re-verify"), Duration::from_secs(180));
        assert_eq!(t.limit("lock"), OTHER);
        let d = Timeouts::parse("t", None, h).unwrap();
        assert_eq!(d.limit("verify"), Duration::from_secs(120));
        let e = Timeouts::parse("t", Some(&raw(&[("instal", "2s")])), h).unwrap_err();
        assert!(e.message.starts_with("t.instal: not a step"), "{}", e.message);
        let e = Timeouts::parse("t", Some(&raw(&[("install", "soon")])), h).unwrap_err();
        assert!(e.message.starts_with("t.install"), "{}", e.message);
        let e = Timeouts::parse("t", Some(&raw(&[("verify", "30s")])), h).unwrap_err();
        assert!(
            e.message.contains("t.verify") && e.message.contains("health_timeout"),
            "{}",
            e.message
        );
        assert_eq!(
            [
                text(Duration::from_secs(1200)),
                text(Duration::from_secs(2)),
                text(Duration::from_millis(1500))
            ],
            ["20m", "2s", "1500ms"]
        );
    }

    #[test]
    fn defaults_and_environment_merge_key_by_key() {
        let text = r#"
app = "a"
[defaults]
timeouts = { install = "20m", migrate = "7m" }
[environments.staging]
hosts = ["h"]
deploy_dir = "/srv/a"
backup_dir = "/srv/b"
health_url = "http://h/health"
timeouts = { install = "2s" }
"#;
        let env = crate::config::EnvName::parse("e", "staging").unwrap();
        let c = crate::config::Config::from_text("t.toml", text, std::path::Path::new("."), &env).unwrap();
        assert_eq!(c.env.timeouts.limit("install"), Duration::from_secs(2));
        assert_eq!(c.env.timeouts.limit("migrate"), Duration::from_secs(420));
        let e = crate::config::Config::from_text(
            "t.toml",
            &text.replace("install = \"2s\"", "intsall = \"2s\""),
            std::path::Path::new("."),
            &env,
        )
        .unwrap_err();
        assert!(
            e.message.contains("environments.staging.timeouts.intsall"),
            "{}",
            e.message
        );
    }
}
