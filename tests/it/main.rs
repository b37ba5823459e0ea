//! The integration suite: one binary, every module a subsystem, all against
//! real services (see `scripts/test.sh`).

mod amqp;
