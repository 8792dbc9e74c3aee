//! The unsealing plane: for each SealedSecret, what its Secret should be (`plan`, pure), the
//! reconcile that writes it (`reconcile`) and its status (`status`) and Events (`events`), the
//! small copy kept between reconciles (`cache`) and what is remembered of each object
//! (`state`: failures, writes, verified Secrets), and what keeps tenants fair and slow to probe:
//! turns at the RSA work per namespace (`turns`) and template failures slowed down
//! (`template_guard`).

pub mod cache;
pub mod events;
pub mod plan;
pub mod reconcile;
pub mod state;
pub mod status;
pub mod template_guard;
pub mod turns;
