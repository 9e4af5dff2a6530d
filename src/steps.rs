//! Running named steps: each gets a log line (or an Actions group) with its duration, can be
//! stopped by a signal, and leaves a [`StepRecord`] for the summary.

use crate::error::Result;
use crate::report::StepRecord;
use crate::signals::Cancel;
use crate::ui;

pub struct Steps<'a> {
    pub records: Vec<StepRecord>,
    cancel: &'a Cancel,
}

impl<'a> Steps<'a> {
    pub fn new(cancel: &'a Cancel, records: Vec<StepRecord>) -> Self {
        Steps { records, cancel }
    }

    /// Runs one step; a signal stops it with an error naming the step.
    pub async fn run<R>(
        &mut self,
        host: &str,
        name: &str,
        detail: &str,
        f: impl Future<Output = Result<R>>,
    ) -> Result<R> {
        let cancel = self.cancel;
        self.run_uncancelled(host, name, detail, cancel.guard(name, f)).await
    }

    /// Like [`Steps::run`] but not stopped by a signal: cleanup must finish, and so must the
    /// lock and the switch (one mkdir, one rename); the next step then sees the cancellation.
    pub async fn run_uncancelled<R>(
        &mut self,
        host: &str,
        name: &str,
        detail: &str,
        f: impl Future<Output = Result<R>>,
    ) -> Result<R> {
        let s = ui::step(&format!("{name} [{host}]"), detail);
        let result = f.await;
        let (seconds, ok, note) = match &result {
            Ok(_) => (s.done("").as_secs_f64(), true, String::new()),
            Err(e) => (s.failed(&e.message).as_secs_f64(), false, e.message.clone()),
        };
        self.records.push(StepRecord {
            host: host.to_string(),
            name: name.to_string(),
            seconds,
            ok,
            note,
        });
        result
    }

    /// Like [`Steps::run`] for a step whose result carries a note for the log and summary
    /// (e.g. the install step's "reused node_modules of …").
    pub async fn run_noted<R>(
        &mut self,
        host: &str,
        name: &str,
        detail: &str,
        f: impl Future<Output = Result<(R, String)>>,
    ) -> Result<R> {
        let cancel = self.cancel;
        let s = ui::step(&format!("{name} [{host}]"), detail);
        let result = cancel.guard(name, f).await;
        let (seconds, ok, note) = match &result {
            Ok((_, note)) => (s.done(note).as_secs_f64(), true, note.clone()),
            Err(e) => (s.failed(&e.message).as_secs_f64(), false, e.message.clone()),
        };
        self.records.push(StepRecord {
            host: host.to_string(),
            name: name.to_string(),
            seconds,
            ok,
            note,
        });
        result.map(|(r, _)| r)
    }

    /// Records a step that had nothing to do.
    pub fn skipped(&mut self, host: &str, name: &str, note: &str) {
        ui::info(&format!("✓ {name} [{host}] (skipped: {note})"));
        self.records.push(StepRecord {
            host: host.to_string(),
            name: name.to_string(),
            seconds: 0.0,
            ok: true,
            note: note.to_string(),
        });
    }
}
