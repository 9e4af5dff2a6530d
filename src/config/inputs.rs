//! Where a run's parameters come from besides the file: CLI flags, GitHub Action inputs
//! (`INPUT_*`, hyphens kept, empty = unset), the `GITHUB_*` context and `TJ_*` variables.
//! Precedence: flag > input > file > default.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use crate::error::{Error, Result};

/// A value that must never be printed: Debug and Display show a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The action inputs of DESIGN.md §2, as GitHub passes them to a Docker action.
/// `action.yml` must declare exactly these (the action contract test checks it).
pub const ACTION_INPUTS: [&str; 13] = [
    "command",
    "environment",
    "config",
    "ssh-key",
    "known-hosts",
    "github-token",
    "slack-webhook",
    "to",
    "restore-database",
    "confirm",
    "dry-run",
    "sha",
    "slack-on-start",
];

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ActionInputs {
    pub command: Option<String>,
    pub environment: Option<String>,
    pub config: Option<String>,
    pub ssh_key: Option<String>,
    pub known_hosts: Option<String>,
    pub github_token: Option<String>,
    pub slack_webhook: Option<String>,
    pub to: Option<String>,
    pub restore_database: Option<String>,
    pub confirm: Option<String>,
    pub dry_run: Option<String>,
    pub sha: Option<String>,
    pub slack_on_start: Option<String>,
}

impl ActionInputs {
    /// Reads `INPUT_*` from `vars`. Only inputs we declare are read; others (a newer
    /// action.yml, a runner's own) are left alone rather than failing the run.
    pub fn from_vars(vars: &BTreeMap<String, String>) -> Result<Self> {
        let known: Vec<(String, String)> = vars
            .iter()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix("INPUT_")?.to_ascii_lowercase();
                (ACTION_INPUTS.contains(&name.as_str()) && !v.trim().is_empty())
                    .then(|| (format!("INPUT_{name}"), v.clone()))
            })
            .collect();
        envy::prefixed("INPUT_")
            .from_iter(known)
            .map_err(|e| Error::invalid(format!("action inputs: {e}")))
    }
}

/// Parses a boolean input the way GitHub writes them.
pub fn boolean(input: &str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" => Ok(true),
        "false" | "no" | "0" | "off" => Ok(false),
        _ => Err(Error::invalid(format!(
            "{input}: {value:?} is not a boolean (true or false)"
        ))),
    }
}

/// The GitHub Actions run context (`GITHUB_*`), all optional so the CLI works without it.
#[derive(Debug, Default, Clone)]
pub struct GithubContext {
    pub actions: bool,
    pub repository: Option<String>,
    pub sha: Option<String>,
    pub git_ref: Option<String>,
    pub actor: Option<String>,
    pub run_id: Option<String>,
    pub server_url: Option<String>,
    pub api_url: Option<String>,
    pub output_file: Option<String>,
    pub summary_file: Option<String>,
    /// `TJ_GITHUB_BACKOFF_MS`: shorter retry waits (tests).
    pub backoff_ms: Option<u64>,
}

impl GithubContext {
    pub fn from_vars(vars: &BTreeMap<String, String>) -> Self {
        let get = |k: &str| vars.get(k).filter(|v| !v.is_empty()).cloned();
        GithubContext {
            actions: get("GITHUB_ACTIONS").as_deref() == Some("true"),
            repository: get("GITHUB_REPOSITORY"),
            sha: get("GITHUB_SHA"),
            git_ref: get("GITHUB_REF"),
            actor: get("GITHUB_ACTOR"),
            run_id: get("GITHUB_RUN_ID"),
            server_url: get("GITHUB_SERVER_URL"),
            api_url: get("GITHUB_API_URL"),
            output_file: get("GITHUB_OUTPUT"),
            summary_file: get("GITHUB_STEP_SUMMARY"),
            backoff_ms: get("TJ_GITHUB_BACKOFF_MS").and_then(|v| v.parse().ok()),
        }
    }

    /// The link to this workflow run, when there is one.
    pub fn run_url(&self) -> Option<String> {
        let server = self.server_url.as_deref().unwrap_or("https://github.com");
        Some(format!(
            "{}/{}/actions/runs/{}",
            server.trim_end_matches('/'),
            self.repository.as_ref()?,
            self.run_id.as_ref()?
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn hyphenated_inputs_are_read_and_empty_means_unset() {
        let v = vars(&[
            ("INPUT_SSH-KEY", "KEY"),
            ("INPUT_ENVIRONMENT", "staging"),
            ("INPUT_TO", ""),
            ("INPUT_DRY-RUN", "true"),
            ("INPUT_FOO", "x"),
        ]);
        let i = ActionInputs::from_vars(&v).unwrap();
        assert_eq!(i.ssh_key.as_deref(), Some("KEY"));
        assert_eq!(i.environment.as_deref(), Some("staging"));
        assert_eq!(i.to, None);
        assert_eq!(i.dry_run.as_deref(), Some("true"));
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn booleans() {
        assert!(boolean("dry-run", "TRUE").unwrap());
        assert!(!boolean("dry-run", "false").unwrap());
        assert!(boolean("dry-run", "maybe").unwrap_err().message.starts_with("dry-run"));
    }
}
