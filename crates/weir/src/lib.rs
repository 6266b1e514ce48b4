//! Weir: real-time pub/sub and chat, distributed background jobs and a live dashboard, in
//! one async Rust binary.
//!
//! This crate is the binary's library half: wiring, the command line, the HTTP API and
//! configuration. The protocols and storage engines live in the library crates:
//!
//! | module | what it holds |
//! |---|---|
//! | [`cli`] | every `weir` command (`serve`, `worker`, `jobs`, `crawl`, `files`, `demo-site`), exit codes, signals |
//! | [`config`] | `weir serve`'s settings: one table, layered flag > env > file > default, validated before anything binds |
//! | [`serve`] | opens the stores, the hub and the relay, and runs the HTTP API and the line protocol until shutdown |
//! | `api` | the HTTP API's routes (health, metrics, topics and SSE, WebSocket, jobs) and the dashboard |
//! | `kinds` | the job kinds `http`, `crawl` and `files`, wired from their library crates into the worker |
//! | [`logging`] | the tracing subscriber: human or JSON lines on stderr |
//!
//! The libraries: `weir-http` (the HTTP server), `weir-pubsub` (the hub, its SQLite topic
//! store and PostgreSQL relay), `weir-chat` (sessions, renderings, the line protocol),
//! `weir-auth` (tokens and scopes), `weir-jobs` (jobs, stores, wire protocol, worker),
//! `weir-db` (database plumbing), `weir-client`, `weir-crawl`, `weir-files`,
//! `weir-demo-site` and `weir-stream`.

pub mod api;
pub mod cli;
pub mod config;
mod kinds;
pub mod logging;
pub mod serve;
