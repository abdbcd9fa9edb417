//! [`Tasks`]: a broker's background tasks and the signal that stops them; [`Shutdown`]: that
//! signal as a task sees it.

use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The background tasks of a broker (its supervisors, one task per subscription) and the
/// shutdown signal they watch.
///
/// Held by the broker's handle, not by the tasks: dropping it (the last handle of the broker
/// went away without [`Broker::close`]) signals shutdown, as [`Tasks::stop`] does, so that no task
/// outlives the broker. The tasks are told to stop rather than aborted, so that each still
/// frees what it holds on its way out (closes its channel, say).
///
/// ```
/// use std::time::Duration;
/// use sidecast_core::supervision::Tasks;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let tasks = Tasks::new();
/// let mut shutdown = tasks.shutdown();
/// tasks.spawn(async move { shutdown.signalled().await });
/// tasks.stop();
/// assert_eq!(tasks.join(Duration::from_secs(1)).await, 0, "every task stopped in time");
/// # }
/// ```
///
/// [`Broker::close`]: crate::Broker::close
#[derive(Debug)]
pub struct Tasks {
    stop: watch::Sender<bool>,
    running: Mutex<Vec<JoinHandle<()>>>,
}

impl Default for Tasks {
    fn default() -> Self {
        Self::new()
    }
}

impl Tasks {
    /// No tasks yet, and no shutdown signalled.
    pub fn new() -> Self {
        Self {
            stop: watch::Sender::new(false),
            running: Mutex::new(Vec::new()),
        }
    }

    fn running(&self) -> MutexGuard<'_, Vec<JoinHandle<()>>> {
        // A poisoned lock only means a panic elsewhere while holding it; the list stays valid.
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The shutdown signal, for a task to watch.
    pub fn shutdown(&self) -> Shutdown {
        Shutdown(self.stop.subscribe())
    }

    /// Spawns `task` on the current tokio runtime and keeps its handle. Handles of tasks that
    /// ended meanwhile (dropped subscriptions) are let go, so that the set does not grow forever.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task);
        let mut running = self.running();
        running.retain(|task| !task.is_finished());
        running.push(handle);
    }

    /// Signals shutdown: every [`Shutdown`] of this set resolves. Idempotent.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Waits, for `within` at most, until every task ended; returns how many are still running
    /// (those stay in the set). Does not signal shutdown by itself: call [`Tasks::stop`] first,
    /// unless the tasks end on their own (a drained connection).
    pub async fn join(&self, within: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + within;
        let tasks = std::mem::take(&mut *self.running());
        let mut late = Vec::new();
        for mut task in tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                late.push(task);
            }
        }
        let count = late.len();
        self.running().extend(late);
        count
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        // The broker's last handle is gone: stop the tasks, as close() would, so nothing leaks.
        self.stop();
    }
}

/// The shutdown signal of a [`Tasks`] set, as one task watches it.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Resolves once shutdown is signalled ([`Tasks::stop`]) or the [`Tasks`] set is dropped;
    /// at once if that happened already. Cancel-safe, so it can be a `select!` branch.
    pub async fn signalled(&mut self) {
        // Err means the sender is gone, i.e. the broker was dropped: shut down as well.
        let _ = self.0.wait_for(|stopped| *stopped).await;
    }

    /// Whether shutdown was signalled (or the set dropped).
    pub fn is_signalled(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stop_signals_every_task_and_join_waits_for_them() {
        let tasks = Tasks::new();
        let early = tasks.shutdown();
        for _ in 0..3 {
            let mut shutdown = tasks.shutdown();
            tasks.spawn(async move { shutdown.signalled().await });
        }
        assert!(!early.is_signalled());
        tasks.stop();
        assert!(early.is_signalled());
        assert_eq!(tasks.join(Duration::from_secs(5)).await, 0);
        assert!(tasks.running().is_empty());
    }

    #[tokio::test]
    async fn join_keeps_the_tasks_that_did_not_stop_in_time() {
        let tasks = Tasks::new();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        tasks.spawn(async move {
            let _ = released.await;
        });
        assert_eq!(tasks.join(Duration::from_millis(10)).await, 1);
        let _ = release.send(());
        assert_eq!(tasks.join(Duration::from_secs(5)).await, 0);
    }

    #[tokio::test]
    async fn finished_tasks_are_let_go_and_dropping_the_set_signals_shutdown() {
        let tasks = Tasks::new();
        tasks.spawn(async {});
        assert_eq!(tasks.join(Duration::from_secs(5)).await, 0);
        tasks.spawn(async {});
        tokio::task::yield_now().await;
        let mut shutdown = tasks.shutdown();
        drop(tasks);
        assert!(shutdown.is_signalled());
        shutdown.signalled().await;
    }
}
