//! The serving plane: the HTTP API kubeseal and `sealant` talk to and the metrics endpoint
//! (`http`), the metrics themselves (`metrics`), and whose `X-Forwarded-For` is believed
//! (`proxies`).

pub mod http;
pub mod metrics;
pub mod proxies;
