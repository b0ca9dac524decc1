"""Test media made here, never downloaded: H.264 video and AAC/MP3/WAV audio encoded with PyAV, PDFs written
with pypdfium2, text documents."""

from __future__ import annotations

import math
import pathlib
import wave

import numpy as np


def make_video(path: pathlib.Path, *, seconds: float = 2.0, fps: int = 10, size: tuple[int, int] = (64, 48),
               codec: str = "libx264", gop: int | None = None) -> pathlib.Path:
    """A video whose frame i is a flat grey of level (10 * i) % 256, so tests can tell frames apart."""
    import av

    w, h = size
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if gop is not None:
            stream.codec_context.gop_size = gop
        for i in range(int(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(np.full((h, w, 3), (10 * i) % 256, dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def make_wav(path: pathlib.Path, *, seconds: float = 2.0, rate: int = 16000, tone_hz: float = 440.0) -> pathlib.Path:
    n = int(seconds * rate)
    samples = (np.sin(2 * math.pi * tone_hz * np.arange(n) / rate) * 8000).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path


def make_pdf(path: pathlib.Path, pages: int = 3) -> pathlib.Path:
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument.new()
    for _ in range(pages):
        doc.new_page(612, 792)
    doc.save(str(path))
    doc.close()
    return path
