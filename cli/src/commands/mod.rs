//! One module per subcommand.

pub mod cert;
pub mod envs;
pub mod keys;
pub mod lint;
pub mod reencrypt;
pub mod seal;
pub mod sops;
pub mod status;
pub mod unseal;
pub mod validate;
