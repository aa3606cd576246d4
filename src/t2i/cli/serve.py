"""`t2i serve`: the web page and HTTP API."""

from __future__ import annotations

import argparse
from pathlib import Path

from t2i.cli.common import Help, add_speed_flags, positive_int, speed_config
from t2i.server.config import ServerConfig

EPILOG = """\
examples:
  t2i serve                                            # the shipped emoji model; open http://127.0.0.1:7860/
  t2i serve --model outputs/demo/pipeline
  t2i serve --model runs/pipe --port 8000 --max-steps 50
  t2i serve --model runs/pipe --host 0.0.0.0 --token-file ~/.t2i-token   # reachable from other machines
"""


class _Help(Help, argparse.RawDescriptionHelpFormatter):
    pass


def register(sub) -> None:
    d = ServerConfig()
    s = sub.add_parser("serve", formatter_class=_Help, help="a web page and HTTP API with live previews",
                       description="Serves one page (prompt, settings, a preview that sharpens at every step,\n"
                       "a gallery of PNGs that carry their parameters) and the HTTP API behind it\n"
                       "(docs/api.md; the schema is at /openapi.json). Jobs run one at a time; the\n"
                       "rest wait in a bounded queue.", epilog=EPILOG)
    s.add_argument("--model", type=Path, default=None,
                   help="pipeline folder (from t2i compose or t2i demo); default: the emoji model shipped with t2i")
    s.add_argument("--host", default=d.host,
                   help="address to listen on. The default is reachable from this machine only; any other address "
                   "(e.g. 0.0.0.0) exposes the server and needs --token")
    s.add_argument("--port", type=int, default=d.port, help="TCP port (0: any free port; the URL is printed)")
    s.add_argument("--token", default=None,
                   help="secret (16+ characters) every API call must send as 'Authorization: Bearer TOKEN'; the "
                   "page asks for it. Visible to other users in the process list: prefer --token-file")
    s.add_argument("--token-file", type=Path, default=None, help="read the token from this file (first line)")
    limits = s.add_argument_group("limits (a request over one is answered 4xx with the reason)")
    limits.add_argument("--max-width", type=positive_int, default=d.max_width, help="widest image, pixels")
    limits.add_argument("--max-height", type=positive_int, default=d.max_height, help="tallest image, pixels")
    limits.add_argument("--max-pixels", type=positive_int, default=d.max_pixels, help="width × height of one image")
    limits.add_argument("--max-steps", type=positive_int, default=d.max_steps, help="denoising steps per request")
    limits.add_argument("--max-images", type=positive_int, default=d.max_images, help="images per request")
    limits.add_argument("--max-prompt-chars", type=positive_int, default=d.max_prompt_chars,
                        help="characters in a prompt or negative prompt")
    limits.add_argument("--max-body-bytes", type=positive_int, default=d.max_body_bytes, help="request body size")
    limits.add_argument("--queue-size", type=int, default=d.queue_size,
                        help="jobs that may wait behind the running one; more are answered 503")
    limits.add_argument("--job-timeout", type=float, default=d.job_timeout_s,
                        help="seconds a job may run before it is stopped")
    limits.add_argument("--keep-jobs", type=positive_int, default=d.keep_jobs,
                        help="finished jobs whose images stay downloadable (in memory; oldest forgotten first)")
    s.add_argument("--quiet", action="store_true", help="do not log every request")
    add_speed_flags(s)
    s.set_defaults(run=run)


def server_config(args) -> ServerConfig:
    token = args.token
    if args.token_file is not None:
        lines = args.token_file.read_text().splitlines()
        token = lines[0].strip() if lines else ""
    config = ServerConfig(host=args.host, port=args.port, token=token, max_width=args.max_width,
                          max_height=args.max_height, max_pixels=args.max_pixels, max_steps=args.max_steps,
                          max_images=args.max_images, max_prompt_chars=args.max_prompt_chars,
                          max_body_bytes=args.max_body_bytes, queue_size=args.queue_size,
                          job_timeout_s=args.job_timeout, keep_jobs=args.keep_jobs)
    config.check()
    return config


def run(args, command: str) -> None:
    config = server_config(args)  # refuses an unsafe bind before anything loads
    import t2i
    from t2i.server.run import bind, serve

    sock = bind(config.host, config.port)
    pipe = t2i.load(args.model, speed=speed_config(args))  # None: the shipped emoji model
    name = args.model or "the shipped emoji model"
    serve(pipe, config, sock=sock, access_log=not args.quiet,
          on_ready=lambda url: print(f"t2i serve: {name} on {url}", flush=True))
