//! OpenTelemetry traces over OTLP/HTTP, only when the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is
//! set: nothing is built, sent or propagated otherwise. The exporter reads the
//! other standard variables itself (`OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_SERVICE_NAME`
//! is overridden by "portico" unless set in `OTEL_RESOURCE_ATTRIBUTES`).
//!
//! Spans come from `tracing`: the request (continuing an incoming
//! `traceparent`), each adapter phase, each store write, each outbound call.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::sync::OnceLock;
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

fn configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()))
}

/// The layer that turns spans into OTLP spans, when export is configured.
/// A configuration the exporter refuses is reported on stderr and export
/// stays off: traces are never a reason not to serve.
pub fn layer<S>() -> Option<Box<dyn Layer<S> + Send + Sync>>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    if !configured() {
        return None;
    }
    let provider = match build_provider() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("warning: OpenTelemetry export is off: {e}");
            return None;
        }
    };
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let tracer = provider.tracer("portico");
    let _ = PROVIDER.set(provider);
    Some(Box::new(tracing_opentelemetry::layer().with_tracer(tracer)))
}

fn build_provider() -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    // reqwest is built without a default TLS provider: give it ring's.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("portico").build())
        .build())
}

/// Continue the caller's trace: the W3C `traceparent` of `headers` becomes the
/// parent of `span` (before it is first entered). Nothing when export is off.
pub fn continue_trace(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    if PROVIDER.get().is_none() {
        return;
    }
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let parent = opentelemetry::global::get_text_map_propagator(|p| {
        p.extract(&opentelemetry_http::HeaderExtractor(headers))
    });
    let _ = span.set_parent(parent);
}

/// Send what is buffered and stop the exporter (at exit, outside the runtime:
/// it blocks for up to 5 s).
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get()
        && let Err(e) = provider.shutdown()
    {
        eprintln!("warning: could not send the last traces: {e}");
    }
}
