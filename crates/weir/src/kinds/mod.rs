//! Job kinds built into `weir worker` beyond `echo` and `sleep`: `http` (webhooks and API
//! calls through the rate-limited client), `crawl` (the crawler, optionally split across
//! jobs by host) and `files` (counts, hashes and search over a tree).
//!
//! A worker runs only the kinds its operator chose ([`KindSettings`]), and leases only
//! jobs of those kinds. By default: `echo`, `sleep` and `http`, which reaches public
//! addresses only. `crawl` and `files` reach the network at large and the worker's disk;
//! they run only when named, `files` only beneath the roots the operator gives.

pub(crate) mod crawl;
pub(crate) mod files;
pub(crate) mod http;
mod job_io;

use std::collections::BTreeSet;
use std::sync::Arc;

use clap::{Arg, ArgAction, ArgMatches};
use weir_client::{Egress, WebhookSigner};
use weir_jobs::worker::{JobContext, Registry};

use crawl::CrawlLimits;
use files::FilesSettings;

/// Every built-in kind.
pub(crate) const BUILT_IN: [&str; 5] = ["echo", "sleep", "http", "crawl", "files"];

/// The kinds a worker runs when the operator names none: those that touch neither the
/// worker's disk nor more of the network than a public request.
pub(crate) const DEFAULT_KINDS: &str = "echo,sleep,http";

/// What the operator lets this worker's built-in kinds do.
#[derive(Debug)]
pub(crate) struct KindSettings {
    /// The kinds run, from [`BUILT_IN`].
    pub(crate) kinds: BTreeSet<String>,
    /// Where requests of `http` and `crawl` jobs may go.
    pub(crate) egress: Egress,
    /// Signs every `http` request, when the operator gave a secret.
    pub(crate) signer: Option<Arc<WebhookSigner>>,
    pub(crate) crawl: Arc<CrawlLimits>,
    pub(crate) files: Option<Arc<FilesSettings>>,
}

impl KindSettings {
    /// The `weir worker` flags that choose and bound the kinds.
    pub(crate) fn args() -> Vec<Arg> {
        let mut args = vec![
            Arg::new("kinds").long("kinds").value_name("KIND[,KIND...]").default_value(DEFAULT_KINDS).help("Built-in kinds to run, of echo, sleep, http, crawl, files; only jobs of these kinds are leased"),
            Arg::new("egress-allow").long("egress-allow").value_name("NETWORK|ADDRESS|HOST").action(ArgAction::Append).help("Let `http` and `crawl` jobs reach this non-public network (10.0.0.0/8), address or host name (repeatable) [default: public addresses only]"),
            Arg::new("webhook-secret").long("webhook-secret").env("WEIR_WEBHOOK_SECRET").hide_env_values(true).value_name("whsec_…").help("Sign every `http` request with this Standard Webhooks secret (webhook-id, webhook-timestamp, webhook-signature)"),
        ];
        args.extend(CrawlLimits::args());
        args.extend(FilesSettings::args());
        args
    }

    /// The settings the flags give, or what is wrong with them.
    pub(crate) fn from_matches(matches: &ArgMatches) -> Result<KindSettings, String> {
        let list = matches.get_one::<String>("kinds").expect("has a default");
        let mut kinds = BTreeSet::new();
        for kind in list
            .split(',')
            .map(str::trim)
            .filter(|kind| !kind.is_empty())
        {
            if !BUILT_IN.contains(&kind) {
                return Err(format!(
                    "--kinds: `{kind}` is not a built-in kind (they are {})",
                    BUILT_IN.join(", ")
                ));
            }
            kinds.insert(kind.to_owned());
        }
        if kinds.is_empty() {
            return Err("--kinds: name at least one kind".into());
        }
        let mut egress = Egress::public_only();
        for rule in matches
            .get_many::<String>("egress-allow")
            .into_iter()
            .flatten()
        {
            egress = egress
                .allow(rule)
                .map_err(|error| format!("--egress-allow {error}"))?;
        }
        let signer = matches
            .get_one::<String>("webhook-secret")
            .map(|secret| WebhookSigner::new(secret).map(Arc::new))
            .transpose()
            .map_err(|error| format!("--webhook-secret: {error}"))?;
        let files = FilesSettings::from_matches(matches)?.map(Arc::new);
        if kinds.contains("files") && files.is_none() {
            return Err(
                "--kinds files: give the directories `files` jobs may read with --files-root DIR"
                    .into(),
            );
        }
        let crawl = Arc::new(CrawlLimits::from_matches(matches, egress.clone())?);
        Ok(KindSettings {
            kinds,
            egress,
            signer,
            crawl,
            files,
        })
    }
}

/// Keeps in `registry` the built-in kinds chosen and registers the others chosen: `http`
/// sending through `http`, `crawl` enqueueing split crawls through `jobs`.
pub(crate) fn register(
    registry: &mut Registry,
    settings: &KindSettings,
    http: weir_client::Client,
    jobs: weir_jobs::client::Client,
) {
    registry.retain(|kind| settings.kinds.contains(kind));
    if settings.kinds.contains("http") {
        let signer = settings.signer.clone();
        registry.register("http", move |ctx: JobContext| {
            http::run(http.clone(), signer.clone(), ctx)
        });
    }
    if settings.kinds.contains("crawl") {
        let (jobs, limits) = (Arc::new(jobs), Arc::clone(&settings.crawl));
        registry.register("crawl", move |ctx: JobContext| {
            crawl::run(Arc::clone(&jobs), Arc::clone(&limits), ctx)
        });
    }
    if let (true, Some(files)) = (settings.kinds.contains("files"), &settings.files) {
        let files = Arc::clone(files);
        registry.register("files", move |ctx: JobContext| {
            files::run(Arc::clone(&files), ctx)
        });
    }
}
