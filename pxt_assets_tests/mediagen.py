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


def make_audio(path: pathlib.Path, *, seconds: float = 2.0, rate: int = 44100, codec: str = "aac") -> pathlib.Path:
    """A compressed audio file (AAC in .m4a, MP3 in .mp3), encoded with PyAV."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        n, chunk = int(seconds * rate), 1024
        t = np.arange(n) / rate
        samples = (np.sin(2 * math.pi * 440 * t) * 0.3).astype(np.float32)
        fmt = "fltp"
        for start in range(0, n, chunk):
            frame = av.AudioFrame.from_ndarray(samples[None, start:start + chunk], format=fmt, layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def make_text_pdf(path: pathlib.Path, pages: list[str], title: str | None = None) -> pathlib.Path:
    """A PDF whose pages hold these texts (Helvetica, one line per text line), written by hand: pypdfium2 and
    any reader extract the text."""
    objects: list[bytes] = []
    kids = []
    font_id = 3
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(b"")  # pages, filled below
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for text in pages:
        lines = text.split("\n")
        ops = ["BT", "/F1 12 Tf", "14 TL", "72 720 Td"]
        for line in lines:
            escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(f"({escaped}) Tj T*")
        ops.append("ET")
        stream = "\n".join(ops).encode("latin-1")
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        content_id = len(objects)
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
                       b"/Resources << /Font << /F1 %d 0 R >> >> >>" % (content_id, font_id))
        kids.append(len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (" ".join(f"{k} 0 R" for k in kids).encode(), len(kids))
    info_id = None
    if title is not None:
        objects.append(b"<< /Title (%s) >>" % title.encode("latin-1"))
        info_id = len(objects)
    return _write_pdf(path, objects, info_id)


def _write_pdf(path: pathlib.Path, objects: list[bytes], info_id: int | None = None) -> pathlib.Path:
    """A PDF file of `objects` (object 1 the catalog; `info_id` the document information, if any)."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    trailer = b"<< /Size %d /Root 1 0 R" % (len(objects) + 1)
    if info_id:
        trailer += b" /Info %d 0 R" % info_id
    out += b"trailer\n" + trailer + b" >>\nstartxref\n%d\n%%%%EOF\n" % xref
    path.write_bytes(bytes(out))
    return path


# -- bad files: small on disk, huge (or broken) when decoded ---------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def make_png_bomb(path: pathlib.Path, width: int = 12000, height: int = 12000) -> pathlib.Path:
    """A bilevel PNG of `width` x `height` black pixels: zlib-compressed zero rows, ~17 KB for 144 megapixels."""
    import struct
    import zlib

    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + the row's bits
    comp = zlib.compressobj(9)
    data = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data)
                     + _png_chunk(b"IEND", b""))
    return path


def make_png_without_idat(path: pathlib.Path, width: int = 10, height: int = 10) -> pathlib.Path:
    """A PNG with a header and no image data (Pillow: `list index out of range`)."""
    import struct

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IEND", b""))
    return path


def make_raw_pdf(path: pathlib.Path, content: list[bytes], media_box: tuple[int, int, int, int] = (0, 0, 612, 792),
                 ) -> pathlib.Path:
    """A one-page PDF whose content stream is the concatenation of `content`, FlateDecode-compressed (a stream
    of a repeated chunk inflates to far more than the file's size)."""
    import zlib

    comp = zlib.compressobj(9)
    data = b"".join(comp.compress(c) for c in content) + comp.flush()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [%d %d %d %d] /Contents 4 0 R >>" % media_box,
               b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + b"\nendstream"]
    return _write_pdf(path, objects)


def make_pdf_bomb(path: pathlib.Path, inflated_mb: int = 400) -> pathlib.Path:
    """A PDF of a few hundred KB whose page's content stream inflates to `inflated_mb` MB (blanks)."""
    return make_raw_pdf(path, [b" " * (1 << 20)] * inflated_mb)


def make_huge_page_pdf(path: pathlib.Path, inches: int = 200) -> pathlib.Path:
    """A PDF of a few hundred bytes with one `inches` x `inches` page (at 300 dpi: 60,000 x 60,000 pixels)."""
    return make_raw_pdf(path, [b"0 0 m 72 72 l S\n"], (0, 0, 72 * inches, 72 * inches))
