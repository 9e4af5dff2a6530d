//! `tj-deploy logs`: PM2's logs of the app on every host (the app names come from evaluating
//! the live release's ecosystem file), each line prefixed with its host. Lines are merged in
//! time order when PM2 writes timestamps (`time: true` or `log_date_format`); otherwise each
//! host's lines are shown in order under a header naming it (DESIGN.md §7 "Logs order").
//! `--follow` streams every host's new lines until interrupted.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;

use crate::config::{Config, Invocation};
use crate::error::{Error, Result};
use crate::remote::commands::{self, HookEnv};
use crate::remote::layout::Layout;
use crate::remote::{Mode, Transport};
use crate::{ecosystem, state, ui};

/// One log line as PM2 printed it, without colours, and its time when it carries one.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub at: Option<NaiveDateTime>,
    pub text: String,
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte.
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The time PM2 wrote in front of a message (`2026-01-18T14:30:00: …` with `time: true`, or
/// `2026-01-18 14:30:00 …` from a `log_date_format` like `YYYY-MM-DD HH:mm:ss`).
fn stamp(message: &str) -> Option<NaiveDateTime> {
    let head = message.get(..19)?;
    NaiveDateTime::parse_from_str(head, "%Y-%m-%dT%H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(head, "%Y-%m-%d %H:%M:%S"))
        .ok()
}

/// Parses `pm2 logs --nostream` output: PM2's own header lines dropped, `--grep` applied to
/// what remains.
pub fn parse(stdout: &str, grep: Option<&str>) -> Vec<Line> {
    stdout
        .lines()
        .map(strip_ansi)
        .filter(|l| {
            let t = l.trim();
            let header = t.ends_with(" lines:") && t.contains('/');
            !(t.is_empty() || t.starts_with("[TAILING]") || header)
        })
        .filter(|l| grep.is_none_or(|g| l.contains(g)))
        .map(|l| {
            // `0|name  | message`: the time starts the message.
            let message = l.split_once(" | ").map_or(l.as_str(), |(_, m)| m);
            Line {
                at: stamp(message.trim_start()),
                text: l.clone(),
            }
        })
        .collect()
}

/// The hosts' lines as printed: merged by time when every line has one, else per host.
pub fn render(hosts: &[(String, Vec<Line>)]) -> String {
    let all_timed = hosts.iter().all(|(_, ls)| ls.iter().all(|l| l.at.is_some()));
    let mut out = String::new();
    if all_timed {
        let mut merged: Vec<(NaiveDateTime, usize, &str, &str)> = hosts
            .iter()
            .enumerate()
            .flat_map(|(i, (h, ls))| {
                ls.iter()
                    .filter_map(move |l| Some((l.at?, i, h.as_str(), l.text.as_str())))
            })
            .collect();
        // Stable: a host's lines of the same second keep their order.
        merged.sort_by_key(|(at, i, _, _)| (*at, *i));
        for (_, _, h, text) in merged {
            out.push_str(&format!("{h} │ {text}\n"));
        }
        return out;
    }
    for (h, ls) in hosts {
        out.push_str(&format!(
            "== {h} ({} lines; no timestamps, so not merged) ==\n",
            ls.len()
        ));
        for l in ls {
            out.push_str(&format!("{h} │ {}\n", l.text));
        }
    }
    out
}

/// The PM2 app names of the live release's ecosystem file; the config's `app` when it cannot
/// be evaluated (said in a warning).
async fn app_names<T: Transport>(t: &T, l: &Layout, config: &Config) -> Result<Vec<String>> {
    let st = state::inspect(t, l, None).await?;
    let Some(live) = st.current else {
        return Err(Error::failed(format!(
            "{}: no live release (`current`), so no app logs",
            t.name()
        )));
    };
    let revision = st.release(live).and_then(|r| r.revision.clone()).unwrap_or_default();
    let env = HookEnv {
        environment: config.env.name.as_str(),
        release: live,
        revision: &revision,
    };
    let file = config.env.reload.as_deref().and_then(ecosystem::file_from_reload);
    if let Some(file) = file {
        let eval = commands::ecosystem_eval(l, &file, ecosystem::EVAL_JS, &env);
        if let Ok(out) = t.run(&eval, Mode::Capture).await
            && let Ok(apps) = ecosystem::parse(&out.stdout)
        {
            let names: Vec<String> = apps.into_iter().filter_map(|a| a.name).collect();
            if !names.is_empty() {
                return Ok(names);
            }
        }
    }
    ui::warn(&format!(
        "{}: the ecosystem file of the live release gave no app names; showing PM2 app {:?}",
        t.name(),
        config.app
    ));
    Ok(vec![config.app.clone()])
}

pub async fn command(config: &Config, inv: &Invocation, vars: &BTreeMap<String, String>) -> Result<()> {
    let l = Layout::new(config.env.deploy_dir.clone(), config.env.backup_dir.clone());
    let o = &inv.ops;
    let lines = o.lines.unwrap_or(50);
    let (fleet, mut down) = super::connect_reachable(config, inv, vars).await?;
    // A host down (or without a live release) is said and skipped: the others' logs still show.
    let mut read = Vec::new();
    for (h, t) in &fleet.hosts {
        match app_names(t, &l, config).await {
            Ok(names) => {
                let grep = o.follow.then_some(o.grep.as_deref()).flatten();
                read.push((h, t, commands::pm2_logs(&names, lines, o.err, o.follow, grep)));
            }
            Err(e) => down.push((h.clone(), super::without_host(h, &e.message).to_string())),
        }
    }
    for (h, e) in &down {
        ui::warn(&format!("{h}: no logs from this host: {e}"));
    }
    let total = config.env.hosts.len();
    if o.follow {
        ui::info("following the logs of every host; stop with Ctrl-C");
        let runs = read.iter().map(|(_, t, s)| t.run(s, Mode::Stream));
        let results = futures_util::future::join_all(runs).await;
        fleet.close().await;
        for r in results {
            r?;
        }
        return super::not_read("logs", total, &down);
    }
    let mut per_host = Vec::new();
    for (h, t, s) in &read {
        match t
            .run(s, Mode::Capture)
            .await
            .and_then(|o| o.check(&format!("{h}: pm2 logs")))
        {
            Ok(out) => per_host.push((h.to_string(), parse(&out.stdout, o.grep.as_deref()))),
            Err(e) => {
                ui::warn(&e.message);
                down.push(((*h).clone(), super::without_host(h, &e.message).to_string()));
            }
        }
    }
    fleet.close().await;
    // What the app logged: foreign text.
    ui::print_foreign(render(&per_host).trim_end());
    super::not_read("logs", total, &down)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMED: &str = "\u{1b}[1m\u{1b}[90m[TAILING] Tailing last 3 lines for [tj] process\u{1b}[39m\n\
        \u{1b}[90m/pm2/logs/tj-out-0.log last 3 lines:\u{1b}[39m\n\
        \u{1b}[32m0|tj  | \u{1b}[39m2026-01-18T14:30:02: listening\n\
        \u{1b}[32m0|tj  | \u{1b}[39m2026-01-18T14:30:05: GET /api/health\n\n";

    #[test]
    fn headers_and_colours_go_and_times_are_read() {
        let ls = parse(TIMED, None);
        assert_eq!(ls.len(), 2, "{ls:?}");
        assert_eq!(ls[0].text, "0|tj  | 2026-01-18T14:30:02: listening");
        assert_eq!(ls[0].at.map(|t| t.to_string()).as_deref(), Some("2026-01-18 14:30:02"));
        assert_eq!(parse(TIMED, Some("health")).len(), 1);
    }

    #[test]
    fn timed_hosts_merge_in_order_untimed_ones_stay_apart() {
        let b = parse("0|tj | 2026-01-18T14:30:03: b-line\n", None);
        let merged = render(&[("a".into(), parse(TIMED, None)), ("b".into(), b)]);
        let order: Vec<&str> = merged.lines().map(|l| l.split(' ').next().unwrap_or("")).collect();
        assert_eq!(order, ["a", "b", "a"], "{merged}");
        let plain = render(&[
            ("a".into(), parse("0|tj | hello\n", None)),
            ("b".into(), parse(TIMED, None)),
        ]);
        assert!(
            plain.starts_with("== a (1 lines; no timestamps, so not merged) ==\na │ 0|tj | hello\n== b"),
            "{plain}"
        );
    }
}
