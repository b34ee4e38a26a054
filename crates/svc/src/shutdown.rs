//! The shutdown signal: one `CancellationToken` cancelled on SIGINT or
//! SIGTERM, cloned into every task that must drain gracefully.

pub use tokio_util::sync::CancellationToken;

/// Returns a token cancelled when the process receives SIGINT or SIGTERM.
/// Must be called inside a tokio runtime.
pub fn on_signal() -> std::io::Result<CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received, draining"),
            _ = int.recv() => tracing::info!("SIGINT received, draining"),
        }
        cancel.cancel();
    });
    Ok(token)
}
