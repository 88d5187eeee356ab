// The optional secret of tracing (docs/tracing.md). `wrangler types` only declares the secrets that
// wrangler.toml's `[secrets] required` lists, and listing this one would make every deploy demand it.
interface Env {
  /** Headers for the OTLP collector, `key=value,key2=value2` (values percent-encoded); never logged. */
  OTEL_EXPORTER_OTLP_HEADERS?: string;
}
