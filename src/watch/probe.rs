//! The watch's synthetic traffic: on every host, `probe_rate` requests a second from the
//! runner, taking turns between `health_url` (a 2xx passes) and each `smoke` check (its own
//! status passes), on one reused client. Each window takes what was answered since the last.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::decide::HostProbes;
use crate::config::SmokeCheck;

/// One target: method, URL and the status that passes (`None`: any 2xx).
#[derive(Debug, Clone)]
pub struct Target {
    pub method: reqwest::Method,
    pub url: String,
    pub status: Option<u16>,
}

/// The health URL, then each smoke check against its origin.
pub fn targets(health_url: &str, smoke: &[SmokeCheck]) -> Vec<Target> {
    let mut t = vec![Target {
        method: reqwest::Method::GET,
        url: health_url.to_string(),
        status: None,
    }];
    let Ok(base) = reqwest::Url::parse(health_url) else {
        return t;
    };
    // Only requests that change nothing are repeated at the probe rate: a POST smoke check
    // replayed for fifteen minutes would be thousands of writes.
    let safe = |m: &reqwest::Method| {
        matches!(
            *m,
            reqwest::Method::GET | reqwest::Method::HEAD | reqwest::Method::OPTIONS
        )
    };
    for s in smoke {
        if let (Ok(method), Ok(url)) = (reqwest::Method::from_bytes(s.method.as_bytes()), base.join(&s.path))
            && safe(&method)
        {
            t.push(Target {
                method,
                url: url.to_string(),
                status: Some(s.status),
            });
        }
    }
    t
}

type Results = Arc<Mutex<BTreeMap<String, HostProbes>>>;

/// Probes running in the background until dropped or [`Probes::stop`].
pub struct Probes {
    results: Results,
    tickers: Vec<JoinHandle<()>>,
}

impl Probes {
    /// Starts `rate` probes a second on each `(host, targets)`; each waits at most `timeout`.
    pub fn start(hosts: Vec<(String, Vec<Target>)>, client: &reqwest::Client, rate: f64, timeout: Duration) -> Probes {
        let results: Results = Arc::default();
        let every = Duration::from_secs_f64(1.0 / rate);
        let tickers = hosts
            .into_iter()
            .map(|(host, targets)| {
                let (client, results) = (client.clone(), results.clone());
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(every);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    for n in 0usize.. {
                        tick.tick().await;
                        let t = targets[n % targets.len()].clone();
                        let (client, results, host) = (client.clone(), results.clone(), host.clone());
                        tokio::spawn(async move {
                            let (ok, seconds) = one(&client, &t, timeout).await;
                            if let Ok(mut r) = results.lock() {
                                let p = r.entry(host).or_default();
                                p.sent += 1;
                                p.failed += u64::from(!ok);
                                p.latencies.push(seconds);
                            }
                        });
                    }
                })
            })
            .collect();
        Probes { results, tickers }
    }

    /// What was answered since the last call, per host.
    pub fn window(&self) -> BTreeMap<String, HostProbes> {
        self.results
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default()
    }

    pub fn stop(&self) {
        for t in &self.tickers {
            t.abort();
        }
    }
}

impl Drop for Probes {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn one(client: &reqwest::Client, t: &Target, timeout: Duration) -> (bool, f64) {
    let started = Instant::now();
    let sent = client.request(t.method.clone(), &t.url).timeout(timeout).send().await;
    let ok = match sent {
        Ok(r) => {
            let code = r.status();
            // Reading the body to the end hands the connection back to the pool.
            let read = r.bytes().await.is_ok();
            read && t.status.map_or(code.is_success(), |s| code.as_u16() == s)
        }
        Err(_) => false,
    };
    (ok, started.elapsed().as_secs_f64())
}
