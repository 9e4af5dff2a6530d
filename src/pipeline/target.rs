//! Which backup a rollback restores on a host: the one named, or `latest` — the newest whose
//! release is good (not marked bad, on disk or in the ledger) and not the current one.

use crate::backup::Manifest;
use crate::config::{ReleaseId, RollbackTarget};
use crate::error::{Error, Result};
use crate::state::HostState;

/// The backup to restore on one host, and what it holds.
#[derive(Debug, Clone)]
pub struct Target {
    pub backup: ReleaseId,
    pub release: ReleaseId,
    pub commit: Option<String>,
    pub manifest: Manifest,
}

/// Picks the backup `to` names on one host: an id, or the newest whose release is good and
/// not current.
pub fn choose(
    host: &str,
    to: RollbackTarget,
    state: &HostState,
    manifests: &[(ReleaseId, Manifest)],
) -> Result<Target> {
    let target = |id: ReleaseId, m: &Manifest| -> Option<Target> {
        let release = m.release.as_deref().and_then(ReleaseId::from_name)?;
        Some(Target {
            backup: id,
            release,
            commit: m.commit.clone(),
            manifest: m.clone(),
        })
    };
    match to {
        RollbackTarget::Id(id) => {
            let Some((_, m)) = manifests.iter().find(|(b, _)| *b == id) else {
                let have: Vec<String> = manifests.iter().take(5).map(|(b, _)| b.to_string()).collect();
                let have = if have.is_empty() {
                    "none".to_string()
                } else {
                    have.join(", ")
                };
                return Err(Error::invalid(format!(
                    "to: there is no backup {id} on {host} (newest: {have}; see `tj-deploy backups`)"
                )));
            };
            target(id, m).ok_or_else(|| {
                Error::invalid(format!(
                    "to: backup {id} holds no application release (it was taken before the first deploy)"
                ))
            })
        }
        RollbackTarget::Latest => manifests
            .iter()
            .filter_map(|(id, m)| target(*id, m))
            .find(|t| Some(t.release) != state.current && !state.is_bad(t.release))
            .ok_or_else(|| {
                Error::refused(format!(
                    "{host}: no backup holds a release to roll back to (none that is good and not current)"
                ))
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Kind;

    fn id(s: &str) -> ReleaseId {
        ReleaseId::parse("id", s).unwrap()
    }

    fn manifest(release: Option<&str>, commit: &str) -> Manifest {
        Manifest {
            id: String::new(),
            kind: "pre-deploy".into(),
            created_at: String::new(),
            environment: "staging".into(),
            release: release.map(str::to_string),
            commit: Some(commit.into()),
            deploying: None,
            files: vec![],
            ..Manifest::default()
        }
    }

    #[test]
    fn latest_skips_current_bad_and_empty_backups() {
        // Deploys r1, r2, r3 (r3 current); backups b1 (nothing live), b2 (r1), b3 (r2).
        let state = HostState::parse(
            "current releases/20260101_000003\nrelease 20260101_000001 a 0\nrelease 20260101_000002 b 0\nrelease 20260101_000003 c 0\n",
        );
        let ms = vec![
            (id("20260101_000003"), manifest(Some("20260101_000002"), "b")),
            (id("20260101_000002"), manifest(Some("20260101_000001"), "a")),
            (id("20260101_000001"), manifest(None, "")),
        ];
        assert_eq!(
            choose("h", RollbackTarget::Latest, &state, &ms).unwrap().release,
            id("20260101_000002")
        );
        let bad = HostState::parse(
            "current releases/20260101_000003\nrelease 20260101_000001 a 0\nrelease 20260101_000002 b 1\nrelease 20260101_000003 c 0\n",
        );
        assert_eq!(
            choose("h", RollbackTarget::Latest, &bad, &ms).unwrap().release,
            id("20260101_000001")
        );
        let e = choose("h", RollbackTarget::Id(id("20260101_000001")), &state, &ms).unwrap_err();
        assert!(e.message.contains("before the first deploy"), "{}", e.message);
        let e = choose("h", RollbackTarget::Id(id("20250101_000001")), &state, &ms).unwrap_err();
        assert_eq!(e.kind, Kind::Invalid);
        assert!(e.message.contains("no backup 20250101_000001"), "{}", e.message);
    }
}
