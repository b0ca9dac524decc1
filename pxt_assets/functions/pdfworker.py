"""The PDF reader's child process: opens, parses and renders PDFs with pypdfium2 under an address-space
limit, for `pdfchild` (the parent's side), which restarts it when it dies or takes too long.

Run by path (`python pdfworker.py LIMIT_BYTES`), not as a module of the package: the child imports the
standard library, pypdfium2 and Pillow only, so it starts in a fraction of a second and its memory limit
is spent on PDFs, not on Dagster. Messages both ways are a JSON header and a binary payload (a rendered
page's pixels), length-prefixed (`send` / `receive`): no pickle, so a reader subverted by a crafted file
cannot run code in the parent by what it answers.
"""

from __future__ import annotations

import json
import math
import os
import resource
import struct
import sys
from typing import Any, BinaryIO

_HEADER = struct.Struct(">IQ")  # JSON length, payload length


def send(out: BinaryIO, message: dict[str, Any], payload: bytes | memoryview = b"") -> None:
    head = json.dumps(message).encode()
    out.write(_HEADER.pack(len(head), len(payload)) + head)
    if payload:
        out.write(payload)
    out.flush()


def receive(inp: BinaryIO) -> tuple[dict[str, Any] | None, bytes]:
    """The next message, or (None, b'') at the end of the stream."""
    prefix = inp.read(_HEADER.size)
    if len(prefix) < _HEADER.size:
        return None, b""
    head_len, payload_len = _HEADER.unpack(prefix)
    message = json.loads(inp.read(head_len))
    return message, inp.read(payload_len) if payload_len else b""


def fitting_dpi(width_pt: float, height_pt: float, dpi: float, max_pixels: int) -> float:
    """`dpi`, or the largest whole dpi at which a `width_pt` x `height_pt` page (1/72 inch units) renders to
    at most `max_pixels` pixels; 0 if not even 1 dpi fits."""
    def pixels(d: float) -> int:
        return max(1, round(width_pt * d / 72)) * max(1, round(height_pt * d / 72))

    if pixels(dpi) <= max_pixels:
        return dpi
    d = math.floor(72 * math.sqrt(max_pixels / max(width_pt * height_pt, 1e-9)))
    while d >= 1 and pixels(d) > max_pixels:
        d -= 1
    return float(max(d, 0))


class _Reader:
    """The one open document (kept open across requests for the same file)."""

    def __init__(self) -> None:
        import pypdfium2 as pdfium

        self.pdfium = pdfium
        self.path: str | None = None
        self.doc: Any = None

    def close(self) -> None:
        if self.doc is not None:
            self.doc.close()
        self.doc = self.path = None

    def open(self, path: str) -> Any:
        if self.path != path:
            self.close()
            self.doc = self.pdfium.PdfDocument(path)
            self.path = path
        return self.doc

    def handle(self, req: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        op = req["op"]
        if op == "close":
            self.close()
            return {}, b""
        doc = self.open(req["path"])
        if op == "open":
            return {"pages": len(doc), "metadata": doc.get_metadata_dict(skip_empty=True)}, b""
        page = doc[req["page"]]
        try:
            if op == "text":
                textpage = page.get_textpage()
                try:
                    return {"text": textpage.get_text_range()}, b""
                finally:
                    textpage.close()
            if op == "render":
                width, height = page.get_size()
                dpi = fitting_dpi(width, height, req["dpi"], req["max_pixels"])
                if dpi < 1:
                    return {"error": "resource_limit", "message": (
                        f"page {req['page'] + 1} is {width / 72:.0f} x {height / 72:.0f} inches: over "
                        f"{req['max_pixels']:,} pixels (the max_image_pixels setting) even at 1 dpi")}, b""
                image = page.render(scale=dpi / 72).to_pil()
                data = image.tobytes()
                return {"mode": image.mode, "size": list(image.size), "dpi": dpi}, data
        finally:
            page.close()
        raise ValueError(f"unknown request {op!r}")


def serve(limit: int) -> None:
    out = os.fdopen(os.dup(1), "wb")  # the answers' own descriptor: whatever the library prints goes to stderr
    os.dup2(2, 1)
    inp = sys.stdin.buffer
    reader = _Reader()  # pypdfium2 imported before the limit: only what PDFs need is counted against it
    if limit > 0:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    send(out, {"ready": os.getpid()})
    while True:
        req, _ = receive(inp)
        if req is None:
            return
        try:
            reply, payload = reader.handle(req)
        except MemoryError:
            reader.close()
            reply, payload = {"error": "resource_limit", "message": "out of memory (the pdf_memory_limit_g setting)"}, b""
        except reader.pdfium.PdfiumError as e:
            reply, payload = {"error": "decode_error", "message": str(e)}, b""
        except Exception as e:  # noqa: BLE001 - the request's failure, answered; the process goes on
            reply, payload = {"error": "decode_error", "message": f"{type(e).__name__}: {e}"}, b""
        send(out, reply, payload)


if __name__ == "__main__":
    serve(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
