//! Structured logs. JSON by default; `RUST_LOG` overrides the configured
//! level. What never goes in: consent contents, hospital-local patient IDs,
//! genome references. Handlers log event IDs, kinds and versions only.

use tracing_subscriber::EnvFilter;

pub fn init(format: &str, level: &str) {
    // actix-http logs a request it cannot parse (a malformed header) as an
    // ERROR: a caller's fault, which anyone could repeat to flood the error
    // log. Such requests are answered 400 and counted nowhere else, so its
    // dispatcher is quiet unless RUST_LOG asks for it.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},actix_http::h1::dispatcher=off")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    // A second init (tests start several servers) is harmless; ignore it.
    let _ = if format == "pretty" {
        builder.try_init()
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    };
}
