//! `tj-deploy unlock`: removes a stale deploy lock on every host of an environment, saying
//! whose it was and how old, and logs it in the host's deployments.log. A host that cannot be
//! reached is reported and skipped; the run then ends with exit 1. `--dry-run` only reads the
//! locks and says what it would remove.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::json;

use crate::config::{Config, Invocation};
use crate::error::{Error, Result};
use crate::lock;
use crate::remote::layout::Layout;
use crate::remote::local::LocalTransport;
use crate::remote::ssh::SshContext;
use crate::remote::{AnyTransport, Transport};
use crate::ui;

pub async fn command(config: &Config, inv: &Invocation, vars: &BTreeMap<String, String>) -> Result<()> {
    let l = Layout::new(config.env.deploy_dir.clone(), config.env.backup_dir.clone());
    if inv.dry_run {
        println!(
            "Dry run: unlock {} on {} — nothing will be changed.",
            config.env.name,
            config.env.hosts.len()
        );
    }
    let ssh = if config.env.local {
        None
    } else {
        let home = vars.get("HOME").map(PathBuf::from);
        Some(SshContext::prepare(&inv.ssh, &config.env, home.as_deref())?)
    };
    let mut failed = Vec::new();
    for h in &config.env.hosts {
        let t = match &ssh {
            None => AnyTransport::Local(LocalTransport::new(&h.to_string())),
            Some(ctx) => match ctx.connect(h).await {
                Ok(t) => AnyTransport::Ssh(Box::new(t)),
                Err(e) => {
                    ui::warn(&format!(
                        "{h}: not reached, its lock (if any) is untouched: {}",
                        e.message
                    ));
                    failed.push(h.to_string());
                    continue;
                }
            },
        };
        let done = one(&t, &l, config, inv).await;
        t.close().await;
        if let Err(e) = done {
            ui::warn(&e.message);
            failed.push(h.to_string());
        }
    }
    if failed.is_empty() {
        return Ok(());
    }
    Err(Error::failed(format!(
        "unlock: {} of {} host(s) not done: {} (run unlock again once they are reachable)",
        failed.len(),
        config.env.hosts.len(),
        failed.join(", ")
    )))
}

async fn one<T: Transport>(t: &T, l: &Layout, config: &Config, inv: &Invocation) -> Result<()> {
    if inv.dry_run {
        match lock::show(t, l).await? {
            // The holder comes from the host's owner.json: printed as foreign text.
            Some(held) => ui::print_foreign(&format!(
                "{}: would remove the deploy lock held by {}",
                t.name(),
                held.holder
            )),
            None => println!("{}: no deploy lock is held; nothing to do", t.name()),
        }
        return Ok(());
    }
    let Some(held) = lock::force_remove(t, l).await? else {
        ui::info(&format!("{}: no deploy lock was held", t.name()));
        return Ok(());
    };
    ui::info(&format!(
        "{}: removed the deploy lock held by {}",
        t.name(),
        held.holder
    ));
    let line = json!({
        "kind": "unlock",
        "environment": config.env.name.as_str(),
        "host": t.name(),
        "holder": held.holder,
        "lock": held.owner,
        "actor": inv.actor,
        "run_url": inv.github.run_url(),
        "finished_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "status": "success",
    });
    crate::journal::append(t, l, &line).await;
    Ok(())
}
