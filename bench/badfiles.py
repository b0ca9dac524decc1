"""`python -m bench badfiles`: what bad files cost the process that computes their rows (issue #25 item 5).

Each scenario runs in a process of its own (peak RSS is that process's VmHWM; a PDF reader's own memory is
its child's, under `pdf_memory_limit_g`), with a fresh $PIXELTABLE_HOME, and inserts its files as one batch:

- `png_bombs`: 8 RGB PNGs of 12,000 x 12,000 black pixels (~420 KB each) and 2 good images, a table with
  `rotated = img.rotate(90)` and `width = img.width`;
- `large_images`: 8 RGB PNGs of 7,000 x 7,000 (under the pixel limit, 147 MB each decoded), the same
  columns, with `decode_budget_g` 0.3, 1 (the default) and 64 (no bound in practice);
- `pdf_bomb`: a PDF whose page's content stream inflates to 1 GB (~1 MB on disk), a 200-inch page and a
  good PDF, in a `document_splitter(..., 'page', elements=['text', 'image'])` view.

One JSON line per scenario: {"scenario", "rows", "errors", "errortypes", "seconds", "peak_rss_mb", ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib

from bench.common import peak_rss_mb

CACHE = pathlib.Path(__file__).with_name(".cache")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def black_png(path: pathlib.Path, width: int, height: int) -> pathlib.Path:
    """An RGB PNG of black pixels, written as zlib-compressed zero rows (a few hundred KB for 144 MP)."""
    if not path.exists():
        row = b"\0" * (1 + 3 * width)
        comp = zlib.compressobj(9)
        data = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
        header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b""))
    return path


def _run(scenario: str, work: pathlib.Path) -> dict:
    import PIL.Image

    import pxt_assets as pxt
    from pxt_assets.functions.document import document_splitter
    from pxt_assets.limits import DECODE_BUDGET
    from pxt_assets_tests.mediagen import make_huge_page_pdf, make_pdf_bomb, make_text_pdf

    inputs = work / "inputs"
    inputs.mkdir()
    pxt.create_dir("bench")
    start = time.perf_counter()
    if scenario in ("png_bombs", "large_images"):
        size = (12000, 12000) if scenario == "png_bombs" else (7000, 7000)
        source = black_png(CACHE / f"black_{size[0]}x{size[1]}.png", *size)
        files = []
        for i in range(8):
            files.append(inputs / f"big{i}.png")
            shutil.copyfile(source, files[-1])
        for i in range(2):
            files.append(inputs / f"good{i}.png")
            PIL.Image.new("RGB", (640, 480), (200, 30, 30)).save(files[-1])
        (work / "out").mkdir()
        t = pxt.create_table("bench/images", {"img": pxt.Image})
        t.add_computed_column(rotated=t.img.rotate(90), destination=str(work / "out"))
        t.add_computed_column(width=t.img.width)
        result = t.insert([{"img": str(f)} for f in files], on_error="ignore")
        after_insert = round(peak_rss_mb())
        types = t.select(t.img.errortype, t.rotated.errortype).collect().to_pandas()
        errortypes = sorted({str(v) for v in types.to_numpy().ravel() if v is not None})
        out = {"rows": result.num_rows, "errors": result.num_errors, "pending": t.pending_batches(),
               "peak_rss_mb_after_insert": after_insert, "decoded_peak_mb": round(DECODE_BUDGET.peak / 2**20)}
    else:
        files = [make_pdf_bomb(inputs / "bomb.pdf", inflated_mb=1024), make_huge_page_pdf(inputs / "huge.pdf"),
                 make_text_pdf(inputs / "good.pdf", ["One page."])]
        docs = pxt.create_table("bench/docs", {"doc": pxt.Document})
        docs.insert([{"doc": str(f)} for f in files], on_error="ignore")
        pages = pxt.create_view("bench/pages", docs, iterator=document_splitter(
            docs.doc, "page", elements=["text", "image"], metadata="image_dpi"))
        got = pages.select(pages.image_dpi, pages.text.errortype).collect().to_pandas()
        errortypes = sorted({str(v) for v in got["text_errortype"] if v is not None})
        out = {"rows": len(got), "errors": int(got["text_errortype"].notna().sum()),
               "image_dpi": sorted({float(v) for v in got["image_dpi"].dropna()}),
               "pending": docs.pending_batches() + pages.pending_batches()}
    return {"scenario": scenario, **out, "errortypes": errortypes, "seconds": round(time.perf_counter() - start, 2),
            "peak_rss_mb": round(peak_rss_mb())}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench badfiles")
    parser.add_argument("--scenario", choices=["png_bombs", "large_images", "pdf_bomb"])
    parser.add_argument("--decode-budget-g", type=float, default=None)
    args = parser.parse_args(argv)
    if args.scenario:  # one scenario, in this (child) process
        with tempfile.TemporaryDirectory() as tmp:
            work = pathlib.Path(tmp)
            os.environ["PIXELTABLE_HOME"] = str(work / "home")
            if args.decode_budget_g is not None:
                os.environ["PIXELTABLE_DECODE_BUDGET_G"] = str(args.decode_budget_g)
            result = _run(args.scenario, work)
            if args.decode_budget_g is not None:
                result["decode_budget_g"] = args.decode_budget_g
            print(json.dumps(result))
        return
    runs = [("png_bombs", None), ("large_images", 0.3), ("large_images", 1.0), ("large_images", 64.0), ("pdf_bomb", None)]
    for scenario, budget in runs:
        cmd = [sys.executable, "-m", "bench", "badfiles", "--scenario", scenario]
        if budget is not None:
            cmd += ["--decode-budget-g", str(budget)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            print(json.dumps({"scenario": scenario, "decode_budget_g": budget, "exit": done.returncode,
                              "stderr": done.stderr[-500:]}))
            continue
        print(done.stdout.strip().splitlines()[-1], flush=True)
