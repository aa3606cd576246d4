"""`t2i serve`: every API route and limit, the guard against cross-site and rebinding requests, path traversal,
disconnects, the queue, and schemathesis over the OpenAPI schema. Real servers (uvicorn on 127.0.0.1, an
ephemeral port) around the tiny demo pipeline."""

import base64
import http.client
import io
import json
import socket
import threading
import time
from contextlib import contextmanager
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from PIL import Image

from t2i.server.config import ServerConfig, is_loopback

SMALL = dict(max_steps=1000, max_images=2, max_width=32, max_height=32, max_pixels=32 * 24, max_prompt_chars=50,
             max_body_bytes=2000, queue_size=2)


@contextmanager
def live_server(pipe, **settings):
    """The app under uvicorn in a thread, on 127.0.0.1 and a free port; yields (base URL, app)."""
    import uvicorn

    from t2i.server.app import create_app
    from t2i.server.run import bind, url_of

    config = ServerConfig(**{"port": 0, **settings})
    app = create_app(pipe, config)
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "the server did not start"
        time.sleep(0.01)
    try:
        yield url_of(sock).rstrip("/"), app
    finally:
        server.should_exit = True
        thread.join(15)
        app.state.jobs.close()


@pytest.fixture(scope="module")
def server(pipe):
    with live_server(pipe, **SMALL) as (url, app):
        yield url, app


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server[0], timeout=60) as c:
        yield c


def wait_until(predicate, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out waiting")


def events(client, job_id):
    """Parse the job's Server-Sent Events stream into (event, data) pairs until it ends."""
    out = []
    with client.stream("GET", f"/api/jobs/{job_id}/events") as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                out.append((event, json.loads(line[6:])))
    return out


def idle(client):
    return wait_until(lambda: (h := client.get("/api/health").json())["running"] is False and h["queued"] == 0 and h)


def _png(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


# -- the routes ----------------------------------------------------------------------------------------


def test_info_describes_the_model_and_limits(client, pipe):
    info = client.get("/api/info").json()
    assert info["image_size"] == pipe.image_size and info["samplers"] == list(pipe.samplers)
    assert info["defaults"]["steps"] == pipe.defaults["steps"] and info["variant"] == "latent"
    assert info["limits"]["max_steps"] == 1000 and info["limits"]["max_images"] == 2
    assert all(s <= 32 and s * s <= 32 * 24 for s in info["sizes"]) and pipe.image_size in info["sizes"]
    assert info["token_required"] is False
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["queue_size"] == 2


def test_generate_returns_the_pipelines_images_with_their_parameters(client, pipe):
    r = client.post("/api/generate", json={"prompt": "a red circle", "seed": 5, "steps": 3, "num_images": 2,
                                           "guidance": 2.5, "sampler": "ddim", "negative_prompt": "a blue square"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "done" and body["step"] == 3 and [i["seed"] for i in body["images"]] == [5, 6]
    served = [_png(base64.b64decode(i["png_base64"])) for i in body["images"]]
    direct = pipe("a red circle", seed=5, steps=3, num_images=2, guidance=2.5, sampler="ddim",
                  negative_prompt="a blue square")
    for a, b in zip(served, direct):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert served[1].text["parameters"] == direct[1].info["parameters"] == body["images"][1]["parameters"]
    assert "Negative prompt: a blue square" in served[0].text["parameters"] and "Seed: 6," in served[1].text["parameters"]
    png = client.get(body["images"][1]["url"])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.headers["content-disposition"] == 'attachment; filename="t2i-6.png"'
    assert png.content == base64.b64decode(body["images"][1]["png_base64"])


def test_a_job_streams_a_preview_per_step_then_its_results(client, pipe):
    r = client.post("/api/jobs", json={"prompt": "a green diamond", "steps": 30, "seed": 1})
    assert r.status_code == 202
    job = r.json()
    assert job["status"] in ("queued", "running") and job["urls"]["events"] == f"/api/jobs/{job['id']}/events"
    stream = events(client, job["id"])
    names = [e for e, _ in stream]
    assert names[-1] == "done" and set(names[:-1]) <= {"queued", "progress"}
    steps = [d["step"] for e, d in stream if e == "progress"]
    assert len(steps) >= 2 and steps == sorted(set(steps)) and steps[-1] <= 30  # a slow reader may skip steps
    preview = [d for e, d in stream if e == "progress"][-1]["previews"][0]
    assert preview.startswith("data:image/png;base64,")
    assert _png(base64.b64decode(preview.split(",", 1)[1])).size == (pipe.image_size, pipe.image_size)
    done = stream[-1][1]
    assert done["status"] == "done" and len(done["images"]) == 1 and done["seconds"] > 0
    status = client.get(f"/api/jobs/{job['id']}").json()
    assert status["status"] == "done" and status["images"] == done["images"]
    assert events(client, job["id"])[-1][0] == "done"  # a finished job's stream says so at once


def test_cancel_stops_a_running_job_and_frees_the_worker(client):
    job = client.post("/api/jobs", json={"prompt": "a red circle", "steps": 1000}).json()
    wait_until(lambda: client.get(f"/api/jobs/{job['id']}").json()["step"] >= 1)
    r = client.post(f"/api/jobs/{job['id']}/cancel")
    assert r.status_code == 200
    final = wait_until(lambda: (s := client.get(f"/api/jobs/{job['id']}").json())["status"] != "running" and s)
    assert final["status"] == "cancelled" and final["error"] == "cancelled by the client"
    assert final["step"] < 1000 and final["images"] == []
    assert events(client, job["id"]) == [("cancelled", {"error": "cancelled by the client"})]
    assert client.post("/api/generate", json={"prompt": "a red circle", "steps": 2}).status_code == 200


def test_a_queued_job_can_be_cancelled_and_deleted(client):
    running = client.post("/api/jobs", json={"prompt": "a red circle", "steps": 1000}).json()
    queued = client.post("/api/jobs", json={"prompt": "a blue square", "steps": 2}).json()
    assert queued["status"] == "queued" and queued["position"] == 1
    assert client.post(f"/api/jobs/{queued['id']}/cancel").json()["status"] == "cancelled"
    assert client.delete(f"/api/jobs/{running['id']}").status_code == 204
    for path in (f"/api/jobs/{running['id']}", f"/api/jobs/{running['id']}/events", f"/api/jobs/{running['id']}/images/0"):
        r = client.get(path)
        assert r.status_code == 404 and r.json() == {"error": "no such job (finished jobs are kept for a while, "
                                                              "then forgotten)"}
    idle(client)


def test_images_are_served_only_by_index_of_a_finished_job(client):
    body = client.post("/api/generate", json={"prompt": "a red circle", "steps": 2}).json()
    base = f"/api/jobs/{body['id']}/images"
    assert client.get(f"{base}/0").status_code == 200
    for index in ("1", "-1", "01x", "99999", "0.png", "abc"):
        assert client.get(f"{base}/{index}").status_code == 404


def test_openapi_schema_is_served_and_the_cdn_pages_are_not(client):
    schema = client.get("/openapi.json").json()
    assert {"/api/generate", "/api/jobs", "/api/jobs/{job_id}", "/api/jobs/{job_id}/events",
            "/api/jobs/{job_id}/images/{index}", "/api/jobs/{job_id}/cancel", "/api/info", "/api/health"} \
        == set(schema["paths"])
    for page in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        assert client.get(page).status_code == 404


def test_the_page_and_its_files_carry_security_headers(client):
    page = client.get("/")
    assert page.status_code == 200 and "<title>t2i</title>" in page.text
    assert "http" not in page.text.replace("http://127.0.0.1:7860", "")  # nothing loaded from elsewhere
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff" and page.headers["x-frame-options"] == "DENY"
    for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind)
        assert r.headers["x-content-type-options"] == "nosniff"
    api = client.get("/api/health")
    assert api.headers["cache-control"] == "no-store" and api.headers["x-content-type-options"] == "nosniff"


# -- limits --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body, message", [
    ({"prompt": "x" * 51}, "prompt has 51 characters, over the limit of 50"),
    ({"prompt": "a", "negative_prompt": "y" * 51}, "negative_prompt has 51 characters, over the limit of 50"),
    ({"prompt": "   "}, "prompt is empty"),
    ({"prompt": "a\x00b"}, "prompt contains a control character (U+0000)"),
    ({"prompt": "a", "steps": 0}, "steps must be between 1 and 1000, got 0"),
    ({"prompt": "a", "steps": 1001}, "steps must be between 1 and 1000, got 1001"),
    ({"prompt": "a", "num_images": 3}, "num_images must be between 1 and 2, got 3"),
    ({"prompt": "a", "num_images": 0}, "num_images must be between 1 and 2, got 0"),
    ({"prompt": "a", "width": 40}, "width must be between 1 and 32, got 40"),
    ({"prompt": "a", "height": 0}, "height must be between 1 and 32, got 0"),
    ({"prompt": "a", "width": 32, "height": 32}, "32×32 is 1024 pixels, over the limit of 768"),
    ({"prompt": "a", "guidance": 31.0}, "guidance must be between 0 and 30, got 31.0"),
    ({"prompt": "a", "guidance": float("nan")}, "guidance must be between 0 and 30, got nan"),
    ({"prompt": "a", "guidance": -1}, "guidance must be between 0 and 30, got -1.0"),
    ({"prompt": "a", "sampler": "heun"}, "unknown sampler 'heun'; this model has ddim, ddpm, dpmpp_2m, euler"),
    ({"prompt": "a", "seed": -1}, "seed must be between 0 and 4294967295, got -1"),
    ({"prompt": "a", "seed": 2**32}, "seed must be between 0 and 4294967295, got 4294967296"),
    ({"prompt": "a", "steps": "5"}, "steps: Input should be a valid integer"),
    ({"prompt": "a", "num_image": 2}, "num_image: Extra inputs are not permitted"),
    ({}, "prompt: Field required"),
])
@pytest.mark.parametrize("route", ["/api/generate", "/api/jobs"])
def test_requests_over_a_limit_are_refused_with_the_reason(client, route, body, message):
    before = client.get("/api/health").json()["submitted"]
    r = client.post(route, content=json.dumps(body), headers={"Content-Type": "application/json"})  # NaN too
    assert r.status_code == 422 and r.json() == {"error": message}
    assert client.get("/api/health").json()["submitted"] == before  # nothing was queued


def test_settings_the_pipeline_refuses_are_a_422_with_its_reason(client):
    r = client.post("/api/generate", json={"prompt": "a red circle", "width": 12, "steps": 2})
    assert r.status_code == 422 and r.json()["error"].startswith("width 12 is not a positive multiple of 8")
    job = client.post("/api/jobs", json={"prompt": "a red circle", "width": 12, "steps": 2}).json()
    stream = events(client, job["id"])
    assert stream[-1][0] == "failed" and stream[-1][1]["error"].startswith("width 12 is not a positive multiple")


def test_bodies_too_large_malformed_or_not_json_are_refused(server, client):
    r = client.post("/api/jobs", json={"prompt": "a", "negative_prompt": "x" * 3000})
    assert r.status_code == 413 and r.json() == {"error": "the request body is over the limit of 2000 bytes"}
    chunked = client.post("/api/jobs", content=iter([b'{"prompt": "', b"x" * 3000, b'"}']),
                          headers={"Content-Type": "application/json"})
    assert chunked.status_code == 413 and "transfer-encoding" in chunked.request.headers
    bad = client.post("/api/jobs", content=b'{"prompt": ', headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.json() == {"error": "the request body is not valid JSON"}
    assert client.post("/api/jobs", content=b"[1, 2]", headers={"Content-Type": "application/json"}).status_code == 422


def test_a_full_queue_answers_503(pipe):
    with live_server(pipe, queue_size=1, max_steps=1000) as (url, _), httpx.Client(base_url=url, timeout=30) as c:
        first = c.post("/api/jobs", json={"prompt": "a", "steps": 1000}).json()
        wait_until(lambda: c.get(f"/api/jobs/{first['id']}").json()["status"] == "running")
        second = c.post("/api/jobs", json={"prompt": "a", "steps": 1000})
        assert second.status_code == 202 and second.json()["position"] == 1
        for route in ("/api/jobs", "/api/generate"):
            full = c.post(route, json={"prompt": "a", "steps": 1})
            assert full.status_code == 503 and full.json() == {"error": "the queue is full (1 jobs waiting); "
                                                                        "try again shortly"}
            assert full.headers["retry-after"] == "1"
        for job in (first, second.json()):
            c.post(f"/api/jobs/{job['id']}/cancel")
        health = idle(c)
        assert health["refused"] == 2 and health["cancelled"] == 2
        assert c.post("/api/generate", json={"prompt": "a", "steps": 1}).status_code == 200


def test_a_job_past_its_time_limit_is_stopped(pipe):
    # 1000 steps cannot finish in 0.3 s on any CPU; the worker is then free for the next job, which may itself
    # take longer than 0.3 s on a busy machine: only that it is taken up and ends is checked, not how.
    with live_server(pipe, job_timeout_s=0.3, max_steps=1000) as (url, _), httpx.Client(base_url=url, timeout=30) as c:
        r = c.post("/api/generate", json={"prompt": "a", "steps": 1000})
        assert r.status_code == 504 and r.json() == {"error": "the job ran past the time limit of 0.3 s"}
        health = idle(c)
        assert health["failed"] == 1 and health["done"] == 0
        job = c.post("/api/jobs", json={"prompt": "a", "steps": 1}).json()
        final = wait_until(lambda: (s := c.get(f"/api/jobs/{job['id']}").json())["status"] in ("done", "failed") and s)
        assert final["status"] == "done" or final["error"] == "the job ran past the time limit of 0.3 s"


def test_an_internal_error_reaches_the_client_without_details(pipe, monkeypatch):
    def broken(latents):
        raise RuntimeError("/secret/server/path exploded")

    with live_server(pipe) as (url, _), httpx.Client(base_url=url, timeout=30) as c:
        monkeypatch.setattr(pipe, "decode", broken)
        monkeypatch.setattr(pipe, "decode_preview", broken)  # previews go through the preview decoder
        r = c.post("/api/generate", json={"prompt": "a", "steps": 1})
        assert r.status_code == 500 and r.json() == {"error": "generation failed; the server's log has the details"}
        job = c.post("/api/jobs", json={"prompt": "a", "steps": 1}).json()
        assert events(c, job["id"]) == [("failed", {"error": "generation failed; the server's log has the details"})]
        monkeypatch.undo()
        assert c.post("/api/generate", json={"prompt": "a", "steps": 1}).status_code == 200


# -- disconnects ---------------------------------------------------------------------------------------


def _raw_request(url: str, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> socket.socket:
    host, port = urlsplit(url).hostname, urlsplit(url).port
    sock = socket.create_connection((host, port), timeout=60)  # a recv that waits longer fails, not hangs
    head = {"Host": f"{host}:{port}", "Content-Length": str(len(body)), **(headers or {})}
    sock.sendall(f"{method} {path} HTTP/1.1\r\n".encode() + "".join(f"{k}: {v}\r\n" for k, v in head.items()).encode()
                 + b"\r\n" + body)
    return sock


def test_closing_the_event_stream_cancels_the_job_and_frees_the_worker(server, client):
    job = client.post("/api/jobs", json={"prompt": "a red circle", "steps": 1000}).json()
    sock = _raw_request(server[0], "GET", f"/api/jobs/{job['id']}/events")
    received = b""
    while b"event: progress" not in received:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the stream before a progress event: {received!r}"
        received += chunk
    sock.close()
    final = wait_until(lambda: (s := client.get(f"/api/jobs/{job['id']}").json())["status"] != "running" and s)
    assert final["status"] == "cancelled" and final["error"] == "the client disconnected" and final["step"] < 1000
    assert client.post("/api/generate", json={"prompt": "a", "steps": 2}).json()["status"] == "done"


def test_closing_a_generate_call_cancels_its_job(server, client):
    cancelled = client.get("/api/health").json()["cancelled"]
    body = json.dumps({"prompt": "a red circle", "steps": 1000}).encode()
    sock = _raw_request(server[0], "POST", "/api/generate", body, {"Content-Type": "application/json"})
    wait_until(lambda: client.get("/api/health").json()["running"])
    sock.close()
    health = idle(client)
    assert health["cancelled"] == cancelled + 1


# -- safety --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers, status", [
    ({"Origin": "http://evil.example"}, 403),
    ({"Origin": "null"}, 403),
    ({"Origin": "http://127.0.0.1:1"}, 403),  # another port is another origin
    ({"Sec-Fetch-Site": "cross-site"}, 403),
    ({"Sec-Fetch-Site": "same-site"}, 403),
    ({"Content-Type": "text/plain"}, 415),  # what an HTML form or a no-CORS fetch may send
    ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
    ({"Content-Type": "multipart/form-data; boundary=x"}, 415),
])
def test_cross_origin_and_form_posts_are_refused(server, client, headers, status):
    before = client.get("/api/health").json()["submitted"]
    body = json.dumps({"prompt": "a red circle", "steps": 1}).encode()
    for route in ("/api/jobs", "/api/generate"):
        r = client.post(route, content=body, headers={"Content-Type": "application/json", **headers})
        assert r.status_code == status and "error" in r.json()
    assert client.get("/api/health").json()["submitted"] == before


def test_same_origin_posts_are_accepted(server, client):
    host = urlsplit(server[0]).netloc
    r = client.post("/api/generate", json={"prompt": "a", "steps": 1},
                    headers={"Origin": f"http://{host}", "Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 200


def test_a_foreign_host_header_is_refused(server):
    """DNS rebinding: a name the attacker controls, pointed at 127.0.0.1, arrives with its own Host header."""
    host, port = urlsplit(server[0]).hostname, urlsplit(server[0]).port
    for name in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example"):
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.request("GET", "/api/info", headers={"Host": name})
        r = conn.getresponse()
        assert r.status == 403 and json.loads(r.read()) == {"error": "this server does not answer to that Host name"}
    for name in (f"localhost:{port}", f"127.0.0.1:{port}"):
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.request("GET", "/api/info", headers={"Host": name})
        assert conn.getresponse().status == 200


def test_a_token_guards_every_api_call_but_not_the_page(pipe):
    token = "s3cret-token-0123456789"
    with live_server(pipe, token=token) as (url, _), httpx.Client(base_url=url, timeout=30) as c:
        assert c.get("/").status_code == 200 and c.get("/static/app.js").status_code == 200
        for method, path in (("GET", "/api/info"), ("GET", "/api/health"), ("POST", "/api/generate"),
                             ("POST", "/api/jobs"), ("GET", "/api/jobs/x"), ("POST", "/api/jobs/x/cancel")):
            for auth in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
                r = c.request(method, path, json={"prompt": "a"} if method == "POST" else None, headers=auth)
                assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        good = {"Authorization": f"Bearer {token}"}
        assert c.get("/api/info", headers=good).json()["token_required"] is True
        assert c.post("/api/generate", json={"prompt": "a", "steps": 1}, headers=good).status_code == 200


def test_unsafe_binds_are_refused():
    assert ServerConfig().host == "127.0.0.1" and is_loopback("127.0.0.1") and is_loopback("::1")
    assert is_loopback("localhost") and is_loopback("127.1.2.3") and not is_loopback("0.0.0.0")
    with pytest.raises(ValueError, match="--host 0.0.0.0 exposes the server beyond this machine; give --token"):
        ServerConfig(host="0.0.0.0").check()
    with pytest.raises(ValueError, match="--token must be at least 16 characters"):
        ServerConfig(host="0.0.0.0", token="short").check()
    ServerConfig(host="0.0.0.0", token="x" * 16).check()


# Encodings of "go up and read a file", and absolute paths, for every route that takes a path segment.
TRAVERSAL = ["../../../../etc/passwd", "..%2f..%2f..%2f..%2fetc%2fpasswd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
             "%252e%252e%252f%252e%252e%252fetc%252fpasswd", "..%252f..%252fetc%252fpasswd", "/etc/passwd",
             "%2fetc%2fpasswd", "..\\..\\..\\etc\\passwd", "..%5c..%5cetc%5cpasswd", "....//....//etc/passwd",
             "%c0%ae%c0%ae%c0%af%c0%ae%c0%ae%c0%afetc%c0%afpasswd", "link", "link%2f..%2fpasswd", "~root", "%00"]
ROUTES = [("GET", "/{}"), ("GET", "/static/{}"), ("GET", "/api/jobs/{}"), ("GET", "/api/jobs/{}/events"),
          ("GET", "/api/jobs/{}/images/0"), ("GET", "/api/jobs/JOB/images/{}"), ("POST", "/api/jobs/{}/cancel"),
          ("DELETE", "/api/jobs/{}")]


def test_traversal_attempts_on_every_path_route_find_nothing(server, client, tmp_path, monkeypatch):
    (tmp_path / "link").symlink_to("/etc/passwd")  # in the server's working directory
    monkeypatch.chdir(tmp_path)
    job = client.post("/api/generate", json={"prompt": "a", "steps": 1}).json()["id"]
    host, port = urlsplit(server[0]).hostname, urlsplit(server[0]).port
    for method, route in ROUTES:
        for attack in TRAVERSAL:
            conn = http.client.HTTPConnection(host, port, timeout=10)
            conn.putrequest(method, route.replace("JOB", job).format(attack), skip_accept_encoding=True)
            conn.putheader("Content-Length", "0")
            conn.endheaders()
            r = conn.getresponse()
            body = r.read()
            assert r.status in (403, 404), (method, route, attack, r.status)
            assert b"root:" not in body and b"/etc" not in body and b"Traceback" not in body


# -- schemathesis: generated requests (valid and invalid) for every operation in /openapi.json --------------


def test_schemathesis_finds_no_server_error(pipe):
    """Valid and invalid requests generated from the schema, for every operation: never a 5xx."""
    with live_server(pipe, **{**SMALL, "max_steps": 3, "queue_size": 500}) as (url, _):  # 503 is a 5xx too
        _run_schemathesis(url)


def _run_schemathesis(url):
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error

    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 9
    calls = []
    for operation in operations:
        # Invalid requests need a body to be invalid in: every path parameter here is any string.
        modes = ["positive", "negative"] if operation.body else ["positive"]
        for mode in modes:
            @given(case=operation.as_strategy(generation_mode=schemathesis.GenerationMode(mode)))
            @settings(max_examples=10, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            def check(case):
                response = case.call_and_validate(base_url=url, checks=[not_a_server_error], timeout=60)
                calls.append(response.status_code)

            check()
    assert len(calls) >= 60 and {404, 422} <= set(calls) and {200, 202} & set(calls) and max(calls) < 500
