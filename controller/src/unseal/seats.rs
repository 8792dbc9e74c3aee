//! Reconcile slots shared between namespaces. kube-runtime runs a fixed number of reconciles at
//! once ([`super::RECONCILE_CONCURRENCY`]), each to its end, and starts them in the order they
//! were queued: a tenant with more heavy SealedSecrets than there are slots would hold every
//! slot while they wait for their turns at the RSA work ([`super::turns`]), and a SealedSecret
//! of another namespace would wait behind all of them. So a namespace holds at most its share
//! of the slots: half of them while it is the only one reconciling, and when others reconcile
//! too, an equal part that still leaves one part free for a namespace not yet seen, never fewer
//! than [`MIN_SHARE`]. A reconcile beyond its namespace's share gives its slot back before any
//! API call.
//!
//! Its SealedSecret then waits here, as a name, not in kube-runtime's queue: a backlog of
//! 10,000 costs a name each, not a queued request and a timer each. When a reconcile of its
//! namespace ends, the first waiting is woken, as many as the share has room for counting those
//! woken and not yet arrived. A wake can be lost (its SealedSecret deleted meanwhile, a leader
//! change): one not answered within [`WAKE_TIMEOUT`] no longer counts, and [`Seats::sweep`]
//! wakes again every namespace whose waiting ones have room.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::Stream;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::cache::Cached;

/// The fewest slots a namespace may hold, however many others reconcile.
const MIN_SHARE: usize = 2;

/// How long a woken SealedSecret counts against its namespace's share before it arrives; also
/// how often [`Seats::sweep`] looks for namespaces with room.
const WAKE_TIMEOUT: Duration = Duration::from_secs(30);

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
    waiting: HashMap<String, Waiting>,
}

/// The SealedSecrets of one namespace sent away, by name, first come first, and those woken
/// and not yet back. A name taken out of `names` stays in `order` until it is passed over or
/// the queue is compacted: taking it out is then O(1), not a walk of a queue of thousands.
#[derive(Debug, Default)]
struct Waiting {
    order: VecDeque<String>,
    names: HashSet<String>,
    woken: HashMap<String, Instant>,
}

impl State {
    /// `namespace/name` is neither waiting nor woken any longer.
    fn unqueue(&mut self, namespace: &str, name: &str) {
        let Some(waiting) = self.waiting.get_mut(namespace) else { return };
        waiting.woken.remove(name);
        if waiting.names.remove(name) && waiting.order.len() > 2 * waiting.names.len() {
            waiting.order.retain(|n| waiting.names.contains(n));
        }
        if waiting.names.is_empty() && waiting.woken.is_empty() {
            self.waiting.remove(namespace);
        }
    }

    /// How many slots `namespace` may hold, with `slots` in all: an equal part of them for each
    /// namespace holding some, itself included, and one more part kept free.
    fn share(&self, slots: usize, namespace: &str) -> usize {
        let holding = self.held.len() + usize::from(!self.held.contains_key(namespace));
        (slots / (holding + 1)).max(MIN_SHARE)
    }

    /// The waiting SealedSecrets of `namespace` to wake now: as many as its share has room for,
    /// counting the slots it holds and the wakes of the last [`WAKE_TIMEOUT`] not yet answered.
    fn wake(&mut self, slots: usize, namespace: &str, now: Instant) -> Vec<String> {
        let share = self.share(slots, namespace);
        let held = self.held.get(namespace).copied().unwrap_or(0);
        let Some(waiting) = self.waiting.get_mut(namespace) else { return Vec::new() };
        waiting.woken.retain(|_, at| now.duration_since(*at) < WAKE_TIMEOUT);
        let mut woken = Vec::new();
        while held + waiting.woken.len() < share {
            // Names taken out of the set meanwhile are passed over here.
            let Some(name) = std::iter::from_fn(|| waiting.order.pop_front()).find(|n| waiting.names.remove(n)) else {
                break;
            };
            waiting.woken.insert(name.clone(), now);
            woken.push(name);
        }
        if waiting.names.is_empty() && waiting.woken.is_empty() {
            self.waiting.remove(namespace);
        }
        woken
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
    /// already: then the SealedSecret waits to be woken when one of them ends.
    pub fn take(self: &Arc<Self>, namespace: &str, name: &str) -> Option<Seat> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let share = state.share(self.slots, namespace);
        let held = state.held.get(namespace).copied().unwrap_or(0);
        if held >= share {
            let waiting = state.waiting.entry(namespace.to_owned()).or_default();
            waiting.woken.remove(name);
            if waiting.names.insert(name.to_owned()) {
                waiting.order.push_back(name.to_owned());
            }
            return None;
        }
        *state.held.entry(namespace.to_owned()).or_default() += 1;
        // Woken, or here by another way (an update, a resync): no longer waiting.
        state.unqueue(namespace, name);
        Some(Seat { seats: self.clone(), namespace: namespace.to_owned() })
    }

    /// A deleted SealedSecret is not woken.
    pub fn forget(&self, namespace: &str, name: &str) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).unqueue(namespace, name);
    }

    /// Every [`WAKE_TIMEOUT`], wake the waiting SealedSecrets of every namespace that has room:
    /// the backstop for wakes lost. Runs until dropped.
    pub async fn sweep(self: Arc<Self>) {
        let mut interval = tokio::time::interval(WAKE_TIMEOUT);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let now = Instant::now();
            let woken: Vec<(String, Vec<String>)> = {
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                let namespaces: Vec<String> = state.waiting.keys().cloned().collect();
                namespaces
                    .into_iter()
                    .map(|ns| {
                        let names = state.wake(self.slots, &ns, now);
                        (ns, names)
                    })
                    .collect()
            };
            for (namespace, names) in woken {
                self.send(&namespace, names);
            }
        }
    }

    /// A reconcile of `namespace` ended: wake the SealedSecrets of that namespace deferred first.
    fn give_back(&self, namespace: &str) {
        let woken = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(held) = state.held.get_mut(namespace) {
                *held -= 1;
                if *held == 0 {
                    state.held.remove(namespace);
                }
            }
            state.wake(self.slots, namespace, Instant::now())
        };
        self.send(namespace, woken);
    }

    /// Send woken SealedSecrets of `namespace` to the controller of their scope.
    fn send(&self, namespace: &str, names: Vec<String>) {
        if names.is_empty() {
            return;
        }
        let wakers = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(waker) = wakers.iter().find(|w| w.scope.as_deref().is_none_or(|s| s == namespace)) else { return };
        for name in names {
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
    use futures::{FutureExt, StreamExt};

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
        let state = seats.state.lock().unwrap();
        assert!(state.held.is_empty() && state.waiting.is_empty());
    }

    #[tokio::test]
    async fn a_slot_given_back_wakes_as_many_as_the_share_has_room_for() {
        let seats = Seats::new(8);
        let mut woken = seats.woken(None);
        let mut held: Vec<Seat> = (0..4).map(|i| seats.take("ns", &format!("s{i}")).unwrap()).collect();
        for i in 0..10 {
            assert!(seats.take("ns", &format!("w{i}")).is_none());
        }
        // Three come back at once: three wakes, in the order they waited.
        held.truncate(1);
        let names: Vec<String> = (0..3).map(|_| woken.next().now_or_never().flatten().unwrap().name).collect();
        assert_eq!(names, ["w0", "w1", "w2"]);
        // Woken and not back yet, they count: with the one still held, the share of 4 is full.
        let state = seats.state.lock().unwrap();
        assert_eq!((state.held["ns"], state.waiting["ns"].woken.len(), state.waiting["ns"].names.len()), (1, 3, 7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_wake_stops_counting_and_the_sweep_wakes_again() {
        let seats = Seats::new(4);
        let mut woken = seats.woken(None);
        let held: Vec<Seat> = (0..2).map(|i| seats.take("ns", &format!("s{i}")).unwrap()).collect();
        for name in ["a", "b", "c"] {
            assert!(seats.take("ns", name).is_none());
        }
        drop(held);
        // `a` and `b` are woken; neither comes back (deleted meanwhile, their wakes lost).
        assert_eq!([woken.next().await.unwrap().name, woken.next().await.unwrap().name], ["a", "b"]);
        tokio::spawn(seats.clone().sweep());
        // Within a sweep after the wakes time out, `c` is woken: nothing was left stuck.
        let c = tokio::time::timeout(2 * WAKE_TIMEOUT + Duration::from_secs(1), woken.next()).await;
        assert_eq!(c.unwrap().unwrap().name, "c");
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
