//! Reconcile slots shared between namespaces. kube-runtime runs a fixed number of reconciles at
//! once ([`super::RECONCILE_CONCURRENCY`]), each to its end, and starts them in the order they
//! were queued: a tenant with more heavy SealedSecrets than there are slots would hold every
//! slot while they wait for their turns at the RSA work ([`super::turns`]), and a SealedSecret
//! of another namespace would wait behind all of them. So a namespace holds at most its share
//! of the slots: half of them while it is the only one reconciling, and when others reconcile
//! too, an equal part that still leaves one part free for a namespace not yet seen, never fewer
//! than [`MIN_SHARE`]. A reconcile beyond its namespace's share gives its slot back before any
//! API call. Its SealedSecret is remembered, and woken when a reconcile of its namespace ends;
//! a retry some time later is the backstop for a wake that is lost (a deletion, a leader change).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use futures::Stream;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::mpsc;

use super::cache::Cached;

/// The fewest slots a namespace may hold, however many others reconcile.
const MIN_SHARE: usize = 2;

/// Slots of reconciles, held per namespace.
#[derive(Debug)]
pub struct Seats {
    slots: usize,
    state: Mutex<State>,
    wakers: Mutex<Vec<Waker>>,
}

/// Where a deferred SealedSecret is sent to be reconciled again: the controller of its scope
/// (`None`: every namespace).
#[derive(Debug)]
struct Waker {
    scope: Option<String>,
    send: mpsc::UnboundedSender<ObjectRef<Cached>>,
}

#[derive(Debug, Default)]
struct State {
    held: HashMap<String, usize>,
    deferred: HashMap<String, Deferred>,
}

/// The SealedSecrets of one namespace sent away, by name, first come first. A name taken out
/// of `names` stays in `order` until it is passed over or the queue is compacted: taking it
/// out is then O(1), not a walk of a queue of thousands.
#[derive(Debug, Default)]
struct Deferred {
    order: VecDeque<String>,
    names: HashSet<String>,
}

impl State {
    /// `namespace/name` is no longer waiting to be woken.
    fn unqueue(&mut self, namespace: &str, name: &str) {
        let Some(deferred) = self.deferred.get_mut(namespace) else { return };
        if !deferred.names.remove(name) {
            return;
        }
        if deferred.names.is_empty() {
            self.deferred.remove(namespace);
        } else if deferred.order.len() > 2 * deferred.names.len() {
            deferred.order.retain(|n| deferred.names.contains(n));
        }
    }
}

/// A slot held by a reconcile of `namespace`, given back when dropped.
#[derive(Debug)]
pub struct Seat {
    seats: Arc<Seats>,
    namespace: String,
}

impl Seats {
    pub fn new(slots: usize) -> Arc<Seats> {
        Arc::new(Seats { slots, state: Mutex::default(), wakers: Mutex::default() })
    }

    /// The deferred SealedSecrets of `scope` (`None`: every namespace), as they are woken: for
    /// the controller of that scope to reconcile.
    pub fn woken(&self, scope: Option<&str>) -> impl Stream<Item = ObjectRef<Cached>> + Send + Unpin + use<> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let waker = Waker { scope: scope.map(str::to_owned), send: tx };
        self.wakers.lock().unwrap_or_else(PoisonError::into_inner).push(waker);
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }

    /// A slot for the reconcile of `namespace/name`, or `None` when its namespace holds its share
    /// already: then the SealedSecret is woken when one of them ends.
    pub fn take(self: &Arc<Self>, namespace: &str, name: &str) -> Option<Seat> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let share = self.share(&state, namespace);
        let held = state.held.get(namespace).copied().unwrap_or(0);
        if held >= share {
            let deferred = state.deferred.entry(namespace.to_owned()).or_default();
            if deferred.names.insert(name.to_owned()) {
                deferred.order.push_back(name.to_owned());
            }
            return None;
        }
        *state.held.entry(namespace.to_owned()).or_default() += 1;
        // Here by another way (an update, the backstop): no longer waiting to be woken.
        state.unqueue(namespace, name);
        Some(Seat { seats: self.clone(), namespace: namespace.to_owned() })
    }

    /// A deleted SealedSecret is not woken.
    pub fn forget(&self, namespace: &str, name: &str) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).unqueue(namespace, name);
    }

    /// How many slots `namespace` may hold: an equal part of them for each namespace holding
    /// some, itself included, and one more part kept free.
    fn share(&self, state: &State, namespace: &str) -> usize {
        let holding = state.held.len() + usize::from(!state.held.contains_key(namespace));
        (self.slots / (holding + 1)).max(MIN_SHARE)
    }

    /// A reconcile of `namespace` ended: wake the SealedSecret of that namespace deferred first.
    fn give_back(&self, namespace: &str) {
        let next = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(held) = state.held.get_mut(namespace) {
                *held -= 1;
                if *held == 0 {
                    state.held.remove(namespace);
                }
            }
            let Some(deferred) = state.deferred.get_mut(namespace) else { return };
            // Names taken out of the set meanwhile are passed over here.
            let next = std::iter::from_fn(|| deferred.order.pop_front()).find(|name| deferred.names.remove(name));
            if deferred.names.is_empty() {
                state.deferred.remove(namespace);
            }
            next
        };
        let Some(name) = next else { return };
        let wakers = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(waker) = wakers.iter().find(|w| w.scope.as_deref().is_none_or(|s| s == namespace)) {
            // A controller that has stopped takes no more: its successor reconciles everything.
            let _ = waker.send.send(ObjectRef::new(&name).within(namespace));
        }
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.seats.give_back(&self.namespace);
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    #[test]
    fn one_namespace_holds_half_the_slots_and_shares_them_when_others_come() {
        let seats = Seats::new(32);
        let busy: Vec<Seat> = (0..16).map(|i| seats.take("busy", &format!("s{i}")).unwrap()).collect();
        assert!(seats.take("busy", "s16").is_none(), "more than half the slots to one namespace");
        // Another namespace still finds slots, and its share is a third now.
        let quiet: Vec<Seat> = (0..10).map(|i| seats.take("quiet", &format!("q{i}")).unwrap()).collect();
        assert!(seats.take("quiet", "q10").is_none());
        // A third: a quarter.
        let third: Vec<Seat> = (0..8).map(|i| seats.take("third", &format!("t{i}")).unwrap()).collect();
        assert!(seats.take("third", "t8").is_none());
        assert_eq!(busy.len() + quiet.len() + third.len(), 34, "seats already held are kept");
    }

    #[test]
    fn however_many_namespaces_reconcile_each_may_hold_the_least_share() {
        let seats = Seats::new(32);
        let held: Vec<Seat> = (0..40)
            .flat_map(|n| (0..MIN_SHARE).map(move |i| (n, i)))
            .map(|(n, i)| seats.take(&format!("ns{n}"), &format!("s{i}")).unwrap())
            .collect();
        assert_eq!(held.len(), 80);
        assert!(seats.take("ns0", "more").is_none());
    }

    #[tokio::test]
    async fn a_deferred_sealedsecret_is_woken_when_its_namespace_gives_a_slot_back() {
        let seats = Seats::new(4);
        let mut woken = seats.woken(None);
        let first = seats.take("ns", "a").unwrap();
        let second = seats.take("ns", "b").unwrap();
        assert!(seats.take("ns", "c").is_none());
        assert!(seats.take("ns", "d").is_none());
        // Deferred twice: woken once.
        assert!(seats.take("ns", "c").is_none());
        // Another namespace's slot coming back wakes none of this one's.
        drop(seats.take("other", "x").unwrap());
        drop(first);
        let next = woken.next().await.unwrap();
        assert_eq!((next.name.as_str(), next.namespace.as_deref()), ("c", Some("ns")));
        // A deleted one is not woken: `d` is forgotten, so the next slot back wakes nothing.
        seats.forget("ns", "d");
        drop(second);
        let none = tokio::time::timeout(std::time::Duration::from_millis(20), woken.next()).await;
        assert!(none.is_err(), "a forgotten SealedSecret was woken");
    }

    #[tokio::test]
    async fn a_deferred_sealedsecret_that_comes_back_another_way_is_not_woken_again() {
        let seats = Seats::new(6);
        let mut woken = seats.woken(None);
        let other = seats.take("other", "x").unwrap();
        let held: Vec<Seat> = (0..2).map(|i| seats.take("ns", &format!("s{i}")).unwrap()).collect();
        assert!(seats.take("ns", "late").is_none());
        // The other namespace is done: this one's share grows, and the backstop retry of
        // `late` finds a slot before any of its namespace's comes back.
        drop(other);
        let late = seats.take("ns", "late").unwrap();
        drop(held);
        let none = tokio::time::timeout(std::time::Duration::from_millis(20), woken.next()).await;
        assert!(none.is_err(), "a SealedSecret already reconciling was woken");
        drop(late);
        assert!(seats.state.lock().unwrap().held.is_empty());
    }

    #[tokio::test]
    async fn a_namespace_is_woken_by_the_controller_of_its_scope() {
        let seats = Seats::new(4);
        let mut home = seats.woken(Some("home"));
        let mut extra = seats.woken(Some("extra"));
        let held: Vec<Seat> = (0..2).map(|i| seats.take("extra", &format!("s{i}")).unwrap()).collect();
        assert!(seats.take("extra", "late").is_none());
        drop(held);
        assert_eq!(extra.next().await.unwrap().name, "late");
        let none = tokio::time::timeout(std::time::Duration::from_millis(20), home.next()).await;
        assert!(none.is_err());
    }
}
