"""Events, structured logs and (later) metrics."""
