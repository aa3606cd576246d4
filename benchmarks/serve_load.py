"""A bounded load test of `t2i serve`, on loopback only: N concurrent clients, a fixed number of requests.

Starts `t2i serve --model DIR --port 0` (127.0.0.1, a free port) in a subprocess, then:
  1. idle:  a few jobs one after another from one client (the baseline);
  2. load:  CLIENTS threads share REQUESTS requests, each one of
              stream   submit a job, follow its events to the end            (60 %)
              leave    submit, follow until the first preview, hang up       (15 %: the disconnect cancels it)
              cancel   submit, follow until the first preview, POST cancel   (10 %)
              sync     POST /api/generate and wait                           (15 %)
            a 503 (queue full) is counted and retried after a short pause, as a client would;
  3. after: every accepted job must be done or cancelled; the server must be idle, healthy and still generate.
It stops by itself: after REQUESTS requests or MAX_SECONDS, whichever comes first.

Prints latency percentiles (submit → done, submit → first preview) idle and under load, and their ratio.
Absolute times depend on the machine being quiet; the ratio is the comparison made in one run.

    python benchmarks/serve_load.py --model outputs/demo/pipeline
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ACTIONS = [("stream", 60), ("leave", 15), ("cancel", 10), ("sync", 15)]


def start_server(args) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "t2i.cli", "serve", "--model", str(args.model), "--host", "127.0.0.1", "--port", "0",
           "--quiet", "--queue-size", str(args.queue_size), "--keep-jobs", str(args.requests + 100),
           "--max-steps", str(args.steps)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    while True:
        line = lines.get(timeout=300)
        if m := re.search(r" on (http://127\.0\.0\.1:\d+)/", line):
            return proc, m.group(1)


def follow(client: httpx.Client, job: dict, t0: float, *, on_preview=None) -> tuple[str, float | None]:
    """Read the job's events to its end; returns (last event, seconds from t0 to the first preview).
    `on_preview()` runs at the first preview; if it returns False, the client hangs up there."""
    first, last = None, None
    with client.stream("GET", job["urls"]["events"]) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("event: "):
                continue
            last = line[7:]
            if last == "progress" and first is None:
                first = time.perf_counter() - t0
                if on_preview is not None and on_preview() is False:
                    return "left", first  # leaving the block closes the connection
            if last in ("done", "failed", "cancelled"):
                return last, first
    return last or "closed", first


class Load:
    def __init__(self, url: str, args):
        self.url, self.args = url, args
        self.lock = threading.Lock()
        self.issued = 0
        self.deadline = time.monotonic() + args.max_seconds
        self.statuses: dict[int, int] = {}
        self.outcomes: dict[str, int] = {}
        self.latency: list[float] = []  # submit → done, jobs followed to the end and sync calls
        self.first_preview: list[float] = []  # submit → first progress event
        self.accepted: list[str] = []
        self.errors: list[str] = []

    def take(self) -> int | None:
        with self.lock:
            if self.issued >= self.args.requests or time.monotonic() > self.deadline:
                return None
            self.issued += 1
            return self.issued

    def count(self, status: int, outcome: str | None = None) -> None:
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if outcome:
                self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def client(self, k: int) -> None:
        rng = random.Random(k)
        names, weights = zip(*ACTIONS)
        with httpx.Client(base_url=self.url, timeout=120) as c:
            while self.take() is not None:
                action = rng.choices(names, weights)[0]
                body = {"prompt": rng.choice(["a red circle", "a blue square", "a green diamond", "a purple square"]),
                        "steps": self.args.steps, "seed": rng.randrange(2**31)}
                try:
                    self.one(c, action, body)
                except Exception as e:  # a broken connection or a protocol error is a failure of the server
                    with self.lock:
                        self.errors.append(f"{action}: {type(e).__name__}: {e}")

    def one(self, c: httpx.Client, action: str, body: dict) -> None:
        t0 = time.perf_counter()
        if action == "sync":
            r = c.post("/api/generate", json=body)
            self.count(r.status_code, "sync " + ("done" if r.status_code == 200 else str(r.status_code)))
            if r.status_code == 200:
                self.latency.append(time.perf_counter() - t0)
                self.accepted.append(r.json()["id"])
            elif r.status_code == 503:
                retry_after(r)
            return
        r = c.post("/api/jobs", json=body)
        self.count(r.status_code)
        if r.status_code == 503:
            self.count(0, "refused (503)")
            retry_after(r)
            return
        if r.status_code != 202:
            return
        job = r.json()
        self.accepted.append(job["id"])
        on_preview = {"leave": lambda: False,
                      "cancel": lambda: self.count(c.post(job["urls"]["cancel"]).status_code)}.get(action)
        last, first = follow(c, job, t0, on_preview=on_preview)
        if first is not None:
            self.first_preview.append(first)
        if last == "done":
            self.latency.append(time.perf_counter() - t0)
        self.count(0, f"{action}: {last}")


def retry_after(r: httpx.Response) -> None:
    """Back off as the server asks (Retry-After), with jitter so that clients do not return together."""
    time.sleep(float(r.headers.get("retry-after", 1)) * random.uniform(0.5, 1.5))


def percentiles(xs: list[float]) -> dict:
    if not xs:
        return {}
    xs = sorted(xs)
    q = statistics.quantiles(xs, n=100, method="inclusive") if len(xs) > 1 else xs * 99
    return {"n": len(xs), "p50": q[49], "p90": q[89], "p99": q[98], "max": xs[-1]}


def idle_baseline(url: str, args) -> tuple[list[float], list[float]]:
    latency, first = [], []
    with httpx.Client(base_url=url, timeout=120) as c:
        for k in range(args.idle_jobs):
            t0 = time.perf_counter()
            job = c.post("/api/jobs", json={"prompt": "a red circle", "steps": args.steps, "seed": k}).json()
            last, f = follow(c, job, t0)
            assert last == "done", last
            latency.append(time.perf_counter() - t0)
            first.append(f)
    return latency, first


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=Path("outputs/demo/pipeline"), help="pipeline folder")
    p.add_argument("--clients", type=int, default=20, help="concurrent clients")
    p.add_argument("--requests", type=int, default=300, help="requests in all (the load stops after these)")
    p.add_argument("--max-seconds", type=float, default=600, help="the load stops after this long in any case")
    p.add_argument("--steps", type=int, default=8, help="denoising steps per job")
    p.add_argument("--queue-size", type=int, default=16,
                   help="the server's --queue-size (its default; below the number of clients, so that some meet a 503)")
    p.add_argument("--idle-jobs", type=int, default=5, help="jobs in the idle baseline")
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the server")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args()

    proc, url = start_server(args)
    try:
        idle_latency, idle_first = idle_baseline(url, args)
        load = Load(url, args)
        t0 = time.perf_counter()
        threads = [threading.Thread(target=load.client, args=(k,)) for k in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        with httpx.Client(base_url=url, timeout=120) as c:
            end = time.monotonic() + 120
            while (h := c.get("/api/health").json())["running"] or h["queued"]:
                assert time.monotonic() < end, "the server did not drain"
                time.sleep(0.1)
            final = {jid: c.get(f"/api/jobs/{jid}").json()["status"] for jid in load.accepted}
            after = c.post("/api/generate", json={"prompt": "a red circle", "steps": args.steps})
            health = c.get("/api/health").json()
    finally:
        proc.terminate()
        proc.wait(30)

    unfinished = {j: s for j, s in final.items() if s not in ("done", "cancelled")}
    server_errors = {s: n for s, n in load.statuses.items() if s >= 500 and s != 503}
    result = {
        "model": str(args.model), "clients": args.clients, "requests": load.issued, "steps": args.steps,
        "queue_size": args.queue_size, "load_wall_s": wall, "status_counts": {str(k): v for k, v in
                                                                            sorted(load.statuses.items()) if k},
        "outcomes": dict(sorted(load.outcomes.items())), "accepted_jobs": len(final),
        "final_states": {s: list(final.values()).count(s) for s in sorted(set(final.values()))},
        "unfinished_jobs": len(unfinished), "server_errors_other_than_503": server_errors,
        "client_errors": load.errors[:10], "refused_503": load.statuses.get(503, 0),
        "healthy_after": health["status"] == "ok" and after.status_code == 200,
        "idle": {"latency_s": percentiles(idle_latency), "first_preview_s": percentiles(idle_first)},
        "load": {"latency_s": percentiles(load.latency), "first_preview_s": percentiles(load.first_preview)},
    }
    print(f"t2i serve under load: {args.clients} clients, {load.issued} requests in {wall:.1f} s, "
          f"{args.steps} steps per job, queue {args.queue_size}, model {args.model}")
    print(f"  statuses {result['status_counts']}; outcomes {result['outcomes']}")
    print(f"  accepted jobs {len(final)}: {result['final_states']}; unfinished {len(unfinished)}; "
          f"5xx other than 503: {server_errors or 'none'}; client errors {len(load.errors)}; "
          f"healthy after: {result['healthy_after']}")
    print(f"  {'seconds':<28}{'n':>5}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}")
    for phase in ("idle", "load"):
        for name in ("first_preview_s", "latency_s"):
            q = result[phase][name]
            if q:
                print(f"  {phase + ' ' + name.replace('_s', '').replace('_', ' '):<28}{q['n']:>5}"
                      f"{q['p50']:>9.3f}{q['p90']:>9.3f}{q['p99']:>9.3f}{q['max']:>9.3f}")
    for name in ("first_preview_s", "latency_s"):
        if result["idle"][name] and result["load"][name]:
            ratio = result["load"][name]["p50"] / result["idle"][name]["p50"]
            result[f"p50_ratio_{name}"] = ratio
            print(f"  p50 {name.replace('_s', '').replace('_', ' ')}: load / idle = {ratio:.1f}×")
    ok = (not unfinished and not server_errors and not load.errors and result["healthy_after"])
    print("  PASS" if ok else "  FAIL", "(no 5xx but 503, every accepted job done or cancelled, healthy after;"
          + (" a full queue answered 503)" if result["refused_503"] else " the queue never filled)"))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
