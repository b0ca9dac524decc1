"""An offline model in computed columns: face detection with the Haar cascades OpenCV's wheel ships
(`pip install 'pxt_assets[models]'`, i.e. opencv-python-headless<5; nothing is downloaded at run time).

    import pxt_assets as pxt
    from pxt_assets.examples.faces import detect_faces, draw_boxes

    t = pxt.create_table('faces/photos', {'photo': pxt.Image})
    t.add_computed_column(faces=detect_faces(t.photo))                       # Json: [{x, y, w, h}, ...]
    t.add_computed_column(annotated=draw_boxes(t.photo, t.faces), destination='s3://bucket/annotated/')
    t.insert([{'photo': 's3://bucket/photos/astronaut.jpg'}])
"""

from __future__ import annotations

import functools
import pathlib

import PIL.Image
import PIL.ImageDraw
import PIL.ImageOps

import pxt_assets as pxt
from pxt_assets import fsutil

CASCADE = "haarcascade_frontalface_default.xml"
ASTRONAUT = pathlib.Path(__file__).with_name("astronaut.jpg")  # NASA portrait (public domain), 256x256


@functools.lru_cache(maxsize=1)
def _cascade():
    import cv2

    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + CASCADE)
    if cascade.empty():
        raise RuntimeError(f"OpenCV could not load {CASCADE} from {cv2.data.haarcascades}")
    return cascade


@pxt.udf(batch_size=8)
def detect_faces(images: pxt.Batch[PIL.Image.Image], *, min_neighbors: int = 5) -> pxt.Batch[pxt.Json]:
    """Faces in each image as [{'x', 'y', 'w', 'h'}] (pixels), largest first."""
    import numpy as np

    cascade = _cascade()
    out = []
    for img in images:
        boxes = cascade.detectMultiScale(np.asarray(img.convert("L")), scaleFactor=1.1, minNeighbors=min_neighbors)
        found = [{"x": int(x), "y": int(y), "w": int(w), "h": int(h)} for x, y, w, h in boxes]
        out.append(sorted(found, key=lambda b: -b["w"] * b["h"]))
    return out


@pxt.udf
def draw_boxes(img: PIL.Image.Image, boxes: pxt.Json) -> PIL.Image.Image:
    """The image with a red rectangle around each box."""
    out = img.convert("RGB")  # a copy: the source image is shared by the row's columns
    draw = PIL.ImageDraw.Draw(out)
    for b in boxes or []:
        draw.rectangle((b["x"], b["y"], b["x"] + b["w"], b["y"] + b["h"]), outline=(255, 0, 0), width=3)
    return out


def sample_photos(folder: str | pathlib.Path) -> list[pathlib.Path]:
    """Photos to try it on: the astronaut portrait, mirrored, and scaled down (one face each), and two
    without a face (a gradient and a checkerboard)."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    src = PIL.Image.open(ASTRONAUT).convert("RGB")
    made = {
        "astronaut.jpg": src,
        "astronaut_mirrored.jpg": PIL.ImageOps.mirror(src),
        "astronaut_small.jpg": src.resize((192, 192)),
        "gradient.jpg": PIL.Image.linear_gradient("L").convert("RGB"),
        "checkerboard.png": PIL.Image.eval(PIL.Image.effect_noise((64, 64), 80), lambda v: 255 * (v > 128))
        .resize((256, 256), PIL.Image.Resampling.NEAREST),
    }
    out = []
    for name, img in made.items():
        path = folder / name
        fsutil.atomic_write(path, img.save)  # the temp file keeps the name's extension: Pillow's format
        out.append(path)
    return out


__all__ = ["detect_faces", "draw_boxes", "sample_photos", "ASTRONAUT"]
