//! Turns at the RSA work of reconciling, shared fairly between namespaces: when SealedSecrets of
//! several namespaces wait, the next free turn goes to the namespace after the one served last,
//! not to whichever queued first. A tenant with many or huge SealedSecrets then delays only its
//! own. The HTTP API's decryptions do not take these turns: they have permits of their own
//! ([`crate::serve::http::HEAVY_REQUESTS`]) and blocking threads beside these.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

/// A number of turns, and who waits for one.
#[derive(Debug)]
pub struct FairTurns {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    free: usize,
    /// Each waiting namespace's waiters, first come first.
    waiting: HashMap<String, VecDeque<oneshot::Sender<Turn>>>,
    /// The waiting namespaces, in the order they are served.
    order: VecDeque<String>,
}

/// One turn, given back when dropped.
#[derive(Debug)]
pub struct Turn {
    turns: Option<Arc<FairTurns>>,
}

impl FairTurns {
    pub fn new(turns: usize) -> Arc<FairTurns> {
        Arc::new(FairTurns { state: Mutex::new(State { free: turns.max(1), ..State::default() }) })
    }

    /// A turn for work of `namespace`: at once when one is free and no one waits, else in
    /// `namespace`'s place in the round.
    pub async fn take(self: &Arc<Self>, namespace: &str) -> Turn {
        let waiting = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.free > 0 && state.order.is_empty() {
                state.free -= 1;
                return Turn { turns: Some(self.clone()) };
            }
            let (tx, rx) = oneshot::channel();
            if !state.waiting.contains_key(namespace) {
                state.order.push_back(namespace.to_owned());
            }
            state.waiting.entry(namespace.to_owned()).or_default().push_back(tx);
            rx
        };
        // The sender lives as long as this FairTurns, which outlives the waiter (it holds an Arc).
        waiting.await.unwrap_or(Turn { turns: None })
    }

    /// A turn came back: hand it to the next namespace in the round, or keep it free. A waiter
    /// that gave up (its receiver dropped) is passed over; one that is handed the turn and then
    /// gives up drops it, which brings it back here.
    fn give_back(self: &Arc<Self>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(namespace) = state.order.pop_front() {
            let Some(queue) = state.waiting.get_mut(&namespace) else { continue };
            let next = queue.pop_front();
            if queue.is_empty() {
                state.waiting.remove(&namespace);
            } else {
                state.order.push_back(namespace);
            }
            if let Some(waiter) = next {
                match waiter.send(Turn { turns: Some(self.clone()) }) {
                    Ok(()) => return,
                    // Gave up before its turn: this turn is still ours to give.
                    Err(mut turn) => turn.turns = None,
                }
            }
        }
        state.free += 1;
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some(turns) = self.turns.take() {
            turns.give_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_namespace_with_many_waiters_shares_turns_with_the_others() {
        let turns = FairTurns::new(1);
        let held = turns.take("busy").await;
        let served = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // Ten of one tenant queue first, then one of another.
        for (i, namespace) in (0..10).map(|i| (i, "busy")).chain([(10, "quiet")]) {
            let (turns, served) = (turns.clone(), served.clone());
            tasks.push(tokio::spawn(async move {
                let _turn = turns.take(namespace).await;
                served.lock().unwrap().push((i, namespace));
                tokio::task::yield_now().await;
            }));
            tokio::task::yield_now().await;
        }
        drop(held);
        for task in tasks {
            task.await.unwrap();
        }
        let served = served.lock().unwrap().clone();
        let quiet = served.iter().position(|(_, ns)| *ns == "quiet").unwrap();
        assert!(quiet <= 1, "the quiet namespace waited for the busy one's queue: {served:?}");
        assert_eq!(served.len(), 11);
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_loses_no_turn() {
        let turns = FairTurns::new(1);
        let held = turns.take("a").await;
        let gave_up = tokio::time::timeout(std::time::Duration::from_millis(10), turns.take("b")).await;
        assert!(gave_up.is_err());
        drop(held);
        let again = tokio::time::timeout(std::time::Duration::from_secs(1), turns.take("c")).await;
        assert!(again.is_ok(), "the turn came back although its waiter was gone");
    }
}
