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
pub const ACTION_INPUTS: [&str; 16] = [
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
    "allow-destructive-migrations",
    "watch",
    "args",
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
    pub allow_destructive_migrations: Option<String>,
    pub watch: Option<String>,
    /// Read by [`crate::action_args`] before the inputs are resolved.
    pub args: Option<String>,
}

impl ActionInputs {
    /// Reads `INPUT_*` from `vars`. Only inputs we declare are read; others (a newer
    /// action.yml, a runner's own) are left alone rather than failing the run.
    pub fn from_vars(vars: &BTreeMap<String, String>) -> Result<Self> {
        // The runner passes every `with:` key; one we do not know is a typo (a gate or flag the
        // user meant to set): say so, naming the closest input.
        for name in vars.keys().filter_map(|k| k.strip_prefix("INPUT_")) {
            let name = name.to_ascii_lowercase();
            if !ACTION_INPUTS.contains(&name.as_str()) {
                crate::ui::warn(&format!(
                    "input {name:?} is not an input of tj-deploy ({}see action.yml); it is ignored",
                    crate::suggest::hint(&name, ACTION_INPUTS)
                ));
            }
        }
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
    /// `GITHUB_EVENT_NAME`, e.g. `pull_request`.
    pub event_name: Option<String>,
    /// `GITHUB_EVENT_PATH`: the webhook payload that started the workflow.
    pub event_path: Option<String>,
    /// `GITHUB_WORKSPACE`: the repository checkout (paths of annotations are relative to it).
    pub workspace: Option<String>,
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
            event_name: get("GITHUB_EVENT_NAME"),
            event_path: get("GITHUB_EVENT_PATH"),
            workspace: get("GITHUB_WORKSPACE"),
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

/// The pull request (or merge-queue entry) a run is about, from the event payload. In a
/// `pull_request` job `GITHUB_SHA` is a temporary merge commit that belongs to no branch: the
/// commit that matters is the PR's head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    /// `None` for a merge-queue entry.
    pub number: Option<u64>,
    pub head_sha: String,
    pub head_ref: Option<String>,
    /// The target branch, without `refs/heads/`.
    pub base_ref: String,
    pub base_sha: Option<String>,
}

impl PullRequest {
    /// `#7 feature → develop`, or `merge queue → main`.
    pub fn describe(&self) -> String {
        let head = self.head_ref.as_deref().unwrap_or(crate::ui::prefix(&self.head_sha, 7));
        match self.number {
            Some(n) => format!("#{n} {head} → {}", self.base_ref),
            None => format!("merge queue {head} → {}", self.base_ref),
        }
    }
}

/// Reads the event payload for `pull_request`, `pull_request_target` and `merge_group`; other
/// events (and runs outside Actions) have no pull request.
pub fn pull_request(ctx: &GithubContext) -> Result<Option<PullRequest>> {
    let event = ctx.event_name.as_deref().unwrap_or("");
    if !matches!(event, "pull_request" | "pull_request_target" | "merge_group") {
        return Ok(None);
    }
    let path = ctx
        .event_path
        .as_deref()
        .ok_or_else(|| Error::invalid(format!("GITHUB_EVENT_PATH: not set, but GITHUB_EVENT_NAME is {event}")))?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::invalid(format!("GITHUB_EVENT_PATH: cannot read {path}: {e}")))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::invalid(format!("GITHUB_EVENT_PATH: {path} is not JSON: {e}")))?;
    let s = |p: &str| v.pointer(p).and_then(|x| x.as_str()).map(str::to_string);
    let missing = |what: &str| Error::invalid(format!("GITHUB_EVENT_PATH: the {event} payload has no {what}"));
    let pr = if event == "merge_group" {
        PullRequest {
            number: None,
            head_sha: s("/merge_group/head_sha").ok_or_else(|| missing("merge_group.head_sha"))?,
            head_ref: s("/merge_group/head_ref"),
            base_ref: s("/merge_group/base_ref").ok_or_else(|| missing("merge_group.base_ref"))?,
            base_sha: s("/merge_group/base_sha"),
        }
    } else {
        PullRequest {
            number: v.pointer("/pull_request/number").and_then(|x| x.as_u64()),
            head_sha: s("/pull_request/head/sha").ok_or_else(|| missing("pull_request.head.sha"))?,
            head_ref: s("/pull_request/head/ref"),
            base_ref: s("/pull_request/base/ref").ok_or_else(|| missing("pull_request.base.ref"))?,
            base_sha: s("/pull_request/base/sha"),
        }
    };
    let base_ref = pr
        .base_ref
        .strip_prefix("refs/heads/")
        .unwrap_or(&pr.base_ref)
        .to_string();
    Ok(Some(PullRequest { base_ref, ..pr }))
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
    fn pull_request_and_merge_group_payloads() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("event.json");
        let ctx = |name: &str| GithubContext {
            event_name: Some(name.into()),
            event_path: Some(file.display().to_string()),
            ..GithubContext::default()
        };
        std::fs::write(
            &file,
            r#"{"pull_request":{"number":7,"head":{"sha":"aaa","ref":"feature"},"base":{"sha":"bbb","ref":"develop"}}}"#,
        )
        .unwrap();
        let pr = pull_request(&ctx("pull_request")).unwrap().unwrap();
        assert_eq!(
            (pr.number, pr.head_sha.as_str(), pr.base_ref.as_str()),
            (Some(7), "aaa", "develop")
        );
        assert_eq!(pr.describe(), "#7 feature → develop");
        assert!(pull_request(&ctx("push")).unwrap().is_none());
        std::fs::write(
            &file,
            r#"{"merge_group":{"head_sha":"ccc","head_ref":"refs/heads/gh-readonly-queue/main/pr-7","base_sha":"ddd","base_ref":"refs/heads/main"}}"#,
        )
        .unwrap();
        let mg = pull_request(&ctx("merge_group")).unwrap().unwrap();
        assert_eq!((mg.head_sha.as_str(), mg.base_ref.as_str()), ("ccc", "main"));
        let e = pull_request(&ctx("pull_request")).unwrap_err();
        assert!(e.message.contains("pull_request.head.sha"), "{}", e.message);
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
