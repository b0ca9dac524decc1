"""Pixeltable's tests/functions/test_image.py, ported: the image functions we have (rotate, crop, resize,
thumbnail, transpose, convert, width, height, get_metadata) on Pixeltable's img_tbl shape (the sample images
here). The cases left out (the PIL functions we do not have, typed images, tiles), and why, are in
docs/pixeltable.md."""

from __future__ import annotations

import PIL.Image
import pytest
from PIL.Image import Transpose

import pxt_assets as pxt
from pxt_assets_tests.conftest import SAMPLES
from pxt_assets_tests.pixeltable._media_fixtures import column, rows


@pytest.fixture
def img_tbl(pxt_home):
    """Pixeltable's img_tbl (img, category, split), with the sample photos."""
    t = pxt.create_table("test_img_tbl", {"img": pxt.Image, "category": pxt.String, "split": pxt.String})
    t.insert([{"img": str(p), "category": p.stem, "split": "train"} for p in SAMPLES])
    return t


def test_size(img_tbl):
    """Ported from pixeltable tests/functions/test_image.py::TestImage::test_size (width and height; `size`
    is not ours)."""
    t = img_tbl
    res = rows(t.select(w=t.img.width, h=t.img.height, img=t.img).collect())
    assert all(row["img"].size == (row["w"], row["h"]) for row in res)


def test_image(img_tbl):
    """Ported from pixeltable tests/functions/test_image.py::TestImage::test_image (the functions we have;
    each result is checked rather than shown)."""
    t = img_tbl
    sizes = [img.size for img in column(t.select(t.img).collect(), "img")]
    rotated = column(t.select(r=t.img.rotate(90)).collect(), "r")
    assert [img.size for img in rotated] == [(h, w) for w, h in sizes]
    assert all(img.size == (10, 10) for img in column(t.select(c=t.img.crop((0, 0, 10, 10))).collect(), "c"))
    assert all(img.size == (100, 100) for img in column(t.select(r=t.img.resize([100, 100])).collect(), "r"))
    assert all(max(img.size) == 100 for img in column(t.select(r=t.img.thumbnail([100, 100])).collect(), "r"))
    flipped = column(t.select(f=t.img.transpose(Transpose.FLIP_LEFT_RIGHT)).collect(), "f")
    originals = column(t.select(t.img).collect(), "img")
    assert all(f.tobytes() == o.transpose(Transpose.FLIP_LEFT_RIGHT).tobytes() for f, o in zip(flipped, originals))
    assert all(img.mode == "RGBA" for img in column(t.select(c=t.img.convert(mode="RGBA")).collect(), "c"))
    assert all(isinstance(img, PIL.Image.Image) for img in column(t.select(c=t.img.convert("L")).collect(), "c"))


def test_get_metadata(img_tbl, tmp_path):
    """Ported from pixeltable tests/functions/test_image.py::TestImage::test_get_metadata (a generated 1000 x 750
    JPEG in place of sewing-threads-smaller.jpg; without the typed Json paths)."""
    t = img_tbl
    path = tmp_path / "sewing-threads-smaller.jpg"
    PIL.Image.new("RGB", (1000, 750), (120, 40, 200)).save(path)
    t.insert(img=str(path), category="sewing-threads", split="")
    t.add_computed_column(md=t.img.get_metadata())
    md = column(t.select(t.md).where(t.category == "sewing-threads").collect(), "md")[0]
    assert md == {"width": 1000, "height": 750, "mode": "RGB", "bits": 8, "format": "JPEG"}
