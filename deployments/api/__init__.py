"""The HTTP API: the FastAPI app and its Serve ingress, routers, dependencies, security, problems,
rate limits and idempotency."""
