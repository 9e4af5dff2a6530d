//! The deploy and rollback pipelines, in phases (DESIGN.md §1, [`crate::plan::Phase`]): lock
//! and inspect every host; prepare every host, `parallel` at once; the database once, on the
//! database host; activate in batches; on failure undo on every host touched. What a run did
//! to each host is one [`Progress`] value, so undo is a `match`.

pub mod activate;
pub mod availability;
pub mod crashloop;
pub mod deploy;
pub mod prepare;
pub mod prune;
pub mod restore;
pub mod rollback;
pub mod target;
pub mod undo;

use std::cell::Cell;

use futures_util::StreamExt;

use crate::config::{Config, HostSpec, Invocation};
use crate::error::{Error, Result};
use crate::lock::LockOwner;
use crate::remote::layout::Layout;
use crate::remote::{Mode, Script, Transport};
use crate::state::{HostState, ReleaseInfo};
use crate::steps::Steps;

/// How far this run got on one host: what undo has to take back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Progress {
    Untouched,
    /// Our lock is held; nothing else changed.
    Locked,
    /// A release directory of this run exists (maybe partial); `current` unchanged.
    Prepared,
    /// `current` may point at this run's release (a switch that failed may still have happened).
    Switched,
}

/// One host in a run.
pub struct HostRun<T> {
    pub spec: HostSpec,
    pub t: T,
    pub state: HostState,
    pub progress: Progress,
    /// The host's HTTP client for `health_from = "host"`, detected once per run.
    pub http_tool: Option<crate::remote::commands::HttpTool>,
}

impl<T: Transport> HostRun<T> {
    pub fn new(spec: HostSpec, t: T) -> Self {
        HostRun {
            spec,
            t,
            state: HostState::default(),
            progress: Progress::Untouched,
            http_tool: None,
        }
    }
    pub fn name(&self) -> String {
        self.t.name().to_string()
    }
    /// The release that was live when the run inspected this host.
    pub fn previous(&self) -> Option<&ReleaseInfo> {
        self.state.current.and_then(|c| self.state.release(c))
    }
    /// Runs `script`, turning a non-zero exit into an error naming the host and `what`.
    pub async fn exec(&self, script: &Script, mode: Mode, what: &str) -> Result<crate::remote::Output> {
        let what = format!("{}: {what}", self.t.name());
        self.t.run(script, mode).await?.check(&what)
    }
}

/// What every phase needs: the validated config, the invocation, the remote layout and the
/// step recorder.
pub struct Ctx<'a> {
    pub config: &'a Config,
    pub inv: &'a Invocation,
    pub layout: Layout,
    pub steps: &'a Steps<'a>,
    pub http: &'a reqwest::Client,
    pub owner: LockOwner,
}

impl Ctx<'_> {
    pub fn env_name(&self) -> &str {
        self.config.env.name.as_str()
    }
}

/// Runs `f` on every host, at most `parallel` at once. After the first failure no further host
/// starts; those already running finish (cutting them off would leave half-made state behind
/// the failure path). Returns every failure, joined into one error.
pub async fn each_host<'h, T, F, Fut>(hosts: &'h mut [HostRun<T>], parallel: usize, f: F) -> Result<()>
where
    T: 'h,
    F: Fn(&'h mut HostRun<T>) -> Fut,
    Fut: Future<Output = Result<()>> + 'h,
{
    let failed = Cell::new(false);
    let failed = &failed;
    let f = &f;
    let errors: Vec<Error> = futures_util::stream::iter(hosts.iter_mut())
        .map(|h| async move {
            if failed.get() {
                return Ok(());
            }
            let r = f(h).await;
            if r.is_err() {
                failed.set(true);
            }
            r
        })
        .buffer_unordered(parallel.max(1))
        .filter_map(|r| async move { r.err() })
        .collect()
        .await;
    join_errors(errors)
}

/// Activates hosts in batches of `parallel`: a batch runs side by side, and a failure in it
/// stops the next batch from starting.
pub async fn in_batches<'h, T, F, Fut>(hosts: &'h mut [HostRun<T>], parallel: usize, f: F) -> Result<()>
where
    T: 'h,
    F: Fn(&'h mut HostRun<T>) -> Fut,
    Fut: Future<Output = Result<()>> + 'h,
{
    for batch in hosts.chunks_mut(parallel.max(1)) {
        let results = futures_util::future::join_all(batch.iter_mut().map(&f)).await;
        join_errors(results.into_iter().filter_map(|r| r.err()).collect())?;
    }
    Ok(())
}

/// One error for several hosts' failures; the kind of the first (a refusal stays a refusal).
fn join_errors(mut errors: Vec<Error>) -> Result<()> {
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => {
            let message = errors.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join("; ");
            let mut first = errors.remove(0);
            first.message = message;
            Err(first)
        }
    }
}

/// Takes the lock on every host, one after the other: all or none (a held lock refuses the
/// run, and the locks already taken are released by the caller's finish).
pub async fn lock_all<T: Transport>(ctx: &Ctx<'_>, hosts: &mut [HostRun<T>]) -> Result<()> {
    let l = &ctx.layout;
    for h in hosts.iter_mut() {
        let name = h.name();
        // A signal before a lock: take no more.
        ctx.steps.cancel().check("lock")?;
        // Short and state-changing: a signal waits for it to finish (the next step sees the
        // cancellation), so a lock is never taken behind the cleanup's back.
        let acquired = ctx
            .steps
            .run_uncancelled(
                &name,
                crate::plan::StepKind::Lock.name(),
                &l.lock(),
                crate::lock::acquire(&h.t, l, &ctx.owner, ctx.env_name()),
            )
            .await;
        if let Err(e) = acquired {
            // A step cut off (time limit) may have taken the lock after all: release it by our
            // token, which leaves anyone else's alone.
            if e.kind != crate::error::Kind::Refused {
                let _ = crate::lock::release(&h.t, l, &ctx.owner.token).await;
            }
            return Err(e);
        }
        h.progress = Progress::Locked;
    }
    Ok(())
}

/// Releases our lock on every host that holds it; a failure is a warning naming `unlock`.
pub async fn unlock_all<T: Transport>(ctx: &Ctx<'_>, hosts: &[HostRun<T>]) {
    for h in hosts.iter().filter(|h| h.progress > Progress::Untouched) {
        let release = crate::lock::release(&h.t, &ctx.layout, &ctx.owner.token);
        let name = h.name();
        let unlock = crate::plan::StepKind::Unlock.name();
        if let Err(e) = ctx
            .steps
            .run_uncancelled(&name, unlock, &ctx.layout.lock(), release)
            .await
        {
            crate::ui::warn(&format!("{e}; clear it with `tj-deploy unlock -e {}`", ctx.env_name()));
        }
    }
}
