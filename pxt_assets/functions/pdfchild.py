"""PDFs are opened, parsed and rendered in child processes, never in this one (as Apache Tika's ForkParser
does): a 1.8 MB PDF whose content stream inflates to a gigabyte makes PDFium abort the process that loads its
page, and a worker that aborts takes its whole batch with it.

Each child (`pdfworker.py`) runs under an address-space limit (the `pdf_memory_limit_g` setting, RLIMIT_AS)
and answers each request within a time limit (`pdf_timeout_s`); it is reused from file to file and row to
row, and replaced when it dies or is too slow. A file that crashes its child or exceeds a limit raises
`ResourceLimitError` (the row's error, `resource_limit`); one the reader rejects raises `PdfReadError`
(`decode_error`). Pages are rendered at the asked dpi, or at the largest one under the pixel limit
(`max_image_pixels`).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import pathlib
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import PIL.Image

from pxt_assets.config import current_settings
from pxt_assets.functions import pdfworker
from pxt_assets.limits import ResourceLimitError, max_image_pixels

WORKER = pathlib.Path(pdfworker.__file__)
#: children at once: row threads wanting a reader beyond this wait for one to be free
MAX_CHILDREN = max(2, min(4, os.cpu_count() or 2))
_START_TIMEOUT_S = 60.0


class PdfReadError(ValueError):
    """The PDF reader rejects the file (not a PDF, damaged, encrypted): `decode_error`."""

    kind = "decode_error"


class _Child:
    """One reader process and its pipes."""

    def __init__(self, memory_limit: int) -> None:
        self.memory_limit = memory_limit
        self.stderr = tempfile.TemporaryFile()  # why it died, if it dies starting
        # -P: the worker's folder (this package's functions) is not put on its sys.path
        self.proc = subprocess.Popen([sys.executable, "-P", str(WORKER), str(memory_limit)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.stderr, close_fds=True)
        self.dead = False
        try:
            reply, _ = self._read(time.monotonic() + _START_TIMEOUT_S, "starting")
        except ResourceLimitError as e:
            self.stderr.seek(0)
            tail = self.stderr.read()[-2000:].decode(errors="replace").strip()
            raise RuntimeError(f"the PDF reader process did not start: {e}; {tail}") from None
        if "ready" not in reply:
            self.kill()
            raise RuntimeError(f"the PDF reader process did not start: it said {reply!r}")

    def kill(self) -> None:
        self.dead = True
        with contextlib.suppress(OSError):
            self.proc.kill()
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            self.proc.wait(5)
        for f in (self.proc.stdin, self.proc.stdout, self.stderr):
            with contextlib.suppress(OSError):
                f.close()

    def _read_exactly(self, n: int, deadline: float | None, what: str) -> bytearray:
        fd = self.proc.stdout.fileno()
        out = bytearray(n)  # read in place: a page image is hundreds of MB, never copied
        view, got = memoryview(out), 0
        while got < n:
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                self.kill()
                raise ResourceLimitError(f"reading PDF {what} took longer than the time limit of "
                                         f"{current_settings().pdf_timeout_s:g} s (the pdf_timeout_s setting)")
            # poll, not select: select() refuses descriptors past 1023, which a long-lived process reaches
            poller = select.poll()
            poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
            ready = poller.poll(None if wait is None else math.ceil(wait * 1000))
            if not ready:
                continue
            read = os.readv(fd, [view[got:]])
            if not read:
                self._died(what)
            got += read
        return out

    def _died(self, what: str) -> None:
        self.kill()
        code = self.proc.returncode
        how = (f"killed by {signal.Signals(-code).name}" if code is not None and code < 0
               and -code in signal.Signals._value2member_map_ else f"exit status {code}")
        raise ResourceLimitError(
            f"reading PDF {what} crashed its reader process ({how}): the file needs more than its memory limit of "
            f"{self.memory_limit / 2**30:g} GiB (the pdf_memory_limit_g setting), or is malformed")

    def _read(self, deadline: float | None, what: str) -> tuple[dict[str, Any], bytearray]:
        head_len, payload_len = pdfworker._HEADER.unpack(
            self._read_exactly(pdfworker._HEADER.size, deadline, what))
        message = json.loads(self._read_exactly(head_len, deadline, what))
        return message, self._read_exactly(payload_len, deadline, what) if payload_len else bytearray()

    def request(self, message: dict[str, Any], what: str) -> tuple[dict[str, Any], bytearray]:
        """The child's answer to `message` (`what`: the file, and the page, for errors)."""
        if self.dead:
            raise ResourceLimitError(f"PDF {what}: its reader was stopped by an earlier request on this file")
        timeout = current_settings().pdf_timeout_s
        deadline = time.monotonic() + timeout if timeout > 0 else None
        try:
            pdfworker.send(self.proc.stdin, message)
        except (BrokenPipeError, OSError):
            self._died(what)
        reply, payload = self._read(deadline, what)
        if reply.get("error") == "resource_limit":
            raise ResourceLimitError(f"PDF {what}: {reply['message']}")
        if "error" in reply:
            raise PdfReadError(f"not a readable PDF: {what}: {reply['message']}")
        return reply, payload


class _Pool:
    """Idle children, reused; at most MAX_CHILDREN alive."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.idle: list[_Child] = []
        self.alive = 0
        self.pid = os.getpid()

    def _forked(self) -> None:
        if self.pid != os.getpid():  # a forked copy of this process: the parent's children are not ours
            self.idle, self.alive, self.pid = [], 0, os.getpid()

    def take(self) -> _Child:
        limit = current_settings().pdf_memory_limit_bytes
        with self.cond:
            self._forked()
            while True:
                stale = [c for c in self.idle if c.memory_limit != limit or c.proc.poll() is not None]
                for child in stale:  # a setting changed, or it died idle
                    self.idle.remove(child)
                    child.kill()
                    self.alive -= 1
                if self.idle:
                    return self.idle.pop()
                if self.alive < MAX_CHILDREN:
                    self.alive += 1
                    break
                self.cond.wait()
        try:
            return _Child(limit)
        except BaseException:
            with self.cond:
                self.alive -= 1
                self.cond.notify()
            raise

    def give_back(self, child: _Child) -> None:
        with self.cond:
            if self.pid != os.getpid():
                return
            if child.dead:
                self.alive -= 1
            else:
                self.idle.append(child)
            self.cond.notify()

    def close(self) -> None:
        """Stop the idle children (at exit; the next request starts new ones)."""
        with self.cond:
            idle, self.idle = self.idle, []
            self.alive -= len(idle)
        for child in idle:
            child.kill()


_POOL = _Pool()
atexit.register(_POOL.close)


@contextlib.contextmanager
def _child() -> Iterator[_Child]:
    child = _POOL.take()
    try:
        yield child
    finally:
        if not child.dead:
            with contextlib.suppress(ResourceLimitError, PdfReadError):
                child.request({"op": "close"}, "(closing)")  # the file's memory, given back now
        _POOL.give_back(child)


class PdfFile:
    """An open PDF, read in a child process: `pages`, `metadata`, `text(i)`, `render(i, dpi)`."""

    def __init__(self, child: _Child, path: str) -> None:
        self._child, self.path = child, str(path)
        reply, _ = child.request({"op": "open", "path": self.path}, self.path)
        self.pages: int = reply["pages"]
        self.metadata: dict[str, str] = reply["metadata"]

    def text(self, index: int) -> str:
        """The text of page `index` (0-based)."""
        reply, _ = self._child.request({"op": "text", "path": self.path, "page": index},
                                       f"{self.path} page {index + 1}")
        return reply["text"]

    def render(self, index: int, dpi: float) -> tuple[PIL.Image.Image, float]:
        """Page `index` as an image at `dpi`, or at the largest dpi under the pixel limit; (image, dpi used)."""
        reply, data = self._child.request(
            {"op": "render", "path": self.path, "page": index, "dpi": dpi, "max_pixels": max_image_pixels()},
            f"{self.path} page {index + 1}")
        # frombuffer: the image's pixels are the bytes read, not a copy of them
        image = PIL.Image.frombuffer(reply["mode"], tuple(reply["size"]), data, "raw", reply["mode"], 0, 1)
        return image, reply["dpi"]


@contextlib.contextmanager
def open_pdf(path: str) -> Iterator[PdfFile]:
    """`path` opened in a reader process held for the block."""
    with _child() as child:
        yield PdfFile(child, path)


def pdf_info(path: str) -> dict[str, Any]:
    """{'pages': n, 'metadata': {...}} of the PDF at `path` (ResourceLimitError, PdfReadError)."""
    with open_pdf(path) as pdf:
        return {"pages": pdf.pages, "metadata": pdf.metadata}


__all__ = ["MAX_CHILDREN", "PdfFile", "PdfReadError", "open_pdf", "pdf_info"]
