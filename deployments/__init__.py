"""Ray Serve: the FastAPI ingress (routers, auth, errors, rate limits) and the engines."""
