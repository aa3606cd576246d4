"""What the server allows: where it listens, who may call it, and how much one request may ask for."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    """True for names and addresses that only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"  # address to bind; anything but loopback needs a token
    port: int = 7860  # TCP port; 0 picks a free one (printed at start)
    token: str | None = None  # bearer token every /api call must send; required off loopback
    max_width: int = 1024  # widest image a request may ask for (pixels)
    max_height: int = 1024  # tallest image a request may ask for (pixels)
    max_pixels: int = 512 * 512  # width × height of one image, at most
    max_steps: int = 150  # denoising steps per request, at most
    max_images: int = 8  # images per request, at most
    max_guidance: float = 30.0  # classifier-free guidance scale, at most
    max_prompt_chars: int = 1000  # characters in a prompt or a negative prompt, at most
    max_body_bytes: int = 16 * 1024  # size of a request body, at most (bytes)
    queue_size: int = 16  # jobs waiting behind the running one; more are answered 503
    job_timeout_s: float = 600.0  # a job running longer than this is stopped (seconds)
    keep_jobs: int = 64  # finished jobs whose results stay downloadable (oldest forgotten first)
    keepalive_s: float = 5.0  # an event stream sends a comment this often when nothing happens (seconds)

    def check(self) -> None:
        """Refuse settings that are unsafe or cannot work, with the flag that fixes them."""
        if not is_loopback(self.host) and not self.token:
            raise ValueError(f"--host {self.host} exposes the server beyond this machine; give --token too "
                             "(a long random secret that every API call must send)")
        if self.token is not None and len(self.token) < 16:
            raise ValueError(f"--token must be at least 16 characters, got {len(self.token)}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"--port must be between 0 and 65535, got {self.port}")
        for name in ("max_width", "max_height", "max_pixels", "max_steps", "max_images", "max_prompt_chars",
                     "max_body_bytes", "keep_jobs"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.queue_size < 0:
            raise ValueError(f"--queue-size must be at least 0, got {self.queue_size}")
        if self.job_timeout_s <= 0:
            raise ValueError(f"--job-timeout must be positive, got {self.job_timeout_s}")
