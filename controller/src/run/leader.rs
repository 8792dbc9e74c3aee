//! Leader election on a `coordination.k8s.io/v1` Lease: one replica holds it and renews it; the
//! others take it over once it has not been renewed for a lease duration.
//!
//! Ours rather than kubert's `LeaseManager` (what linkerd uses), for what it does not do and
//! Sealant needs: a fence that stops writes once the lease may have passed to another replica
//! (`Fence::may_write`, read before every Secret write), and the single-writer fallback when
//! upstream's chart grants no `leases` at all (403: this replica writes alone, and says so in
//! the `sealant_leader_election_forbidden` metric). kubert would also bring a second kube-rs
//! release line to keep in step with ours.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;

#[derive(Clone, Debug)]
pub struct Elector {
    pub api: Api<Lease>,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub retry_period: Duration,
    /// The lease record last seen, and when (on this replica's clock) it was first seen.
    observed: Arc<Mutex<Option<(String, tokio::time::Instant)>>>,
    pub fence: Fence,
}

/// Whether this replica may still write as the leader: only while its last renewal of the lease
/// is younger than the renewal deadline (two thirds of the lease duration). A leader that was
/// frozen (SIGSTOP, a stalled node) finds, when it runs again, that its lease may have passed to
/// another replica, and writes nothing until it has renewed.
#[derive(Clone, Debug)]
pub struct Fence {
    renewed: Arc<Mutex<Option<tokio::time::Instant>>>,
    deadline: Duration,
    /// RBAC forbids the Lease: this replica is the single writer, with nobody to fence off.
    single_writer: Arc<std::sync::atomic::AtomicBool>,
}

impl Fence {
    /// A fence for a lease of `lease_duration`: writes are allowed for two thirds of it after
    /// each renewal, and not before the first.
    pub fn new(lease_duration: Duration) -> Fence {
        Fence { renewed: Arc::default(), deadline: lease_duration.mul_f64(2.0 / 3.0), single_writer: Arc::default() }
    }

    pub fn may_write(&self) -> bool {
        if self.single_writer.load(std::sync::atomic::Ordering::SeqCst) {
            return true;
        }
        let renewed = *self.renewed.lock().unwrap_or_else(PoisonError::into_inner);
        renewed.is_some_and(|at| at.elapsed() < self.deadline)
    }

    fn renewed_now(&self) {
        *self.renewed.lock().unwrap_or_else(PoisonError::into_inner) = Some(tokio::time::Instant::now());
    }
}

/// When `record` was first seen: now if it differs from the one seen before.
fn observe(
    observed: &mut Option<(String, tokio::time::Instant)>,
    record: String,
    now: tokio::time::Instant,
) -> tokio::time::Instant {
    match observed {
        Some((seen, at)) if *seen == record => *at,
        _ => {
            *observed = Some((record, now));
            now
        }
    }
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

impl Elector {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: String,
        lease_duration: Duration,
        retry_period: Duration,
    ) -> Self {
        Elector {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity,
            lease_duration,
            retry_period,
            observed: Arc::default(),
            fence: Fence::new(lease_duration),
        }
    }

    fn spec(&self, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.lease_duration.as_secs().max(1) as i32),
            acquire_time: acquired.or_else(|| Some(now())),
            renew_time: Some(now()),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// Whether another holder's lease has expired, judged as client-go judges it: by how long
    /// ago this replica last saw the lease record change, on its own clock, never by comparing
    /// the holder's `renewTime` with our clock (skewed clocks would let two replicas lead).
    fn expired(&self, spec: &LeaseSpec) -> bool {
        let record = format!(
            "{:?} {:?} {:?}",
            spec.holder_identity,
            spec.renew_time.as_ref().map(|t| t.0),
            spec.lease_transitions
        );
        let now = tokio::time::Instant::now();
        let seen_at = observe(&mut self.observed.lock().unwrap_or_else(PoisonError::into_inner), record, now);
        let duration =
            spec.lease_duration_seconds.map_or(self.lease_duration, |s| Duration::from_secs(s.max(0) as u64));
        spec.renew_time.is_none() || now.duration_since(seen_at) > duration
    }

    /// One round: take or renew the lease. `Ok(true)` while we hold it.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
                spec: Some(self.spec(0, None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let transitions = spec.lease_transitions.unwrap_or(0);
        lease.spec = if holder == self.identity {
            Some(self.spec(transitions, spec.acquire_time.clone()))
        } else if holder.is_empty() || self.expired(&spec) {
            Some(self.spec(transitions + 1, None))
        } else {
            return Ok(false);
        };
        // The resourceVersion we read makes this a compare-and-swap: of two replicas taking an
        // expired lease at once, one gets 409 Conflict.
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Keep trying, and publish whether we lead. A leader that cannot renew for two thirds of
    /// the lease duration steps down before anyone else may take over.
    ///
    /// When RBAC forbids the Lease (upstream's Helm chart grants none), this replica says so
    /// once, in the log and in `forbidden`, and leads: that chart runs one replica, which is
    /// the single writer upstream expects. It keeps asking, less often, and elects normally
    /// once the Lease may be used.
    pub async fn run(self, leading: watch::Sender<bool>, forbidden: watch::Sender<bool>) {
        let renew_deadline = self.lease_duration.mul_f64(2.0 / 3.0);
        let mut last_renewed: Option<tokio::time::Instant> = None;
        loop {
            // A hung request must not keep a leader that cannot renew: bounded well inside the lease.
            let attempt = crate::api::bounded(self.lease_duration / 3, self.try_acquire_or_renew())
                .await
                .unwrap_or_else(|no_answer| Err(kube::Error::Service(Box::new(no_answer))));
            let is_forbidden = matches!(&attempt, Err(kube::Error::Api(s)) if s.code == 403);
            if is_forbidden != *forbidden.borrow() {
                if is_forbidden {
                    tracing::warn!(
                        lease = %self.name,
                        namespace = self.api.namespace().unwrap_or_default(),
                        "leader election needs get, create and update on coordination.k8s.io leases in this \
                         namespace, which RBAC forbids: running as the only writer (right for one replica; \
                         for several, grant the Lease rule in README, \"Migrate from the Bitnami Helm chart\")"
                    );
                } else {
                    tracing::info!(lease = %self.name, "the leader Lease may be used now: electing a leader");
                }
                forbidden.send_replace(is_forbidden);
                self.fence.single_writer.store(is_forbidden, std::sync::atomic::Ordering::SeqCst);
            }
            if is_forbidden {
                leading.send_replace(true);
                tokio::time::sleep(self.retry_period.max(Duration::from_secs(30))).await;
                continue;
            }
            match attempt {
                Ok(true) => {
                    last_renewed = Some(tokio::time::Instant::now());
                    self.fence.renewed_now();
                    if !*leading.borrow() {
                        tracing::info!(identity = %self.identity, lease = %self.name, "became the leader");
                    }
                    leading.send_replace(true);
                }
                Ok(false) => {
                    if *leading.borrow() {
                        tracing::warn!(identity = %self.identity, "lost the leader lease");
                    }
                    leading.send_replace(false);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reach the leader lease");
                    if last_renewed.is_none_or(|t| t.elapsed() > renew_deadline) && *leading.borrow() {
                        tracing::warn!(identity = %self.identity, "stepping down: the lease could not be renewed in time");
                        leading.send_replace(false);
                    }
                }
            }
            tokio::time::sleep(self.retry_period).await;
        }
    }

    /// Give the lease up at shutdown so another replica takes over at once.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else { return };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        if let Err(e) = self.api.replace(&self.name, &PostParams::default(), &lease).await {
            tracing::warn!(error = %e, "cannot release the leader lease");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_measured_from_when_the_record_changed_here() {
        let t0 = tokio::time::Instant::now();
        let mut observed = None;
        // However far the holder's clock is off, what counts is when we saw the record change.
        assert_eq!(observe(&mut observed, "holder-a renewed 2099-01-01".into(), t0), t0);
        let later = t0 + Duration::from_secs(20);
        assert_eq!(observe(&mut observed, "holder-a renewed 2099-01-01".into(), later), t0, "unchanged: still t0");
        assert_eq!(observe(&mut observed, "holder-a renewed 1999-01-01".into(), later), later, "renewed: seen now");
    }
}
