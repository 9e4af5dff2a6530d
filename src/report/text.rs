//! The summary as plain text for the terminal (and the Actions log).

use super::{Summary, or_dash};

impl Summary {
    pub fn to_text(&self) -> String {
        [
            self.text_head(),
            self.text_warnings(),
            self.text_gates(),
            self.text_steps(),
            self.text_review(),
            self.text_checks(),
        ]
        .concat()
    }

    /// The outcome and the facts of the run.
    fn text_head(&self) -> String {
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
        if let Some(f) = &self.failed_release {
            out.push_str(&format!("  failed:    {f} (not live)\n"));
        }
        out.push_str(&format!("  previous:  {}\n", or_dash(&self.previous_release)));
        out.push_str(&format!("  backup:    {}\n", or_dash(&self.backup)));
        if let Some(p) = &self.package {
            out.push_str(&format!("  package:   {p}\n"));
        }
        out.push_str(&format!("  by:        {}\n", self.actor));
        out.push_str(&format!("  duration:  {:.1}s\n", self.duration_seconds));
        out
    }

    /// The warnings, one a line.
    fn text_warnings(&self) -> String {
        let mut out = String::new();
        if let Some(a) = &self.availability {
            out.push_str(&format!("{a}\n"));
        }
        for line in self.watch.iter().flat_map(|w| w.lines()) {
            out.push_str(&format!("{line}\n"));
        }
        if !self.warnings.is_empty() {
            out.push_str("  warnings:\n");
            for w in &self.warnings {
                out.push_str(&format!("    ⚠ {w}\n"));
            }
        }
        out
    }

    /// The gates, one a line.
    fn text_gates(&self) -> String {
        let mut out = String::new();
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
        out
    }

    /// Every step with its time and host.
    fn text_steps(&self) -> String {
        let mut out = String::new();
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
        out
    }

    /// The migrations pending and their flagged statements.
    fn text_review(&self) -> String {
        let mut out = String::new();
        if let Some(r) = &self.migration_review {
            out.push_str(&format!(
                "  migrations pending against {}: {}\n",
                r.against,
                if r.pending.is_empty() {
                    "none".to_string()
                } else {
                    r.pending.join(", ")
                }
            ));
            for f in &r.flags {
                out.push_str(&format!("    ⚠ {}\n", f.describe()));
            }
            if !r.decision.is_empty() {
                out.push_str(&format!("    decision: {}\n", r.decision));
            }
        }
        out
    }

    /// Health and smoke checks.
    fn text_checks(&self) -> String {
        let mut out = String::new();
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
}
