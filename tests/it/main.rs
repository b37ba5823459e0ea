//! The integration suite: one binary, shared harness (`wasync_tests`).

mod amqp;
mod amqp_host;
mod api_errors;
mod api_fuzz;
mod cli;
mod cluster;
mod dashboard;
mod lifecycle;
mod logins;
mod mongo;
mod mongo_sync;
mod operations;
mod origin;
mod plugins;
mod plugins_e2e;
mod plugins_js;
mod restart;
mod retention;
mod socketio;
mod storage_contract;
mod sync_flow;
mod webdriver;
mod websocket;
