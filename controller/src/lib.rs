//! The Sealant controller: a drop-in replacement for the sealed-secrets controller with leader
//! election, live key reloads and restarts that do not decrypt again.
//!
//! Three planes, each a module, started and supervised by `run`:
//! - [`unseal`]: SealedSecrets into Secrets (plan, reconcile, status, events, cache, fairness);
//! - [`keys`]: the keyring from key Secrets, their watch, renewal and backup;
//! - [`serve`]: the HTTP API (certificate, verify, rotate), metrics and trusted proxies.
//!
//! Beside them: [`flags`] (upstream's command line), [`api`] (every call to the API server,
//! bounded in time), [`error`] (what stops it) and [`telemetry`] (logs).

pub mod api;
pub mod error;
pub mod flags;
pub mod keys;
pub mod run;
pub mod serve;
pub mod telemetry;
pub mod unseal;

pub use error::{Error, Result};
pub use run::run;
