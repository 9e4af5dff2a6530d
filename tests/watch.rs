//! Issue #13: the post-deploy watch on real services (sshd, PostgreSQL, PM2, node, Prometheus).
//! A good release passes a short watch; a release that crashes after its first health checks,
//! one whose error rate climbs and one that turns slow are each rolled back within it; the lock
//! is held during the watch; SIGTERM cuts it short and keeps the release; Prometheus gives
//! numbers, NaN (no data) and, once stopped, a failing source that never rolls back.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{Sandbox, sha};

/// A short watch: probes 5/s per host, 2 s windows, two critical windows in a row roll back.
/// The host figures (this machine is shared and busy) never breach here; decide.rs tests them.
fn watch_config(duration: &str, extra_watch: &str) -> String {
    format!(
        "probe_rate = \"5/s\"\n[environments.staging.watch]\nduration = \"{duration}\"\ninterval = \"2s\"\n\
         initial_delay = \"2s\"\nconsecutive = 2\nmin_requests = 4\n\
         p95 = {{ warning = \"200ms\", critical = \"400ms\" }}\n\
         cpu = {{ warning = \"100%\", critical = \"100%\" }}\nmemory = {{ warning = \"100%\", critical = \"100%\" }}\n\
         disk = {{ warning = \"100%\", critical = \"100%\" }}\n{extra_watch}"
    )
}

fn last_log(sb: &Sandbox) -> serde_json::Value {
    let log = std::fs::read_to_string(sb.deploy_dir.join(".tj-deploy/deployments.log")).unwrap();
    serde_json::from_str(log.lines().last().unwrap()).unwrap()
}

fn bad_count(sb: &Sandbox) -> usize {
    std::fs::read_dir(sb.deploy_dir.join(".tj-deploy/bad"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Deploys a release holding `mode_file` (with `content`) and expects it rolled back by the
/// watch, naming `expect` in the error; v1 serves again and the release is marked bad.
fn rolled_back(sb: &Sandbox, n: u32, mode_file: &str, content: &str, expect: &str) {
    let before = sb.current();
    let bad = bad_count(sb);
    sb.set_app(&format!("{n}.0.0"), false);
    std::fs::write(sb.build_dir.join(mode_file), content).unwrap();
    let t = Instant::now();
    let run = sb.deploy(&sha(n));
    run.expect(1);
    let line = run.error_line();
    assert!(line.contains("watch: ") && line.contains(expect), "{mode_file}: {line}");
    assert!(line.contains("serving again"), "{line}");
    assert!(run.all().contains("watch breached after"), "{}", run.all());
    assert!(
        t.elapsed() < Duration::from_secs(40),
        "{mode_file}: took {:?}",
        t.elapsed()
    );
    assert_eq!(sb.current(), before, "{mode_file}: current went back");
    assert_eq!(
        sb.revision().as_deref(),
        Some(sha(1).as_str()),
        "{mode_file}: v1 serves"
    );
    assert_eq!(bad_count(sb), bad + 1, "{mode_file}: the release is marked BAD_RELEASE");
    assert!(!sb.lock_exists());
    let log = std::fs::read_to_string(sb.deploy_dir.join(".tj-deploy/deployments.log")).unwrap();
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(last["status"], "rolled-back", "{last}");
    assert!(last["watch"]["ending"]["rolled-back"].is_string(), "{last}");
}

#[test]
fn a_good_release_passes_the_watch_and_failing_ones_are_rolled_back() {
    let sb = Sandbox::new("watch");
    sb.write_config(&watch_config("8s", ""));
    let t = Instant::now();
    let run = sb.deploy(&sha(1));
    run.expect(0);
    let out = run.all();
    assert!(out.contains("watch passed"), "{out}");
    assert!(t.elapsed() >= Duration::from_secs(8), "the watch ran its duration");
    for metric in [
        "error_rate: worst 0 %",
        "p95: worst",
        "memory: worst",
        "cpu: worst",
        "disk: worst",
    ] {
        assert!(out.contains(metric), "{metric}: {out}");
    }
    assert!(
        out.contains(": tj-watch#0 online"),
        "per-worker figures reported: {out}"
    );
    // --watch 0s skips it; a bad duration is invalid input.
    let run = support::Run::of(
        sb.cmd(&["deploy", "-e", "staging", "--sha", &sha(1), "--watch", "soon"])
            .output()
            .unwrap(),
    );
    run.expect(2);
    assert!(run.error_line().contains("watch"), "{}", run.stderr);
    let t = Instant::now();
    let run = support::Run::of(
        sb.cmd(&["deploy", "-e", "staging", "--sha", &sha(1), "--watch", "0s"])
            .output()
            .unwrap(),
    );
    run.expect(0);
    assert!(!run.all().contains("watch passed"), "{}", run.all());
    assert!(t.elapsed() < Duration::from_secs(8));

    rolled_back(&sb, 2, "CRASH_AFTER", "3", "PM2 worker");
    rolled_back(&sb, 3, "ERRORS_AFTER", "3", "error_rate");
    rolled_back(&sb, 4, "SLOW_AFTER", "3 600", "p95");
}

#[test]
fn the_lock_is_held_during_the_watch_and_sigterm_keeps_the_release() {
    let sb = Sandbox::new("watchterm");
    sb.deploy(&sha(1)).expect(0);
    sb.write_config(&watch_config("60s", ""));
    sb.set_app("2.0.0", false);
    let running = sb.start_deploy_until(&sha(2), |l| l.starts_with("watch: "));
    let second = sb.deploy(&sha(3));
    second.expect(3);
    assert!(second.error_line().contains("lock"), "{}", second.stderr);
    std::thread::sleep(Duration::from_secs(3));
    running.signal("TERM");
    let (code, rest) = running.finish();
    assert_eq!(code, Some(1), "{rest}");
    assert!(rest.contains("watch cut short by a signal after"), "{rest}");
    assert_eq!(sb.revision().as_deref(), Some(sha(2).as_str()), "the release stays");
    assert!(!sb.lock_exists());
    let log = std::fs::read_to_string(sb.deploy_dir.join(".tj-deploy/deployments.log")).unwrap();
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(last["status"], "success", "{last}");
    assert_eq!(last["watch"]["ending"], "cut-short", "{last}");
}

/// A host whose disk is already over critical before the deploy (a `df` wrapper in the
/// sandbox's hostbin reports 91 %) passes the watch with that said once as a warning; a release
/// that takes it to 97 % (the wrapper sees DISK_GROWS in the live release: 6 points up, still
/// under the 98 % judged absolutely) is rolled back, the message naming the figure from before.
#[test]
fn a_disk_already_over_critical_is_a_warning_and_only_a_clear_rise_rolls_back() {
    let sb = Sandbox::new("watchdisk");
    sb.deploy(&sha(1)).expect(0);
    let hostbin = sb.root.join("hostbin");
    std::fs::create_dir_all(&hostbin).unwrap();
    std::fs::write(
        hostbin.join("df"),
        "#!/bin/sh\nfor a; do d=$a; done\nused=910\n[ -e \"$d/current/DISK_GROWS\" ] && used=970\n\
         echo 'Filesystem 1024-blocks Used Available Capacity Mounted on'\n\
         echo \"/dev/fake 1000 $used $((1000 - used)) 0% /\"\n",
    )
    .unwrap();
    support::sh_ok(&format!("chmod 755 {0} {0}/df", hostbin.display()));
    // The runbook's disk thresholds (80 / 90 %); memory and CPU out of the way (busy machine).
    let config = watch_config("6s", "").replace("disk = { warning = \"100%\", critical = \"100%\" }\n", "");
    assert!(!config.contains("disk"), "{config}");
    sb.write_config(&config);

    sb.set_app("2.0.0", false);
    let run = sb.deploy(&sha(2));
    run.expect(0);
    let out = run.all();
    assert!(out.contains("watch passed"), "{out}");
    let said = "was already over critical 90 % before this deploy";
    assert!(out.contains(&format!("disk 91 % on {}", sb.sshd.host())), "{out}");
    assert_eq!(
        run.stderr.matches(said).count(),
        1,
        "said once while watching: {}",
        run.stderr
    );
    let w = &last_log(&sb)["watch"];
    assert!(w["warnings"].to_string().contains(said), "{w}");
    let disk = w["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == "disk")
        .unwrap();
    assert_eq!(disk["verdict"], "warning", "{disk}");
    assert_eq!(sb.revision().as_deref(), Some(sha(2).as_str()));

    sb.set_app("3.0.0", false);
    std::fs::write(sb.build_dir.join("DISK_GROWS"), "").unwrap();
    let run = sb.deploy(&sha(3));
    run.expect(1);
    let line = run.error_line();
    assert!(
        line.contains("disk 97 % over critical 90 %") && line.contains("up from 91 % before this deploy"),
        "{line}"
    );
    assert_eq!(sb.revision().as_deref(), Some(sha(2).as_str()), "v2 serves again");
    assert_eq!(last_log(&sb)["status"], "rolled-back");
}

/// Prometheus from Debian's package, scraping the sample app every second.
struct Prometheus {
    child: Child,
    port: u16,
}

impl Prometheus {
    fn start(root: &Path, app_port: u16) -> Self {
        let bin = which("prometheus").unwrap_or_else(|| support::missing("prometheus (apt-get install -y prometheus)"));
        let dir = root.join("prometheus");
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("prometheus.yml");
        std::fs::write(
            &conf,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['127.0.0.1:{app_port}']\n"
            ),
        )
        .unwrap();
        let port = support::free_port();
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", conf.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        support::wait_for_addr("127.0.0.1", port, "prometheus", &dir.join("log"));
        Prometheus { child, port }
    }
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
    }
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

#[test]
fn prometheus_numbers_nan_and_a_stopped_server_never_roll_back() {
    let sb = Sandbox::new("watchprom");
    let mut prom = Prometheus::start(&sb.root, sb.app_port);
    // No smoke checks: /api/brokers gets no traffic, so its p95 is NaN (no data).
    let prometheus = format!(
        "prometheus = {{ url = \"http://127.0.0.1:{}\", error_rate = '(sum(rate(http_requests_total{{status=~\"5..\"}}[5s])) or vector(0)) / sum(rate(http_requests_total[5s]))', p95 = 'histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{{route=\"/api/brokers\"}}[5s])))' }}\n",
        prom.port
    );
    // One worker: the sample app's counters are per worker, and Prometheus's keep-alive scrape
    // connection stays on one worker while the probes' connection may stay on another.
    let reload = "reload = \"TJ_INSTANCES=1 pm2 startOrReload ecosystem.config.js --update-env\"";
    sb.write_config(&format!("smoke = []\n{reload}\n{}", watch_config("14s", &prometheus)));
    let running = sb.start_deploy_until(&sha(1), |l| l.starts_with("watch: "));
    std::thread::sleep(Duration::from_secs(8));
    prom.stop();
    let seen = running.seen.clone();
    let (code, rest) = running.finish();
    assert_eq!(code, Some(0), "{seen}\n{rest}");
    assert!(
        rest.contains("prometheus error_rate: http://127.0.0.1:"),
        "stopped: {rest}"
    );
    // The summary goes to stdout, which this harness does not read: the log line has it all.
    let w = &last_log(&sb)["watch"];
    assert_eq!(w["ending"], "passed", "{w}");
    let metric = |name: &str| {
        w["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["metric"] == name)
            .unwrap_or_else(|| panic!("{name} in {w}"))
            .clone()
    };
    let e = metric("prometheus error_rate");
    assert_eq!(e["worst"], 0.0, "a number from Prometheus: {e}");
    assert!(e["inconclusive"].as_u64().unwrap() >= 1, "once stopped, no data: {e}");
    assert!(e["inconclusive"].as_u64() < e["samples"].as_u64(), "{e}");
    let p = metric("prometheus p95");
    assert!(p["worst"].is_null(), "NaN with no traffic is no data: {p}");
    assert_eq!(p["verdict"], "inconclusive", "{p}");
    let notes = w["notes"].to_string();
    assert!(
        notes.contains("prometheus error_rate: http://127.0.0.1:"),
        "reported: {notes}"
    );
    assert_eq!(sb.revision().as_deref(), Some(sha(1).as_str()));
}
