//! Shared test harness of the integration suite.

pub mod mongo;
