"""What every worker process shares: wiring, metrics and health, logs, lifecycle, error policies."""
