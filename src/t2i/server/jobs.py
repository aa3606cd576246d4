"""Jobs: a bounded queue in front of one worker thread, which runs one generation at a time.

A job is created from settings already checked against the server's limits. The worker calls the
pipeline with a per-step callback that records the decoded previews and is where a job stops:
when it was cancelled (by a client, or because its event stream closed) or ran past its time limit.
Listeners in the event loop wait on `Job.changed`, which the worker thread wakes.
"""

from __future__ import annotations

import asyncio
import io
import logging
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass

from PIL import Image

from t2i.images import save_png

log = logging.getLogger(__name__)

FINISHED = ("done", "failed", "cancelled")


@dataclass(frozen=True)
class JobSettings:
    """One request, fully resolved: no value left for the pipeline to choose."""

    prompt: str
    negative_prompt: str
    steps: int
    guidance: float
    seed: int  # image k uses seed + k
    sampler: str | None  # None: the model has no choice of sampler
    width: int
    height: int
    num_images: int


class QueueFull(Exception):
    pass


class _Stop(Exception):
    """Raised in the pipeline's callback to end a run between two steps."""


def png_bytes(img: Image.Image) -> bytes:
    """PNG with the image's generation parameters in a 'parameters' text chunk, if it has them."""
    buf = io.BytesIO()
    save_png(img, buf)
    return buf.getvalue()


def preview_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)  # speed over size: one per step
    return buf.getvalue()


class Job:
    def __init__(self, settings: JobSettings):
        self.id = secrets.token_urlsafe(16)  # opaque: the only handle on a job and its results
        self.settings = settings
        self.status = "queued"  # queued → running → done | failed | cancelled
        self.step = 0
        self.previews: list[bytes] = []  # PNGs of the latest step's predictions, while running
        self.images: list[bytes] = []  # PNGs of the results, with their parameters
        self.parameters: list[str] = []
        self.error: str | None = None
        self.error_kind: str | None = None  # "invalid", "timeout" or "internal", for failed jobs
        self.created = time.monotonic()
        self.started: float | None = None
        self.finished_at: float | None = None
        self.version = 0  # bumped on every change; listeners compare it
        self.listeners = 0  # open event streams; when the last one closes early, the job is cancelled
        self._stop_reason: str | None = None
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def seconds(self) -> float | None:
        """Time spent running, so far or in all."""
        if self.started is None:
            return None
        return (self.finished_at or time.monotonic()) - self.started

    def settings_dict(self) -> dict:
        return asdict(self.settings)

    def update(self, **fields) -> None:
        """Change fields and wake every listener (from any thread)."""
        with self._lock:
            # Readers do not take the lock: the status goes last, so a finished job already has its results.
            for k, v in sorted(fields.items(), key=lambda kv: kv[0] == "status"):
                setattr(self, k, v)
            self.version += 1
            waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            try:
                loop.call_soon_threadsafe(_wake, fut)
            except RuntimeError:  # that loop has closed; its listener is gone
                pass

    async def changed(self, version: int, timeout: float) -> None:
        """Return once the job's version differs from `version`, or after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._lock:
            if self.version != version:
                return
            self._waiters.append((loop, fut))
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                if (loop, fut) in self._waiters:
                    self._waiters.remove((loop, fut))


def _wake(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


class JobQueue:
    """At most `queue_size` jobs wait; one runs, in a single worker thread (one device, one job)."""

    def __init__(self, pipe, *, queue_size: int, job_timeout_s: float, keep_jobs: int):
        self.pipe = pipe
        self.queue_size = queue_size
        self.job_timeout_s = job_timeout_s
        self.keep_jobs = keep_jobs
        self.counts = {"submitted": 0, "refused": 0, "done": 0, "failed": 0, "cancelled": 0}
        self._pending: deque[Job] = deque()
        self._jobs: OrderedDict[str, Job] = OrderedDict()  # every job still known, oldest first
        self._running: Job | None = None
        self._closed = False
        self._cond = threading.Condition()
        self._worker = threading.Thread(target=self._work, name="t2i-server-worker", daemon=True)
        self._worker.start()

    # -- what the API calls ----------------------------------------------------------------------

    def submit(self, settings: JobSettings) -> Job:
        with self._cond:
            if self._closed or len(self._pending) >= self.queue_size + (self._running is None):
                self.counts["refused"] += 1
                raise QueueFull
            job = Job(settings)
            self._pending.append(job)
            self._jobs[job.id] = job
            self.counts["submitted"] += 1
            self._cond.notify_all()
        return job

    def get(self, job_id: str) -> Job | None:
        with self._cond:
            return self._jobs.get(job_id)

    def position(self, job: Job) -> int | None:
        """Jobs ahead of this one in the queue (0: it runs next), or None once it has left the queue."""
        with self._cond:
            try:
                return self._pending.index(job) + (self._running is not None)
            except ValueError:
                return None

    def cancel(self, job: Job, reason: str) -> None:
        """Stop a job: a queued one at once, a running one before its next step. Finished jobs stay as they are."""
        with self._cond:
            if job in self._pending:
                self._pending.remove(job)
                self._finish(job, "cancelled", error=reason)
                self._touch_pending()
                return
        if not job.finished and job._stop_reason is None:
            job._stop_reason = reason

    def forget(self, job: Job) -> None:
        self.cancel(job, "deleted by the client")
        with self._cond:
            self._jobs.pop(job.id, None)

    def stats(self) -> dict:
        with self._cond:
            return {"queued": len(self._pending), "running": self._running is not None,
                    "queue_size": self.queue_size, "jobs_kept": len(self._jobs), **self.counts}

    def close(self, timeout: float = 10.0) -> None:
        """Cancel everything and stop the worker."""
        with self._cond:
            self._closed = True
            pending, self._pending = list(self._pending), deque()
            for job in pending:
                self._finish(job, "cancelled", error="the server is shutting down")
            if self._running is not None:
                self._running._stop_reason = "the server is shutting down"
            self._cond.notify_all()
        self._worker.join(timeout)

    # -- the worker ------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                job = self._running = self._pending.popleft()
                self._touch_pending()
            try:
                self._run(job)
            finally:
                with self._cond:
                    self._running = None
                    self._forget_old()

    def _run(self, job: Job) -> None:
        s = job.settings
        deadline = time.monotonic() + self.job_timeout_s
        job.update(status="running", started=time.monotonic())

        def on_step(step: int, total: int, previews: list[Image.Image]) -> None:
            if job._stop_reason is not None:
                raise _Stop
            if time.monotonic() > deadline:
                job._stop_reason = "timeout"
                raise _Stop
            job.update(step=step, previews=[preview_bytes(p) for p in previews])

        try:
            images = self.pipe(s.prompt, negative_prompt=s.negative_prompt or None, num_images=s.num_images,
                               steps=s.steps, guidance=s.guidance, seed=s.seed, sampler=s.sampler,
                               height=s.height, width=s.width, callback=on_step)
        except _Stop:
            if job._stop_reason == "timeout":
                self._finish(job, "failed", error=f"the job ran past the time limit of {self.job_timeout_s:g} s",
                             error_kind="timeout")
            else:
                self._finish(job, "cancelled", error=job._stop_reason)
        except ValueError as e:  # settings the pipeline refuses: its message says why, in one line
            self._finish(job, "failed", error=str(e).splitlines()[0][:300], error_kind="invalid")
        except Exception:
            log.exception("job %s failed", job.id)
            self._finish(job, "failed", error="generation failed; the server's log has the details",
                         error_kind="internal")
        else:
            self._finish(job, "done", images=[png_bytes(img) for img in images],
                         parameters=[img.info.get("parameters", "") for img in images], step=s.steps)

    def _finish(self, job: Job, status: str, **fields) -> None:
        with self._cond:  # re-entrant: cancel() calls this holding it
            self.counts[status] += 1
        job.update(status=status, previews=[], finished_at=time.monotonic(), **fields)

    def _touch_pending(self) -> None:
        for job in self._pending:  # their positions changed
            job.update()

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.finished]
        for job in finished[: max(0, len(finished) - self.keep_jobs)]:
            del self._jobs[job.id]
