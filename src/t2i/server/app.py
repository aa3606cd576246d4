"""The HTTP API and the page, on FastAPI: one pipeline, one job queue, the guard in front.

Routes (docs/api.md describes each, with the event format and curl examples):
  GET  /                                  the page          GET  /static/{name}   its script and style
  GET  /api/info   /api/health            the model, the limits, the queue
  POST /api/generate                      generate and wait (a disconnect cancels)
  POST /api/jobs                          submit a job → 202 with its id
  GET  /api/jobs/{id}                     its state; /events: a Server-Sent Events stream of previews
  GET  /api/jobs/{id}/images/{index}      a result as PNG, parameters embedded
  POST /api/jobs/{id}/cancel              stop it;  DELETE /api/jobs/{id}: stop it and forget its results
"""

from __future__ import annotations

import asyncio
import base64
import json
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

import t2i
from t2i.server.config import ServerConfig
from t2i.server.jobs import Job, JobQueue, QueueFull
from t2i.server.limits import RequestError, offered_sizes, resolve
from t2i.server.schema import (
    BODY_ERRORS,
    GUARD_ERRORS,
    GenerateRequest,
    GenerateResult,
    Health,
    Info,
    JobView,
    Limits,
    errors,
)
from t2i.server.security import Guard

# The page's files, read once into memory: no route ever opens a path a client names.
STATIC_FILES = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}


# -- views of a job ------------------------------------------------------------------------------------


def _urls(job: Job) -> dict:
    base = f"/api/jobs/{job.id}"
    return {"status": base, "events": f"{base}/events", "cancel": f"{base}/cancel"}


def _images(job: Job, *, data: bool = False) -> list[dict]:
    out = []
    for k, png in enumerate(job.images):
        item = {"url": f"/api/jobs/{job.id}/images/{k}", "seed": job.settings.seed + k,
                "parameters": job.parameters[k]}
        if data:
            item["png_base64"] = base64.b64encode(png).decode()
        out.append(item)
    return out


def job_view(job: Job, jobs: JobQueue, *, data: bool = False) -> dict:
    seconds = job.seconds
    return {"id": job.id, "status": job.status, "position": jobs.position(job) if job.status == "queued" else None,
            "step": job.step, "total": job.settings.steps, "seconds": None if seconds is None else round(seconds, 3),
            "error": job.error, "settings": job.settings_dict(), "images": _images(job, data=data),
            "urls": _urls(job)}


def _sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


# -- the app -------------------------------------------------------------------------------------------


def create_app(pipe, config: ServerConfig) -> FastAPI:
    """The ASGI app serving `pipe` (any t2i pipeline) within `config`'s limits. Call `app.state.jobs.close()`
    (or run the app's lifespan) to stop its worker."""
    config.check()
    jobs = JobQueue(pipe, queue_size=config.queue_size, job_timeout_s=config.job_timeout_s,
                    keep_jobs=config.keep_jobs)
    static = resources.files("t2i.server") / "static"
    page = (static / "index.html").read_bytes()
    files = {name: ((static / name).read_bytes(), kind) for name, kind in STATIC_FILES.items()}

    @asynccontextmanager
    async def lifespan(app):
        yield
        await asyncio.to_thread(jobs.close)

    app = FastAPI(title="t2i", version=t2i.__version__, lifespan=lifespan,
                  description="Text-to-image generation with live step-by-step previews. "
                  "Errors are JSON {\"error\": message}. See docs/api.md.",
                  docs_url=None, redoc_url=None)  # Swagger UI and ReDoc load scripts from a CDN: not here
    app.state.jobs = jobs
    app.state.config = config

    @app.exception_handler(RequestError)
    async def request_error(request, e: RequestError):
        return JSONResponse({"error": str(e)}, status_code=e.status, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        message = first.get("msg", "invalid request")
        if first.get("type") == "json_invalid":
            return JSONResponse({"error": "the request body is not valid JSON"}, status_code=400)
        return JSONResponse({"error": f"{where}: {message}"}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request, e: HTTPException):
        return JSONResponse({"error": str(e.detail)}, status_code=e.status_code, headers=e.headers)

    @app.exception_handler(Exception)
    async def internal_error(request, e: Exception):  # never a traceback or a server path to the client
        return JSONResponse({"error": "internal error; the server's log has the details"}, status_code=500)

    def lookup(job_id: str) -> Job:
        job = jobs.get(job_id)
        if job is None:
            raise RequestError("no such job (finished jobs are kept for a while, then forgotten)", 404)
        return job

    def submit(req: GenerateRequest) -> Job:
        settings = resolve(req, pipe, config)
        try:
            return jobs.submit(settings)
        except QueueFull:
            raise RequestError(f"the queue is full ({config.queue_size} jobs waiting); try again shortly", 503,
                               headers={"Retry-After": "1"})

    # -- the page --------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    async def index():
        return Response(page, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})

    @app.get("/static/{name}", include_in_schema=False)
    async def static_file(name: str):
        if name not in files:
            raise RequestError("not found", 404)
        body, kind = files[name]
        return Response(body, media_type=kind, headers={"Cache-Control": "no-cache"})

    # -- the API ---------------------------------------------------------------------------------

    @app.get("/api/info", response_model=Info, responses=errors(*GUARD_ERRORS))
    async def info():
        """The model (variant, size, samplers, defaults) and the server's limits."""
        return {"t2i_version": t2i.__version__, "variant": pipe.info.get("variant", "latent"),
                "image_size": pipe.image_size, "sizes": offered_sizes(pipe.image_size, config),
                "samplers": list(pipe.samplers), "defaults": dict(pipe.defaults),
                "limits": {k: getattr(config, k) for k in Limits.model_fields},
                "token_required": config.token is not None}

    @app.get("/api/health", response_model=Health, responses=errors(*GUARD_ERRORS))
    async def health():
        """Liveness and queue counters."""
        return {"status": "ok", **jobs.stats()}

    @app.post("/api/generate", response_model=GenerateResult,
              responses=errors(*GUARD_ERRORS, *BODY_ERRORS, 400, 409, 500, 503, 504))
    async def generate(req: GenerateRequest, request: Request):
        """Generate and wait for the images, returned inline (base64 PNG) and by URL.

        Goes through the same queue as jobs; closing the connection cancels the job."""
        job = submit(req)
        try:
            version = -1
            while not job.finished:
                version = job.version
                await job.changed(version, timeout=0.5)
                if await request.is_disconnected():
                    jobs.cancel(job, "the client disconnected")
        finally:
            if not job.finished:  # this handler was cancelled
                jobs.cancel(job, "the client disconnected")
        if job.status == "done":
            return job_view(job, jobs, data=True)
        status = {"invalid": 422, "timeout": 504, "internal": 500}.get(job.error_kind, 409)
        return JSONResponse({"error": job.error or job.status}, status_code=status)

    @app.post("/api/jobs", status_code=202, response_model=JobView,
              responses=errors(*GUARD_ERRORS, *BODY_ERRORS, 400, 503))
    async def submit_job(req: GenerateRequest):
        """Queue a job; follow it with GET /api/jobs/{id}/events or poll GET /api/jobs/{id}."""
        return job_view(submit(req), jobs)

    @app.get("/api/jobs/{job_id}", response_model=JobView, responses=errors(*GUARD_ERRORS, 404))
    async def job_status(job_id: str):
        """The job's state, progress and (once done) the URLs of its images."""
        return job_view(lookup(job_id), jobs)

    @app.get("/api/jobs/{job_id}/events", responses={
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
              "description": "events: queued, progress (with previews), then one of done, failed, cancelled"},
        **errors(*GUARD_ERRORS, 404)})
    async def job_events(job_id: str):
        """Server-Sent Events: `queued` {position}, `progress` {step, total, previews: [data URL]}, then one of
        `done` {job}, `failed` {error}, `cancelled` {error}. Closing the last stream of an unfinished job
        cancels it."""
        job = lookup(job_id)
        return StreamingResponse(_events(job), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def _events(job: Job):
        job.listeners += 1
        ended = False
        try:
            seen, last_step, last_position = -1, -1, None
            while True:
                version = job.version
                if version == seen:
                    yield ": keep-alive\n\n"  # also how a vanished client is noticed
                seen = version
                if job.status == "queued":
                    position = jobs.position(job)
                    if position != last_position and position is not None:
                        last_position = position
                        yield _sse("queued", {"position": position})
                elif job.status == "running" and job.step != last_step and job.previews:
                    last_step = job.step
                    yield _sse("progress", {"step": job.step, "total": job.settings.steps,
                                            "previews": [_data_url(p) for p in job.previews]})
                elif job.finished:
                    ended = True
                    if job.status == "done":
                        yield _sse("done", job_view(job, jobs))
                    else:
                        yield _sse(job.status, {"error": job.error})
                    return
                await job.changed(seen, timeout=config.keepalive_s)
        finally:
            job.listeners -= 1
            if not ended and job.listeners == 0:
                jobs.cancel(job, "the client disconnected")

    @app.get("/api/jobs/{job_id}/images/{index}", response_class=Response, responses={
        200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
              "description": "the PNG, with its parameters in a 'parameters' text chunk"},
        **errors(*GUARD_ERRORS, 404)})
    async def job_image(job_id: str, index: str):
        """Image `index` (0-based) of a finished job, as a PNG download."""
        job = lookup(job_id)
        if not (index.isdigit() and len(index) < 4 and int(index) < len(job.images)):
            raise RequestError("no such image", 404)
        k = int(index)
        name = f"t2i-{job.settings.seed + k}.png"
        return Response(job.images[k], media_type="image/png",
                        headers={"Content-Disposition": f'attachment; filename="{name}"',
                                 "Cache-Control": "private, max-age=3600"})

    @app.post("/api/jobs/{job_id}/cancel", response_model=JobView, responses=errors(*GUARD_ERRORS, 404, 415))
    async def cancel_job(job_id: str):
        """Stop a queued or running job (before its next step). A finished job is left as it is."""
        job = lookup(job_id)
        jobs.cancel(job, "cancelled by the client")
        return job_view(job, jobs)

    @app.delete("/api/jobs/{job_id}", status_code=204, response_class=Response,
                responses=errors(*GUARD_ERRORS, 404))
    async def delete_job(job_id: str):
        """Cancel the job if it has not finished, and forget it and its images."""
        jobs.forget(lookup(job_id))
        return Response(status_code=204)

    app.add_middleware(Guard, config=config)
    return app
