//! [`MemoryHistory`]: the in-process [`History`] of a [`super::MemoryBroker`].

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::broker::{
    BrokerError, History, HistoryEntry, HistoryRetention, HistorySender, HistorySubscription,
    Offset, Replay,
};

/// Entries a subscription task copies out of the log per lock.
const BATCH: usize = 256;

/// Every channel's log, shared by the broker's clones and its subscription tasks.
#[derive(Debug)]
pub(crate) struct MemoryHistory {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    retention: HistoryRetention,
    /// Entries a history subscription buffers for its consumer.
    capacity: usize,
    closed: AtomicBool,
    logs: Mutex<HashMap<String, Log>>,
    /// Woken on every append and on close.
    changed: Notify,
}

/// One channel's entries, numbered from 1 without gaps.
#[derive(Debug, Default)]
struct Log {
    entries: VecDeque<Stored>,
    /// The number of the newest entry ever appended (0: none yet). Kept when everything is
    /// trimmed, so that offsets stay known and increasing.
    last: u64,
    /// The number of the newest entry trimmed (0: none yet).
    trimmed: u64,
    /// Payload bytes held.
    bytes: usize,
}

#[derive(Debug)]
struct Stored {
    number: u64,
    at: Instant,
    payload: Bytes,
}

impl Log {
    /// Trims what `retention` no longer allows at `now`.
    fn trim(&mut self, retention: &HistoryRetention, now: Instant) {
        while let Some(oldest) = self.entries.front() {
            let expired = now.duration_since(oldest.at) >= retention.max_age;
            if !expired
                && self.entries.len() <= retention.max_entries
                && self.bytes <= retention.max_bytes
            {
                break;
            }
            self.trimmed = oldest.number;
            self.bytes -= oldest.payload.len();
            self.entries.pop_front();
        }
    }

    /// Up to `limit` entries after number `after` (from the oldest held if those were trimmed).
    fn after(&self, after: u64, limit: usize) -> Vec<HistoryEntry> {
        let skip = self
            .entries
            .front()
            .map_or(0, |oldest| after.saturating_sub(oldest.number - 1));
        self.entries
            .iter()
            .skip(usize::try_from(skip).unwrap_or(usize::MAX))
            .take(limit)
            .map(|stored| HistoryEntry {
                offset: Offset::from_number(stored.number),
                payload: stored.payload.clone(),
            })
            .collect()
    }
}

/// The number an offset stands for: 0 for [`Offset::START`], `None` for a string this history
/// never makes.
fn number_of(offset: &Offset) -> Option<u64> {
    if offset.is_start() {
        Some(0)
    } else {
        offset.to_number()
    }
}

impl MemoryHistory {
    pub(crate) fn new(retention: HistoryRetention, capacity: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                retention,
                capacity,
                closed: AtomicBool::new(false),
                logs: Mutex::new(HashMap::new()),
                changed: Notify::new(),
            }),
        }
    }

    /// Ends every history subscription and refuses later calls.
    pub(crate) fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.changed.notify_waiters();
    }
}

impl Shared {
    fn logs(&self) -> MutexGuard<'_, HashMap<String, Log>> {
        // A poisoned lock only means a panic elsewhere while holding it; the logs stay valid.
        self.logs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn check_open(&self) -> Result<(), BrokerError> {
        if self.closed.load(Ordering::Acquire) {
            Err(BrokerError::Closed)
        } else {
            Ok(())
        }
    }

    /// Completes once the history is closed.
    async fn wait_closed(&self) {
        loop {
            let notified = self.changed.notified();
            if self.closed.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// Copies entries after `after` into `tx` until the consumer leaves or the history closes.
    async fn feed(self: Arc<Self>, channel: String, mut after: u64, tx: HistorySender) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Registered before reading, so that an append between the read and the wait is
            // not missed.
            notified.as_mut().enable();
            if self.closed.load(Ordering::Acquire) {
                return;
            }
            let batch = {
                let mut logs = self.logs();
                match logs.get_mut(&channel) {
                    Some(log) => {
                        log.trim(&self.retention, Instant::now());
                        if after < log.trimmed {
                            tracing::warn!(
                                channel,
                                after,
                                trimmed = log.trimmed,
                                "history subscription starts after trimmed entries"
                            );
                        }
                        log.after(after, BATCH)
                    }
                    None => Vec::new(),
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    () = notified => {}
                    () = tx.closed() => return,
                }
                continue;
            }
            for entry in batch {
                let number = entry.offset.to_number().unwrap_or(after);
                tokio::select! {
                    sent = tx.send(entry) => if !sent { return },
                    () = self.wait_closed() => return,
                }
                after = number;
            }
        }
    }
}

#[async_trait]
impl History for MemoryHistory {
    async fn append(&self, channel: &str, payload: Bytes) -> Result<Offset, BrokerError> {
        let shared = &self.shared;
        shared.check_open()?;
        let offset = {
            let mut logs = shared.logs();
            let log = logs.entry(channel.to_owned()).or_default();
            log.last += 1;
            log.bytes += payload.len();
            log.entries.push_back(Stored {
                number: log.last,
                at: Instant::now(),
                payload,
            });
            log.trim(&shared.retention, Instant::now());
            Offset::from_number(log.last)
        };
        shared.changed.notify_waiters();
        Ok(offset)
    }

    async fn read_after(
        &self,
        channel: &str,
        after: &Offset,
        limit: usize,
    ) -> Result<Replay, BrokerError> {
        let shared = &self.shared;
        shared.check_open()?;
        let Some(after) = number_of(after) else {
            return Ok(Replay::Unknown);
        };
        let mut logs = shared.logs();
        let Some(log) = logs.get_mut(channel) else {
            return Ok(if after == 0 {
                Replay::Entries(Vec::new())
            } else {
                Replay::Unknown
            });
        };
        log.trim(&shared.retention, Instant::now());
        Ok(if after > log.last {
            Replay::Unknown
        } else if after < log.trimmed {
            Replay::Trimmed
        } else {
            Replay::Entries(log.after(after, limit))
        })
    }

    async fn last_offset(&self, channel: &str) -> Result<Option<Offset>, BrokerError> {
        self.shared.check_open()?;
        Ok(self
            .shared
            .logs()
            .get(channel)
            .filter(|log| log.last > 0)
            .map(|log| Offset::from_number(log.last)))
    }

    async fn subscribe_from(
        &self,
        channel: &str,
        after: &Offset,
    ) -> Result<HistorySubscription, BrokerError> {
        let shared = &self.shared;
        shared.check_open()?;
        let Some(after) = number_of(after) else {
            return Err(BrokerError::unknown_offset("memory", after));
        };
        let (tx, subscription) = HistorySubscription::bounded(shared.capacity);
        tokio::spawn(Arc::clone(shared).feed(channel.to_owned(), after, tx));
        Ok(subscription)
    }

    fn retention(&self) -> HistoryRetention {
        self.shared.retention
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn history(retention: HistoryRetention) -> MemoryHistory {
        MemoryHistory::new(retention, 16)
    }

    #[tokio::test(start_paused = true)]
    async fn entries_older_than_max_age_are_trimmed() {
        let history = history(HistoryRetention {
            max_age: Duration::from_secs(1),
            ..HistoryRetention::default()
        });
        let first = history.append("c", Bytes::from_static(b"a")).await.unwrap();
        tokio::time::advance(Duration::from_millis(600)).await;
        let second = history.append("c", Bytes::from_static(b"b")).await.unwrap();
        tokio::time::advance(Duration::from_millis(600)).await;
        assert_eq!(
            history.read_after("c", &Offset::START, 10).await.unwrap(),
            Replay::Trimmed
        );
        let Replay::Entries(entries) = history.read_after("c", &first, 10).await.unwrap() else {
            panic!("the second entry is younger than max_age");
        };
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].offset, second);
        tokio::time::advance(Duration::from_millis(600)).await;
        assert_eq!(
            history.read_after("c", &second, 10).await.unwrap(),
            Replay::Entries(Vec::new()),
            "the newest offset stays known after everything aged out"
        );
        assert_eq!(history.last_offset("c").await.unwrap(), Some(second));
    }

    #[tokio::test]
    async fn the_byte_bound_trims_the_oldest_entries() {
        let history = history(HistoryRetention {
            max_bytes: 10,
            ..HistoryRetention::default()
        });
        let mut offsets = Vec::new();
        for _ in 0..4 {
            offsets.push(history.append("c", Bytes::from(vec![0; 4])).await.unwrap());
        }
        // 16 bytes appended, 10 allowed: the two oldest are gone.
        assert_eq!(
            history.read_after("c", &offsets[0], 10).await.unwrap(),
            Replay::Trimmed
        );
        let Replay::Entries(entries) = history.read_after("c", &offsets[1], 10).await.unwrap()
        else {
            panic!("the two newest entries fit");
        };
        assert_eq!(entries.len(), 2);
    }
}
