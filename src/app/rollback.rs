//! `tj-deploy rollback`: the confirmation the environment asks for, then the rollback
//! pipeline ([`crate::pipeline::rollback`]) on the connected hosts, and the report. A dry run
//! ([`super::dryrun`]) shows which backup would be restored and changes nothing.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::app::{self, Fleet};
use crate::config::{Config, Invocation};
use crate::error::{Error, Result};
use crate::health;
use crate::lock::LockOwner;
use crate::pipeline::{self, Ctx, rollback::Rollback};
use crate::plan::{Plan, RollbackPlan};
use crate::signals::Cancel;
use crate::steps::Steps;

/// `tj-deploy rollback`.
pub async fn command(config: &Config, inv: &Invocation, vars: &BTreeMap<String, String>) -> Result<()> {
    if inv.dry_run {
        return super::dryrun::rollback(config, inv, vars).await;
    }
    if let Some(expected) = &config.env.confirm_rollback
        && inv.confirm.as_deref() != Some(expected.as_str())
    {
        return Err(Error::refused(format!(
            "confirm: rolling back {} requires --confirm {:?} (input 'confirm'){}; nothing was changed",
            config.env.name,
            expected,
            if inv.confirm.is_some() {
                ", and the text given differs"
            } else {
                ""
            }
        )));
    }
    let cancel = Cancel::install();
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let fleet: Fleet = app::connect(config, inv, vars).await?;
    let http = health::client()?;
    let steps = Steps::new(&cancel, Vec::new()).with_timeouts(config.env.timeouts.clone());
    let mut github = crate::github::Reporter::new(inv)?;
    let to = match inv.to {
        crate::config::RollbackTarget::Latest => "latest".to_string(),
        crate::config::RollbackTarget::Id(id) => id.to_string(),
    };
    let plan = Plan::rollback(
        config,
        &RollbackPlan {
            to: &to,
            restore_database: inv.restore_database,
        },
    );
    let ctx = Ctx {
        config,
        inv,
        layout: super::backups::layout(config),
        steps: &steps,
        http: &http,
        owner: LockOwner::new(inv, "rollback", config.env.name.as_str(), None, started_at),
    };
    let r = Rollback {
        to: inv.to,
        restore_database: inv.restore_database,
        plan: &plan,
        started,
        started_at,
    };
    let (summary, error) = pipeline::rollback::run(&ctx, r, fleet.borrowed(), &mut github).await;
    fleet.close().await;
    app::publish(&summary, inv, &github).await;
    match error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
