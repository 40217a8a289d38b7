"""The web studio: server-rendered pages (Jinja2 templates, a stylesheet and small scripts, no
build step) served by the API's own FastAPI app, outside its OpenAPI schema. The pages call the
same account, planning and job functions as the JSON routers."""
