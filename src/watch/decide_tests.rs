use super::*;
use crate::config::watch;
use crate::watch::baseline::Baseline;
use crate::watch::sample::Worker;

fn cfg() -> Watch {
    let raw: watch::RawWatch = toml::from_str("min_requests = 10\nconsecutive = 2\n").unwrap();
    watch::parse("w", Some(&raw), "r", None).unwrap()
}

fn probes(sent: u64, failed: u64, ms: f64) -> HostProbes {
    HostProbes {
        sent,
        failed,
        latencies: vec![ms / 1000.0; sent as usize],
    }
}

fn window(p: HostProbes) -> Window {
    let mut w = Window::default();
    w.probes.insert("a".into(), p);
    w
}

fn worker(status: &str, restarts: i64) -> Worker {
    Worker {
        name: "app".into(),
        id: 0,
        status: status.into(),
        restarts,
        unstable: 0,
        memory: 1,
        cpu: 0.0,
    }
}

fn host(w: &mut Window, workers: Option<Vec<Worker>>) {
    let s = HostSample {
        workers,
        memory: Some(0.5),
        cpu_ticks: None,
        disk: Some(0.95),
    };
    w.hosts.insert("a".into(), Ok(s));
}

#[test]
fn levels_and_percentile() {
    let l = cfg().error_rate;
    assert_eq!(level(0.001, &l), Level::Ok);
    assert_eq!(level(0.005, &l), Level::Ok, "warning is over 0.5 %");
    assert_eq!(level(0.006, &l), Level::Warning);
    assert_eq!(level(0.02, &l), Level::Warning);
    assert_eq!(level(0.021, &l), Level::Critical);
    assert_eq!(level(0.05, &l), Level::Immediate, "at the threshold counts");
    assert_eq!(p95(&[]), None);
    let v: Vec<f64> = (1..=100).map(f64::from).collect();
    assert_eq!(p95(&v), Some(95.0));
    assert_eq!(p95(&[f64::NAN, 3.0]), Some(3.0));
    assert_eq!(Unit::Ratio.show(0.005), "0.5 %");
    assert_eq!(Unit::Seconds.show(2.0), "2000 ms");
}

#[test]
fn one_critical_sample_is_not_a_breach_two_in_a_row_are() {
    let w = cfg();
    let mut tracks = Vec::new();
    let base = BTreeMap::new();
    let bad = judge(&w, &window(probes(40, 0, 2500.0)), &base, &Baseline::default());
    let good = judge(&w, &window(probes(40, 0, 10.0)), &base, &Baseline::default());
    assert!(bad.immediate.is_empty());
    assert_eq!(track(&mut tracks, &bad, 2), None, "one noisy sample");
    assert_eq!(track(&mut tracks, &good, 2), None);
    assert_eq!(track(&mut tracks, &bad, 2), None, "the streak restarted");
    let msg = track(&mut tracks, &bad, 2).expect("two in a row");
    assert!(msg.starts_with("p95 2500 ms over critical 2000 ms"), "{msg}");
    let p = tracks.iter().find(|t| t.metric == "p95").unwrap();
    assert_eq!((p.samples, p.worst, p.verdict), (4, Some(2.5), Level::Critical));
    let e = tracks.iter().find(|t| t.metric == "error_rate").unwrap();
    assert_eq!((e.verdict, e.worst), (Level::Ok, Some(0.0)));
}

#[test]
fn immediate_reasons() {
    let w = cfg();
    let base = BTreeMap::from([("a".to_string(), BTreeMap::from([(0, 1)]))]);
    let j = judge(&w, &window(probes(20, 2, 5.0)), &base, &Baseline::default());
    assert!(
        j.immediate[0].starts_with("error_rate 10 % at or over immediate 5 %"),
        "{:?}",
        j.immediate
    );
    let j = judge(&w, &window(probes(4, 4, 5.0)), &base, &Baseline::default());
    assert!(
        j.immediate.iter().any(|m| m == "a: every probe failed (4 of 4)"),
        "{:?}",
        j.immediate
    );
    let mut win = window(probes(20, 0, 5.0));
    host(&mut win, Some(vec![worker("online", 1)]));
    assert!(
        judge(&w, &win, &base, &Baseline::default()).immediate.is_empty(),
        "the reload's own restart is the baseline"
    );
    host(&mut win, Some(vec![worker("online", 3)]));
    let j = judge(&w, &win, &base, &Baseline::default());
    assert!(j.immediate[0].contains("restarted 2 time(s)"), "{:?}", j.immediate);
    host(&mut win, Some(vec![worker("errored", 1)]));
    assert!(judge(&w, &win, &base, &Baseline::default()).immediate[0].contains("is errored"));
}

#[test]
fn no_data_and_few_requests_are_inconclusive_never_a_breach() {
    let w = cfg();
    let mut tracks = Vec::new();
    let base = BTreeMap::new();
    let mut win = window(probes(3, 2, 9000.0));
    win.prometheus.push(("prometheus error_rate", Ok(None)));
    win.prometheus
        .push(("prometheus p95", Err("connection refused".into())));
    win.hosts.insert("a".into(), Err("ssh: timeout".into()));
    for _ in 0..5 {
        let j = judge(&w, &win, &base, &Baseline::default());
        assert!(j.immediate.is_empty(), "{:?}", j.immediate);
        assert!(
            j.notes.iter().any(|n| n.contains("connection refused")),
            "{:?}",
            j.notes
        );
        assert_eq!(track(&mut tracks, &j, 2), None);
    }
    assert!(tracks.iter().all(|t| t.verdict == Level::Inconclusive), "{tracks:?}");
    assert!(tracks.iter().all(|t| t.inconclusive == 5));
}

#[test]
fn host_metrics_are_judged_at_the_worst_host() {
    let w = cfg();
    let mut win = window(probes(20, 0, 5.0));
    host(&mut win, Some(vec![worker("online", 0)]));
    win.cpu.insert("a".into(), Some(0.9));
    let j = judge(&w, &win, &BTreeMap::new(), &Baseline::default());
    let get = |m: &str| j.readings.iter().find(|r| r.metric == m).unwrap().level;
    assert_eq!(get("disk"), Level::Critical);
    assert_eq!(get("cpu"), Level::Critical);
    assert_eq!(get("memory"), Level::Ok);
}

/// A window with each host's memory and disk, and CPU busy where given.
fn figures(hosts: &[(&str, f64, f64, Option<f64>)]) -> Window {
    let mut w = window(probes(20, 0, 5.0));
    for (name, memory, disk, cpu) in hosts {
        let s = HostSample {
            workers: Some(vec![worker("online", 0)]),
            memory: Some(*memory),
            cpu_ticks: None,
            disk: Some(*disk),
        };
        w.hosts.insert(name.to_string(), Ok(s));
        w.cpu.insert(name.to_string(), *cpu);
    }
    w
}

/// Tracks `windows` one after another; the breach, if any, and the window it came in.
fn watch(w: &Watch, before: &Baseline, windows: &[Window]) -> (Vec<Track>, Option<(usize, String)>) {
    let mut tracks = Vec::new();
    for (i, win) in windows.iter().enumerate() {
        let j = judge(w, win, &BTreeMap::new(), before);
        assert!(j.immediate.is_empty(), "{:?}", j.immediate);
        if let Some(b) = track(&mut tracks, &j, w.consecutive) {
            return (tracks, Some((i, b)));
        }
    }
    (tracks, None)
}

#[test]
fn a_host_already_over_critical_before_the_deploy_is_a_warning_said_once_not_a_rollback() {
    let w = cfg();
    let mut before = Baseline::default();
    before.fill(&figures(&[("a", 0.5, 0.93, Some(0.2))]));
    let lines = before.over(&w);
    assert_eq!(
        lines,
        vec![
            "disk 93 % on a was already over critical 90 % before this deploy: not held against the release \
             unless it goes over critical and rises by more than 5 points, or reaches 98 %"
        ]
    );
    assert!(before.over(&w).is_empty(), "said once");
    // 93, 94, 96, 97 %: over critical all along, never more than 5 points over the figure before.
    let windows: Vec<Window> = [0.93, 0.94, 0.96, 0.97, 0.93]
        .iter()
        .map(|d| figures(&[("a", 0.5, *d, Some(0.2))]))
        .collect();
    let (tracks, breach) = watch(&w, &before, &windows);
    assert_eq!(breach, None);
    let disk = tracks.iter().find(|t| t.metric == "disk").unwrap();
    assert_eq!((disk.verdict, disk.worst), (Level::Warning, Some(0.97)));
    let j = judge(&w, &windows[0], &BTreeMap::new(), &before);
    let r = j.readings.iter().find(|r| r.metric == "disk").unwrap();
    assert_eq!(
        (r.level, r.before, r.host.as_deref()),
        (Level::Warning, Some(0.93), Some("a"))
    );
    // Without the figure from before, the same windows roll back (today's absolute rule).
    let (_, breach) = watch(&w, &Baseline::default(), &windows);
    assert_eq!(breach.map(|b| b.0), Some(1));
}

#[test]
fn a_release_that_makes_a_host_clearly_worse_is_rolled_back() {
    let w = cfg();
    let mut before = Baseline::default();
    before.fill(&figures(&[("a", 0.85, 0.91, Some(0.86))]));
    assert_eq!(
        before.over(&w).len(),
        3,
        "memory and CPU over warning, disk over critical"
    );
    // Disk 91 → 97 %: more than 5 points up and over critical, twice in a row.
    let windows: Vec<Window> = [0.97, 0.97]
        .iter()
        .map(|d| figures(&[("a", 0.85, *d, Some(0.86))]))
        .collect();
    let (_, breach) = watch(&w, &before, &windows);
    let (i, msg) = breach.expect("clearly worse");
    assert_eq!(i, 1, "consecutive still applies");
    assert_eq!(
        msg,
        "disk 97 % over critical 90 % on a (up from 91 % before this deploy) in 2 samples in a row"
    );
    // Memory 85 % (over warning) → 89 %: a warning; → 91 %: over critical by 6 points: critical.
    let level = |m: f64, cpu: f64, metric: &str| {
        let j = judge(&w, &figures(&[("a", m, 0.93, Some(cpu))]), &BTreeMap::new(), &before);
        j.readings.iter().find(|r| r.metric == metric).unwrap().level
    };
    assert_eq!(level(0.89, 0.86, "memory"), Level::Warning);
    assert_eq!(level(0.91, 0.86, "memory"), Level::Critical);
    // CPU is noisier: 86 → 95 % (9 points) is a warning, → 97 % (11 points) critical.
    assert_eq!(level(0.85, 0.95, "cpu"), Level::Warning);
    assert_eq!(level(0.85, 0.97, "cpu"), Level::Critical);
}

#[test]
fn host_metrics_fine_before_the_deploy_keep_their_absolute_thresholds() {
    let w = cfg();
    let mut before = Baseline::default();
    // Host a was over critical before; host b was fine and goes over critical with the release.
    before.fill(&figures(&[("a", 0.5, 0.95, Some(0.1)), ("b", 0.5, 0.6, Some(0.1))]));
    assert_eq!(before.over(&w).len(), 1);
    let windows = vec![figures(&[("a", 0.5, 0.95, Some(0.1)), ("b", 0.5, 0.92, Some(0.1))]); 2];
    let (_, breach) = watch(&w, &before, &windows);
    let (_, msg) = breach.expect("b went over critical");
    assert_eq!(msg, "disk 92 % over critical 90 % on b in 2 samples in a row");
    // App metrics are never judged against a baseline.
    let j = judge(&w, &window(probes(40, 0, 2500.0)), &BTreeMap::new(), &before);
    let p95 = j.readings.iter().find(|r| r.metric == "p95").unwrap();
    assert_eq!((p95.level, p95.before), (Level::Critical, None));
}

#[test]
fn critical_stays_reachable_at_or_over_98_percent_whatever_the_baseline() {
    let w = cfg();
    let mut before = Baseline::default();
    // One noisy second at 92 % CPU before the switch; memory and disk already at 96 %.
    before.fill(&figures(&[("a", 0.96, 0.96, Some(0.92))]));
    let level = |m: f64, d: f64, cpu: f64, metric: &str| {
        let j = judge(&w, &figures(&[("a", m, d, Some(cpu))]), &BTreeMap::new(), &before);
        let r = j.readings.iter().find(|r| r.metric == metric).unwrap().clone();
        (r.level, r.before)
    };
    // Under 98 %: judged against the figure from before (within the margin: a warning).
    assert_eq!(level(0.5, 0.5, 0.97, "cpu"), (Level::Warning, Some(0.92)));
    assert_eq!(level(0.97, 0.5, 0.1, "memory"), (Level::Warning, Some(0.96)));
    // At or over 98 %: the absolute thresholds, though within the margin of the figure before.
    assert_eq!(level(0.5, 0.5, 0.98, "cpu"), (Level::Critical, None));
    assert_eq!(level(0.99, 0.5, 0.1, "memory"), (Level::Critical, None));
    assert_eq!(level(0.5, 0.985, 0.1, "disk"), (Level::Critical, None));
    let windows = vec![figures(&[("a", 0.5, 0.5, Some(0.99))]); 2];
    let (_, breach) = watch(&w, &before, &windows);
    assert_eq!(
        breach.map(|b| b.1).as_deref(),
        Some("cpu 99 % over critical 85 % on a in 2 samples in a row")
    );
}

#[test]
fn a_prometheus_error_rate_at_or_over_immediate_rolls_back_at_once() {
    let w = cfg();
    let mut win = window(probes(20, 0, 5.0));
    win.prometheus.push(("prometheus error_rate", Ok(Some(0.06))));
    let j = judge(&w, &win, &BTreeMap::new(), &Baseline::default());
    assert_eq!(
        j.immediate,
        vec!["prometheus error_rate 6 % at or over immediate 5 % (from Prometheus)"]
    );
    let mut tracks = Vec::new();
    let breach = track(&mut tracks, &j, 2);
    assert_eq!(breach.as_deref(), Some(j.immediate[0].as_str()), "one sample is enough");
    // Over critical but under immediate: consecutive windows still decide.
    let mut win = window(probes(20, 0, 5.0));
    win.prometheus.push(("prometheus error_rate", Ok(Some(0.03))));
    let j = judge(&w, &win, &BTreeMap::new(), &Baseline::default());
    assert!(j.immediate.is_empty(), "{:?}", j.immediate);
    assert_eq!(track(&mut Vec::new(), &j, 2), None);
}
