"""Running as several replicas: the poller's lease, the update stream, the rate limit."""
