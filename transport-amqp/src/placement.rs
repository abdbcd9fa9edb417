//! Which RabbitMQ node the connection should be on for the history's stream queues: RabbitMQ
//! refuses a stream consumer (and so a history read, append or subscription, which all read
//! the stream) on a node that holds no replica of the stream. [`Placement`] remembers, per
//! stream queue, the configured URLs (by index) whose node refused for that reason, decides
//! whether the connection should move to another URL, and puts those URLs last in the next
//! round of connection attempts.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

/// What to do after a node refused a stream consumer because it holds no replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Move the connection: another configured URL may hold a replica (not known to lack one).
    Move,
    /// Stay: there is only one URL, or every other URL is known to lack a replica of this
    /// stream or of another stream this node reads (moving would only trade one refusal for
    /// another).
    Stay,
}

/// Per stream queue, the URLs (indexes in the configured list) whose node refused a consumer
/// for want of a local replica.
#[derive(Debug)]
pub(crate) struct Placement {
    endpoints: usize,
    lacking: Mutex<HashMap<String, HashSet<usize>>>,
}

impl Placement {
    /// No refusals yet, for a list of `endpoints` URLs.
    pub(crate) fn new(endpoints: usize) -> Self {
        Self {
            endpoints,
            lacking: Mutex::new(HashMap::new()),
        }
    }

    fn lacking(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashSet<usize>>> {
        self.lacking.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that URL `endpoint`'s node holds no replica of `queue`, and says whether to move.
    /// When every URL lacks one of `queue`, the record of `queue` is forgotten, so that later
    /// attempts look again (a replica may be added, or a node come back).
    pub(crate) fn refused(&self, queue: &str, endpoint: usize) -> Refused {
        let mut lacking = self.lacking();
        let of_queue = lacking.entry(queue.to_owned()).or_default();
        of_queue.insert(endpoint);
        if of_queue.len() >= self.endpoints {
            lacking.remove(queue);
            return Refused::Stay;
        }
        let known_bad: HashSet<usize> = lacking.values().flatten().copied().collect();
        if (0..self.endpoints).any(|i| !known_bad.contains(&i)) {
            Refused::Move
        } else {
            Refused::Stay
        }
    }

    /// Records that URL `endpoint`'s node served a consumer of `queue`.
    pub(crate) fn served(&self, queue: &str, endpoint: usize) {
        let mut lacking = self.lacking();
        if let Some(of_queue) = lacking.get_mut(queue) {
            of_queue.remove(&endpoint);
            if of_queue.is_empty() {
                lacking.remove(queue);
            }
        }
    }

    /// Reorders a round of connection attempts: URLs known to lack a replica of some stream
    /// go last, the order among the others (and among those) kept.
    pub(crate) fn order(&self, order: &mut [usize]) {
        let lacking = self.lacking();
        if lacking.is_empty() {
            return;
        }
        let known_bad: HashSet<usize> = lacking.values().flatten().copied().collect();
        order.sort_by_key(|i| known_bad.contains(i));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_without_a_replica_is_left_and_tried_last() {
        let placement = Placement::new(3);
        let mut order = [0, 1, 2];
        placement.order(&mut order);
        assert_eq!(order, [0, 1, 2], "nothing known yet");
        assert_eq!(placement.refused("q", 0), Refused::Move);
        placement.order(&mut order);
        assert_eq!(order, [1, 2, 0]);
        let mut order = [2, 0, 1];
        placement.order(&mut order);
        assert_eq!(order, [2, 1, 0], "the rest keep their order");
        placement.served("q", 0);
        let mut order = [0, 1, 2];
        placement.order(&mut order);
        assert_eq!(order, [0, 1, 2], "a replica found there again");
    }

    #[test]
    fn one_url_or_no_better_node_means_staying() {
        assert_eq!(Placement::new(1).refused("q", 0), Refused::Stay);
        let placement = Placement::new(3);
        assert_eq!(placement.refused("q", 0), Refused::Move);
        assert_eq!(placement.refused("q", 1), Refused::Move);
        // Every node refused: stay, and look again from scratch next time.
        assert_eq!(placement.refused("q", 2), Refused::Stay);
        assert_eq!(placement.refused("q", 2), Refused::Move);
    }

    #[test]
    fn streams_whose_replicas_share_no_node_do_not_make_the_connection_flap() {
        let placement = Placement::new(3);
        assert_eq!(placement.refused("a", 0), Refused::Move);
        assert_eq!(placement.refused("b", 1), Refused::Move);
        // Node 2 lacks b as well: every node lacks one of them; moving cannot help.
        assert_eq!(placement.refused("b", 2), Refused::Stay);
    }
}
