"""Every image mode Pillow opens goes through every image function and is stored in a format that holds it;
EXIF orientation is applied on decode (as browsers do); animations give their first frame."""

from __future__ import annotations

import io

import dagster as dg
import PIL.Image
import pytest

import pxt_assets as pxt
from pxt_assets.media import storable

MODES = ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "I", "I;16", "I;16B", "F",
         "La", "RGBa", "RGBX"]


def _sample(mode: str) -> PIL.Image.Image:
    base = PIL.Image.linear_gradient("L").resize((48, 32))
    if mode in ("I", "F"):
        return base.convert(mode).point(lambda v: v * 3)  # values beyond 8 bits
    if mode.startswith("I;16"):
        return base.convert("I").point(lambda v: v * 200).convert(mode)
    if mode in ("1", "L", "P"):
        return base.convert(mode)
    return PIL.Image.merge("RGB", [base, base.transpose(0), base.rotate(180)]).convert("RGBA").convert(mode) \
        if mode in ("RGBA", "RGB", "CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa") \
        else PIL.Image.new(mode, (48, 32))


@pytest.mark.parametrize("mode", MODES)
def test_a_mode_is_stored_in_a_format_that_holds_it(mode):
    img = _sample(mode)
    fmt, ext, to_save = storable(img)
    buf = io.BytesIO()
    to_save.save(buf, format=fmt)
    back = PIL.Image.open(io.BytesIO(buf.getvalue()))
    back.load()
    assert back.size == img.size
    if mode in ("I", "F", "I;16", "I;16B", "LAB", "1", "LA", "P", "RGBA"):  # kept exactly (lossless formats)
        assert back.mode == to_save.mode or (mode == "I;16B" and back.mode.startswith("I;16"))
        assert list(back.getdata()) == list(to_save.getdata())


def test_every_mode_through_every_image_function(pxt_home, instance, tmp_path):
    folder = tmp_path / "modes"
    folder.mkdir()
    rows = []
    for mode in MODES:
        img = _sample(mode)
        fmt, ext, to_save = storable(img)
        path = folder / f"{mode.replace(';', '_')}{ext}"
        to_save.save(path, format=fmt)
        rows.append({"img": str(path), "mode": mode})
    pxt.create_dir("modes")
    t = pxt.create_table("modes/all", {"img": pxt.Image, "mode": pxt.String})
    t.add_computed_column(rot=t.img.rotate(90))
    t.add_computed_column(flip=t.img.transpose(0))
    t.add_computed_column(small=t.img.resize((12, 8)))
    t.add_computed_column(thumb=t.img.thumbnail((16, 16)))
    t.add_computed_column(crop=t.img.crop((0, 0, 10, 10)))
    t.add_computed_column(gray=t.img.convert("L"))
    t.add_computed_column(w=t.img.width)
    result = t.insert(rows, instance=instance)
    report = t.select(t.mode, t.img.errormsg, t.rot.errormsg, t.flip.errormsg, t.small.errormsg, t.thumb.errormsg,
                      t.crop.errormsg, t.gray.errormsg).collect().to_pandas()
    assert result.num_errors == 0, report.dropna(how="all", subset=list(report.columns[1:])).to_string()
    got = t.select(t.mode, t.rot, t.thumb, t.small, t.crop, t.w).collect()
    assert got._repr_html_().count("<img") == 4 * len(MODES)  # every mode shows in a notebook
    assert all("preview" in (r.asset_materialization.metadata if r.asset_materialization else {})
               for r in instance.fetch_materializations(dg.AssetKey(["modes", "all", "rot"]), limit=1).records)
    for r in got:
        assert r["rot"].size == (32, 48) and r["small"].size == (12, 8) and r["crop"].size == (10, 10), r["mode"]
        assert max(r["thumb"].size) == 16 and r["w"] == 48, r["mode"]


def test_exif_orientation_is_applied_and_animations_give_their_first_frame(pxt_home, instance, tmp_path):
    img = PIL.Image.new("RGB", (40, 20), (200, 10, 10))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 clockwise to display
    rotated = tmp_path / "rotated.jpg"
    img.save(rotated, exif=exif)
    frames = [PIL.Image.new("RGB", (16, 12), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    gif, webp = tmp_path / "anim.gif", tmp_path / "anim.webp"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    frames[0].save(webp, save_all=True, append_images=frames[1:], duration=100, loop=0, lossless=True)
    pxt.create_dir("exif")
    t = pxt.create_table("exif/photos", {"img": pxt.Image})
    t.add_computed_column(w=t.img.width)
    t.add_computed_column(h=t.img.height)
    t.insert([{"img": str(p)} for p in (rotated, gif, webp)], instance=instance)
    got = t.select(t.w, t.h, t.img).collect()
    assert (got["w"][0], got["h"][0]) == (20, 40)  # shown upright, as browsers do
    for img in got["img"][1:]:
        assert img.convert("RGB").getpixel((3, 3))[0] > 200  # the first (red) frame
