//! What is on a host right now (releases, `current`, backups, the lock, an uploaded package),
//! read in one round trip and parsed strictly: names that are not ours are ignored.

use crate::config::ReleaseId;
use crate::error::{Error, Result};
use crate::remote::layout::Layout;
use crate::remote::{Mode, Transport, commands};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseInfo {
    pub id: ReleaseId,
    /// From REVISION; a release without one never finished (crash mid-deploy).
    pub revision: Option<String>,
    pub bad: bool,
}

#[derive(Debug, Clone, Default)]
pub struct HostState {
    pub current: Option<ReleaseId>,
    /// Oldest first.
    pub releases: Vec<ReleaseInfo>,
    /// Oldest first.
    pub backups: Vec<ReleaseId>,
    /// The release each backup holds (from its manifest), when it holds one.
    pub backup_releases: Vec<(ReleaseId, ReleaseId)>,
    /// Releases marked bad in the ledger `.tj-deploy/bad/`, which outlives pruning.
    pub bad: Vec<ReleaseId>,
    pub package_present: bool,
    pub lock_held: bool,
    /// `current` exists but is not a symlink (`directory` or `file`): a server set up by hand.
    pub current_unmanaged: Option<String>,
}

impl HostState {
    pub fn parse(stdout: &str) -> Self {
        let mut s = HostState::default();
        for line in stdout.lines() {
            let mut words = line.split(' ');
            match (words.next(), words.next(), words.next(), words.next()) {
                (Some("current"), Some(target), None, None) => {
                    s.current = target.strip_prefix("releases/").and_then(ReleaseId::from_name);
                }
                (Some("release"), Some(id), Some(rev), Some(bad)) => {
                    if let Some(id) = ReleaseId::from_name(id) {
                        let revision = (rev != "-" && !rev.is_empty()).then(|| rev.to_string());
                        s.releases.push(ReleaseInfo {
                            id,
                            revision,
                            bad: bad == "1",
                        });
                    }
                }
                (Some("backup"), Some(id), held, None) => {
                    if let Some(id) = ReleaseId::from_name(id) {
                        s.backups.push(id);
                        if let Some(r) = held.and_then(ReleaseId::from_name) {
                            s.backup_releases.push((id, r));
                        }
                    }
                }
                (Some("bad"), Some(id), None, None) => {
                    if let Some(id) = ReleaseId::from_name(id) {
                        s.bad.push(id);
                    }
                }
                (Some("package"), Some("present"), None, None) => s.package_present = true,
                (Some("current-unmanaged"), Some(kind @ ("directory" | "file")), None, None) => {
                    s.current_unmanaged = Some(kind.to_string());
                }
                (Some("lock"), Some("held"), None, None) => s.lock_held = true,
                _ => {}
            }
        }
        s.releases.sort_by_key(|r| r.id);
        s.backups.sort();
        let ledger = s.bad.clone();
        for r in s.releases.iter_mut() {
            r.bad |= ledger.contains(&r.id);
        }
        s
    }

    /// Marked bad, on disk or in the ledger (so a pruned bad release stays bad).
    pub fn is_bad(&self, id: ReleaseId) -> bool {
        self.bad.contains(&id) || self.release(id).is_some_and(|r| r.bad)
    }

    pub fn release(&self, id: ReleaseId) -> Option<&ReleaseInfo> {
        self.releases.iter().find(|r| r.id == id)
    }

    /// The newest id in use on this host, release or backup.
    pub fn newest_id(&self) -> Option<ReleaseId> {
        self.releases
            .iter()
            .map(|r| r.id)
            .chain(self.backups.iter().copied())
            .max()
    }

    /// Releases and backups to prune. Releases: keep `current`, `keep`, and the newest
    /// `keep_releases` good complete ones; of the bad ones only the newest stays (to look at; its
    /// mark lives on in the ledger), so bad releases never take a good one's place; unfinished
    /// ones go. Backups: keep the newest `keep_backups`, and always the newest good one (whose
    /// release is not bad).
    pub fn prune_plan(
        &self,
        keep_releases: usize,
        keep_backups: usize,
        keep: Option<ReleaseId>,
    ) -> (Vec<ReleaseId>, Vec<ReleaseId>) {
        let mut good = 0;
        let mut bad_kept = false;
        let mut releases = Vec::new();
        for r in self.releases.iter().rev() {
            let pinned = Some(r.id) == self.current || Some(r.id) == keep;
            let bad = self.is_bad(r.id);
            let stays = if pinned {
                true
            } else if r.revision.is_none() {
                false
            } else if bad {
                !std::mem::replace(&mut bad_kept, true)
            } else {
                good < keep_releases
            };
            if pinned || (stays && !bad) {
                good += usize::from(!bad);
            }
            if !stays {
                releases.push(r.id);
            }
        }
        let newest_good = self
            .backups
            .iter()
            .rev()
            .find(|b| {
                self.backup_releases
                    .iter()
                    .any(|(id, rel)| id == *b && !self.is_bad(*rel))
            })
            .copied();
        let backups = self
            .backups
            .iter()
            .rev()
            .skip(keep_backups)
            .filter(|b| Some(**b) != newest_good)
            .copied()
            .collect();
        (releases, backups)
    }
}

/// Reads the host's state. A `current` that is not a symlink (an app deployed by hand) is an
/// error before anything changes: switching would replace the serving directory.
pub async fn inspect<T: Transport>(t: &T, l: &Layout, package_sha256: Option<&str>) -> Result<HostState> {
    let out = t
        .run(&commands::inspect(l, package_sha256), Mode::Capture)
        .await?
        .check(&format!("{}: inspect", t.name()))?;
    let state = HostState::parse(&out.stdout);
    if let Some(kind) = &state.current_unmanaged {
        return Err(unmanaged_current(t.name(), l, kind));
    }
    Ok(state)
}

fn unmanaged_current(host: &str, l: &Layout, kind: &str) -> Error {
    let example = ReleaseId::from_time(chrono::Utc::now());
    let q = |s: &str| commands::quote(s);
    Error::invalid(format!(
        "{host}: {current} is a {kind}, not a symlink to a release: this server was not set up by tj-deploy, and nothing was changed. \
         To adopt it, move it into a release and link it: `mkdir -p {releases} && mv {current} {release} && ln -s releases/{example} {current}`, \
         then reload the app from {shown} (`tj-deploy setup --adopt` does this for an app unpacked in the deploy_dir itself, not in a `current` directory)",
        current = q(&l.current()),
        releases = q(&l.releases()),
        release = q(&l.release(example)),
        shown = l.current(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ReleaseId {
        ReleaseId::parse("id", s).unwrap()
    }

    #[test]
    fn parses_and_ignores_foreign_names() {
        let s = HostState::parse(
            "current releases/20260101_000002\nrelease 20260101_000001 abc 0\nrelease 20260101_000002 def 1\nrelease junk - 0\nrelease 20260101_000003 - 0\nbackup 20260101_000002\nbackup ../x\npackage present\n",
        );
        assert_eq!(s.current, Some(id("20260101_000002")));
        assert_eq!(s.releases.len(), 3);
        assert!(s.releases[1].bad);
        assert_eq!(s.releases[2].revision, None);
        assert_eq!(s.backups, vec![id("20260101_000002")]);
        assert!(s.package_present);
        assert!(!s.lock_held);
    }

    #[test]
    fn prune_keeps_current_and_newest() {
        let text: String = (1..=8)
            .map(|i| format!("release 20260101_00000{i} r{i} 0\nbackup 20260101_00000{i}\n"))
            .collect();
        let mut s = HostState::parse(&format!("current releases/20260101_000002\n{text}"));
        s.releases[6].revision = None; // 7: unfinished
        let (releases, backups) = s.prune_plan(3, 5, Some(id("20260101_000008")));
        // kept: 8 (new), 6, 5 (newest complete), 2 (current); removed: 7 (unfinished), 4, 3, 1
        assert_eq!(
            releases,
            vec![
                id("20260101_000007"),
                id("20260101_000004"),
                id("20260101_000003"),
                id("20260101_000001")
            ]
        );
        assert_eq!(
            backups,
            vec![id("20260101_000003"), id("20260101_000002"), id("20260101_000001")]
        );
    }

    #[test]
    fn prune_keeps_good_releases_and_the_newest_good_backup() {
        // Releases 1, 2 good, 3 bad (ledger), 4 bad (BAD_RELEASE), 5 current; backups 5 and 6
        // hold bad release 3, backup 2 holds good release 1.
        let s = HostState::parse(
            "current releases/20260101_000005\n\
             release 20260101_000001 r1 0\nrelease 20260101_000002 r2 0\nrelease 20260101_000003 r3 0\n\
             release 20260101_000004 r4 1\nrelease 20260101_000005 r5 0\nbad 20260101_000003\n\
             backup 20260101_000002 20260101_000001\nbackup 20260101_000005 20260101_000003\n\
             backup 20260101_000006 20260101_000003\n",
        );
        let (releases, backups) = s.prune_plan(2, 1, Some(id("20260101_000005")));
        // Kept: 5 (current) and 2 (good); of the bad ones only the newest, 4.
        assert_eq!(releases, vec![id("20260101_000003"), id("20260101_000001")]);
        // Kept: 6 (newest) and 2 (the newest whose release is good).
        assert_eq!(backups, vec![id("20260101_000005")]);
    }
}
