//! Calls to the API server, each bounded in time the same way: a hung request must not hold a
//! SealedSecret, a status, an Event or the leader's Lease forever. One helper, one error for a
//! call that got no answer.

use std::future::Future;
use std::time::Duration;

/// How long a call made while reconciling (reads, writes, status, Events) may wait.
pub const API_TIMEOUT: Duration = Duration::from_secs(30);

/// A call that got no answer in time.
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("the API server did not answer within {}s", .0.as_secs())]
pub struct NoAnswer(pub Duration);

/// `call`, given up after `within`.
pub async fn bounded<T, E>(
    within: Duration,
    call: impl Future<Output = Result<T, E>>,
) -> Result<Result<T, E>, NoAnswer> {
    tokio::time::timeout(within, call).await.map_err(|_| NoAnswer(within))
}

/// `call` within [`API_TIMEOUT`], no answer being one more of its errors (for calls whose
/// failure is logged, not returned: status and Events).
pub async fn answered<T>(call: impl Future<Output = Result<T, kube::Error>>) -> Result<T, kube::Error> {
    bounded(API_TIMEOUT, call).await.unwrap_or_else(|no_answer| Err(kube::Error::Service(Box::new(no_answer))))
}
