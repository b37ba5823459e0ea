//! # wasync
//!
//! Links WhatsApp accounts through WhatsApp Web, syncs every chat and its
//! recent messages into a store as soon as a session is ready, streams live
//! progress to frontends over WebSocket, hands `session_ready` to an AI
//! service through RabbitMQ, and runs sandboxed WebAssembly plugins on every
//! message and chat along the way.
//!
//! # Layout
//!
//! - [`domain`]: pure types (sessions ids, chats, messages, sync runs, events).
//! - [`storage`]: the `Store` port; `embedded` (redb) and `mongo` adapters.
//! - [`events`]: the `EventBus` port, the outbox relay; `local` and `amqp` adapters.
//! - [`browser`]: the `WhatsAppClient` port; `simulator` and `webdriver` adapters;
//!   `browser::vault`, the `LoginVault` port (`gridfs`, `memory`) for portable logins.
//! - [`plugins`]: the plugin-chain port the sync runs messages and chats through.
//! - [`sync`]: the sync engine, a plain function of the ports above.
//! - [`session`]: one actor per session, its lifecycle state machine, the registry.
//! - [`hub`]: fan-out of session events to clients, with bounded coalescing queues.
//! - [`cluster`]: many hosts on one MongoDB: session leases with fencing, takeover,
//!   forwarding to the owner, live events across hosts (RabbitMQ).
//! - [`webhooks`]: signed HTTP webhooks: endpoints, the outbox fan-out, deliveries
//!   in order per session with retries, the SSRF guard.
//! - [`gateway`]: the HTTP server: REST routes, `/ws`, auth, problem+json errors.
//! - [`telemetry`]: logging set-up and the Prometheus metrics registry.
//! - [`config`]: configuration from the environment and an optional TOML file.
//! - [`devkit`]: the plugin developer kit (`wasync plugin check|run`): an upload's
//!   checks and a sync's plugin chain, offline, with per-call costs.
//! - [`cli`]: the command line (clap): serving by default, the devkit beside it.
//! - [`app`]: the composition root: reads the config, picks adapters, runs it all.

pub mod app;
pub mod browser;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod devkit;
pub mod domain;
pub mod events;
pub mod gateway;
pub mod hub;
pub mod plugins;
pub mod session;
pub mod storage;
pub mod sync;
pub mod telemetry;
pub mod webhooks;
