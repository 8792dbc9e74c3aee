//! One module per subcommand.

pub mod cert;
pub mod keys;
pub mod seal;
pub mod unseal;
pub mod validate;
