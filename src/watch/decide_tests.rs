use super::*;
use crate::config::watch;
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
    let bad = judge(&w, &window(probes(40, 0, 2500.0)), &base);
    let good = judge(&w, &window(probes(40, 0, 10.0)), &base);
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
    let j = judge(&w, &window(probes(20, 2, 5.0)), &base);
    assert!(
        j.immediate[0].starts_with("error_rate 10 % at or over immediate 5 %"),
        "{:?}",
        j.immediate
    );
    let j = judge(&w, &window(probes(4, 4, 5.0)), &base);
    assert!(
        j.immediate.iter().any(|m| m == "a: every probe failed (4 of 4)"),
        "{:?}",
        j.immediate
    );
    let mut win = window(probes(20, 0, 5.0));
    host(&mut win, Some(vec![worker("online", 1)]));
    assert!(
        judge(&w, &win, &base).immediate.is_empty(),
        "the reload's own restart is the baseline"
    );
    host(&mut win, Some(vec![worker("online", 3)]));
    let j = judge(&w, &win, &base);
    assert!(j.immediate[0].contains("restarted 2 time(s)"), "{:?}", j.immediate);
    host(&mut win, Some(vec![worker("errored", 1)]));
    assert!(judge(&w, &win, &base).immediate[0].contains("is errored"));
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
        let j = judge(&w, &win, &base);
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
    let j = judge(&w, &win, &BTreeMap::new());
    let get = |m: &str| j.readings.iter().find(|r| r.metric == m).unwrap().level;
    assert_eq!(get("disk"), Level::Critical);
    assert_eq!(get("cpu"), Level::Critical);
    assert_eq!(get("memory"), Level::Ok);
}
