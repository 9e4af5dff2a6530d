//! The post-deploy watch's settings: the `[environments.<env>.watch]` (and `[defaults.watch]`)
//! table, merged key by key, validated into a [`Watch`], plus the environment key `probe_rate`.
//! The defaults are the runbook's numbers; an absent `duration` (or `"0s"`) means no watch.

use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

/// The table as written; unknown keys are errors naming the key.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWatch {
    pub duration: Option<String>,
    pub interval: Option<String>,
    pub initial_delay: Option<String>,
    pub consecutive: Option<i64>,
    pub min_requests: Option<i64>,
    pub error_rate: Option<RawLevels>,
    pub p95: Option<RawLevels>,
    pub memory: Option<RawLevels>,
    pub cpu: Option<RawLevels>,
    pub disk: Option<RawLevels>,
    pub prometheus: Option<RawPrometheus>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLevels {
    pub warning: Option<String>,
    pub critical: Option<String>,
    pub immediate: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrometheus {
    pub url: Option<String>,
    pub error_rate: Option<String>,
    pub p95: Option<String>,
}

impl RawWatch {
    /// This table's keys over the defaults' table, key by key.
    pub fn over(&self, base: &RawWatch) -> RawWatch {
        let b = base.clone();
        RawWatch {
            duration: self.duration.clone().or(b.duration),
            interval: self.interval.clone().or(b.interval),
            initial_delay: self.initial_delay.clone().or(b.initial_delay),
            consecutive: self.consecutive.or(b.consecutive),
            min_requests: self.min_requests.or(b.min_requests),
            error_rate: self.error_rate.clone().or(b.error_rate),
            p95: self.p95.clone().or(b.p95),
            memory: self.memory.clone().or(b.memory),
            cpu: self.cpu.clone().or(b.cpu),
            disk: self.disk.clone().or(b.disk),
            prometheus: self.prometheus.clone().or(b.prometheus),
        }
    }
}

/// Warning / critical (/ immediate) thresholds of one metric, in its unit: a ratio (0–1) for
/// rates and percentages, seconds for latency.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Levels {
    pub warning: f64,
    pub critical: f64,
    pub immediate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Prometheus {
    pub url: String,
    pub error_rate: Option<String>,
    pub p95: Option<String>,
}

/// The validated watch. `duration` zero: no watch at all.
#[derive(Debug, Clone, PartialEq)]
pub struct Watch {
    pub duration: Duration,
    pub interval: Duration,
    pub initial_delay: Duration,
    pub consecutive: u32,
    pub min_requests: u64,
    pub error_rate: Levels,
    pub p95: Levels,
    pub memory: Levels,
    pub cpu: Levels,
    pub disk: Levels,
    pub prometheus: Option<Prometheus>,
    /// Synthetic probes per second per host (`probe_rate = "2/s"`).
    pub probe_rate: f64,
}

/// Accepts `0`, `0s`, `0m`, `0ms` as "no watch"; otherwise a duration as everywhere else.
pub fn duration_or_zero(key: &str, s: &str) -> Result<Duration> {
    let t = s.trim();
    if ["0", "0s", "0m", "0ms", "0h"].contains(&t) {
        return Ok(Duration::ZERO);
    }
    super::values::duration(key, t)
}

/// `--watch DURATION` or the input `watch`: the duration for this run (`0s`: no watch).
pub fn override_duration(given: Option<String>) -> Result<Option<Duration>> {
    given.map(|w| duration_or_zero("watch", &w)).transpose()
}

/// `"0.5%"` → 0.005 (a bare number is a percentage too).
fn percent(key: &str, s: &str) -> Result<f64> {
    let n: f64 = s
        .trim()
        .trim_end_matches('%')
        .trim()
        .parse()
        .map_err(|_| Error::invalid(format!("{key}: {s:?} is not a percentage (e.g. \"2%\")")))?;
    if !(0.0..=100.0).contains(&n) {
        return Err(Error::invalid(format!("{key}: {s:?} must be between 0% and 100%")));
    }
    Ok(n / 100.0)
}

fn seconds(key: &str, s: &str) -> Result<f64> {
    Ok(super::values::duration(key, s)?.as_secs_f64())
}

/// One metric's levels over its defaults; `immediate` only where `allow_immediate`.
fn levels(
    key: &str,
    raw: Option<&RawLevels>,
    default: Levels,
    parse: fn(&str, &str) -> Result<f64>,
    allow_immediate: bool,
) -> Result<Levels> {
    let Some(raw) = raw else { return Ok(default) };
    let one = |name: &str, v: &Option<String>, d: f64| match v {
        Some(s) => parse(&format!("{key}.{name}"), s),
        None => Ok(d),
    };
    let warning = one("warning", &raw.warning, default.warning)?;
    let critical = one("critical", &raw.critical, default.critical)?;
    let immediate = match (&raw.immediate, allow_immediate) {
        (Some(_), false) => {
            return Err(Error::invalid(format!(
                "{key}.immediate: only error_rate has an immediate level"
            )));
        }
        (Some(s), true) => Some(parse(&format!("{key}.immediate"), s)?),
        // A critical level set above the default immediate one raises it: no surprise error.
        (None, _) => default.immediate.map(|i| i.max(critical)),
    };
    if warning > critical {
        return Err(Error::invalid(format!("{key}.warning: above {key}.critical")));
    }
    if immediate.is_some_and(|i| i < critical) {
        return Err(Error::invalid(format!("{key}.immediate: below {key}.critical")));
    }
    Ok(Levels {
        warning,
        critical,
        immediate,
    })
}

fn prometheus(key: &str, raw: Option<&RawPrometheus>) -> Result<Option<Prometheus>> {
    let Some(raw) = raw else { return Ok(None) };
    let url = raw
        .url
        .as_deref()
        .ok_or_else(|| Error::invalid(format!("{key}.url: missing (e.g. \"http://prometheus:9090\")")))?;
    let url = super::values::http_url(&format!("{key}.url"), url)?;
    if raw.error_rate.is_none() && raw.p95.is_none() {
        return Err(Error::invalid(format!(
            "{key}: give error_rate or p95 (a PromQL query), or leave prometheus out"
        )));
    }
    Ok(Some(Prometheus {
        url: url.trim_end_matches('/').to_string(),
        error_rate: raw.error_rate.clone(),
        p95: raw.p95.clone(),
    }))
}

/// `probe_rate = "2/s"` (or `"30/m"`): at most 50 a second, at least one a minute.
fn probe_rate(key: &str, raw: Option<&str>) -> Result<f64> {
    let Some(s) = raw else { return Ok(2.0) };
    let bad = || Error::invalid(format!("{key}: {s:?} is not a rate like \"2/s\" or \"30/m\""));
    let (n, unit) = s.trim().split_once('/').ok_or_else(bad)?;
    let n: f64 = n.trim().parse().map_err(|_| bad())?;
    let per_second = match unit.trim() {
        "s" => n,
        "m" => n / 60.0,
        _ => return Err(bad()),
    };
    if !(1.0 / 60.0..=50.0).contains(&per_second) {
        return Err(Error::invalid(format!("{key}: {s:?} must be between 1/m and 50/s")));
    }
    Ok(per_second)
}

/// Validates the merged table; `key` names it (`<file>: environments.<env>.watch`) and
/// `rate_key` names `probe_rate`.
pub fn parse(key: &str, raw: Option<&RawWatch>, rate_key: &str, rate: Option<&str>) -> Result<Watch> {
    let empty = RawWatch::default();
    let raw = raw.unwrap_or(&empty);
    let k = |name: &str| format!("{key}.{name}");
    let dur = |name: &str, v: &Option<String>, d: u64| match v {
        Some(s) => super::values::duration(&k(name), s),
        None => Ok(Duration::from_secs(d)),
    };
    let count = |name: &str, v: Option<i64>, d: i64, min: i64, max: i64| match v.unwrap_or(d) {
        n if (min..=max).contains(&n) => Ok(n),
        n => Err(Error::invalid(format!(
            "{}: {n} must be between {min} and {max}",
            k(name)
        ))),
    };
    let pct = |w: f64, c: f64| Levels {
        warning: w / 100.0,
        critical: c / 100.0,
        immediate: None,
    };
    let error_default = Levels {
        immediate: Some(0.05),
        ..pct(0.5, 2.0)
    };
    Ok(Watch {
        duration: match &raw.duration {
            Some(s) => duration_or_zero(&k("duration"), s)?,
            None => Duration::ZERO,
        },
        interval: dur("interval", &raw.interval, 10)?,
        initial_delay: match &raw.initial_delay {
            Some(s) => duration_or_zero(&k("initial_delay"), s)?,
            None => Duration::from_secs(30),
        },
        consecutive: count("consecutive", raw.consecutive, 2, 1, 100)? as u32,
        min_requests: count("min_requests", raw.min_requests, 20, 0, 1_000_000)? as u64,
        error_rate: levels(&k("error_rate"), raw.error_rate.as_ref(), error_default, percent, true)?,
        p95: levels(
            &k("p95"),
            raw.p95.as_ref(),
            Levels {
                warning: 1.0,
                critical: 2.0,
                immediate: None,
            },
            seconds,
            false,
        )?,
        memory: levels(&k("memory"), raw.memory.as_ref(), pct(80.0, 90.0), percent, false)?,
        cpu: levels(&k("cpu"), raw.cpu.as_ref(), pct(70.0, 85.0), percent, false)?,
        disk: levels(&k("disk"), raw.disk.as_ref(), pct(80.0, 90.0), percent, false)?,
        prometheus: prometheus(&k("prometheus"), raw.prometheus.as_ref())?,
        probe_rate: probe_rate(rate_key, rate)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> RawWatch {
        toml::from_str(text).expect("parses")
    }

    #[test]
    fn defaults_are_the_runbooks_numbers() {
        let w = parse("w", None, "r", None).unwrap();
        assert_eq!(w.duration, Duration::ZERO, "absent: no watch");
        assert_eq!(w.interval, Duration::from_secs(10));
        assert_eq!(w.initial_delay, Duration::from_secs(30));
        assert_eq!((w.consecutive, w.min_requests), (2, 20));
        assert_eq!(w.error_rate.immediate, Some(0.05));
        assert!((w.error_rate.warning - 0.005).abs() < 1e-12);
        assert_eq!((w.p95.warning, w.p95.critical), (1.0, 2.0));
        assert_eq!((w.memory.warning, w.memory.critical), (0.8, 0.9));
        assert_eq!((w.cpu.warning, w.cpu.critical), (0.7, 0.85));
        assert_eq!(w.probe_rate, 2.0);
    }

    #[test]
    fn keys_parse_and_merge_over_defaults() {
        let base = raw("duration = \"15m\"\nconsecutive = 3\n");
        let env = raw(
            "interval = \"2s\"\nerror_rate = { critical = \"10%\" }\np95 = { warning = \"200ms\", critical = \"400ms\" }\n",
        );
        let w = parse("w", Some(&env.over(&base)), "r", Some("10/s")).unwrap();
        assert_eq!(w.duration, Duration::from_secs(900));
        assert_eq!(w.interval, Duration::from_secs(2));
        assert_eq!(w.consecutive, 3);
        assert!((w.error_rate.critical - 0.1).abs() < 1e-12);
        assert_eq!(w.error_rate.immediate, Some(0.1), "raised to the critical level");
        assert_eq!((w.p95.warning, w.p95.critical), (0.2, 0.4));
        assert_eq!(w.probe_rate, 10.0);
        let zero = parse("w", Some(&raw("duration = \"0s\"\n")), "r", None).unwrap();
        assert_eq!(zero.duration, Duration::ZERO);
    }

    #[test]
    fn defaults_watch_merges_key_by_key_under_the_environments() {
        let text = "[defaults]\nprobe_rate = \"4/s\"\n[defaults.watch]\nduration = \"5m\"\nconsecutive = 3\n\
                    [environments.s.watch]\ninterval = \"5s\"\nconsecutive = 4\n[environments.t]\n";
        let f = crate::config::file::parse("f", text).unwrap();
        let s = f.environments["s"].over(&f.defaults);
        let w = parse("w", s.watch.as_ref(), "r", s.probe_rate.as_deref()).unwrap();
        assert_eq!(
            (w.duration, w.interval, w.consecutive),
            (Duration::from_secs(300), Duration::from_secs(5), 4)
        );
        assert_eq!(w.probe_rate, 4.0);
        let t = f.environments["t"].over(&f.defaults);
        let w = parse("w", t.watch.as_ref(), "r", None).unwrap();
        assert_eq!(
            (w.duration, w.interval, w.consecutive),
            (Duration::from_secs(300), Duration::from_secs(10), 3)
        );
        let e = crate::config::file::parse("f", "[environments.s.watch]\nconsecutiv = 2\n").unwrap_err();
        assert!(
            e.message.contains("consecutiv") && e.message.contains("line 2"),
            "{}",
            e.message
        );
    }

    #[test]
    fn errors_name_the_key() {
        let e = toml::from_str::<RawWatch>("duraton = \"1m\"\n").unwrap_err();
        assert!(e.to_string().contains("duraton"), "{e}");
        let e = toml::from_str::<RawWatch>("cpu = { warn = \"1%\" }\n").unwrap_err();
        assert!(e.to_string().contains("warn"), "{e}");
        for (text, key) in [
            ("duration = \"soon\"\n", "w.duration"),
            ("cpu = { warning = \"95%\", critical = \"90%\" }\n", "w.cpu.warning"),
            ("memory = { critical = \"120%\" }\n", "w.memory.critical"),
            ("p95 = { immediate = \"5s\" }\n", "w.p95.immediate"),
            ("consecutive = 0\n", "w.consecutive"),
            ("prometheus = { error_rate = \"x\" }\n", "w.prometheus.url"),
            ("prometheus = { url = \"http://p:9090\" }\n", "w.prometheus"),
        ] {
            let e = parse("w", Some(&raw(text)), "r", None).unwrap_err();
            assert!(e.message.starts_with(key), "{text}: {}", e.message);
        }
        let e = parse("w", None, "env.probe_rate", Some("fast")).unwrap_err();
        assert!(e.message.starts_with("env.probe_rate"), "{}", e.message);
    }
}
