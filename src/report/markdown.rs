//! The summary as markdown, following the runbook's Deployment Log Template: for the check run,
//! the job summary and the server's deployments.md.

use super::{Status, Summary, or_dash};

impl Summary {
    /// Markdown following the runbook's Deployment Log Template: for the check run, the job
    /// summary and the server's deployments.md.
    pub fn to_markdown(&self) -> String {
        [
            self.md_head(),
            self.md_warnings(),
            self.md_checklist(),
            self.md_changes(),
            self.md_migrations(),
            self.md_health(),
            self.md_steps(),
            self.md_status(),
        ]
        .concat()
    }

    /// The title, the message and the table of facts.
    fn md_head(&self) -> String {
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
            (Some(c), Some(u)) => format!("[`{}`]({u})", crate::ui::prefix(c, 7)),
            (Some(c), None) => format!("`{}`", crate::ui::prefix(c, 7)),
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
        if let Some(f) = &self.failed_release {
            md.push_str(&format!("| **Failed release** | `{f}` (not live) |\n"));
        }
        md.push_str(&format!(
            "| **Previous release** | `{}` |\n",
            or_dash(&self.previous_release)
        ));
        md.push_str(&format!("| **Backup** | `{}` |\n", or_dash(&self.backup)));
        if let Some(url) = &self.run_url {
            md.push_str(&format!("| **Run** | {url} |\n"));
        }
        md
    }

    /// The warnings, when there are any.
    fn md_warnings(&self) -> String {
        let mut md = String::new();
        if let Some(a) = &self.availability {
            md.push_str(&format!("\n**{}** (every host's health URL, switch to verified)\n", a));
        }
        if let Some(w) = &self.watch {
            md.push('\n');
            md.push_str(&w.markdown());
        }
        if !self.warnings.is_empty() {
            md.push_str("\n### Warnings\n\n");
            for w in &self.warnings {
                md.push_str(&format!("- ⚠️ {}\n", w.replace('|', "\\|").replace('\n', " ")));
            }
        }
        md
    }

    /// The gates and the backup, as the runbook's checklist.
    fn md_checklist(&self) -> String {
        let mut md = String::new();
        let esc = |s: &str| s.replace('|', "\\|").replace('\n', " ");
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
        md
    }

    /// The commits since the previous release.
    fn md_changes(&self) -> String {
        let mut md = String::new();
        let esc = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        md.push_str("\n### Changes\n\n");
        if self.changes.is_empty() {
            md.push_str("- none recorded (first deploy, same commit, or no GitHub token)\n");
        }
        for c in &self.changes {
            md.push_str(&format!("- `{}` {}\n", crate::ui::prefix(&c.sha, 7), esc(&c.subject)));
        }
        if self.changes_total > self.changes.len() {
            md.push_str(&format!("- … and {} more\n", self.changes_total - self.changes.len()));
        }
        md
    }

    /// Migrations applied, and the review of those pending.
    fn md_migrations(&self) -> String {
        let mut md = String::new();
        let esc = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        md.push_str("\n### Database migrations\n\n");
        if self.migrations.is_empty() {
            md.push_str("- none applied\n");
        }
        for m in &self.migrations {
            md.push_str(&format!("- `{}`\n", esc(m)));
        }

        if let Some(r) = &self.migration_review {
            md.push_str(&review_markdown(r));
        }
        md
    }

    /// Health and smoke checks.
    fn md_health(&self) -> String {
        let mut md = String::new();
        let esc = |s: &str| s.replace('|', "\\|").replace('\n', " ");
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
        md
    }

    /// Every step with its host, time and result.
    fn md_steps(&self) -> String {
        let mut md = String::new();
        let esc = |s: &str| s.replace('|', "\\|").replace('\n', " ");
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
        md
    }

    /// The outcome, and what was rolled back.
    fn md_status(&self) -> String {
        let mut md = String::new();
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

/// The migration review as a markdown section: pending migrations, flagged statements, decision.
fn review_markdown(r: &crate::migrations::Review) -> String {
    let esc = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    let mut md = format!("\n### Migration review\n\nPending against {}:\n\n", esc(&r.against));
    if r.pending.is_empty() {
        md.push_str("- none\n");
    }
    for m in &r.pending {
        md.push_str(&format!("- `{}`\n", esc(m)));
    }
    if !r.flags.is_empty() {
        md.push_str("\n| File | Line | Flagged | Statement |\n|---|---|---|---|\n");
        for f in &r.flags {
            md.push_str(&format!(
                "| `{}` | {} | ⚠️ {} | `{}` |\n",
                esc(&f.path),
                f.line,
                f.what,
                esc(&f.statement).replace('`', "'")
            ));
        }
    }
    if !r.decision.is_empty() {
        md.push_str(&format!("\n**Decision:** {}\n", esc(&r.decision)));
    }
    md
}
