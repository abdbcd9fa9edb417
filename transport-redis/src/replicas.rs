//! Appends acknowledged by replicas (`broker.min_replicas`, decision 30): [`Acker`] owns a
//! connection of its own on which appends are pipelined and followed by one `WAIT`, which
//! acknowledges every write made on that connection before it.
//!
//! `WAIT` blocks the connection it is sent on until the replicas answer or its time-out ends, so
//! it never runs on the shared publish connection (every publish and history read behind it would
//! stall). Appends that arrive while a `WAIT` is pending queue up and go out together in the next
//! batch, so one `WAIT` serves many appends and throughput does not fall to one append per
//! replica round trip.
//!
//! `WAIT` counts the replicas of the server it is sent to, so on a Redis Cluster each stream's
//! appends go through a connection of their own to the primary of the stream's slot (found again
//! after a failure); elsewhere one connection to the server (the master) serves every stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use redis::Value;
use redis::aio::MultiplexedConnection;
use sidecast_core::BrokerError;
use sidecast_core::supervision::{Shutdown, Tasks};
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;

use crate::connection::RedisState;
use crate::error;

/// Appends one batch carries at most: bounds the pipeline a single `WAIT` follows.
const MAX_BATCH: usize = 512;
/// Appends waiting for the next batch at most; beyond that callers wait (within their time-out).
const QUEUE: usize = 4096;

/// One append waiting for its batch.
struct Request {
    command: redis::Cmd,
    reply: oneshot::Sender<Result<Value, BrokerError>>,
}

/// The sending side of the replica-acknowledged append connections: one task per server the
/// appends go to (one in all, or one per stream on a Cluster), started at its first append.
pub(crate) struct Acker {
    state: Arc<RedisState>,
    tasks: Arc<Tasks>,
    /// The queue of each task, by stream key on a Cluster (`None` elsewhere: one for all).
    queues: Mutex<HashMap<Option<String>, mpsc::Sender<Request>>>,
}

impl Acker {
    /// An acker whose tasks run on `tasks` (each connects at its first append).
    pub(crate) fn new(state: Arc<RedisState>, tasks: Arc<Tasks>) -> Self {
        Self {
            state,
            tasks,
            queues: Mutex::default(),
        }
    }

    /// The queue of the task that serves the stream `key`, started now if it is not running.
    fn queue(&self, key: &str) -> mpsc::Sender<Request> {
        let route = self.state.is_cluster().then(|| key.to_owned());
        let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(queue) = queues.get(&route).filter(|q| !q.is_closed()) {
            return queue.clone();
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        self.tasks.spawn(run(
            Arc::clone(&self.state),
            route.clone(),
            rx,
            self.tasks.shutdown(),
        ));
        queues.insert(route, tx.clone());
        tx
    }

    /// Runs `command` (one append to the stream `key`) in the next batch and returns its reply
    /// once [`crate::RedisOptions::min_replicas`] replicas acknowledged it; the whole call is
    /// bounded by the publish time-out.
    pub(crate) async fn run(&self, key: &str, command: redis::Cmd) -> Result<Value, BrokerError> {
        let after = self.state.options.publish_timeout;
        let (reply, answer) = oneshot::channel();
        let queue = self.queue(key);
        let queued = async {
            queue
                .send(Request { command, reply })
                .await
                .map_err(|_| BrokerError::Closed)?;
            answer.await.map_err(|_| BrokerError::Closed)?
        };
        match timeout(after, queued).await {
            Ok(result) => result,
            Err(_elapsed) => Err(error::timeout(after)),
        }
    }
}

/// The task: takes every append waiting, sends them in one pipeline followed by `WAIT`, and
/// answers each. `route`: the stream whose slot's primary it connects to on a Cluster.
async fn run(
    state: Arc<RedisState>,
    route: Option<String>,
    mut rx: mpsc::Receiver<Request>,
    mut shutdown: Shutdown,
) {
    let mut connection: Option<MultiplexedConnection> = None;
    loop {
        let first = tokio::select! {
            biased;
            () = shutdown.signalled() => return,
            request = rx.recv() => match request {
                Some(request) => request,
                None => return,
            },
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        // Callers that gave up (time-out) need nothing written for them.
        batch.retain(|request| !request.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let mut current = match connection.take() {
            Some(current) => current,
            None => {
                // Fail fast while the publish connection says Redis is down, as publishes do.
                if state.publisher_slot().is_none() {
                    let attempt = state.parts.board().reconnect_attempt();
                    for request in batch {
                        let _ = request
                            .reply
                            .send(Err(error::reconnecting(&state.url, attempt)));
                    }
                    continue;
                }
                let fresh = match &route {
                    Some(key) => state.connect_reader(key).await.map(|(_, c)| c),
                    None => state.connect_publisher().await,
                };
                match fresh {
                    Ok(fresh) => fresh,
                    Err(e) => {
                        let (transient, text) = (e.is_transient(), e.to_string());
                        for request in batch {
                            let _ = request.reply.send(Err(BrokerError::classified(
                                transient,
                                error::BACKEND,
                                &state.url,
                                text.clone(),
                            )));
                        }
                        continue;
                    }
                }
            }
        };
        let sent = tokio::select! {
            biased;
            // Closing does not wait for a WAIT: the callers get `Closed`.
            () = shutdown.signalled() => return,
            sent = send_batch(&state, &mut current, &batch) => sent,
        };
        match sent {
            Ok(replies) => {
                connection = Some(current);
                for (request, reply) in batch.into_iter().zip(replies) {
                    let _ = request.reply.send(reply);
                }
            }
            Err(failure) => {
                // The connection is dropped (a fresh one for the next batch): after an error or
                // a time-out its state is unknown.
                state.check_publisher.notify_one();
                for request in batch {
                    let _ = request.reply.send(Err(failure.share(&state)));
                }
            }
        }
    }
}

/// Why a whole batch failed.
enum Failure {
    /// No answer within the publish time-out.
    Timeout,
    /// The connection or Redis failed (text, transient).
    Redis(String, bool),
    /// Fewer replicas than asked acknowledged the batch.
    Replicas { acknowledged: i64, asked: u32 },
}

impl Failure {
    /// The error each append of the batch gets.
    fn share(&self, state: &RedisState) -> BrokerError {
        let url = &state.url;
        match self {
            Self::Timeout => error::timeout(state.options.publish_timeout),
            Self::Redis(text, transient) => {
                BrokerError::classified(*transient, error::BACKEND, url, text.clone())
            }
            Self::Replicas {
                acknowledged,
                asked,
            } => BrokerError::Unreplicated {
                backend: error::BACKEND,
                acknowledged: u64::try_from(*acknowledged).unwrap_or(0),
                asked: *asked,
                after: state.options.replica_timeout,
            },
        }
    }
}

/// Sends the batch's appends and `WAIT` in one pipeline; each append's reply when enough
/// replicas acknowledged them.
async fn send_batch(
    state: &RedisState,
    connection: &mut MultiplexedConnection,
    batch: &[Request],
) -> Result<Vec<Result<Value, BrokerError>>, Failure> {
    let options = &state.options;
    let asked = options.min_replicas;
    let wait_ms = u64::try_from(options.replica_timeout.as_millis()).unwrap_or(u64::MAX);
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for request in batch {
        pipe.add_command(request.command.clone());
    }
    pipe.cmd("WAIT").arg(asked).arg(wait_ms);
    let replies: Vec<Value> =
        match timeout(options.publish_timeout, pipe.query_async(connection)).await {
            Ok(Ok(replies)) => replies,
            Ok(Err(e)) => {
                let text = e.to_string();
                let transient = error::map(e, &state.url).is_transient();
                return Err(Failure::Redis(text, transient));
            }
            Err(_elapsed) => return Err(Failure::Timeout),
        };
    let Some((wait, appends)) = replies.split_last() else {
        return Err(Failure::Redis(
            "empty reply to a pipeline".to_owned(),
            false,
        ));
    };
    match wait {
        Value::Int(acknowledged) if *acknowledged >= i64::from(asked) => {}
        Value::Int(acknowledged) => {
            return Err(Failure::Replicas {
                acknowledged: *acknowledged,
                asked,
            });
        }
        other => {
            let text = match other.clone().extract_error() {
                Err(e) => e.to_string(),
                Ok(value) => format!("unexpected reply to WAIT: {value:?}"),
            };
            return Err(Failure::Redis(text, false));
        }
    }
    Ok(appends
        .iter()
        .map(|reply| {
            reply
                .clone()
                .extract_error()
                .map_err(|e| error::map(e, &state.url))
        })
        .collect())
}
