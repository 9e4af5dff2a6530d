//! What `setup --adopt` reads on a host before it changes anything
//! ([`crate::remote::commands::adopt_probe`]), why it refuses a host, and the plan a dry run
//! prints.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::config::{Config, Invocation, ReleaseId};
use crate::error::{Error, Result};
use crate::pipeline::{Ctx, HostRun};
use crate::remote::commands::ADOPT_SUFFIX;
use crate::remote::layout::Layout;
use crate::remote::{Mode, Transport, commands};

/// What [`crate::remote::commands::adopt_probe`] found on a host.
#[derive(Debug, Default, Clone)]
pub struct Probe {
    pub releases: bool,
    pub current: bool,
    pub shared: bool,
    /// Where `current` points.
    pub target: Option<String>,
    /// The scratch files of an interrupted adoption in `.tj-deploy/`.
    pub leftovers: Vec<String>,
    /// The REVISION of the release `current` points at.
    pub current_revision: Option<String>,
    pub entries: u32,
    /// The names of deploy_dir's entries the adoption moves into the release.
    pub entry_names: Vec<String>,
    /// (what: HOME | PM2_HOME | backup_dir, path) of each lying inside deploy_dir.
    pub inside: Vec<(String, String)>,
    pub package: bool,
    pub ecosystem: bool,
    pub revision: Option<String>,
    /// (state, linked file): linked | same | differs | shared | app | missing.
    pub linked: Vec<(String, String)>,
    /// (mode: fork | cluster | npm, name) of each app of the ecosystem file; `npm`: cluster
    /// mode with a package manager as the script (its server is a child PM2 cannot hand over).
    pub apps: Vec<(String, String)>,
    /// (name, cwd) of each app whose explicit cwd lies outside `current` (`?`: unprintable).
    pub cwd_outside: Vec<(String, String)>,
    pub apps_failed: bool,
    /// (field, app name) of each path field pointing into deploy_dir outside `current`.
    pub into: Vec<(String, String)>,
    /// (pm_id, name) of each PM2 process running from deploy_dir.
    pub old: Vec<(String, String)>,
    /// (pm_id, cwd, name) of each other PM2 process of the daemon.
    pub other: Vec<(String, String, String)>,
    /// The release ids of the `.tj-deploy/adopting-<id>` markers (an adoption under way).
    pub adopting: Vec<String>,
    /// How many names under deploy_dir hold a newline (the probe stops there).
    pub newline: u32,
    /// Database files (SQLite and its -wal/-journal/-shm) in deploy_dir, relative to it.
    pub sqlite: Vec<String>,
}

pub fn parse_probe(stdout: &str) -> Probe {
    let mut p = Probe::default();
    for line in stdout.lines() {
        let (key, rest) = line.split_once(' ').unwrap_or((line, ""));
        let two = rest.split_once(' ');
        match key {
            "releases" => p.releases = true,
            "current" => p.current = true,
            "shared" => p.shared = true,
            "target" => p.target = Some(rest.to_string()),
            "leftover" => p.leftovers.push(rest.to_string()),
            "crev" => p.current_revision = (!rest.is_empty()).then(|| rest.to_string()),
            "entries" => p.entries = rest.parse().unwrap_or(0),
            "entry" => p.entry_names.push(rest.to_string()),
            "adopting" => p.adopting.push(rest.to_string()),
            "newline" => p.newline = rest.parse().unwrap_or(u32::MAX),
            "sqlite" => p.sqlite.push(rest.to_string()),
            "inside" => p.inside.extend(two.map(|(w, d)| (w.to_string(), d.to_string()))),
            "package" => p.package = true,
            "ecosystem" => p.ecosystem = true,
            "revision" => p.revision = (rest != "-" && !rest.is_empty()).then(|| rest.to_string()),
            "linked" => p.linked.extend(two.map(|(s, f)| (s.to_string(), f.to_string()))),
            "app" => {
                let mut w = rest.splitn(3, ' ');
                if let (Some(c), Some(cwd), Some(n)) = (w.next(), w.next(), w.next()) {
                    p.apps.push((c.to_string(), n.to_string()));
                    if cwd != "-" && cwd != "." {
                        p.cwd_outside.push((n.to_string(), cwd.to_string()));
                    }
                }
            }
            "apps" => p.apps_failed = true,
            "into" => p.into.extend(two.map(|(f, n)| (f.to_string(), n.to_string()))),
            "old" => p.old.extend(two.map(|(i, n)| (i.to_string(), n.to_string()))),
            "other" => {
                let mut w = rest.splitn(3, ' ');
                if let (Some(i), Some(c), Some(n)) = (w.next(), w.next(), w.next()) {
                    p.other.push((i.to_string(), c.to_string(), n.to_string()));
                }
            }
            _ => {}
        }
    }
    p
}

impl Probe {
    /// Why deploy_dir is not (only) a runbook's app: something the host needs lies inside it,
    /// tj-deploy manages it already, or an interrupted adoption left it half done.
    fn managed(&self, l: &Layout) -> Option<String> {
        let d = &l.deploy_dir;
        if self.newline > 0 {
            return Some(format!(
                "{} names under {d} hold a newline (list them: find {d} -name \"*$(printf '\\n')*\"): the adoption reads names a line each, so these could forge what it reads; rename them, then adopt",
                self.newline
            ));
        }
        if self.unfinished(l) {
            return self.inside_refusal(l);
        }
        if self.adopted() {
            let t = self.target.as_deref().unwrap_or("?");
            return Some(format!(
                "this host is adopted already: {d}/current already exists (→ {t}), no adoption of it is under way and nothing runs from {d} itself: tj-deploy manages it; nothing to adopt"
            ));
        }
        if let Some(why) = self.interrupted(l) {
            return Some(why);
        }
        if self.releases || self.current {
            return Some(format!(
                "{d}/releases or {d}/current already exists: this host is managed by tj-deploy (or half set up by hand); nothing to adopt"
            ));
        }
        self.inside_refusal(l)
    }

    /// HOME, PM2_HOME or backup_dir inside deploy_dir: finishing would move it away.
    fn inside_refusal(&self, l: &Layout) -> Option<String> {
        let d = &l.deploy_dir;
        self.inside.first().map(|(what, path)| {
            format!(
                "{what} ({path}) lies inside deploy_dir {d}: finishing the adoption removes deploy_dir's entries, and this one must stay; move it out of {d} (or deploy_dir elsewhere) first"
            )
        })
    }

    /// Why this host cannot be adopted, if it cannot.
    pub fn refusal(&self, l: &Layout, file: &str) -> Option<String> {
        let d = &l.deploy_dir;
        if let Some(why) = self.managed(l) {
            return Some(why);
        }
        if self.unfinished(l) {
            return None;
        }
        if !self.sqlite.is_empty() {
            return Some(format!(
                "{d} holds database files ({}): the adoption hard-links them into the release, so while the old and the new workers both run each database has two names, and SQLite keeps a separate -journal/-wal file per name (the database can be corrupted); move each to {d}/shared/ and list it in linked_files (or stop writing it while adopting), then adopt",
                self.sqlite.join(", ")
            ));
        }
        if self.entries == 0 || !(self.package || self.ecosystem) {
            return Some(format!(
                "nothing to adopt: {d} holds no app (no package.json, no {file})"
            ));
        }
        if !self.ecosystem {
            return Some(format!(
                "{d}/{file} (the ecosystem file `reload` names) is missing: the handover starts the app from it"
            ));
        }
        if self.apps_failed || self.apps.is_empty() {
            return Some(format!("{d}/{file} could not be evaluated with node, or lists no app"));
        }
        if let Some((_, n)) = self.apps.iter().find(|(mode, _)| mode == "fork") {
            return Some(format!(
                "app '{n}' runs in fork mode: it cannot be handed over without stopping it (two copies cannot share its port); use exec_mode: 'cluster' or deploy afresh"
            ));
        }
        if let Some((_, n)) = self.old.iter().find(|(_, n)| !self.apps.iter().any(|(_, a)| a == n)) {
            return Some(format!(
                "PM2 runs '{n}' from {d}, which {file} does not start: the handover would stop it and not start it again; add it to {file} or `pm2 delete` it first"
            ));
        }
        if let Some((_, n)) = self.apps.iter().find(|(_, a)| !self.old.iter().any(|(_, o)| o == a)) {
            return Some(format!(
                "app '{n}' of {file} is not running from {d}: the handover would start it (and a temporary copy) beside whatever runs it now; start it from {d} as the runbook does, or remove it from {file}, then adopt"
            ));
        }
        let ours = |n: &str| {
            self.apps
                .iter()
                .any(|(_, a)| a == n || format!("{a}{ADOPT_SUFFIX}") == n)
        };
        if let Some((i, cwd, n)) = self.other.iter().find(|(_, _, n)| ours(n)) {
            let fix = match n.ends_with(ADOPT_SUFFIX) {
                true => format!("it is the temporary copy of an interrupted adoption: `pm2 delete {i}` (check the app still serves), then adopt"),
                false => "rename one of them (PM2 names must be unique: the handover starts, waits for and deletes processes by these names)".to_string(),
            };
            return Some(format!("PM2 runs '{n}' (pm_id {i}) from {cwd}, outside {d}: {fix}"));
        }
        if let Some((n, cwd)) = self.cwd_outside.first() {
            return Some(format!(
                "app '{n}' has cwd {cwd}, not under {d}/current: started from it, the app would keep running from {d} (whose files the adoption removes); set cwd: process.env.TJ_CURRENT in {d}/{file} and adopt again"
            ));
        }
        if let Some((f, n)) = self.into.first() {
            return Some(format!(
                "app '{n}': {f} points into {d} outside current: finishing the adoption removes the originals there; make it relative to the app's cwd, or under process.env.TJ_CURRENT (or {d}/shared for files that must persist) in {d}/{file}, and adopt again"
            ));
        }
        for (state, f) in &self.linked {
            match state.as_str() {
                "differs" => {
                    return Some(format!(
                        "{d}/{f} and {d}/shared/{f} differ: keep the one the app should use (remove the other), then adopt"
                    ));
                }
                "missing" => return Some(format!("linked file {f} is in neither {d} nor {d}/shared")),
                _ => {}
            }
        }
        None
    }

    /// An app whose server PM2 cannot hand over (a package manager as the script): no
    /// temporary copy; the old processes go, then the app starts from `current` (a gap).
    pub fn direct(&self) -> Option<&str> {
        self.apps.iter().find(|(m, _)| m == "npm").map(|(_, n)| n.as_str())
    }

    /// The names of the temporary copy; none when the app is handed over directly.
    pub fn temporary(&self) -> Vec<String> {
        match self.direct() {
            Some(_) => Vec::new(),
            None => self.names(ADOPT_SUFFIX),
        }
    }

    pub fn names(&self, suffix: &str) -> Vec<String> {
        self.apps.iter().map(|(_, n)| format!("{n}{suffix}")).collect()
    }

    /// Linked files only the app has: the adoption hard-links them into `shared/`.
    pub fn to_share(&self) -> Vec<String> {
        self.linked
            .iter()
            .filter(|(s, _)| s == "app")
            .map(|(_, f)| f.clone())
            .collect()
    }

    pub fn revision(&self) -> String {
        self.revision.clone().unwrap_or_else(|| "adopted".into())
    }

    /// The plan a dry run prints for this host.
    pub fn plan(&self, host: &str, l: &Layout, id: ReleaseId, health_url: &str) -> String {
        let d = &l.deploy_dir;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{host}: lock; hard-link the {} entries of {d} (node_modules included, nothing copied) into releases/{id}; REVISION {}",
            self.entries,
            self.revision()
        );
        let _ = writeln!(
            s,
            "  entries moved into the release (removed from {d} when done; any written meanwhile kept in {d}/.tj-deploy/adopted-{id}/): {}",
            self.entry_names.join(", ")
        );
        for (state, f) in &self.linked {
            let how = if state == "app" {
                "hard-linked into shared/, then "
            } else {
                ""
            };
            let _ = writeln!(s, "  linked file {f}: {how}linked from shared/");
        }
        let names = self.names("").join(", ");
        let old = self.old.len();
        let handover = match self.direct() {
            Some(n) => format!(
                "no temporary copy (app '{n}' runs a package manager as its script: its server cannot share the port, so requests fail until it is back; the availability line counts them): delete the {old} old process(es) running from {d}; start {names} from current"
            ),
            None => format!(
                "start {names} as {} from current, wait until listening; delete the {old} old process(es) running from {d} (they drain); start {names} from current",
                self.names(ADOPT_SUFFIX).join(", ")
            ),
        };
        let _ = writeln!(
            s,
            "  current → releases/{id}; PM2: {handover}; verify {health_url};{} pm2 save; remove the originals from {d}; log `adopt`; unlock",
            if self.direct().is_some() {
                ""
            } else {
                " delete the temporary copy;"
            }
        );
        s
    }
}

pub(super) async fn dry_run(
    config: &Config,
    inv: &Invocation,
    vars: &BTreeMap<String, String>,
    l: &Layout,
    file: &str,
    id: ReleaseId,
) -> Result<()> {
    let fleet = super::super::connect(config, inv, vars).await?;
    println!("Dry run: setup --adopt {} — nothing will be changed.", config.env.name);
    let mut refusals = Vec::new();
    let mut probes = Vec::new();
    for (_, t) in &fleet.hosts {
        match probe(t, l, file, config).await {
            Ok(p) => probes.push(p),
            Err(e) => {
                fleet.close().await;
                return Err(e);
            }
        }
    }
    let all = probes.iter().all(Probe::adopted);
    for ((h, _), p) in fleet.hosts.iter().zip(&probes) {
        if p.adopted() && !all {
            let t = p.target.as_deref().unwrap_or("?");
            println!("{h}: adopted already (current → {t}): skipped");
            continue;
        }
        match p.refusal(l, file) {
            Some(why) => {
                println!("{h}: would refuse: {why}");
                refusals.push(format!("{h}: {why}"));
            }
            None if p.unfinished(l) => print!("{}", p.resume_plan(&h.to_string(), l)),
            None => print!("{}", p.plan(&h.to_string(), l, id, &config.env.health_url)),
        }
    }
    fleet.close().await;
    match refusals.is_empty() {
        true => Ok(()),
        false => Err(Error::refused(format!(
            "setup --adopt would refuse: {}",
            refusals.join("; ")
        ))),
    }
}

/// Probes every host; refuses (naming the host) when one cannot be adopted. A host adopted
/// already (a rerun after some hosts were adopted) is skipped unless every host is.
pub(super) async fn check<T: Transport>(ctx: &Ctx<'_>, hosts: &[HostRun<T>], file: &str) -> Result<Vec<Probe>> {
    let l = &ctx.layout;
    let mut probes = Vec::new();
    for h in hosts {
        probes.push(probe(&h.t, l, file, ctx.config).await?);
    }
    let all = probes.iter().all(Probe::adopted);
    for (h, p) in hosts.iter().zip(&probes) {
        if p.adopted() && !all {
            continue;
        }
        if let Some(why) = p.refusal(l, file) {
            return Err(Error::refused(format!("{}: {why}; nothing was changed", h.name())));
        }
    }
    Ok(probes)
}

pub(super) async fn probe<T: Transport>(t: &T, l: &Layout, file: &str, config: &Config) -> Result<Probe> {
    let out = t
        .run(&commands::adopt_probe(l, file, &config.env.linked_files), Mode::Capture)
        .await?
        .check(&format!("{}: adopt probe", t.name()))?;
    Ok(parse_probe(&out.stdout))
}

/// The ecosystem file the handover starts the app from (`reload` must name one).
pub(super) fn ecosystem_file(config: &Config) -> Result<String> {
    let reload = config.env.reload.as_deref().ok_or_else(|| {
        Error::invalid(
            "setup --adopt: the environment has no `reload` command, so tj-deploy does not know how the app runs",
        )
    })?;
    crate::ecosystem::file_from_reload(reload).ok_or_else(|| {
        Error::invalid(format!(
            "setup --adopt: `reload` ({reload}) names no ecosystem file to start the app from"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RemotePath;

    fn layout() -> Layout {
        Layout::new(
            RemotePath::parse("d", "/srv/app").unwrap(),
            RemotePath::parse("b", "/srv/backups").unwrap(),
        )
    }

    #[test]
    fn probe_parses_and_refuses() {
        let p = parse_probe(
            "entries 5\npackage 1\necosystem 1\nrevision -\nlinked app .env\napp cluster . web app\nold 0 web app\nold 1 web app\n",
        );
        assert_eq!(p.apps, vec![("cluster".to_string(), "web app".to_string())]);
        assert_eq!(p.direct(), None);
        assert_eq!(p.old.len(), 2);
        assert_eq!(p.revision(), "adopted");
        assert_eq!(p.to_share(), vec![".env".to_string()]);
        assert!(p.refusal(&layout(), "ecosystem.config.js").is_none());
        let plan = p.plan(
            "h",
            &layout(),
            ReleaseId::parse("id", "20260118_143000").unwrap(),
            "http://x",
        );
        assert!(plan.contains("web app-tj-adopt") && plan.contains("2 old"), "{plan}");
        let p = parse_probe("entries 2\nentry node_modules\nentry .env\necosystem 1\napp cluster . w\nold 1 w\n");
        let plan = p.plan("h", &layout(), ReleaseId::parse("id", "20260118_143000").unwrap(), "u");
        assert!(
            plan.contains("entries moved into the release (removed from /srv/app when done; any written meanwhile kept in /srv/app/.tj-deploy/adopted-20260118_143000/): node_modules, .env"),
            "{plan}"
        );
        let why = |t: &str| {
            parse_probe(t)
                .refusal(&layout(), "ecosystem.config.js")
                .unwrap_or_default()
        };
        assert!(why("releases 1\nentries 3\n").contains("already exists"));
        assert!(why("entries 0\n").contains("nothing to adopt"));
        assert!(
            why("entries 2\necosystem 1\napp cluster . w\nold 1 w\ninside PM2_HOME /srv/app/.pm2\n")
                .starts_with("PM2_HOME (/srv/app/.pm2) lies inside deploy_dir /srv/app")
        );
        assert!(why("entries 2\npackage 1\n").contains("is missing"));
        assert!(why("entries 2\necosystem 1\napp fork - w\n").contains("fork mode"));
        assert!(why("entries 2\necosystem 1\napp cluster - w\nold 1 w\nlinked differs .env\n").contains("differ"));
        assert!(
            why("entries 2\necosystem 1\napp cluster /srv/app w\nold 1 w\n")
                .contains("cwd /srv/app, not under /srv/app/current")
        );
        assert!(why("entries 2\necosystem 1\napps failed\n").contains("evaluated"));
        assert!(
            why("entries 2\necosystem 1\napp cluster . w\nold 1 w\ninto out_file w\n")
                .starts_with("app 'w': out_file points into /srv/app outside current")
        );
        assert!(why("entries 2\necosystem 1\napp cluster - w\nold 3 cron\n").contains("PM2 runs 'cron'"));
        assert!(
            why("entries 2\necosystem 1\napp cluster . w\napp cluster . api\nold 1 w\n")
                .starts_with("app 'api' of ecosystem.config.js is not running from /srv/app")
        );
        assert!(
            why("entries 2\necosystem 1\napp cluster . w\nold 1 w\nother 4 /srv/other w\n")
                .starts_with("PM2 runs 'w' (pm_id 4) from /srv/other, outside /srv/app: rename one")
        );
        assert!(
            why("entries 2\necosystem 1\napp cluster . w\nold 1 w\nother 5 /srv/app/current w-tj-adopt\n")
                .contains("interrupted adoption: `pm2 delete 5`")
        );
        assert!(why("entries 2\necosystem 1\napp cluster . w\nold 1 w\nother 6 /srv/x api\n").is_empty());
    }

    /// A host adopted already is recognised (and skipped by a rerun unless every host is); an
    /// interrupted adoption is refused with the cleanup that fits how far it got.
    #[test]
    fn adopted_and_interrupted_hosts_are_told_apart() {
        let l = layout();
        let done = parse_probe(
            "releases 1\ncurrent 1\nshared 1\ntarget releases/20260118_143000\nentries 0\nother 3 /srv/app/current w\n",
        );
        assert!(done.adopted());
        assert_eq!(
            done.current_release().map(|r| r.to_string()).as_deref(),
            Some("20260118_143000")
        );
        let why = done.refusal(&l, "e.js").unwrap_or_default();
        assert!(
            why.starts_with("this host is adopted already: /srv/app/current already exists"),
            "{why}"
        );

        let crashed = parse_probe(
            "releases 1\ncurrent 1\nadopting 20260118_143000\ntarget releases/20260118_143000\nleftover adopt-started\nentries 4\npackage 1\necosystem 1\napp cluster . w\nold 1 w\nother 7 /srv/app/current w-tj-adopt\n",
        );
        assert!(!crashed.adopted());
        let why = crashed.refusal(&l, "e.js").unwrap_or_default();
        assert!(why.starts_with("an interrupted adoption left this host half adopted (/srv/app/releases/, current → releases/20260118_143000, 4 original entries in /srv/app, /srv/app/.tj-deploy/adopting-20260118_143000, /srv/app/.tj-deploy/adopt-started, PM2 'w-tj-adopt' (pm_id 7))"), "{why}");
        assert!(why.contains("the old app still runs from /srv/app: undo it: `pm2 delete 7`; `rm /srv/app/current`; `mv /srv/app/releases /srv/app/.tj-deploy/undone-20260118_143000`"), "{why}");
        assert!(
            !why.contains("rm -rf") && !why.contains("keep /srv/app/.tj-deploy/adopt-old.json"),
            "{why}"
        );
        // Retiring cut off partway: the old app's snapshot is kept, never deleted.
        let partway = parse_probe(
            "releases 1\ncurrent 1\nadopting 20260118_143000\ntarget releases/20260118_143000\nleftover adopt-old.json\nleftover adopt-started\nentries 4\npackage 1\necosystem 1\napp cluster . w\nold 1 w\nother 7 /srv/app/current w-tj-adopt\n",
        );
        let why = partway.refusal(&l, "e.js").unwrap_or_default();
        assert!(
            why.contains("keep /srv/app/.tj-deploy/adopt-old.json until `pm2 list` shows every old process again"),
            "{why}"
        );
        assert!(
            !why.contains("rm -rf") && !why.contains("rm -f /srv/app/.tj-deploy/adopt-old.json"),
            "{why}"
        );
        // The old app gone, only the temporary copy serving: never "PM2 runs nothing".
        let temp_only = parse_probe(
            "releases 1\ncurrent 1\nadopting 20260118_143000\ntarget releases/20260118_143000\nleftover adopt-old.json\nentries 4\npackage 1\necosystem 1\napp cluster . w\nother 7 /srv/app/current w-tj-adopt\n",
        );
        assert!(!temp_only.unfinished(&l));
        let why = temp_only.refusal(&l, "e.js").unwrap_or_default();
        assert!(
            why.contains("only the temporary copy serves, from /srv/app/current") && !why.contains("runs nothing"),
            "{why}"
        );

        let unfinished = parse_probe(
            "releases 1\ncurrent 1\nadopting 20260118_143000\ntarget releases/20260118_143000\nleftover adopt-old.json\nentries 4\npackage 1\necosystem 1\napp cluster . w\nother 8 /srv/app/current w\n",
        );
        assert!(unfinished.unfinished(&l) && !unfinished.adopted());
        assert_eq!(unfinished.refusal(&l, "e.js"), None, "a rerun finishes it");
        let plan = unfinished.resume_plan("h", &l);
        assert!(
            plan.starts_with("h: finish an interrupted adoption: lock; verify releases/20260118_143000"),
            "{plan}"
        );
        // The old app gone and nothing running from current: the app is down; start it first.
        let down = parse_probe(
            "releases 1\ncurrent 1\nadopting 20260118_143000\ntarget releases/20260118_143000\nleftover adopt-old.json\nentries 4\npackage 1\necosystem 1\napp cluster . w\n",
        );
        assert!(!down.unfinished(&l));
        let why = down.refusal(&l, "e.js").unwrap_or_default();
        assert!(why.contains("PM2 runs nothing from /srv/app/current: start the app there (`pm2 start` its ecosystem file in /srv/app/current), then run `setup --adopt` again to finish"), "{why}");
        let fresh = parse_probe("releases 1\ncurrent 1\ntarget releases/20260118_143000\nentries 0\nold 2 w\n");
        assert!(!fresh.adopted(), "something still runs from deploy_dir");
    }

    /// A managed host with entries of its own in deploy_dir (logs/) and no marker is no
    /// unfinished adoption: skipped as adopted, never "finished"; with the marker of the
    /// release current points at it is one, and HOME/PM2_HOME inside deploy_dir still refuse.
    #[test]
    fn only_a_marked_adoption_is_finished() {
        let l = layout();
        let managed = parse_probe(
            "releases 1\ntarget releases/20260118_143000\nentries 1\nentry logs\nother 3 /srv/app/current w\n",
        );
        assert!(!managed.unfinished(&l), "no marker: not an adoption");
        assert!(managed.adopted());
        let why = managed.refusal(&l, "e.js").unwrap_or_default();
        assert!(why.starts_with("this host is adopted already"), "{why}");
        let other_id = parse_probe(
            "releases 1\nadopting 20250101_000000\ntarget releases/20260118_143000\nentries 1\nentry logs\nother 3 /srv/app/current w\n",
        );
        assert!(!other_id.unfinished(&l), "a marker of another release proves nothing");
        let marked = "releases 1\nadopting 20260118_143000\ntarget releases/20260118_143000\nentries 1\nentry logs\nother 3 /srv/app/current w\n";
        assert!(parse_probe(marked).unfinished(&l) && !parse_probe(marked).adopted());
        assert_eq!(parse_probe(marked).refusal(&l, "e.js"), None);
        let inside = parse_probe(&format!("{marked}inside PM2_HOME /srv/app/.pm2\n"));
        assert!(
            inside
                .refusal(&l, "e.js")
                .unwrap_or_default()
                .starts_with("PM2_HOME (/srv/app/.pm2) lies inside deploy_dir /srv/app"),
        );
    }

    /// Database files in deploy_dir and names holding a newline refuse the adoption.
    #[test]
    fn databases_and_newline_names_refuse() {
        let l = layout();
        let base = "entries 2\npackage 1\necosystem 1\napp cluster . w\nold 1 w\n";
        assert_eq!(parse_probe(base).refusal(&l, "e.js"), None);
        let why = parse_probe(&format!("{base}sqlite data/app.db\nsqlite data/app.db-wal\n"))
            .refusal(&l, "e.js")
            .unwrap_or_default();
        assert!(
            why.starts_with("/srv/app holds database files (data/app.db, data/app.db-wal)"),
            "{why}"
        );
        assert!(
            why.contains("move each to /srv/app/shared/ and list it in linked_files"),
            "{why}"
        );
        let why = parse_probe("releases 1\nnewline 2\n")
            .refusal(&l, "e.js")
            .unwrap_or_default();
        assert!(why.starts_with("2 names under /srv/app hold a newline"), "{why}");
    }
}
