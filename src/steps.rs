//! Running named steps: each gets a log line (or an Actions group) with its duration, can be
//! stopped by a signal, has a time limit (`timeouts`), and leaves a [`StepRecord`] for the
//! summary. A step over its limit is dropped like a cancelled one: the transport's watchdog
//! stops the remote process group, and the caller's failure path runs. Hosts run steps side by
//! side (phases with `parallel` > 1), so the recorder is shared by reference.

use std::cell::RefCell;

use crate::config::Timeouts;
use crate::config::timeouts::text as limit_text;
use crate::error::{Error, Result};
use crate::report::StepRecord;
use crate::signals::Cancel;
use crate::ui;

pub struct Steps<'a> {
    records: RefCell<Vec<StepRecord>>,
    cancel: &'a Cancel,
    timeouts: Timeouts,
}

impl<'a> Steps<'a> {
    pub fn new(cancel: &'a Cancel, records: Vec<StepRecord>) -> Self {
        Steps {
            records: RefCell::new(records),
            cancel,
            timeouts: Timeouts::default(),
        }
    }

    /// Uses the environment's `timeouts` instead of the defaults.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    pub fn cancel(&self) -> &'a Cancel {
        self.cancel
    }

    /// Every step recorded so far, in the order they ended.
    pub fn take(&self) -> Vec<StepRecord> {
        std::mem::take(&mut *self.records.borrow_mut())
    }

    /// Runs one step; a signal stops it with an error naming the step.
    pub async fn run<R>(&self, host: &str, name: &str, detail: &str, f: impl Future<Output = Result<R>>) -> Result<R> {
        self.run_uncancelled(host, name, detail, self.cancel.guard(name, f))
            .await
    }

    /// Like [`Steps::run`] but not stopped by a signal: cleanup must finish, and so must the
    /// lock and the switch (one rename each); the next step then sees the cancellation. The
    /// time limit still applies: a cleanup that hangs must not hang the run.
    pub async fn run_uncancelled<R>(
        &self,
        host: &str,
        name: &str,
        detail: &str,
        f: impl Future<Output = Result<R>>,
    ) -> Result<R> {
        let s = ui::step(&format!("{name} [{host}]"), detail);
        let limit = self.timeouts.limit(name);
        let result = match tokio::time::timeout(limit, f).await {
            Ok(r) => r,
            Err(_) => Err(Error::failed(format!(
                "{name} on {host} exceeded its time limit of {}",
                limit_text(limit)
            ))),
        };
        let (seconds, ok, note) = match &result {
            Ok(_) => (s.done("").as_secs_f64(), true, String::new()),
            Err(e) => (s.failed(&e.message).as_secs_f64(), false, e.message.clone()),
        };
        self.push(host, name, seconds, ok, note);
        result
    }

    /// Like [`Steps::run`] for a step whose result carries a note for the log and summary
    /// (e.g. the install step's "reused node_modules of …").
    pub async fn run_noted<R>(
        &self,
        host: &str,
        name: &str,
        detail: &str,
        f: impl Future<Output = Result<(R, String)>>,
    ) -> Result<R> {
        let s = ui::step(&format!("{name} [{host}]"), detail);
        let limit = self.timeouts.limit(name);
        let result = match tokio::time::timeout(limit, self.cancel.guard(name, f)).await {
            Ok(r) => r,
            Err(_) => Err(Error::failed(format!(
                "{name} on {host} exceeded its time limit of {}",
                limit_text(limit)
            ))),
        };
        let (seconds, ok, note) = match &result {
            Ok((_, note)) => (s.done(note).as_secs_f64(), true, note.clone()),
            Err(e) => (s.failed(&e.message).as_secs_f64(), false, e.message.clone()),
        };
        self.push(host, name, seconds, ok, note);
        result.map(|(r, _)| r)
    }

    /// Records a step that had nothing to do.
    pub fn skipped(&self, host: &str, name: &str, note: &str) {
        ui::info(&format!("✓ {name} [{host}] (skipped: {note})"));
        self.push(host, name, 0.0, true, note.to_string());
    }

    fn push(&self, host: &str, name: &str, seconds: f64, ok: bool, note: String) {
        self.records.borrow_mut().push(StepRecord {
            host: host.to_string(),
            name: name.to_string(),
            seconds,
            ok,
            note,
        });
    }
}
