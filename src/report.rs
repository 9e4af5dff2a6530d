//! One [`Summary`] of what a run actually did, rendered for people: plain text for the
//! terminal, markdown for the Actions job summary. Built from recorded steps, never from the plan.

use serde::Serialize;

use crate::github::gates::Gate;
use crate::health::CheckResult;

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Success,
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
    fn emoji(self) -> &'static str {
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

#[derive(Debug, Clone, Serialize)]
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
}

fn short(s: &Option<String>) -> String {
    s.as_deref()
        .map(|c| c[..c.len().min(7)].to_string())
        .unwrap_or_else(|| "—".to_string())
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

    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        md.push_str(&format!(
            "## {} {} {}: {} → {}\n\n",
            self.status.emoji(),
            self.command,
            self.status.as_str(),
            self.app,
            self.environment
        ));
        md.push_str(&format!("{}\n\n", self.message));
        md.push_str("| | |\n|---|---|\n");
        md.push_str(&format!("| Environment | {} |\n", self.environment));
        md.push_str(&format!("| Hosts | {} |\n", self.hosts.join(", ")));
        md.push_str(&format!("| Commit | `{}` |\n", short(&self.commit)));
        md.push_str(&format!("| Release | `{}` |\n", or_dash(&self.release)));
        md.push_str(&format!(
            "| Previous release | `{}` |\n",
            or_dash(&self.previous_release)
        ));
        md.push_str(&format!("| Backup | `{}` |\n", or_dash(&self.backup)));
        md.push_str(&format!("| Deployed by | {} |\n", self.actor));
        md.push_str(&format!("| Started | {} |\n", self.started_at));
        md.push_str(&format!("| Duration | {:.1}s |\n", self.duration_seconds));
        if let Some(url) = &self.run_url {
            md.push_str(&format!("| Run | {url} |\n"));
        }
        if !self.gates.is_empty() {
            md.push_str("\n### Pre-flight gates\n\n| Gate | Result |\n|---|---|\n");
            for g in &self.gates {
                md.push_str(&format!(
                    "| {} | {} {} |\n",
                    g.name,
                    if g.ok { "✅" } else { "❌" },
                    g.reason.replace('|', "\\|")
                ));
            }
        }
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
                        format!(" {}", s.note.replace('|', "\\|"))
                    }
                ));
            }
        }
        if !self.checks.is_empty() {
            md.push_str("\n### Health checks\n\n| Check | Status | Latency | Result |\n|---|---|---|---|\n");
            for c in &self.checks {
                md.push_str(&format!(
                    "| {} | {} | {}ms | {} {} |\n",
                    c.name,
                    c.status.map(|s| s.to_string()).unwrap_or_else(|| "—".into()),
                    c.latency_ms,
                    if c.ok { "✅" } else { "❌" },
                    c.note.replace('|', "\\|")
                ));
            }
        }
        md
    }
}
