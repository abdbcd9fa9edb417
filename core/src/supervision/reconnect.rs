//! [`Reconnect`]: the loop that brings one part of a broker back, attempt after attempt.

use std::future::Future;
use std::pin::pin;

use futures_util::future::{Either, select};

use super::{Backoff, HealthBoard, PartId, Shutdown};

/// Reconnects one part of a broker: before each attempt it records the attempt on the board
/// and waits out the backoff, then tries.
///
/// ```
/// use std::time::Duration;
/// use sidecast_core::supervision::{AttemptCount, Backoff, HealthBoard, Reconnect, Tasks};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let board = HealthBoard::new(AttemptCount::OldestOutage);
/// let tasks = Tasks::new();
/// let backoff = Backoff { min: Duration::from_millis(1), max: Duration::from_millis(2) };
/// let mut tries = 0;
/// let connected = Reconnect { board: &board, id: 0, backoff }
///     .run(
///         &mut tasks.shutdown(),
///         || false,
///         || {
///             tries += 1;
///             let result = if tries < 3 { Err("refused") } else { Ok("connection") };
///             async move { result }
///         },
///         |attempt, error| eprintln!("attempt {attempt} failed: {error}"),
///     )
///     .await;
/// assert_eq!(connected, Some("connection"));
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Reconnect<'a> {
    /// Where the attempts are recorded.
    pub board: &'a HealthBoard,
    /// The part being reconnected.
    pub id: PartId,
    /// The delays before the attempts.
    pub backoff: Backoff,
}

impl Reconnect<'_> {
    /// Tries `connect` until it succeeds, with a backoff delay before every attempt (the first
    /// included: the backend just went away). `failed` hears of each failed attempt (the outage
    /// was logged once when it began, so the attempts are detail, for `debug`). `None` once
    /// `shutdown` is signalled, or when `abandoned()` says, after a delay, that nobody needs the
    /// part any more.
    pub async fn run<T, E, Fut>(
        &self,
        shutdown: &mut Shutdown,
        abandoned: impl Fn() -> bool,
        mut connect: impl FnMut() -> Fut,
        mut failed: impl FnMut(u32, &E),
    ) -> Option<T>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        let mut attempt: u32 = 0;
        loop {
            attempt = attempt.saturating_add(1);
            self.board.attempt(self.id, attempt);
            // (futures' select rather than tokio's macro: core keeps its tokio features few.)
            let delay = pin!(tokio::time::sleep(self.backoff.delay(attempt)));
            if let Either::Left(_) = select(pin!(shutdown.signalled()), delay).await {
                return None;
            }
            if abandoned() {
                return None;
            }
            match select(pin!(shutdown.signalled()), pin!(connect())).await {
                Either::Left(_) => return None,
                Either::Right((Ok(connection), _)) => return Some(connection),
                Either::Right((Err(e), _)) => failed(attempt, &e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::BrokerHealth;
    use crate::supervision::{AttemptCount, Lost, Tasks};

    const FAST: Backoff = Backoff {
        min: Duration::from_millis(1),
        max: Duration::from_millis(2),
    };

    #[tokio::test]
    async fn attempts_are_recorded_until_one_succeeds() {
        let board = HealthBoard::new(AttemptCount::OldestOutage);
        assert_eq!(board.lost(3), Lost::Outage);
        let tasks = Tasks::new();
        let mut failures = Vec::new();
        let mut tries = 0;
        let reconnected = Reconnect {
            board: &board,
            id: 3,
            backoff: FAST,
        }
        .run(
            &mut tasks.shutdown(),
            || false,
            || {
                tries += 1;
                let result = if tries < 4 { Err(tries) } else { Ok(()) };
                async move { result }
            },
            |attempt, error| failures.push((attempt, *error)),
        )
        .await;
        assert_eq!(reconnected, Some(()));
        assert_eq!(failures, [(1, 1), (2, 2), (3, 3)]);
        assert!(matches!(
            board.health(),
            BrokerHealth::Reconnecting { attempt: 4, .. }
        ));
    }

    #[tokio::test]
    async fn shutdown_and_abandonment_end_the_attempts() {
        let board = HealthBoard::new(AttemptCount::OldestOutage);
        let tasks = Tasks::new();
        let reconnect = Reconnect {
            board: &board,
            id: 0,
            backoff: FAST,
        };
        let never = || async { Err::<(), _>("refused") };
        let abandoned = reconnect
            .run(&mut tasks.shutdown(), || true, never, |_, _| {})
            .await;
        assert_eq!(abandoned, None);
        tasks.stop();
        let stopped = reconnect
            .run(&mut tasks.shutdown(), || false, never, |_, _| {})
            .await;
        assert_eq!(stopped, None);
    }
}
