//! The `Synced` condition a reconcile outcome implies; written only when it changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use sealant_crds::{SealedSecret, SealedSecretCondition, SealedSecretStatus};

pub const SYNCED: &str = "Synced";

/// The outcome as a condition: status, reason, message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub ok: bool,
    pub reason: String,
    pub message: String,
}

impl Outcome {
    pub fn unsealed() -> Outcome {
        Outcome { ok: true, reason: "Unsealed".into(), message: String::new() }
    }

    pub fn failed(reason: &str, message: String) -> Outcome {
        Outcome { ok: false, reason: reason.into(), message }
    }
}

/// The new status, or `None` when the current one already says this (no write, no loop).
pub fn next_status(ss: &SealedSecret, outcome: &Outcome, now: Time) -> Option<SealedSecretStatus> {
    let current = ss.status.clone().unwrap_or_default();
    let generation = ss.metadata.generation;
    let status_text = if outcome.ok { "True" } else { "False" };
    let existing = current.conditions.iter().find(|c| c.type_ == SYNCED);
    if let Some(c) = existing
        && c.status == status_text
        && c.reason.as_deref() == Some(outcome.reason.as_str())
        && c.message.as_deref().unwrap_or_default() == outcome.message
        && current.observed_generation == generation
    {
        return None;
    }
    let transition = match existing {
        Some(c) if c.status == status_text => c.last_transition_time.clone().or(Some(now.clone())),
        _ => Some(now.clone()),
    };
    let condition = SealedSecretCondition {
        type_: SYNCED.into(),
        status: status_text.into(),
        last_update_time: Some(now),
        last_transition_time: transition,
        reason: Some(outcome.reason.clone()),
        // An empty message is left out, as upstream writes it (the field is optional).
        message: (!outcome.message.is_empty()).then(|| outcome.message.clone()),
    };
    let mut conditions: Vec<_> = current.conditions.into_iter().filter(|c| c.type_ != SYNCED).collect();
    conditions.insert(0, condition);
    Some(SealedSecretStatus { observed_generation: generation, conditions })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn unchanged_outcome_writes_nothing() {
        let mut ss = SealedSecret::default();
        ss.metadata.generation = Some(3);
        let first = next_status(&ss, &Outcome::unsealed(), time(10)).unwrap();
        assert_eq!(first.observed_generation, Some(3));
        ss.status = Some(first);
        assert!(next_status(&ss, &Outcome::unsealed(), time(20)).is_none());
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let mut ss = SealedSecret::default();
        ss.metadata.generation = Some(1);
        ss.status = next_status(&ss, &Outcome::failed("DecryptFailed", "k: no key".into()), time(10));
        let again = next_status(&ss, &Outcome::failed("DecryptFailed", "k2: no key".into()), time(20)).unwrap();
        assert_eq!(again.conditions[0].last_transition_time, Some(time(10)));
        ss.status = Some(again);
        let ok = next_status(&ss, &Outcome::unsealed(), time(30)).unwrap();
        assert_eq!(ok.conditions[0].last_transition_time, Some(time(30)));
        assert_eq!(ok.conditions[0].status, "True");
    }

    #[test]
    fn a_new_generation_is_always_recorded() {
        let mut ss = SealedSecret::default();
        ss.metadata.generation = Some(1);
        ss.status = next_status(&ss, &Outcome::unsealed(), time(10));
        ss.metadata.generation = Some(2);
        assert_eq!(next_status(&ss, &Outcome::unsealed(), time(20)).unwrap().observed_generation, Some(2));
    }
}
