//! Cancellation on SIGINT/SIGTERM (what a cancelled Actions job sends): the running step is
//! stopped (on the host too, see `remote::WATCHDOG`; the lock and the switch are let finish),
//! then the normal failure path runs (remove the partial release, roll back a switch,
//! release the lock), so a cancelled run leaves the host as a failed one would.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::Notify;

use crate::error::{Error, Result};

#[derive(Clone, Default)]
pub struct Cancel {
    flag: Arc<AtomicBool>,
    notify: Arc<Notify>,
}

/// The process's one [`Cancel`], once installed: signals are process-wide, and code that waits
/// without a step around it (the gates polling GitHub) must stop on them too.
static INSTALLED: OnceLock<Cancel> = OnceLock::new();

impl Cancel {
    /// The installed [`Cancel`], if [`Cancel::install`] ran.
    pub fn installed() -> Option<Cancel> {
        INSTALLED.get().cloned()
    }

    /// Starts listening for SIGINT and SIGTERM.
    pub fn install() -> Self {
        if let Some(c) = INSTALLED.get() {
            return c.clone();
        }
        let cancel = Cancel::default();
        let _ = INSTALLED.set(cancel.clone());
        let c = cancel.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
                return;
            };
            let name = tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
            crate::ui::warn(&format!("{name} received: stopping the current step and cleaning up"));
            c.flag.store(true, Ordering::SeqCst);
            c.notify.notify_waiters();
        });
        cancel
    }

    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Fails naming `step` when a signal came: checked before a step that is not cancelled
    /// midway (a lock, a switch) starts, so none starts after the signal.
    pub fn check(&self, step: &str) -> Result<()> {
        if self.is_cancelled() {
            return Err(Error::failed(format!("{step}: cancelled by signal")));
        }
        Ok(())
    }

    /// Runs `f` unless cancelled before or while it runs.
    pub async fn guard<T>(&self, step: &str, f: impl Future<Output = Result<T>>) -> Result<T> {
        let cancelled = || Error::failed(format!("{step}: cancelled by signal"));
        if self.is_cancelled() {
            return Err(cancelled());
        }
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.is_cancelled() {
            return Err(cancelled());
        }
        tokio::select! {
            r = f => r,
            _ = notified => Err(cancelled()),
        }
    }
}
