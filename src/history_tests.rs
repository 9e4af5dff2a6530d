use super::*;

fn line(kind: &str, id: &str, status: &str, start: &str, end: &str, previous: Option<&str>) -> String {
    serde_json::json!({
        "kind": kind, "id": id, "commit": format!("{:0<40}", id.replace('_', "")), "status": status,
        "actor": "ana", "started_at": start, "finished_at": end, "previous": previous,
    })
    .to_string()
}

/// A hand-made month: 7 deploys in the window (2 failed, 1 rolled back, 1 undone by a manual
/// rollback), one restart, one refused run, one deploy before the window, noise lines.
/// (kind, id, status, start, end, previous) of each run.
type Row = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
);

const MONTH: [Row; 11] = [
    (
        "deploy",
        "20251220_100000",
        "success",
        "2025-12-20T10:00:00Z",
        "2025-12-20T10:05:00Z",
        None,
    ),
    (
        "deploy",
        "20260105_100000",
        "success",
        "2026-01-05T10:00:00Z",
        "2026-01-05T10:05:00Z",
        None,
    ),
    (
        "deploy",
        "20260110_100000",
        "failure",
        "2026-01-10T10:00:00Z",
        "2026-01-10T10:02:00Z",
        None,
    ),
    (
        "deploy",
        "20260110_110000",
        "success",
        "2026-01-10T11:00:00Z",
        "2026-01-10T11:04:00Z",
        None,
    ),
    (
        "deploy",
        "20260115_090000",
        "success",
        "2026-01-15T09:00:00Z",
        "2026-01-15T09:06:00Z",
        None,
    ),
    (
        "rollback",
        "20260115_093000",
        "success",
        "2026-01-15T09:30:00Z",
        "2026-01-15T09:33:00Z",
        Some("20260115_090000"),
    ),
    (
        "deploy",
        "20260120_120000",
        "rolled-back",
        "2026-01-20T12:00:00Z",
        "2026-01-20T12:10:00Z",
        None,
    ),
    (
        "deploy",
        "20260121_120000",
        "success",
        "2026-01-21T12:00:00Z",
        "2026-01-21T12:05:00Z",
        None,
    ),
    (
        "deploy",
        "20260122_000000",
        "refused",
        "2026-01-22T00:00:00Z",
        "2026-01-22T00:00:01Z",
        None,
    ),
    (
        "restart",
        "20260123_080000",
        "success",
        "2026-01-23T08:00:00Z",
        "2026-01-23T08:00:20Z",
        None,
    ),
    (
        "deploy",
        "20260125_100000",
        "failure",
        "2026-01-25T10:00:00Z",
        "2026-01-25T10:01:00Z",
        None,
    ),
];

fn month_lines() -> Vec<String> {
    MONTH
        .iter()
        .map(|(k, id, st, a, b, p)| line(k, id, st, a, b, *p))
        .collect()
}

fn month() -> Vec<Run> {
    let both = month_lines();
    let a = format!(
        "{}\n{{\"kind\":\"unlock\",\"host\":\"a\"}}\nnot json\n",
        both.join("\n")
    );
    let b = both.join("\n");
    let (mut runs, skipped) = parse("a", &a);
    assert_eq!(skipped, 1, "the torn line is skipped, the unlock line ignored");
    runs.extend(parse("b", &b).0);
    dedupe(runs)
}

fn until() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-31T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

#[test]
fn dedupes_by_id_across_hosts() {
    let runs = month();
    assert_eq!(runs.len(), 11);
    assert_eq!(runs[0].hosts, vec!["a".to_string(), "b".to_string()]);
    assert_eq!(runs[1].duration_secs(), 300);
}

#[test]
fn stats_over_a_known_month_give_the_hand_computed_figures() {
    let s = stats(&month(), Duration::days(30), until());
    assert_eq!(s.deploys, 7, "refused and out-of-window runs are not deploys");
    assert_eq!(
        (s.failed_deploys, s.rolled_back_deploys, s.undone_by_rollback),
        (2, 1, 1)
    );
    assert_eq!((s.rollbacks, s.restarts), (1, 1));
    assert_eq!(s.change_failure_rate, Some(4.0 / 7.0));
    assert!((s.deploys_per_day - 7.0 / 30.0).abs() < 1e-9);
    assert!((s.deploys_per_week - 49.0 / 30.0).abs() < 1e-9);
    // Restores: 62 min (failed → next deploy), 3 min (manual rollback), 23 h 55 min (rolled back
    // → next successful deploy); the last failure is not restored yet.
    assert_eq!(
        s.time_to_restore,
        Spread {
            count: 3,
            median_seconds: Some(3720.0),
            p90_seconds: Some(86_100)
        }
    );
    assert_eq!(s.unrestored, 1);
    assert_eq!(
        s.deploy_duration,
        Spread {
            count: 7,
            median_seconds: Some(300.0),
            p90_seconds: Some(600)
        }
    );
}

#[test]
fn an_empty_window_has_no_rate() {
    let s = stats(&month(), Duration::days(3), until());
    assert_eq!(s.deploys, 0);
    assert_eq!(s.change_failure_rate, None);
    assert_eq!(s.time_to_restore.median_seconds, None);
}

#[test]
fn spread_takes_the_middle_and_nearest_rank() {
    assert_eq!(spread(vec![4, 1, 3, 2]).median_seconds, Some(2.5));
    assert_eq!(spread((1..=10).collect()).p90_seconds, Some(9));
    assert_eq!(spread((1..=11).collect()).p90_seconds, Some(10));
    assert_eq!(spread(vec![7]).p90_seconds, Some(7));
}

#[test]
fn periods_parse() {
    assert_eq!(window("since", "30d"), Ok(Duration::days(30)));
    assert_eq!(window("since", "2w"), Ok(Duration::weeks(2)));
    assert_eq!(window("since", "12h"), Ok(Duration::hours(12)));
    assert!(window("since", "0d").is_err());
    assert!(window("since", "3x").is_err());
    assert_eq!(human(3720.0), "1h 02m");
}

#[test]
fn lead_time_runs_from_each_shipped_commit_to_its_deploy() {
    let runs = month();
    let shipped = shipped(&runs, Duration::days(30), until());
    // Successful deploys in the window, each after the commit of the one before.
    assert_eq!(shipped.len(), 4, "{shipped:?}");
    assert!(shipped[0].0.is_some(), "the deploy before the window gives the base");
    let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
    let done = t("2026-01-10T12:00:00Z");
    let s = lead_time(&[
        (done, vec![t("2026-01-10T11:00:00Z"), t("2026-01-10T09:00:00Z")]),
        (done, vec![t("2026-01-10T11:30:00Z")]),
    ]);
    assert_eq!(
        s,
        Spread {
            count: 3,
            median_seconds: Some(3600.0),
            p90_seconds: Some(10_800)
        }
    );
}
