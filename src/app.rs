//! What every command does around its own work: connect to the environment's hosts, and
//! publish the finished run everywhere (terminal, Actions outputs and job summary, GitHub,
//! Slack). Commands depend on this module; it depends on none of them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::actions;
use crate::config::{Config, HostSpec, Invocation};
use crate::error::Result;
use crate::remote::AnyTransport;
use crate::remote::local::LocalTransport;
use crate::remote::ssh::SshContext;
use crate::report::Summary;
use crate::ui;

/// The hosts of the environment, connected; [`Fleet::close`] ends the SSH sessions.
pub struct Fleet {
    pub hosts: Vec<(HostSpec, AnyTransport)>,
    _ssh: Option<SshContext>,
}

impl Fleet {
    pub fn borrowed(&self) -> Vec<(HostSpec, &AnyTransport)> {
        self.hosts.iter().map(|(h, t)| (h.clone(), t)).collect()
    }
    pub async fn close(self) {
        for (_, t) in self.hosts {
            t.close().await;
        }
    }
}

pub async fn connect(config: &Config, inv: &Invocation, vars: &BTreeMap<String, String>) -> Result<Fleet> {
    if config.env.local {
        let hosts = config
            .env
            .hosts
            .iter()
            .map(|h| (h.clone(), AnyTransport::Local(LocalTransport::new(&h.to_string()))))
            .collect();
        return Ok(Fleet { hosts, _ssh: None });
    }
    let home = vars.get("HOME").map(PathBuf::from);
    let ctx = SshContext::prepare(&inv.ssh, &config.env, home.as_deref())?;
    let mut fleet = Fleet {
        hosts: Vec::new(),
        _ssh: None,
    };
    for h in &config.env.hosts {
        let step = ui::step(&format!("connect [{h}]"), "");
        match ctx.connect(h).await {
            Ok(t) => {
                step.done("");
                fleet.hosts.push((h.clone(), AnyTransport::Ssh(Box::new(t))));
            }
            Err(e) => {
                step.failed(&e.message);
                fleet.close().await;
                let mut e = e;
                e.message.push_str("; nothing was changed on any host");
                return Err(e);
            }
        }
    }
    fleet._ssh = Some(ctx);
    Ok(fleet)
}

/// Reports a finished run everywhere: terminal, Actions outputs and job summary, GitHub check
/// run and deployment, Slack.
pub async fn publish(summary: &Summary, inv: &Invocation, github: &crate::github::Reporter) {
    finish(summary, inv);
    github.finish(inv, summary).await;
    if let Some(hook) = &inv.slack_webhook
        && let Ok(http) = crate::health::client()
    {
        crate::notify::slack::post(&http, hook.expose(), &crate::notify::slack::payload(summary)).await;
    }
}

fn finish(summary: &Summary, inv: &Invocation) {
    ui::print_foreign(&summary.to_text());
    if let Err(e) = actions::publish(
        summary,
        inv.github.output_file.as_deref(),
        inv.github.summary_file.as_deref(),
    ) {
        ui::warn(&format!("could not write the Actions outputs or job summary: {e}"));
    }
}
