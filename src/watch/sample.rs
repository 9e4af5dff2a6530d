//! One host's sample, parsed from the output of `remote::commands::watch_sample`: the PM2
//! workers (`pm2 jlist`, read from the first `[`), host memory used (1 − MemAvailable/MemTotal),
//! the CPU counters of `/proc/stat` (busy share computed between two samples) and the disk
//! use of `deploy_dir`. A section that cannot be read is `None`: no data, never a breach.

use serde_json::Value;

/// One PM2 process.
#[derive(Debug, Clone, PartialEq)]
pub struct Worker {
    pub name: String,
    pub id: i64,
    pub status: String,
    pub restarts: i64,
    /// PM2's count of restarts that came before `min_uptime` (0 where PM2 gives none).
    pub unstable: i64,
    pub memory: u64,
    pub cpu: f64,
}

/// Everything one SSH command returned for a host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostSample {
    /// `None`: `pm2 jlist` gave no list.
    pub workers: Option<Vec<Worker>>,
    /// Memory used, 0–1.
    pub memory: Option<f64>,
    /// (busy, total) jiffies since boot.
    pub cpu_ticks: Option<(u64, u64)>,
    /// Disk used of `deploy_dir`'s filesystem, 0–1.
    pub disk: Option<f64>,
}

/// The output's `@@tj-watch <name>` sections, in order (a name may repeat).
fn sections(output: &str) -> Vec<(&str, String)> {
    let mut sections: Vec<(&str, String)> = Vec::new();
    for line in output.lines() {
        if let Some(name) = line.strip_prefix(crate::remote::commands::SECTION) {
            sections.push((name.trim(), String::new()));
        } else if let Some((_, text)) = sections.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    sections
}

/// Splits the output into its sections and parses each. `deploy_dir` picks the workers
/// started from it (`pm_cwd` under it) when PM2 runs other apps too.
pub fn parse(output: &str, deploy_dir: &str) -> HostSample {
    let sections = sections(output);
    let get = |n: &str| {
        sections
            .iter()
            .find(|(s, _)| *s == n)
            .map(|(_, t)| t.as_str())
            .unwrap_or("")
    };
    HostSample {
        workers: workers(get("pm2"), deploy_dir),
        memory: memory(get("meminfo")),
        cpu_ticks: cpu_ticks(get("stat")),
        disk: disk(get("df")),
    }
}

/// The output of `commands::host_figures`: memory and disk in a sample without workers, and
/// the CPU busy share over each interval between its successive `stat` sections.
pub fn figures(output: &str) -> (HostSample, Vec<f64>) {
    let sections = sections(output);
    let get = |n: &str| sections.iter().find(|(s, _)| *s == n).map_or("", |(_, t)| t.as_str());
    let ticks: Vec<Option<(u64, u64)>> = sections
        .iter()
        .filter(|(s, _)| *s == "stat")
        .map(|(_, t)| cpu_ticks(t))
        .collect();
    let busy = ticks.windows(2).filter_map(|p| cpu_busy(p[0], p[1])).collect();
    let s = HostSample {
        workers: None,
        memory: memory(get("meminfo")),
        cpu_ticks: None,
        disk: disk(get("df")),
    };
    (s, busy)
}

/// Every process in `pm2 jlist` output (cut or not), each with whether it was started from
/// under `deploy_dir`. `None`: no list in the text.
fn listed(text: &str, deploy_dir: &str) -> Option<Vec<(Worker, bool)>> {
    // Other output ("[PM2] Spawning PM2 daemon…") can come first: the list is the first `[`
    // from which a JSON array parses.
    let list: Vec<Value> = text.match_indices('[').find_map(|(i, _)| {
        serde_json::Deserializer::from_str(&text[i..])
            .into_iter::<Vec<Value>>()
            .next()?
            .ok()
    })?;
    let all = list
        .iter()
        .map(|p| {
            let env = &p["pm2_env"];
            let cwd = env["pm_cwd"].as_str().unwrap_or("");
            let ours = cwd == deploy_dir || cwd.starts_with(&format!("{deploy_dir}/"));
            let w = Worker {
                name: p["name"].as_str().unwrap_or("?").to_string(),
                id: p["pm_id"].as_i64().unwrap_or(-1),
                status: env["status"].as_str().unwrap_or("unknown").to_string(),
                restarts: env["restart_time"].as_i64().unwrap_or(0),
                unstable: env["unstable_restarts"].as_i64().unwrap_or(0),
                memory: p["monit"]["memory"].as_u64().unwrap_or(0),
                cpu: p["monit"]["cpu"].as_f64().unwrap_or(0.0),
            };
            (w, ours)
        })
        .collect();
    Some(all)
}

/// The workers in `pm2 jlist` output (cut or not): those started from under `deploy_dir`, or
/// every process when none was. `None`: no list in the text.
pub fn workers(text: &str, deploy_dir: &str) -> Option<Vec<Worker>> {
    let all = listed(text, deploy_dir)?;
    let any_ours = all.iter().any(|(_, o)| *o);
    Some(
        all.into_iter()
            .filter(|(_, o)| *o || !any_ours)
            .map(|(w, _)| w)
            .collect(),
    )
}

/// Only the workers started from under `deploy_dir`, never another app's (the crash-loop check
/// must not blame a neighbour). `None`: no list in the text.
pub fn own_workers(text: &str, deploy_dir: &str) -> Option<Vec<Worker>> {
    let all = listed(text, deploy_dir)?;
    Some(all.into_iter().filter(|(_, o)| *o).map(|(w, _)| w).collect())
}

fn memory(text: &str) -> Option<f64> {
    let field = |name: &str| -> Option<f64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    let (total, available) = (field("MemTotal:")?, field("MemAvailable:")?);
    (total > 0.0).then(|| (1.0 - available / total).clamp(0.0, 1.0))
}

/// `cpu  user nice system idle iowait irq softirq steal …`: idle + iowait are not busy.
fn cpu_ticks(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let n: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    if n.len() < 4 {
        return None;
    }
    let total: u64 = n.iter().take(8).sum();
    let idle = n[3] + n.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// The busy share between two counter readings.
pub fn cpu_busy(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> Option<f64> {
    let ((b0, t0), (b1, t1)) = (before?, after?);
    let dt = t1.checked_sub(t0).filter(|d| *d > 0)?;
    Some((b1.saturating_sub(b0) as f64 / dt as f64).clamp(0.0, 1.0))
}

/// `df -P -k`: `fs blocks used available capacity% mount`.
fn disk(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| !l.trim().is_empty())?;
    let f: Vec<&str> = line.split_whitespace().collect();
    let used: f64 = f.get(2)?.parse().ok()?;
    let avail: f64 = f.get(3)?.parse().ok()?;
    (used + avail > 0.0).then(|| used / (used + avail))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "@@tj-watch meminfo
MemTotal:        1000 kB
MemFree:          100 kB
MemAvailable:     250 kB
@@tj-watch stat
cpu  100 0 100 700 100 0 0 0 0 0
@@tj-watch df
/dev/sda1 1000 600 400 60% /
@@tj-watch pm2
[PM2] Spawning PM2 daemon
[{\"name\":\"app\",\"pm_id\":0,\"monit\":{\"memory\":52428800,\"cpu\":3.5},\"pm2_env\":{\"status\":\"online\",\"restart_time\":2,\"pm_cwd\":\"/srv/app/current\"}},
 {\"name\":\"other\",\"pm_id\":1,\"monit\":{\"memory\":1,\"cpu\":0},\"pm2_env\":{\"status\":\"errored\",\"restart_time\":9,\"pm_cwd\":\"/srv/other\"}}]
";

    #[test]
    fn parses_every_section() {
        let s = parse(OUT, "/srv/app");
        assert_eq!(s.memory, Some(0.75));
        assert_eq!(s.cpu_ticks, Some((200, 1000)));
        assert_eq!(s.disk, Some(0.6));
        let w = s.workers.unwrap();
        assert_eq!(w.len(), 1, "only the app started from deploy_dir: {w:?}");
        assert_eq!(
            (w[0].status.as_str(), w[0].restarts, w[0].memory),
            ("online", 2, 52428800)
        );
        // No worker from deploy_dir: every process counts.
        assert_eq!(parse(OUT, "/elsewhere").workers.unwrap().len(), 2);
        // Without that fallback, for the crash-loop check.
        let pm2 = OUT.split("@@tj-watch pm2\n").nth(1).unwrap();
        assert_eq!(own_workers(pm2, "/srv/app").unwrap().len(), 1);
        assert_eq!(own_workers(pm2, "/elsewhere"), Some(Vec::new()));
    }

    #[test]
    fn figures_before_the_switch_give_one_cpu_reading_per_second() {
        let out = "@@tj-watch meminfo\nMemTotal: 1000 kB\nMemAvailable: 250 kB\n@@tj-watch df\n/dev/sda1 1000 600 400 60% /\n\
                   @@tj-watch stat\ncpu  100 0 100 700 100 0 0 0\n@@tj-watch stat\ncpu  190 0 100 710 100 0 0 0\n\
                   @@tj-watch stat\ncpu  200 0 100 790 110 0 0 0\n";
        let (s, busy) = figures(out);
        assert_eq!((s.memory, s.disk, s.workers), (Some(0.75), Some(0.6), None));
        assert_eq!(busy, vec![0.9, 0.1]);
        assert_eq!(figures("@@tj-watch stat\ncpu  1 0 1 1\n").1, Vec::<f64>::new());
    }

    #[test]
    fn missing_sources_are_no_data() {
        let s = parse("@@tj-watch meminfo\n@@tj-watch pm2\npm2 jlist failed\n", "/srv/app");
        assert_eq!(s, HostSample::default());
        assert_eq!(cpu_busy(Some((200, 1000)), Some((700, 2000))), Some(0.5));
        assert_eq!(cpu_busy(Some((200, 1000)), Some((200, 1000))), None, "no time passed");
        assert_eq!(cpu_busy(None, Some((1, 2))), None);
    }
}
