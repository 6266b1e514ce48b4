//! Weir: real-time pub/sub and chat, distributed background jobs and a live dashboard, in
//! one async Rust binary.
//!
//! This crate is the binary's library half: the command line ([`cli`]), configuration with
//! its layering and validation ([`config`]), logging ([`logging`]), and the wiring of the
//! HTTP API ([`serve`]). The protocol work lives in the `weir-*` library crates.

pub mod auth;
pub mod cli;
mod client_cli;
pub mod config;
mod crawl_cli;
mod dashboard;
pub mod demo_site;
mod files_cli;
mod jobs;
mod kinds;
pub mod line;
pub mod logging;
mod routes;
pub mod serve;
mod topics;
mod ws;
