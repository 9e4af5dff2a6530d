//! Dry runs of the commands that change hosts besides `deploy`: `rollback --dry-run` reads each
//! host (state and backup manifests, never a write) to show which backup and release the real
//! run would pick, then prints the [`Plan`] the rollback pipeline runs. Nothing here writes to
//! a host, locks included.

use std::collections::BTreeMap;

use crate::app;
use crate::backup;
use crate::config::{Config, Invocation, RollbackTarget};
use crate::error::Result;
use crate::pipeline::rollback::{Target, choose};
use crate::plan::{Plan, RollbackPlan};
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
                crate::ui::print_foreign(&target_line(t.name(), &state, &target));
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    fleet.close().await;
    result?;
    // The same plan value the rollback pipeline runs, step by step.
    let to = match inv.to {
        RollbackTarget::Latest => "latest".to_string(),
        RollbackTarget::Id(id) => id.to_string(),
    };
    let plan = Plan::rollback(
        config,
        &RollbackPlan {
            to: &to,
            restore_database: inv.restore_database,
        },
    );
    print!("{}", plan.render());
    Ok(())
}

/// What the rollback would pick on one host: the backup, its release, and whether the release
/// is on disk or comes back from the backup's package.
fn target_line(host: &str, state: &HostState, target: &Target) -> String {
    // From the host's manifest: only hex digits reach the terminal.
    let commit: String = match &target.commit {
        Some(c) => c.chars().filter(char::is_ascii_hexdigit).take(7).collect(),
        None => "unknown".into(),
    };
    let on_disk = state.release(target.release).is_some_and(|r| r.revision.is_some());
    format!(
        "[{host}] backup {} → release {} (commit {commit}), {}{}",
        target.backup,
        target.release,
        if on_disk {
            "on disk"
        } else {
            "restored from the backup's package"
        },
        if state.lock_held {
            "; a deploy lock is held now, so the real run would be refused"
        } else {
            ""
        }
    )
}
