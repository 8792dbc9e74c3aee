//! The keys plane: the keyring built from key Secrets (`keyring`), their watch on every replica
//! (`watch`), and, on the leader, renewal (`renewal`) and the encrypted backup (`backup`).

pub mod backup;
pub mod keyring;
pub mod renewal;
pub mod watch;
