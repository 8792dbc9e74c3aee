//! What the controller remembers of each SealedSecret between reconciles, beside the cache: its
//! failures (for the retry policy), the writes of its Secret (bounded, so that a write war with
//! another writer stops), and the version of a Secret another writer made that was found, by
//! decrypting, to hold what the SealedSecret says. One lock, keyed by the object, cleared in one
//! place when the SealedSecret is deleted.
//!
//! A lock poisoned by a panic elsewhere is used as it is: each entry is valid on its own, and a
//! controller that stopped retrying or bounding writes after one panic would be worse.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use kube::runtime::reflector::ObjectRef;

use crate::unseal::cache::Cached;
use crate::unseal::plan::{SourceDigest, WriteBudget};
use crate::unseal::reconcile::{Retry, RetryState, next_action};

/// A SealedSecret, as the state knows it.
pub type Object = ObjectRef<Cached>;

#[derive(Debug, Default)]
struct Inner {
    retries: HashMap<Object, RetryState>,
    /// (source digest, the Secret's resourceVersion) of a verified Secret of another writer.
    verified: HashMap<Object, (SourceDigest, String)>,
    writes: WriteBudget,
}

/// The per-object state every reconcile shares.
#[derive(Debug, Default)]
pub struct ObjectStates(Mutex<Inner>);

/// The key [`WriteBudget`] hashes.
fn write_key(object: &Object) -> String {
    format!("{}/{}", object.namespace.as_deref().unwrap_or_default(), object.name)
}

impl ObjectStates {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the Secret at `version` was verified for the SealedSecret at `digest`.
    pub fn is_verified(&self, object: &Object, digest: &SourceDigest, version: &str) -> bool {
        self.lock().verified.get(object).is_some_and(|(d, v)| d == digest && v == version)
    }

    pub fn verified(&self, object: Object, digest: SourceDigest, version: String) {
        self.lock().verified.insert(object, (digest, version));
    }

    /// Whether the Secret may be written now (see [`WriteBudget::allow`]).
    pub fn may_write(&self, object: &Object, generation: Option<i64>, now: Instant) -> bool {
        self.lock().writes.allow(&write_key(object), generation, now)
    }

    /// A write the API server accepted.
    pub fn wrote(&self, object: &Object, generation: Option<i64>, now: Instant) {
        self.lock().writes.record(&write_key(object), generation, now);
    }

    /// A reconcile succeeded: its failures no longer count.
    pub fn settled(&self, object: &Object) {
        self.lock().retries.remove(object);
    }

    /// After a failure: when to try again, if at all (see [`next_action`]).
    pub fn next_action(
        &self,
        object: Object,
        version: &str,
        retry: Retry,
        max_retries: u32,
        jitter: f64,
    ) -> Option<Duration> {
        let mut inner = self.lock();
        let state = inner.retries.entry(object).or_default();
        next_action(state, version, retry, max_retries, jitter)
    }

    /// Whether failures of the object are remembered (a success clears them).
    pub fn has_failures(&self, object: &Object) -> bool {
        self.lock().retries.contains_key(object)
    }

    /// Take over what `other` remembers (tests that move an object to another API server).
    pub fn adopt(&self, other: &ObjectStates) {
        let taken = std::mem::take(&mut *other.lock());
        *self.lock() = taken;
    }

    /// The SealedSecret is gone: everything about it goes too.
    pub fn forget(&self, object: &Object) {
        let mut inner = self.lock();
        inner.retries.remove(object);
        inner.verified.remove(object);
        inner.writes.forget(&write_key(object));
    }
}
