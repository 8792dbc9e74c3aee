//! Template failures, slowed down. Whether a `template.data` template renders shows in the
//! status (`TemplateError` or `Unsealed`), and a template can test the plaintext (`{{ if eq
//! (index . "password") "..." }}`): whoever may change templates and read statuses learns one
//! bit per evaluation; so does any outcome decided after a render (an immutable Secret refusing
//! other data, a write the API server refuses), which the reconcile counts as a failure here
//! too. So once a template has failed in a namespace, every later evaluation of a
//! templated SealedSecret there waits its turn: one minute after the failure, then twice as long
//! after each evaluation, whatever its outcome (were successes free, a guess could be written so
//! that only the right answer fails), at most a day. Plain SealedSecrets (no `template.data`)
//! are never held back, and a namespace with no evaluation for a day after its wait is forgiven.
//! The status during the wait says so and depends on nothing decrypted. README's security model
//! gives the figures.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The wait after a namespace's first template failure, unless `--template-backoff` says.
pub const FIRST_WAIT: Duration = Duration::from_secs(60);
/// The longest wait, and how long a namespace must go without a failure to be forgiven.
pub const LONGEST_WAIT: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug)]
pub struct TemplateGuard {
    /// The first wait (`--template-backoff`); zero: no guard.
    first: Duration,
    namespaces: Mutex<HashMap<String, Strikes>>,
}

impl Default for TemplateGuard {
    fn default() -> Self {
        TemplateGuard::new(FIRST_WAIT)
    }
}

#[derive(Clone, Copy, Debug)]
struct Strikes {
    failures: u32,
    /// No templated SealedSecret of the namespace is evaluated before this.
    until: Instant,
}

impl TemplateGuard {
    pub fn new(first: Duration) -> TemplateGuard {
        TemplateGuard { first, namespaces: Mutex::default() }
    }

    /// How long a templated SealedSecret of `namespace` must still wait, if at all.
    pub fn wait(&self, namespace: &str, now: Instant) -> Option<Duration> {
        let mut namespaces = self.namespaces.lock().unwrap_or_else(PoisonError::into_inner);
        // Forgiven namespaces go, so the map holds only those with a recent failure.
        namespaces.retain(|_, s| now < s.until + LONGEST_WAIT);
        namespaces.get(namespace).and_then(|s| s.until.checked_duration_since(now)).filter(|d| !d.is_zero())
    }

    /// A templated SealedSecret of `namespace` was evaluated (`failed`: its template did not
    /// render): the wait before the next evaluation there, if it is held back.
    pub fn evaluated(&self, namespace: &str, failed: bool, now: Instant) -> Option<Duration> {
        let mut namespaces = self.namespaces.lock().unwrap_or_else(PoisonError::into_inner);
        if self.first.is_zero() || (!failed && !namespaces.contains_key(namespace)) {
            return None;
        }
        let strikes = namespaces.entry(namespace.to_owned()).or_insert(Strikes { failures: 0, until: now });
        if now >= strikes.until + LONGEST_WAIT {
            strikes.failures = 0;
        }
        strikes.failures = strikes.failures.saturating_add(1);
        let wait = self.first.saturating_mul(1 << (strikes.failures - 1).min(16)).min(LONGEST_WAIT);
        strikes.until = now + wait;
        Some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_a_failure_every_evaluation_doubles_the_wait_up_to_a_day_then_is_forgiven() {
        let guard = TemplateGuard::default();
        let t0 = Instant::now();
        assert_eq!(guard.evaluated("ns", false, t0), None, "successes alone hold nothing back");
        assert_eq!(guard.wait("ns", t0), None);
        assert_eq!(guard.evaluated("ns", true, t0), Some(FIRST_WAIT));
        assert_eq!(guard.wait("ns", t0 + Duration::from_secs(30)), Some(Duration::from_secs(30)));
        assert_eq!(guard.wait("other", t0), None, "other namespaces are not held back");
        let later = t0 + FIRST_WAIT;
        assert_eq!(guard.evaluated("ns", false, later), Some(FIRST_WAIT * 2), "a success counts too");
        let mut now = later;
        for _ in 0..20 {
            now += guard.evaluated("ns", false, now).unwrap();
        }
        assert_eq!(guard.evaluated("ns", true, now), Some(LONGEST_WAIT));
        now += LONGEST_WAIT * 3;
        assert_eq!(guard.wait("ns", now), None);
        assert_eq!(guard.evaluated("ns", false, now), None, "forgiven after a quiet day");
        let off = TemplateGuard::new(Duration::ZERO);
        assert_eq!(off.evaluated("ns", true, t0), None, "--template-backoff=0");
        assert_eq!(off.wait("ns", t0), None);
    }

    /// The figures README gives: evaluations an attacker gets in a namespace, evaluating as
    /// soon as allowed; and with a pause of a day (to be forgiven) after each run.
    #[test]
    fn an_attacker_learns_a_few_bits_a_day() {
        let day = Duration::from_secs(24 * 3600);
        let guard = TemplateGuard::default();
        let t0 = Instant::now();
        let (mut now, mut bits) = (t0, 1);
        now += guard.evaluated("ns", true, now).unwrap();
        while now < t0 + day {
            now += guard.evaluated("ns", false, now).unwrap();
            bits += 1;
        }
        assert!(bits <= 12, "{bits} evaluations in the first day");
        while now < t0 + 30 * day {
            now += guard.evaluated("ns", false, now).unwrap();
            bits += 1;
        }
        assert!(bits <= 12 + 30, "{bits} evaluations in thirty days");
    }
}
