//! How a command ends: exit codes, and the signals that stop it.

use tokio_util::sync::CancellationToken;

/// Exit code for a usage or configuration error (sysexits.h EX_USAGE).
pub const EXIT_USAGE: u8 = 64;

/// Exit code after Ctrl-C (128 + SIGINT): a stopped crawl or file run, once it has written
/// its summary, and any command on a second signal.
pub const EXIT_INTERRUPTED: u8 = 130;

/// Cancels `shutdown` on the first Ctrl-C or SIGTERM; exits at once on a second one.
pub async fn shutdown_on_signal(shutdown: CancellationToken) {
    stop_then_exit(shutdown, || {
        tracing::info!("shutting down: no new connections; in-flight requests are finishing");
    })
    .await;
}

/// On the first Ctrl-C or SIGTERM runs `on_first` and cancels `stop`; on a second one exits
/// at once with 130 (128 + SIGINT), for every command that stops gracefully.
pub(crate) async fn stop_then_exit(stop: CancellationToken, on_first: impl FnOnce()) {
    wait_for_signal().await;
    on_first();
    stop.cancel();
    wait_for_signal().await;
    tracing::warn!("second signal: exiting now");
    std::process::exit(i32::from(EXIT_INTERRUPTED));
}

#[cfg(unix)]
pub(crate) async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
pub(crate) async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
