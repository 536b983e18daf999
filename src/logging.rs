//! Log output of the binary. Only the binary installs the global subscriber: the libraries
//! log through `tracing` and leave the choice of output to whoever embeds them.

use keygate_core::config::LogFormat;

/// Installs the global tracing subscriber in the configured format; an invalid filter falls
/// back to `info` (the filter was read from config, so a typo should not silence logs).
pub fn init_logging(format: LogFormat, filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Human => builder.try_init(),
    };
}
