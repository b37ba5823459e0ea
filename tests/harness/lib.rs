//! The integration-test harness shared by the `it` test binary and the bench.
//!
//! - [`proxy`]: a TCP proxy to cut and restore a real service's network.
//! - [`amqp`]: the test broker, per-test queues, a real consumer, the relay bench.

pub mod amqp;
pub mod proxy;
