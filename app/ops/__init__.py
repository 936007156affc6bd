"""Running tunedeck in production: Prometheus metrics, liveness and readiness probes."""
