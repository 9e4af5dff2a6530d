//! Slack incoming webhook: the run's [`Summary`] as Block Kit within Slack's limits (≤ 50
//! blocks, section text ≤ 3000 characters, header ≤ 150, ≤ 10 fields of ≤ 2000, button text
//! ≤ 75) plus a plain `text` fallback. 429 waits out `Retry-After`; any other failure is one
//! warning. The webhook URL is a secret and never printed.

use std::time::Duration;

use serde_json::{Value, json};

use crate::report::Summary;
use crate::ui;

pub const MAX_BLOCKS: usize = 50;
pub const MAX_SECTION: usize = 3000;
pub const MAX_HEADER: usize = 150;
pub const MAX_FIELD: usize = 2000;
pub const MAX_FIELDS: usize = 10;
pub const MAX_BUTTON: usize = 75;

/// Slack's mrkdwn needs only these three escaped.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Cuts to `max` characters, ending in `…` when cut.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        s.chars().take(max - 1).collect::<String>() + "…"
    }
}

/// Joins lines into one section text within the limit, saying how many did not fit.
fn lines_within(title: &str, lines: &[String], more: usize) -> String {
    let mut text = format!("*{title}*");
    let mut shown = 0;
    for l in lines {
        let candidate = format!("{text}\n{l}");
        // Leave room for the "and N more" line.
        if candidate.chars().count() > MAX_SECTION - 40 {
            break;
        }
        text = candidate;
        shown += 1;
    }
    let hidden = lines.len() - shown + more;
    if hidden > 0 {
        text.push_str(&format!("\n… and {hidden} more"));
    }
    cut(&text, MAX_SECTION)
}

fn section(text: String) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": cut(&text, MAX_SECTION)}})
}

/// The end-of-run message.
pub fn payload(s: &Summary) -> Value {
    let short = s
        .commit
        .as_deref()
        .map(|c| crate::ui::prefix(c, 7).to_string())
        .unwrap_or_else(|| "—".into());
    let title = format!(
        "{} {} {}: {} → {}",
        s.status.emoji(),
        s.command,
        s.status.as_str(),
        s.app,
        s.environment
    );
    let commit = match &s.commit_url {
        Some(u) => format!("<{u}|{short}>"),
        None => format!("`{short}`"),
    };
    let fields: Vec<Value> = [
        ("Environment", esc(&s.environment)),
        ("Commit", commit),
        ("Duration", format!("{:.1}s", s.duration_seconds)),
        ("By", esc(&s.actor)),
        ("Release", format!("`{}`", s.release.as_deref().unwrap_or("—"))),
        ("Backup", format!("`{}`", s.backup.as_deref().unwrap_or("—"))),
    ]
    .into_iter()
    .take(MAX_FIELDS)
    .map(|(k, v)| json!({"type": "mrkdwn", "text": cut(&format!("*{k}*\n{v}"), MAX_FIELD)}))
    .collect();
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": cut(&title, MAX_HEADER), "emoji": true}}),
        section(esc(&s.message)),
        json!({"type": "section", "fields": fields}),
    ];
    blocks.extend(detail_sections(s));
    let mut buttons = Vec::new();
    if let Some(u) = &s.run_url {
        buttons.push(json!({"type": "button", "text": {"type": "plain_text", "text": cut("Open the run", MAX_BUTTON)}, "url": u}));
    }
    if let Some(u) = &s.commit_url {
        buttons.push(json!({"type": "button", "text": {"type": "plain_text", "text": cut("View the commit", MAX_BUTTON)}, "url": u}));
    }
    if !buttons.is_empty() {
        blocks.push(json!({"type": "actions", "elements": buttons}));
    }
    blocks.truncate(MAX_BLOCKS);
    json!({"text": cut(&format!("{title} ({short}): {}", s.message), MAX_SECTION), "blocks": blocks})
}

/// Changes, migrations, the migration review and the checks, each a section when present.
fn detail_sections(s: &Summary) -> Vec<Value> {
    let mut blocks = Vec::new();
    if let Some(a) = &s.availability {
        blocks.push(section(esc(&a.to_string())));
    }
    if let Some(w) = &s.watch {
        blocks.push(section(lines_within(
            "Watch",
            &w.lines().iter().map(|l| esc(l.trim())).collect::<Vec<_>>(),
            0,
        )));
    }
    if !s.warnings.is_empty() {
        let lines: Vec<String> = s.warnings.iter().map(|w| format!("• ⚠️ {}", esc(w))).collect();
        blocks.push(section(lines_within("Warnings", &lines, 0)));
    }
    if !s.changes.is_empty() {
        let lines: Vec<String> = s
            .changes
            .iter()
            .map(|c| format!("• `{}` {}", crate::ui::prefix(&c.sha, 7), esc(&c.subject)))
            .collect();
        blocks.push(section(lines_within(
            "Changes",
            &lines,
            s.changes_total.saturating_sub(s.changes.len()),
        )));
    }
    if !s.migrations.is_empty() {
        let lines: Vec<String> = s.migrations.iter().map(|m| format!("• `{}`", esc(m))).collect();
        blocks.push(section(lines_within("Database migrations", &lines, 0)));
    }
    if let Some(r) = s.migration_review.as_ref().filter(|r| !r.pending.is_empty()) {
        let mut lines: Vec<String> = r.pending.iter().map(|m| format!("• `{}`", esc(m))).collect();
        lines.extend(
            r.flags
                .iter()
                .map(|f| format!("⚠️ `{}:{}` {}", esc(&f.path), f.line, esc(&f.what))),
        );
        if !r.decision.is_empty() {
            lines.push(format!("Decision: {}", esc(&r.decision)));
        }
        blocks.push(section(lines_within("Pending migrations", &lines, 0)));
    }
    if !s.checks.is_empty() {
        let lines: Vec<String> = s
            .checks
            .iter()
            .map(|c| {
                let status = c.status.map(|x| x.to_string()).unwrap_or_else(|| "—".into());
                format!(
                    "{} {} → {status} ({} ms)",
                    if c.ok { "✅" } else { "❌" },
                    esc(&c.name),
                    c.latency_ms
                )
            })
            .collect();
        blocks.push(section(lines_within("Health checks", &lines, 0)));
    }
    blocks
}

/// The optional start-of-run message (`slack-on-start`).
pub fn start_payload(app: &str, env: &str, sha: &str, actor: &str, run_url: Option<&str>) -> Value {
    let title = format!("🚀 deploying {app} {} → {env}", crate::ui::prefix(sha, 7));
    let mut text = format!("started by {}", esc(actor));
    if let Some(u) = run_url {
        text.push_str(&format!(" — <{u}|follow the run>"));
    }
    json!({"text": cut(&title, MAX_SECTION), "blocks": [
        {"type": "header", "text": {"type": "plain_text", "text": cut(&title, MAX_HEADER), "emoji": true}},
        section(text),
    ]})
}

/// Posts `payload`; waits out 429s (up to 3 tries); any other failure is a warning.
pub async fn post(http: &reqwest::Client, webhook: &str, payload: &Value) {
    for attempt in 1..=3 {
        let sent = http
            .post(webhook)
            .timeout(Duration::from_secs(15))
            .header("content-type", "application/json")
            .body(payload.to_string())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => return,
            Ok(r) if r.status().as_u16() == 429 && attempt < 3 => {
                let wait = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(1)
                    .min(30);
                tokio::time::sleep(Duration::from_secs(wait)).await;
            }
            Ok(r) => {
                ui::warn(&format!(
                    "Slack notification failed: HTTP {} (the run's result is unchanged)",
                    r.status().as_u16()
                ));
                return;
            }
            Err(e) => {
                // reqwest's message can contain the URL: say only what kind of failure it was.
                let kind = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "could not connect"
                } else {
                    "request failed"
                };
                ui::warn(&format!(
                    "Slack notification failed: {kind} (the run's result is unchanged)"
                ));
                return;
            }
        }
    }
    ui::warn("Slack notification failed: still rate-limited after 3 tries (the run's result is unchanged)");
}
