//! One [`Summary`] of what a run actually did, rendered for people: plain text for the
//! terminal, markdown for the Actions job summary. Built from recorded steps, never from the plan.

use serde::Serialize;

use crate::github::gates::Gate;
use crate::health::CheckResult;

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
    /// Things that work but break a promise (e.g. the ecosystem lint): shown in every summary.
    pub warnings: Vec<String>,
}

fn or_dash(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("—")
}

impl Summary {
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "{} {} {} of {} to {}: {}\n",
            self.status.emoji(),
            self.command,
            self.status.as_str(),
            self.app,
            self.environment,
            self.message
        ));
        out.push_str(&format!("  hosts:     {}\n", self.hosts.join(", ")));
        out.push_str(&format!("  commit:    {}\n", or_dash(&self.commit)));
        out.push_str(&format!("  release:   {}\n", or_dash(&self.release)));
        out.push_str(&format!("  previous:  {}\n", or_dash(&self.previous_release)));
        out.push_str(&format!("  backup:    {}\n", or_dash(&self.backup)));
        if let Some(p) = &self.package {
            out.push_str(&format!("  package:   {p}\n"));
        }
        out.push_str(&format!("  by:        {}\n", self.actor));
        out.push_str(&format!("  duration:  {:.1}s\n", self.duration_seconds));
        if !self.warnings.is_empty() {
            out.push_str("  warnings:\n");
            for w in &self.warnings {
                out.push_str(&format!("    ⚠ {w}\n"));
            }
        }
        if !self.gates.is_empty() {
            out.push_str("  gates:\n");
            for g in &self.gates {
                out.push_str(&format!(
                    "    {} {:<16} {}\n",
                    if g.ok { "✓" } else { "✗" },
                    g.name,
                    g.reason
                ));
            }
        }
        if !self.steps.is_empty() {
            out.push_str("  steps:\n");
            for s in &self.steps {
                let note = if s.note.is_empty() {
                    String::new()
                } else {
                    format!("  {}", s.note)
                };
                out.push_str(&format!(
                    "    {} {:<9} {:>6.1}s  {}{}\n",
                    if s.ok { "✓" } else { "✗" },
                    s.name,
                    s.seconds,
                    s.host,
                    note
                ));
            }
        }
        if !self.checks.is_empty() {
            out.push_str("  checks:\n");
            for c in &self.checks {
                let status = c.status.map(|s| s.to_string()).unwrap_or_else(|| "—".into());
                out.push_str(&format!(
                    "    {} {:<24} {status:>3} {:>5}ms {}\n",
                    if c.ok { "✓" } else { "✗" },
                    c.name,
                    c.latency_ms,
                    c.note
                ));
            }
        }
        out
    }

    /// Markdown following the runbook's Deployment Log Template: for the check run, the job
    /// summary and the server's deployments.md.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let esc = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        md.push_str(&format!(
            "## {} {} {}: {} → {}\n\n",
            self.status.emoji(),
            self.command,
            self.status.as_str(),
            self.app,
            self.environment
        ));
        md.push_str(&format!("{}\n\n", self.message));
        let commit = match (&self.commit, &self.commit_url) {
            (Some(c), Some(u)) => format!("[`{}`]({u})", &c[..c.len().min(7)]),
            (Some(c), None) => format!("`{}`", &c[..c.len().min(7)]),
            _ => "—".to_string(),
        };
        md.push_str("| | |\n|---|---|\n");
        md.push_str(&format!("| **Environment** | {} |\n", self.environment));
        md.push_str(&format!("| **Branch** | {} |\n", or_dash(&self.branch)));
        md.push_str(&format!("| **Commit** | {commit} |\n"));
        md.push_str(&format!("| **Deployed by** | {} |\n", esc(&self.actor)));
        md.push_str(&format!("| **Hosts** | {} |\n", self.hosts.join(", ")));
        md.push_str(&format!("| **Started** | {} |\n", self.started_at));
        md.push_str(&format!("| **Duration** | {:.1}s |\n", self.duration_seconds));
        md.push_str(&format!("| **Release** | `{}` |\n", or_dash(&self.release)));
        md.push_str(&format!(
            "| **Previous release** | `{}` |\n",
            or_dash(&self.previous_release)
        ));
        md.push_str(&format!("| **Backup** | `{}` |\n", or_dash(&self.backup)));
        if let Some(url) = &self.run_url {
            md.push_str(&format!("| **Run** | {url} |\n"));
        }

        if !self.warnings.is_empty() {
            md.push_str("\n### Warnings\n\n");
            for w in &self.warnings {
                md.push_str(&format!("- ⚠️ {}\n", esc(w)));
            }
        }

        md.push_str("\n### Pre-deployment checklist\n\n");
        if self.gates.is_empty() {
            md.push_str("- GitHub gates: not run (no token)\n");
        }
        for g in &self.gates {
            md.push_str(&format!(
                "- [{}] {}: {}\n",
                if g.ok { "x" } else { " " },
                g.name,
                esc(&g.reason)
            ));
        }
        let backed_up = self.steps.iter().any(|s| s.name.contains("backup") && s.ok);
        md.push_str(&format!(
            "- [{}] backup taken before any change{}\n",
            if backed_up { "x" } else { " " },
            self.backup
                .as_ref()
                .filter(|_| backed_up)
                .map(|b| format!(": `{b}`"))
                .unwrap_or_default()
        ));

        md.push_str("\n### Changes\n\n");
        if self.changes.is_empty() {
            md.push_str("- none recorded (first deploy, same commit, or no GitHub token)\n");
        }
        for c in &self.changes {
            md.push_str(&format!("- `{}` {}\n", &c.sha[..c.sha.len().min(7)], esc(&c.subject)));
        }
        if self.changes_total > self.changes.len() {
            md.push_str(&format!("- … and {} more\n", self.changes_total - self.changes.len()));
        }

        md.push_str("\n### Database migrations\n\n");
        if self.migrations.is_empty() {
            md.push_str("- none applied\n");
        }
        for m in &self.migrations {
            md.push_str(&format!("- `{}`\n", esc(m)));
        }

        md.push_str("\n### Health checks\n\n");
        if self.checks.is_empty() {
            md.push_str("- not run\n");
        } else {
            md.push_str("| Check | Status | Latency | Result |\n|---|---|---|---|\n");
            for c in &self.checks {
                md.push_str(&format!(
                    "| {} | {} | {}ms | {} {} |\n",
                    c.name,
                    c.status.map(|s| s.to_string()).unwrap_or_else(|| "—".into()),
                    c.latency_ms,
                    if c.ok { "✅" } else { "❌" },
                    esc(&c.note)
                ));
            }
        }

        md.push_str("\n### Monitoring\n\n");
        md.push_str(&format!("- environment: {}\n", or_dash(&self.environment_url)));

        if !self.steps.is_empty() {
            md.push_str("\n### Steps\n\n| Step | Host | Time | Result |\n|---|---|---|---|\n");
            for s in &self.steps {
                md.push_str(&format!(
                    "| {} | {} | {:.1}s | {}{} |\n",
                    s.name,
                    s.host,
                    s.seconds,
                    if s.ok { "✅" } else { "❌" },
                    if s.note.is_empty() {
                        String::new()
                    } else {
                        format!(" {}", esc(&s.note))
                    }
                ));
            }
        }

        md.push_str(&format!(
            "\n### Status\n\n**{}** {}\n",
            self.status.as_str(),
            self.status.emoji()
        ));
        if matches!(self.status, Status::RolledBack | Status::Failure) || self.command == "rollback" {
            md.push_str(&format!("\n### Rollback\n\n{}\n", self.message));
        }
        md
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
