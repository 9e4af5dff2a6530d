//! One [`Summary`] of what a run actually did, rendered for people: plain text for the
//! terminal, markdown for the Actions job summary. Built from recorded steps, never from the plan.

use serde::Serialize;

use crate::github::gates::Gate;
use crate::health::CheckResult;

mod markdown;
mod text;

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Success,
    #[default]
    Failure,
    RolledBack,
    Refused,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Failure => "failure",
            Status::RolledBack => "rolled-back",
            Status::Refused => "refused",
        }
    }
    pub fn emoji(self) -> &'static str {
        match self {
            Status::Success => "✅",
            Status::Failure => "❌",
            Status::RolledBack => "↩️",
            Status::Refused => "⛔",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub host: String,
    pub name: String,
    pub seconds: f64,
    pub ok: bool,
    pub note: String,
}

/// One commit between the previously deployed one and this one.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Change {
    pub sha: String,
    pub subject: String,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Summary {
    pub command: String,
    pub status: Status,
    pub environment: String,
    pub app: String,
    pub hosts: Vec<String>,
    pub commit: Option<String>,
    pub release: Option<String>,
    /// The release this run made and gave up (failed or rolled back); `release` is what is live.
    pub failed_release: Option<String>,
    pub backup: Option<String>,
    pub previous_release: Option<String>,
    pub actor: String,
    pub run_url: Option<String>,
    pub started_at: String,
    pub duration_seconds: f64,
    pub package: Option<String>,
    pub gates: Vec<Gate>,
    pub steps: Vec<StepRecord>,
    pub checks: Vec<CheckResult>,
    pub message: String,
    pub environment_url: Option<String>,
    pub branch: Option<String>,
    /// Link to the commit on GitHub, when known.
    pub commit_url: Option<String>,
    pub finished_at: String,
    /// Commit subjects since the previously deployed commit (capped; `changes_total` counts all).
    pub changes: Vec<Change>,
    pub changes_total: usize,
    /// Migrations the migrate step reported applying.
    pub migrations: Vec<String>,
    /// Things that work but break a promise (the ecosystem lint, readable shared files):
    /// shown in every summary.
    pub warnings: Vec<String>,
    /// Probes of every host's health URL from just before the switch until verification ended.
    pub availability: Option<crate::availability::Report>,
    /// The pending migrations, their flagged statements and the gate's decision.
    pub migration_review: Option<crate::migrations::Review>,
    /// The post-deploy watch, when one ran.
    pub watch: Option<crate::watch::Report>,
}

fn or_dash(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("—")
}

impl Summary {
    /// A summary with the fields every run shares filled in; the command sets the rest.
    pub fn begin(
        config: &crate::config::Config,
        inv: &crate::config::Invocation,
        command: &str,
        started_at: chrono::DateTime<chrono::Utc>,
    ) -> Summary {
        Summary {
            command: command.to_string(),
            environment: config.env.name.to_string(),
            app: config.app.clone(),
            hosts: config.env.hosts.iter().map(|h| h.to_string()).collect(),
            actor: inv.actor.clone(),
            run_url: inv.github.run_url(),
            started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            environment_url: crate::health_host::environment_url(&config.env),
            branch: config.env.branch.clone(),
            ..Default::default()
        }
    }

    /// Sets the commit (and its link) and the end of the run.
    pub fn end(mut self, inv: &crate::config::Invocation, commit: Option<&str>, duration_seconds: f64) -> Summary {
        self.commit = commit.map(str::to_string);
        self.commit_url = commit_link(&inv.github, commit);
        self.duration_seconds = duration_seconds;
        self.finished_at = now_rfc3339();
        self
    }
}

/// The commit's page on GitHub, when the run knows its repository.
pub fn commit_link(github: &crate::config::GithubContext, sha: Option<&str>) -> Option<String> {
    let server = github.server_url.as_deref().unwrap_or("https://github.com");
    Some(format!(
        "{}/{}/commit/{}",
        server.trim_end_matches('/'),
        github.repository.as_ref()?,
        sha?
    ))
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
