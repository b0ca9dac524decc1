"""Shared by both sides of the benchmark: synthetic images, a moto S3 server, request counting at the client."""

from __future__ import annotations

import collections
import io
import os
import resource
import socket
import subprocess
import sys
import time

import numpy as np
import PIL.Image

SRC_BUCKET = "bench-src"
OUT_BUCKET = "bench-out"
WIDTH, HEIGHT = 1024, 768


def synthetic_jpeg(i: int) -> bytes:
    """A 1024x768 photo-like JPEG (smooth gradients plus texture), different for every i."""
    rng = np.random.default_rng(i)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    base = np.stack([
        (x / WIDTH * 255 + i * 7) % 256,
        (y / HEIGHT * 255 + i * 13) % 256,
        ((x + y) / (WIDTH + HEIGHT) * 255 + i * 29) % 256,
    ], axis=-1)
    noise = rng.normal(0, 12, size=(HEIGHT // 4, WIDTH // 4, 3)).repeat(4, 0).repeat(4, 1)
    img = PIL.Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto() -> tuple[subprocess.Popen, str]:
    """moto's S3 server in a process of its own, so it does not share the measured process's GIL."""
    port = free_port()
    moto = os.path.join(os.path.dirname(sys.executable), "moto_server")
    proc = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    raise TimeoutError("moto_server did not start")


def s3_env(endpoint: str) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1"}


class RequestCounter:
    """Counts S3 requests by (method, bucket) at a botocore client: what the client really sent."""

    def __init__(self) -> None:
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()

    def attach(self, client) -> None:
        client.meta.events.register("before-send.s3", self._count)

    def _count(self, request, **_):
        path = request.url.split("://", 1)[1].split("/", 2)
        bucket = path[1].split("?")[0] if len(path) > 1 else ""
        self.counts[(request.method, bucket)] += 1

    def get(self, method: str, bucket: str) -> int:
        return self.counts[(method, bucket)]


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork+exec, so a child
    would report its parent's peak (here: the parent that generated the images)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_seconds() -> float:
    """CPU time (user + system) this process has used so far, all threads."""
    t = os.times()
    return t.user + t.system
