"""`t2i serve`: a web page and HTTP API with live step-by-step previews.

`config.py`: the limits and the bind (`ServerConfig`). `security.py`: the checks in front of every route.
`jobs.py`: the bounded queue and the single worker. `schema.py`: the request and response bodies (OpenAPI).
`limits.py`: a request checked against the limits. `app.py`: the routes (FastAPI). `run.py`: uvicorn.
`static/`: the page (plain HTML, CSS and JavaScript). Importing this package imports neither torch nor FastAPI.
"""

from t2i.server.config import ServerConfig

__all__ = ["ServerConfig"]
