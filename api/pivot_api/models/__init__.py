"""Model serving: ModelServer resources through the API, and predictions forwarded to their
Ready pods."""
