//! Test harness for cluster tests: one real control plane (tests/cluster/up) per test run, a
//! fresh namespace per test, an admin client, and a guard for processes run against it; and for
//! the node tests, one node per run and the controller image built here (node).
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test harness: failing loudly is its job

pub mod chart;
pub mod cluster;
pub mod monitoring;
pub mod node;
