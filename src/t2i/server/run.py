"""Running the app under uvicorn on a socket we bind ourselves (so port 0 works and the real port is known)."""

from __future__ import annotations

import socket
from collections.abc import Callable

from t2i.server.config import ServerConfig


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on exactly `host` (never widened to other interfaces)."""
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    return socket.create_server(address[:2], family=family, reuse_port=False, backlog=128)


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def serve(pipe, config: ServerConfig, *, on_ready: Callable[[str], None] | None = None,
          sock: socket.socket | None = None, access_log: bool = True) -> None:
    """Serve `pipe` until interrupted. `on_ready(url)` is called once the socket listens."""
    import uvicorn

    from t2i.server.app import create_app

    app = create_app(pipe, config)
    sock = sock or bind(config.host, config.port)
    server = uvicorn.Server(uvicorn.Config(
        app, log_level="info", access_log=access_log, timeout_graceful_shutdown=3,
        # Every open connection holds memory; event streams are long-lived, so bound them.
        limit_concurrency=max(64, 4 * (config.queue_size + 1)), timeout_keep_alive=5))
    if on_ready is not None:
        on_ready(url_of(sock))
    server.run(sockets=[sock])
