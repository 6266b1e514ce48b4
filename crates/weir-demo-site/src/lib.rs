//! A synthetic site on loopback for crawler tests, demos and benchmarks.
//!
//! The site is a pure function of its settings and seed ([`Site`]): which pages exist on
//! which host, what each links to, what robots.txt says. The server ([`serve`]) answers
//! from that model and logs every request with its arrival time, so a test can check on
//! the server's side what a crawler fetched and how politely.
//!
//! `weir demo-site` serves it from the command line.

mod model;
mod server;

pub use model::{Answer, Profile, Site, SiteConfig, MAX_HOSTS};
pub use server::{bind, serve, RequestLog, LOG_PATH, MAX_PAGES};
