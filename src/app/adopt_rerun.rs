//! `setup --adopt` run again: a host adopted already (skipped), an adoption interrupted after
//! the handover (verified and finished by the rerun), or one interrupted before (refused with
//! the cleanup that fits how far it got).

use crate::config::ReleaseId;
use crate::error::{Error, Result};
use crate::pipeline::{Ctx, HostRun, Progress};
use crate::remote::Transport;
use crate::remote::commands::ADOPT_SUFFIX;
use crate::remote::layout::Layout;

use super::{Found, Probe, finish_host, verify_host};

impl Probe {
    /// Adopted already (by tj-deploy or a finished adoption): `current` → a release, no
    /// adoption of it under way (its marker), nothing of one left over, nothing runs from
    /// deploy_dir itself (entries of a managed host there, logs/ or .env, are its own).
    pub fn adopted(&self) -> bool {
        self.releases
            && self.target.as_deref().is_some_and(|t| t.starts_with("releases/"))
            && !self.marked()
            && self.leftovers.is_empty()
            && self.temporary_running().is_empty()
            && self.old.is_empty()
    }

    /// Whether the marker of an adoption of the release `current` points at is there: the
    /// proof that deploy_dir's entries are originals the adoption has yet to settle.
    fn marked(&self) -> bool {
        self.current_release()
            .is_some_and(|id| self.adopting.iter().any(|a| *a == id.to_string()))
    }

    /// An adoption interrupted after the handover: its marker is there (finishing removes it
    /// last), the old app is gone, the app runs from `current`. A rerun verifies the app and
    /// finishes. Without the marker, entries in deploy_dir are a managed host's own.
    pub fn unfinished(&self, l: &Layout) -> bool {
        let d = l.deploy_dir.as_str();
        let from_current = |c: &str| {
            c == format!("{d}/current")
                || c.starts_with(&format!("{d}/current/"))
                || c.starts_with(&format!("{d}/releases/"))
        };
        self.releases
            && self.marked()
            && self.old.is_empty()
            && self
                .other
                .iter()
                .any(|(_, c, n)| !n.ends_with(ADOPT_SUFFIX) && from_current(c))
    }

    /// The release `current` points at, when it is one.
    pub fn current_release(&self) -> Option<ReleaseId> {
        let t = self.target.as_deref()?.strip_prefix("releases/")?;
        ReleaseId::parse("current", t).ok()
    }

    /// (pm_id, name) of each temporary copy of an adoption PM2 runs.
    pub fn temporary_running(&self) -> Vec<(String, String)> {
        self.other
            .iter()
            .filter(|(_, _, n)| n.ends_with(ADOPT_SUFFIX))
            .map(|(i, _, n)| (i.clone(), n.clone()))
            .collect()
    }

    /// What an interrupted adoption left (releases/ and current beside the originals, its
    /// scratch files, its temporary copy) and the exact cleanup; None when nothing is left.
    pub(crate) fn interrupted(&self, l: &Layout) -> Option<String> {
        let d = &l.deploy_dir;
        let temps = self.temporary_running();
        let marked = !self.adopting.is_empty();
        let originals = marked && self.entries > 0 && (self.package || self.ecosystem);
        if !(self.releases || self.current) || !(marked || !self.leftovers.is_empty() || !temps.is_empty()) {
            return None;
        }
        let mut found = vec![format!(
            "{d}/releases/, current → {}",
            self.target.as_deref().unwrap_or("-")
        )];
        if originals {
            found.push(format!("{} original entries in {d}", self.entries));
        }
        found.extend(self.adopting.iter().map(|a| format!("{d}/.tj-deploy/adopting-{a}")));
        found.extend(self.leftovers.iter().map(|f| format!("{d}/.tj-deploy/{f}")));
        found.extend(temps.iter().map(|(i, n)| format!("PM2 '{n}' (pm_id {i})")));
        let ids: Vec<&str> = temps.iter().map(|(i, _)| i.as_str()).collect();
        let delete = match ids.is_empty() {
            true => String::new(),
            false => format!("`pm2 delete {}`; ", ids.join(" ")),
        };
        let fix = match (self.old.is_empty(), temps.is_empty()) {
            (true, false) => format!(
                "the old app no longer runs from {d}; only the temporary copy serves, from {d}/current: start the app's own names there (`pm2 start` its ecosystem file in {d}/current), then run `setup --adopt` again to finish (it deletes the temporary copy)"
            ),
            (true, true) => format!(
                "the old app no longer runs from {d} and PM2 runs nothing from {d}/current: start the app there (`pm2 start` its ecosystem file in {d}/current), then run `setup --adopt` again to finish"
            ),
            (false, _) => self.undo_by_hand(l, &delete),
        };
        Some(format!(
            "an interrupted adoption left this host half adopted ({}): {fix}",
            found.join(", ")
        ))
    }

    /// The cleanup of an adoption cut off while the old app still runs: nothing deleted that
    /// may be needed (the release is moved aside, the old app's snapshot kept when retiring
    /// was cut off partway).
    fn undo_by_hand(&self, l: &Layout, delete: &str) -> String {
        let d = &l.deploy_dir;
        let id = self.adopting.first().map_or("x", String::as_str);
        let mut s = format!(
            "the old app still runs from {d}: undo it: {delete}`rm {d}/current`; `mv {d}/releases {d}/.tj-deploy/undone-{id}` (hard links: the originals in {d} stay; remove it once nothing in it is needed); `rm -f {d}/.tj-deploy/adopt-started {d}/.tj-deploy/adopting-*`"
        );
        match self.leftovers.iter().any(|f| f == "adopt-old.json") {
            true => s.push_str(&format!("; keep {d}/.tj-deploy/adopt-old.json until `pm2 list` shows every old process again: retiring the old app was cut off partway, and it holds their definition (`cd {d} && pm2 start .tj-deploy/adopt-old.json --only <name>` starts one that is missing); then adopt again")),
            false => s.push_str("; then adopt again"),
        }
        s
    }

    /// The plan a dry run prints for a host whose adoption a rerun finishes.
    pub fn resume_plan(&self, host: &str, l: &Layout) -> String {
        format!(
            "{host}: finish an interrupted adoption: lock; verify {} (current); delete the *{ADOPT_SUFFIX} copy; pm2 save; remove from {} the originals the release holds ({}); log `adopt`; unlock\n",
            self.target.as_deref().unwrap_or("?"),
            l.deploy_dir,
            self.entry_names.join(", ")
        )
    }
}

/// A rerun on a host whose adoption was interrupted after the handover: verify the app
/// `current` runs, then finish. A failure leaves the host as it is (serving from `current`).
pub(super) async fn resume<T: Transport>(
    ctx: &Ctx<'_>,
    h: &mut HostRun<T>,
    p: &Probe,
    found: &mut Found,
) -> Result<ReleaseId> {
    let id = p
        .current_release()
        .ok_or_else(|| Error::failed(format!("{}: current points at no release", h.name())))?;
    found.warn(format!(
        "{}: finishing an interrupted adoption of releases/{id}",
        h.name()
    ));
    h.progress = Progress::Switched;
    h.state.current = Some(id);
    let revision = p.current_revision.clone().unwrap_or_else(|| "adopted".into());
    verify_host(ctx, h, id, &revision, found).await?;
    let ids: Vec<String> = p.temporary_running().into_iter().map(|(i, _)| i).collect();
    finish_host(ctx, h, id, &ids, found).await?;
    Ok(id)
}

/// The warning for the `kept <name>` lines of a finish or undo script: entries that were not
/// hard-link twins of the other copy (written during the handover), moved to `dir`.
pub(super) fn kept(stdout: &str, dir: &str) -> Option<String> {
    let names: Vec<&str> = stdout.lines().filter_map(|l| l.strip_prefix("kept ")).collect();
    (!names.is_empty()).then(|| {
        format!(
            "kept {} entries written during the handover in {dir}: {} (compare them with the release and remove them)",
            names.len(),
            names.join(", ")
        )
    })
}
