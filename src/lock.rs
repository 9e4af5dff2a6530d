//! The per-host deploy lock: an atomic `mkdir` of `.tj-deploy/lock` with an owner.json saying
//! who holds it. A held lock refuses the run (exit 3) naming the holder; `unlock` clears a
//! stale one. Release checks our token, so we never remove someone else's lock.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::remote::layout::Layout;
use crate::remote::{Mode, Transport, commands};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockOwner {
    pub actor: String,
    pub command: String,
    pub environment: String,
    pub sha: Option<String>,
    pub run_url: Option<String>,
    pub started_at: String,
    pub token: String,
}

impl LockOwner {
    /// The owner record of a run: who, what, where, and a token unique to this process and start.
    pub fn new(
        inv: &crate::config::Invocation,
        command: &str,
        environment: &str,
        sha: Option<&crate::config::Sha>,
        started_at: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        LockOwner {
            actor: inv.actor.clone(),
            command: command.to_string(),
            environment: environment.to_string(),
            sha: sha.map(|s| s.to_string()),
            run_url: inv.github.run_url(),
            started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            token: format!(
                "{}-{}-{}",
                std::process::id(),
                started_at.timestamp_nanos_opt().unwrap_or_default(),
                sha.map(|s| s.short()).unwrap_or(command)
            ),
        }
    }

    pub fn describe(&self) -> String {
        let mut s = format!("{} ({} since {}", self.actor, self.command, self.started_at);
        if let Some(sha) = &self.sha {
            s.push_str(&format!(", commit {}", &sha[..sha.len().min(7)]));
        }
        if let Some(url) = &self.run_url {
            s.push_str(&format!(", run {url}"));
        }
        s.push(')');
        s
    }
}

fn holder(text: &str) -> String {
    match serde_json::from_str::<LockOwner>(text.trim()) {
        Ok(o) => o.describe(),
        Err(_) if text.trim().is_empty() => "an unknown owner (no owner.json)".to_string(),
        Err(_) => "an unknown owner (unreadable owner.json)".to_string(),
    }
}

pub async fn acquire<T: Transport>(t: &T, l: &Layout, owner: &LockOwner, env: &str) -> Result<()> {
    let json = serde_json::to_string(owner).map_err(|e| Error::failed(e.to_string()))?;
    let out = t
        .run(&commands::lock_acquire(l, &json), Mode::Capture)
        .await?
        .check(&format!("{}: lock", t.name()))?;
    let mut lines = out.stdout.splitn(2, '\n');
    match lines.next() {
        Some("acquired") => Ok(()),
        Some("held") => Err(Error::refused(format!(
            "{}: deploy lock {} is held by {}; if that run is gone, clear it with `tj-deploy unlock -e {env}`",
            t.name(),
            l.lock(),
            holder(lines.next().unwrap_or(""))
        ))),
        _ => Err(Error::failed(format!(
            "{}: lock: unexpected answer {:?}",
            t.name(),
            out.stdout
        ))),
    }
}

pub async fn release<T: Transport>(t: &T, l: &Layout, token: &str) -> Result<()> {
    t.run(&commands::lock_release(l, token), Mode::Capture)
        .await?
        .check(&format!("{}: unlock", t.name()))?;
    Ok(())
}

/// Removes the lock whoever holds it; returns who did, if anyone.
pub async fn force_remove<T: Transport>(t: &T, l: &Layout) -> Result<Option<String>> {
    let out = t
        .run(&commands::lock_force_remove(l), Mode::Capture)
        .await?
        .check(&format!("{}: unlock", t.name()))?;
    let mut lines = out.stdout.splitn(2, '\n');
    Ok(match lines.next() {
        Some("held") => Some(holder(lines.next().unwrap_or(""))),
        _ => None,
    })
}
