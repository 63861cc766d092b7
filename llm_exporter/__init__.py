"""llm-exporter: Prometheus metrics for any LLM server, read from its logs."""

__version__ = "0.1.0"

#: The OpenTelemetry semantic-conventions version the metric names follow.
SEMCONV_VERSION = "1.37.0"
