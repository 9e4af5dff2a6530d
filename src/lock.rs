//! The per-host deploy lock: `.tj-deploy/lock`, put in place by one rename of a directory that
//! already holds owner.json (so it is never ownerless). A held lock refuses the run (exit 3)
//! naming the holder and its age; `unlock` clears a stale one. Release checks our token, so we
//! never remove someone else's lock; an acquisition whose outcome we could not learn (the
//! connection dropped) is released by that token before the error is returned.

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
        if let Some(age) = self.age() {
            s.push_str(&format!(", {} ago", age_text(age)));
        }
        if let Some(sha) = &self.sha {
            s.push_str(&format!(", commit {}", crate::ui::prefix(sha, 7)));
        }
        if let Some(url) = &self.run_url {
            s.push_str(&format!(", run {url}"));
        }
        s.push(')');
        s
    }
}

impl LockOwner {
    /// How long ago the lock was taken (None when `started_at` is not a time).
    pub fn age(&self) -> Option<std::time::Duration> {
        let at = chrono::DateTime::parse_from_rfc3339(&self.started_at).ok()?;
        (chrono::Utc::now() - at.with_timezone(&chrono::Utc)).to_std().ok()
    }
}

/// `3h05m`, `12m30s`, `45s`.
fn age_text(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s >= 3600 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// A lock found on a host: who holds it, in words, and its owner.json when readable.
#[derive(Debug, Clone)]
pub struct Held {
    pub holder: String,
    pub owner: Option<LockOwner>,
}

fn held(text: &str) -> Held {
    match serde_json::from_str::<LockOwner>(text.trim()) {
        Ok(o) => Held {
            holder: o.describe(),
            owner: Some(o),
        },
        Err(_) if text.trim().is_empty() => Held {
            holder: "an unknown owner (no owner.json)".to_string(),
            owner: None,
        },
        Err(_) => Held {
            holder: "an unknown owner (unreadable owner.json)".to_string(),
            owner: None,
        },
    }
}

fn holder(text: &str) -> String {
    held(text).holder
}

pub async fn acquire<T: Transport>(t: &T, l: &Layout, owner: &LockOwner, env: &str) -> Result<()> {
    let result = try_acquire(t, l, owner, env).await;
    if let Err(e) = &result
        && e.kind == crate::error::Kind::Failed
    {
        // We cannot tell whether the rename happened: take back a lock carrying our token, so a
        // failed run never leaves a lock of its own behind (the caller does not know it holds it).
        if let Err(r) = release(t, l, &owner.token).await {
            crate::ui::warn(&format!(
                "{r}; if {} holds a lock of this run, clear it with `tj-deploy unlock -e {env}`",
                t.name()
            ));
        }
    }
    result
}

async fn try_acquire<T: Transport>(t: &T, l: &Layout, owner: &LockOwner, env: &str) -> Result<()> {
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
pub async fn force_remove<T: Transport>(t: &T, l: &Layout) -> Result<Option<Held>> {
    let out = t
        .run(&commands::lock_force_remove(l), Mode::Capture)
        .await?
        .check(&format!("{}: unlock", t.name()))?;
    Ok(parse_held(&out.stdout))
}

/// Who holds the lock, if anyone; changes nothing (`unlock --dry-run`).
pub async fn show<T: Transport>(t: &T, l: &Layout) -> Result<Option<Held>> {
    let out = t
        .run(&commands::lock_show(l), Mode::Capture)
        .await?
        .check(&format!("{}: read the lock", t.name()))?;
    Ok(parse_held(&out.stdout))
}

fn parse_held(stdout: &str) -> Option<Held> {
    let mut lines = stdout.splitn(2, '\n');
    match lines.next() {
        Some("held") => Some(held(lines.next().unwrap_or(""))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RemotePath;
    use crate::remote::local::LocalTransport;
    use crate::remote::{Output, Script};

    /// Runs each script for real, then reports the connection as dropped: the outcome of
    /// the lock's rename is unknown to the caller.
    struct DropsAfterRunning(LocalTransport);

    impl Transport for DropsAfterRunning {
        fn name(&self) -> &str {
            "flaky"
        }
        async fn run(&self, script: &Script, mode: Mode) -> Result<Output> {
            let out = self.0.run(script, mode).await?;
            if script.label == "lock" {
                return Err(Error::failed("flaky: connection dropped"));
            }
            Ok(out)
        }
        async fn run_with_file(
            &self,
            script: &Script,
            local: &std::path::Path,
            progress: &(dyn Fn(u64) + Sync),
        ) -> Result<Output> {
            self.0.run_with_file(script, local, progress).await
        }
    }

    fn owner(token: &str) -> LockOwner {
        LockOwner {
            actor: "ana".into(),
            command: "deploy".into(),
            environment: "staging".into(),
            sha: None,
            run_url: None,
            started_at: (chrono::Utc::now() - chrono::Duration::seconds(125))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            token: token.into(),
        }
    }

    #[test]
    fn lock_is_never_ownerless() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("app");
        let l = Layout::new(
            RemotePath::parse("d", d.to_str().unwrap()).unwrap(),
            RemotePath::parse("b", dir.path().join("b").to_str().unwrap()).unwrap(),
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = LocalTransport::new("h");
        rt.block_on(async {
            // Taken: the lock directory appears with its owner.json inside, in one rename.
            acquire(&local, &l, &owner("tok-1"), "staging").await.unwrap();
            let text = std::fs::read_to_string(d.join(".tj-deploy/lock/owner.json")).unwrap();
            assert!(text.contains("tok-1"), "{text}");
            // Held: refused naming the holder and the lock's age; the holder's lock is intact.
            let e = acquire(&local, &l, &owner("tok-2"), "staging").await.unwrap_err();
            assert_eq!(e.kind, crate::error::Kind::Refused);
            assert!(
                e.message.contains("ana (deploy since") && e.message.contains("2m0"),
                "{}",
                e.message
            );
            let text = std::fs::read_to_string(d.join(".tj-deploy/lock/owner.json")).unwrap();
            assert!(text.contains("tok-1"), "{text}");
            let held = show(&local, &l).await.unwrap().unwrap();
            assert_eq!(held.owner.unwrap().token, "tok-1");
            release(&local, &l, "tok-1").await.unwrap();
            assert!(!d.join(".tj-deploy/lock").exists());
            // An empty lock directory (an older tj-deploy died after its mkdir) is taken over.
            std::fs::create_dir_all(d.join(".tj-deploy/lock")).unwrap();
            acquire(&local, &l, &owner("tok-3"), "staging").await.unwrap();
            release(&local, &l, "tok-3").await.unwrap();
            // The connection drops after the rename happened: the lock is taken back by token.
            let flaky = DropsAfterRunning(LocalTransport::new("h"));
            let e = acquire(&flaky, &l, &owner("tok-4"), "staging").await.unwrap_err();
            assert!(e.message.contains("connection dropped"), "{}", e.message);
            assert!(
                !d.join(".tj-deploy/lock").exists(),
                "an ambiguous acquisition left its lock"
            );
            let leftovers: Vec<_> = std::fs::read_dir(d.join(".tj-deploy"))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert!(leftovers.is_empty(), "{leftovers:?}");
        });
    }
}
