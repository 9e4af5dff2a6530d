//! Dry runs of the commands that change hosts besides `deploy` (whose plan lives in
//! `deploy::plan`): `rollback --dry-run` reads each host (state and backup manifests, never a
//! write) to show which backup and release the real run would pick and every step it would
//! take. Nothing here writes to a host, locks included.

use std::collections::BTreeMap;

use crate::app;
use crate::backup;
use crate::config::{Config, Invocation, RollbackTarget};
use crate::error::Result;
use crate::pipeline::rollback::{Target, choose};
use crate::remote::Transport;
use crate::remote::layout::Layout;
use crate::state::{self, HostState};

/// `tj-deploy rollback --dry-run` (or input `dry-run: true`): the plan, exit 0, no change.
pub async fn rollback(config: &Config, inv: &Invocation, vars: &BTreeMap<String, String>) -> Result<()> {
    let l = Layout::new(config.env.deploy_dir.clone(), config.env.backup_dir.clone());
    println!(
        "Dry run: rollback {} on {} — nothing will be changed.",
        config.app, config.env.name
    );
    if let Some(expected) = &config.env.confirm_rollback
        && inv.confirm.as_deref() != Some(expected.as_str())
    {
        println!("note: the real run needs --confirm {expected:?} (input 'confirm'); without it, it is refused");
    }
    let fleet = app::connect(config, inv, vars).await?;
    let mut to = inv.to;
    let mut result = Ok(());
    for (_, t) in &fleet.hosts {
        let read = async {
            let state = state::inspect(t, &l, None).await?;
            let manifests = backup::manifests(t, &l).await?;
            let target = choose(t.name(), to, &state, &manifests)?;
            Ok::<_, crate::error::Error>((state, target))
        };
        match read.await {
            Ok((state, target)) => {
                to = RollbackTarget::Id(target.backup);
                for (i, line) in host_plan(config, inv, &l, t.name(), &state, &target).iter().enumerate() {
                    crate::ui::print_foreign(&format!("{:>3}. {line}", i + 1));
                }
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    fleet.close().await;
    result
}

/// The steps a real rollback would take on one host.
fn host_plan(
    config: &Config,
    inv: &Invocation,
    l: &Layout,
    host: &str,
    state: &HostState,
    target: &Target,
) -> Vec<String> {
    // From the host's manifest: only hex digits reach the terminal.
    let commit: String = match &target.commit {
        Some(c) => c.chars().filter(char::is_ascii_hexdigit).take(7).collect(),
        None => "unknown".into(),
    };
    let mut plan = vec![format!(
        "[{host}] target  backup {} → release {} (commit {commit}){}",
        target.backup,
        target.release,
        if state.lock_held {
            "; a deploy lock is held now, so the real run would be refused"
        } else {
            ""
        }
    )];
    plan.push(format!("[{host}] lock    {}", l.lock()));
    plan.push(format!(
        "[{host}] backup  safety backup of the live release{} → {}/<new id>/",
        if inv.restore_database { " and the database" } else { "" },
        config.env.backup_dir
    ));
    if state.release(target.release).is_some_and(|r| r.revision.is_some()) {
        plan.push(format!(
            "[{host}] restore skipped: release {} is on disk",
            target.release
        ));
    } else {
        plan.push(format!(
            "[{host}] restore {} from {}/app.tar.gz (sha256 checked)",
            l.release(target.release),
            l.backup(target.backup)
        ));
    }
    plan.push(format!(
        "[{host}] switch  {} → releases/{} (atomic rename)",
        l.current(),
        target.release
    ));
    if let Some(left) = state.current.filter(|c| *c != target.release) {
        plan.push(format!("[{host}] mark    release {left} BAD_RELEASE"));
    }
    if inv.restore_database {
        plan.push(format!(
            "[{host}] restore database from {}/db.dump (data written since is lost)",
            l.backup(target.backup)
        ));
    }
    if let Some(cmd) = &config.env.reload {
        plan.push(format!("[{host}] reload  {cmd}"));
    }
    plan.push(format!(
        "[{host}] verify  {} healthy with revision {commit}",
        config.env.health_url
    ));
    plan.push(format!("[{host}] unlock  and log to {}", l.log()));
    plan
}
