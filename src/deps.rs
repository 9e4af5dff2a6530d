//! The install step with dependencies kept once per key (DESIGN.md §7, "Dependencies survive
//! pruning"): the key is the sha256 of the release's lockfile, the host's `node --version` and
//! the `install` command. A complete `.tj-deploy/deps/<key>/node_modules` is hard-linked into
//! the new release instead of running `install`; otherwise `install` runs in the release and
//! its node_modules is stored under the key. Each release names its key in a `DEPS` file, and
//! [`prune`] keeps a key while any release or backup names it, so a rollback — even to a
//! pruned release — never needs the package registry.

use sha2::{Digest, Sha256};

use crate::config::ReleaseId;
use crate::error::Result;
use crate::remote::commands::{self, HookEnv};
use crate::remote::layout::Layout;
use crate::remote::{Mode, Transport};

/// What the host told us about the release's dependencies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The lockfile's name and sha256, when the release has one.
    pub lockfile: Option<(String, String)>,
    /// `node --version` on the host (`none` without node).
    pub node: String,
    /// sha256 of `prisma/schema.prisma`, whose client `install` generates into node_modules.
    pub schema: Option<String>,
}

impl Probe {
    pub fn parse(stdout: &str) -> Self {
        let mut p = Probe {
            lockfile: None,
            node: "none".into(),
            schema: None,
        };
        for line in stdout.lines() {
            let mut w = line.split_whitespace();
            match (w.next(), w.next(), w.next()) {
                (Some("lockfile"), Some(name), Some(sum))
                    if p.lockfile.is_none() && sum.len() == 64 && sum.bytes().all(|b| b.is_ascii_hexdigit()) =>
                {
                    p.lockfile = Some((name.to_string(), sum.to_string()));
                }
                (Some("node"), Some(v), None) => p.node = v.to_string(),
                (Some("schema"), Some(sum), None) if sum.len() == 64 => p.schema = Some(sum.to_string()),
                _ => {}
            }
        }
        p
    }
}

/// The dependency key: what decides that two releases can share node_modules. `None` without
/// a lockfile (an unpinned install may differ every time).
pub fn key(probe: &Probe, install: &str) -> Option<String> {
    let (name, sum) = probe.lockfile.as_ref()?;
    let mut h = Sha256::new();
    let schema = probe.schema.as_deref().unwrap_or("-");
    for part in ["tj-deps-v1", name, sum, &probe.node, install, schema] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    Some(crate::package::hex(&h.finalize()))
}

/// How the install step went, for its note in the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// node_modules of that release (or of an unknown one) was hard-linked in.
    Reused { from: Option<String>, lockfile: String },
    /// `install` ran; its node_modules is now stored under the key (when there is one).
    Installed { stored: bool, why: &'static str },
}

impl Outcome {
    pub fn note(&self) -> String {
        match self {
            Outcome::Reused { from, lockfile } => format!(
                "reused node_modules of {} (lockfile unchanged: {lockfile})",
                from.as_deref().unwrap_or("an earlier release")
            ),
            Outcome::Installed { stored: true, why } => format!("installed ({why}); kept for the next release"),
            Outcome::Installed { stored: false, why } => format!("installed ({why})"),
        }
    }
}

/// Gives the new release its dependencies: reuses stored ones when `reuse` is on and the key
/// matches, else runs `install` (streamed) in the release and stores the result.
pub async fn install<T: Transport>(
    t: &T,
    l: &Layout,
    id: ReleaseId,
    command: &str,
    env: &HookEnv<'_>,
    reuse: bool,
) -> Result<Outcome> {
    let name = t.name().to_string();
    let probe = Probe::parse(
        &t.run(&commands::deps_probe(l, id), Mode::Capture)
            .await?
            .check(&format!("{name}: install (lockfile)"))?
            .stdout,
    );
    let key = key(&probe, command);
    let why = match (&key, reuse) {
        (None, _) => "no lockfile",
        (Some(_), false) => "reuse_dependencies = false",
        (Some(k), true) => {
            let out = t
                .run(&commands::deps_reuse(l, id, k), Mode::Capture)
                .await?
                .check(&format!("{name}: install (reuse node_modules)"))?;
            if let Some(from) = out.stdout.lines().find_map(|l| l.strip_prefix("reused ")) {
                let lockfile = probe.lockfile.map(|(n, _)| n).unwrap_or_default();
                return Ok(Outcome::Reused {
                    from: ReleaseId::from_name(from.trim()).map(|r| r.to_string()),
                    lockfile,
                });
            }
            "no stored node_modules for this lockfile, node, install command and Prisma schema"
        }
    };
    let script = commands::hook(l, "install", command, env);
    t.run(&script, Mode::Stream)
        .await?
        .check(&format!("{name}: install ({command})"))?;
    let (Some(k), Some((_, lock_sum))) = (key, &probe.lockfile) else {
        return Ok(Outcome::Installed { stored: false, why });
    };
    let out = t
        .run(&commands::deps_store(l, id, &k, lock_sum), Mode::Capture)
        .await?
        .check(&format!("{name}: install (store node_modules)"))?;
    let stored = !out.stdout.lines().any(|l| l == "not stored");
    Ok(Outcome::Installed { stored, why })
}

/// Removes stored dependencies that no release or backup on the host names; returns how many.
pub async fn prune<T: Transport>(t: &T, l: &Layout) -> Result<usize> {
    let out = t
        .run(&commands::deps_prune(l), Mode::Capture)
        .await?
        .check(&format!("{}: prune dependencies", t.name()))?;
    Ok(out.stdout.lines().filter(|l| l.starts_with("removed ")).count())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUM: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn probe_parses_lockfile_and_node() {
        let p = Probe::parse(&format!("lockfile package-lock.json {SUM}\nnode v20.19.0\n"));
        assert_eq!(p.lockfile, Some(("package-lock.json".into(), SUM.into())));
        assert_eq!(p.node, "v20.19.0");
        let none = Probe::parse("lockfile package-lock.json \nnode none\n");
        assert_eq!(none.lockfile, None, "an empty sum (hashing failed) is no lockfile");
        assert_eq!(key(&none, "npm ci"), None);
    }

    #[test]
    fn key_changes_with_each_part() {
        let p = Probe::parse(&format!("lockfile package-lock.json {SUM}\nnode v20.19.0\n"));
        let k = key(&p, "npm ci --omit=dev").unwrap();
        assert_eq!(k.len(), 64);
        assert_eq!(key(&p, "npm ci --omit=dev").unwrap(), k, "stable");
        assert_ne!(key(&p, "npm ci").unwrap(), k, "install command");
        let mut other = p.clone();
        other.node = "v22.1.0".into();
        assert_ne!(key(&other, "npm ci --omit=dev").unwrap(), k, "node version");
        let mut other = p.clone();
        other.lockfile = Some(("package-lock.json".into(), SUM.replace('0', "1")));
        assert_ne!(key(&other, "npm ci --omit=dev").unwrap(), k, "lockfile");
    }

    #[test]
    fn notes_say_what_happened() {
        let r = Outcome::Reused {
            from: Some("20261127_101500".into()),
            lockfile: "package-lock.json".into(),
        };
        assert_eq!(
            r.note(),
            "reused node_modules of 20261127_101500 (lockfile unchanged: package-lock.json)"
        );
        assert!(
            Outcome::Installed {
                stored: false,
                why: "no lockfile"
            }
            .note()
            .contains("no lockfile")
        );
    }

    /// The scripts against a real shell: store, reuse by hard links, prune by reference.
    #[test]
    fn store_reuse_and_prune_on_a_real_tree() {
        use crate::config::RemotePath;
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("app");
        let b = dir.path().join("backups");
        let l = Layout::new(
            RemotePath::parse("d", d.to_str().unwrap()).unwrap(),
            RemotePath::parse("b", b.to_str().unwrap()).unwrap(),
        );
        let run = |s: commands::Script| {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(s.text())
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let r1 = ReleaseId::parse("id", "20261127_101500").unwrap();
        let r2 = ReleaseId::parse("id", "20261127_111500").unwrap();
        std::fs::create_dir_all(d.join("releases/20261127_101500/node_modules/next")).unwrap();
        std::fs::write(d.join("releases/20261127_101500/node_modules/next/index.js"), "x").unwrap();
        std::fs::write(d.join("releases/20261127_101500/package-lock.json"), "{}").unwrap();
        std::fs::create_dir_all(d.join("releases/20261127_111500")).unwrap();
        std::fs::write(d.join("releases/20261127_111500/package-lock.json"), "{}").unwrap();

        let p1 = Probe::parse(&run(commands::deps_probe(&l, r1)));
        let p2 = Probe::parse(&run(commands::deps_probe(&l, r2)));
        assert_eq!(p1.lockfile.as_ref().unwrap().0, "package-lock.json");
        let k = key(&p1, "npm ci").unwrap();
        assert_eq!(key(&p2, "npm ci").unwrap(), k, "same lockfile, same key");

        assert_eq!(run(commands::deps_reuse(&l, r2, &k)).trim(), "missing");
        let lock_sum = p1.lockfile.clone().unwrap().1;
        run(commands::deps_store(&l, r1, &k, &lock_sum));
        assert!(d.join(".tj-deploy/deps").join(&k).join("COMPLETE").is_file());
        assert_eq!(run(commands::deps_reuse(&l, r2, &k)).trim(), "reused 20261127_101500");
        let a = std::fs::metadata(d.join("releases/20261127_101500/node_modules/next/index.js")).unwrap();
        let c = std::fs::metadata(d.join("releases/20261127_111500/node_modules/next/index.js")).unwrap();
        assert_eq!(a.ino(), c.ino(), "hard links, not copies");
        assert_eq!(
            std::fs::read_to_string(d.join("releases/20261127_111500/DEPS"))
                .unwrap()
                .trim(),
            k
        );

        // Both releases pruned: only a backup's manifest still names the key.
        std::fs::remove_dir_all(d.join("releases")).unwrap();
        std::fs::create_dir_all(b.join("20261127_111500")).unwrap();
        std::fs::write(b.join("20261127_111500/manifest.json"), format!("{{\"deps\":\"{k}\"}}")).unwrap();
        assert_eq!(run(commands::deps_prune(&l)), "", "kept: a backup names it");
        std::fs::write(
            b.join("20261127_111500/manifest.json"),
            format!("{{\"lockfile\":{{\"name\":\"package-lock.json\",\"sha256\":\"{lock_sum}\"}}}}"),
        )
        .unwrap();
        assert_eq!(run(commands::deps_prune(&l)), "", "kept: a backup names its lockfile");
        std::fs::remove_dir_all(&b).unwrap();
        assert_eq!(run(commands::deps_prune(&l)).trim(), format!("removed {k}"));
        assert!(!d.join(".tj-deploy/deps").join(&k).exists());
    }
}
