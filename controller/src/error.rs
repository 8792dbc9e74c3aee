//! What stops the controller, or one of its tasks: one error type for the library, each
//! variant with its own message, the cause kept as the source and never repeated in the message.

use std::net::SocketAddr;
use std::path::PathBuf;

use sealant_core::age_keys::AgeError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot read the kubeconfig {}", .path.display())]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("cannot find the cluster (in-cluster config or KUBECONFIG)")]
    NoCluster(#[source] kube::config::InferConfigError),
    #[error("cannot make the API client")]
    Client(#[source] kube::Error),
    /// A flag's value refused: the message, which names the flag, is the flag parser's own.
    #[error("{0}")]
    Flag(String),
    #[error("invalid --backup-age-recipients")]
    BackupRecipients(#[source] AgeError),
    #[error("cannot start the runtime or listen for signals")]
    Io(#[source] std::io::Error),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("a call to the API server failed")]
    Api(#[from] kube::Error),
    #[error("cannot generate a key")]
    Generate(#[source] sealant_core::CertError),
    #[error("the next key's name {0} is taken by a Secret that is not a key: remove it to renew")]
    KeyNameTaken(String),
    #[error("cannot encrypt the key backup")]
    Backup(#[source] AgeError),
    #[error("cannot encode the key backup")]
    Encode(#[source] serde_json::Error),
    /// A task that runs for the life of the process ended.
    #[error("{0} stopped")]
    Stopped(&'static str),
    #[error("a task panicked or was cancelled")]
    Task(#[from] tokio::task::JoinError),
    #[error("the key watch ended")]
    KeysClosed(#[from] tokio::sync::watch::error::RecvError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The error and its causes on one line, for a log line.
    pub fn one_line(&self) -> String {
        sealant_core::error::one_line(self.to_string(), std::error::Error::source(self))
    }
}
