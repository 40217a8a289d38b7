"""The API's routers, one per resource; each declares its own request and response shapes."""
