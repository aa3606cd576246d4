"""The checks every request passes before it reaches a route, and the headers every response carries.

Local web UIs are attacked through the browser of the person running them: a page on another site
posts to http://127.0.0.1:PORT (cross-site request), or a name the attacker controls is re-pointed at
127.0.0.1 (DNS rebinding). So, for every request:
- the Host header must name this server (a loopback name when bound to loopback);
- API calls and state-changing requests from another origin are refused: an `Origin` other than the
  server's own (`Origin: null` included) or a browser's `Sec-Fetch-Site` of cross-site or same-site;
- a request body must be JSON (HTML forms can only send form encodings or text/plain, so they cannot
  post here) and at most `max_body_bytes`;
- with a token configured, every /api call must carry `Authorization: Bearer TOKEN`.
Refusals are JSON `{"error": ...}` with 4xx codes; nothing is logged back to the client but that line.
"""

from __future__ import annotations

import hmac
import json
from urllib.parse import urlsplit

from t2i.server.config import LOOPBACK_NAMES, ServerConfig

# The page is plain files from this server; nothing is loaded from anywhere else, nothing inline runs.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
                           "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def _host_name(host: str) -> str:
    """'127.0.0.1:7860' → '127.0.0.1'; '[::1]:7860' → '::1'."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    """ASGI middleware that enforces the checks above and adds the security headers."""

    def __init__(self, app, config: ServerConfig):
        self.app = app
        self.config = config
        bound = config.host.strip("[]").lower()
        # Bound to every interface, any name may reach us (the token guards it); else only our own names.
        self.any_host = bound in ("0.0.0.0", "::", "")
        self.host_names = {*LOOPBACK_NAMES, bound}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        extra = [*SECURITY_HEADERS, *([(b"cache-control", b"no-store")] if scope["path"].startswith("/api/") else [])]

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *((k, v) for k, v in extra if k not in present)]
            await send(message)

        headers = {}
        for k, v in scope["headers"]:
            headers.setdefault(k.decode("latin-1").lower(), v.decode("latin-1"))
        refusal = self.refusal(scope, headers)
        if refusal is None and scope["method"] not in SAFE_METHODS:
            body, refusal = await self._read_body(receive, headers)
            if refusal is None:
                receive = _replay(body, receive)
        if refusal is not None:
            status, message = refusal
            extra = [(b"www-authenticate", b"Bearer")] if status == 401 else []
            return await _json_error(send_with_headers, status, message, extra)
        await self.app(scope, receive, send_with_headers)

    def refusal(self, scope, headers: dict[str, str]) -> tuple[int, str] | None:
        """(status, message) when the request must not reach the app."""
        host = headers.get("host", "")
        if not self.any_host and _host_name(host).lower() not in self.host_names:
            return 403, "this server does not answer to that Host name"
        api = scope["path"].startswith("/api/")
        changes_state = scope["method"] not in SAFE_METHODS
        if api or changes_state:
            origin = headers.get("origin")
            if origin is not None and not _same_origin(origin, host):
                return 403, f"requests from another origin ({origin[:100]}) are refused"
            if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
                return 403, "cross-site requests are refused"
        if api and self.config.token is not None:
            given = headers.get("authorization", "")
            expected = f"Bearer {self.config.token}"
            if not hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode()):
                return 401, "this server needs 'Authorization: Bearer TOKEN' (the --token it was started with)"
        if changes_state:
            content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
            if (content_type or has_body) and content_type != "application/json":
                return 415, "send the request body as JSON (Content-Type: application/json)"
            length = headers.get("content-length", "0")
            if not length.isdigit():
                return 400, "the Content-Length header is not a number"
            if int(length) > self.config.max_body_bytes:
                return 413, f"the request body is over the limit of {self.config.max_body_bytes} bytes"
        return None

    async def _read_body(self, receive, headers) -> tuple[bytes, tuple[int, str] | None]:
        """Read the whole body, refusing it as soon as it passes the limit (chunked bodies included)."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"", (400, "the client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.config.max_body_bytes:
                return b"", (413, f"the request body is over the limit of {self.config.max_body_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), None


def _same_origin(origin: str, host: str) -> bool:
    if origin == "null":
        return False
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower() and not parts.path


def _replay(body: bytes, receive):
    """A receive() that hands the app the body already read, then waits on the connection as before."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _json_error(send, status: int, message: str, extra_headers=()):
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"cache-control", b"no-store"), *extra_headers]})
    await send({"type": "http.response.body", "body": body})


