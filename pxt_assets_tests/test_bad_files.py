"""A bad file is a bad row, even when its decoder would crash (issue #25 item 5): images and video frames over
the pixel limit are refused from their header, decoded images share one byte budget, and PDFs are read in
a child process under memory and time limits. Each bad file sits among good rows: the batch commits, the
good rows have their values, the bad row's error is `resource_limit` (or `decode_error`) naming the file
and the column, this process survives and nothing is left for resume(). Every file is generated here
(mediagen); memory figures are in bench/, not here."""

from __future__ import annotations

import os
import threading

import pytest

import pxt_assets as pxt
from pxt_assets.functions.document import document_splitter
from pxt_assets.functions.video import frame_iterator
from pxt_assets.limits import DecodeBudget
from pxt_assets_tests.conftest import make_image
from pxt_assets_tests.mediagen import (
    make_huge_page_pdf,
    make_pdf_bomb,
    make_png_bomb,
    make_png_without_idat,
    make_text_pdf,
    make_video,
)


def _by_label(table, *columns) -> dict[str, dict]:
    return {r["label"]: r for r in table.select(table.label, *columns).collect().to_pandas().to_dict("records")}


def _nothing_pending(*tables) -> None:
    for t in tables:
        assert t.pending_batches() == []
        assert t.resume() == []


def test_an_image_over_the_pixel_limit_is_a_row_error_naming_file_and_column(pxt_home, instance, tmp_path,
                                                                                http_server):
    bomb = make_png_bomb(tmp_path / "bomb.png")  # 12,000 x 12,000 in ~17 KB
    assert bomb.stat().st_size < 100_000
    (tmp_path / "served" / "bomb.png").write_bytes(bomb.read_bytes())
    good = make_image(tmp_path / "good.png", size=(40, 30))
    pxt.create_dir("bad")
    t = pxt.create_table("bad/images", {"img": pxt.Image, "label": pxt.String})
    (tmp_path / "out").mkdir()
    t.add_computed_column(rotated=t.img.rotate(90), destination=str(tmp_path / "out"))
    t.add_computed_column(width=t.img.width)
    result = t.insert([{"img": str(good), "label": "good"},
                       {"img": str(bomb), "label": "bomb"},  # local: refused at insert, from its header
                       {"img": http_server.url("bomb.png"), "label": "bomb url"},  # fetched: refused at decode
                       {"img": str(good), "label": "good again"}], instance=instance)
    assert (result.num_rows, result.num_errors) == (4, 2)

    rows = _by_label(t, t.width, t.img.errortype, t.img.errormsg, t.rotated.errortype, t.rotated.errormsg)
    assert rows["good"]["width"] == 40 and rows["good again"]["width"] == 40
    assert rows["good"]["rotated_errortype"] is None
    local = rows["bomb"]
    assert local["img_errortype"] == "resource_limit"
    assert local["img_errormsg"].startswith("img: ") and str(bomb) in local["img_errormsg"]
    assert "12000 x 12000" in local["img_errormsg"] and "max_image_pixels" in local["img_errormsg"]
    remote = rows["bomb url"]
    assert remote["rotated_errortype"] == "resource_limit"
    assert "img: " in remote["rotated_errormsg"] and http_server.url("bomb.png") in remote["rotated_errormsg"]
    assert remote["rotated_errormsg"].startswith("rotated: ")
    _nothing_pending(t)


def test_a_png_without_image_data_says_so_naming_file_and_column(pxt_home, instance, tmp_path, http_server):
    broken = make_png_without_idat(tmp_path / "noidat.png")
    (tmp_path / "served" / "noidat.png").write_bytes(broken.read_bytes())
    good = make_image(tmp_path / "good.png")
    pxt.create_dir("bad")
    t = pxt.create_table("bad/images", {"img": pxt.Image, "label": pxt.String})
    t.add_computed_column(width=t.img.width)
    result = t.insert([{"img": str(good), "label": "good"}, {"img": str(broken), "label": "local"},
                       {"img": http_server.url("noidat.png"), "label": "url"}], instance=instance)
    assert result.num_errors == 2
    rows = _by_label(t, t.width, t.img.errortype, t.img.errormsg, t.width.errortype, t.width.errormsg)
    assert rows["good"]["width"] == 64
    assert rows["local"]["img_errortype"] == "decode_error"
    assert rows["local"]["img_errormsg"] == (f"img: not a readable image: {broken}: it has no image data "
                                             "(truncated, or a PNG without an IDAT chunk)")
    assert rows["url"]["width_errortype"] == "decode_error"
    message = rows["url"]["width_errormsg"]
    assert message.startswith("width: img: cannot decode image ") and http_server.url("noidat.png") in message
    assert "list index out of range" not in message
    _nothing_pending(t)


def test_a_video_whose_frames_are_over_the_pixel_limit_is_refused_before_a_frame_is_decoded(
        pxt_home, instance, tmp_path, monkeypatch):
    small = make_video(tmp_path / "small.mp4", seconds=1.0, size=(64, 48))
    large = make_video(tmp_path / "large.mp4", seconds=1.0, size=(160, 120))
    pxt.create_dir("bad")
    videos = pxt.create_table("bad/videos", {"video": pxt.Video, "label": pxt.String})
    videos.insert([{"video": str(small), "label": "small"}, {"video": str(large), "label": "large"}],
                  instance=instance)  # under the default limit: both stored
    monkeypatch.setenv("PIXELTABLE_MAX_IMAGE_PIXELS", str(64 * 48))  # 160 x 120 frames are now too large

    frames = pxt.create_view("bad/frames", videos, iterator=frame_iterator(videos.video, fps=2))
    got = frames.select(frames.frame, frames.frame.errortype, frames.frame.errormsg).collect()
    ok = [img for img in got["frame"] if img is not None]
    assert len(ok) == 2 and {img.size for img in ok} == {(64, 48)}
    (message,) = [m for m in got["frame_errormsg"] if m]
    assert {e for e in got["frame_errortype"] if e is not None} == {"resource_limit"}
    assert "(video " in message and str(large) in message and "160 x 120" in message
    assert message.startswith("frame: ")

    later = pxt.create_table("bad/later", {"video": pxt.Video, "label": pxt.String})
    result = later.insert([{"video": str(small), "label": "small"}, {"video": str(large), "label": "large"}],
                          instance=instance)
    assert result.num_errors == 1  # at insert, its first frame is not decoded to check it
    rows = _by_label(later, later.video.errortype, later.video.errormsg)
    assert rows["large"]["video_errortype"] == "resource_limit"
    assert rows["large"]["video_errormsg"].startswith("video: ") and str(large) in rows["large"]["video_errormsg"]
    assert rows["small"]["video_errortype"] is None
    _nothing_pending(videos, frames, later)


def test_pdfs_that_would_crash_or_flood_the_reader_are_rows_in_error_and_the_batch_commits(
        pxt_home, instance, tmp_path, monkeypatch):
    monkeypatch.setenv("PIXELTABLE_PDF_MEMORY_LIMIT_G", "0.25")  # the bomb inflates to 400 MB
    monkeypatch.setenv("PIXELTABLE_MAX_IMAGE_PIXELS", "1000000")
    good = make_text_pdf(tmp_path / "good.pdf", ["First page.", "Second page."])
    bomb = make_pdf_bomb(tmp_path / "bomb.pdf", inflated_mb=400)
    huge = make_huge_page_pdf(tmp_path / "huge.pdf")  # 200 x 200 inches: 14,400 x 14,400 pixels at 72 dpi
    assert bomb.stat().st_size < 1_000_000 and huge.stat().st_size < 1_000
    pxt.create_dir("bad")
    docs = pxt.create_table("bad/docs", {"doc": pxt.Document, "label": pxt.String})
    docs.add_computed_column(pages=docs.doc.get_page_count())
    docs.insert([{"doc": str(p), "label": p.stem} for p in (good, bomb, huge, good)], instance=instance)
    assert docs.where(docs.pages.errortype != None).count() == 0  # noqa: E711 - opening alone is harmless
    pages = pxt.create_view("bad/pages", docs, iterator=document_splitter(
        docs.doc, "page", elements=["text", "image"], metadata="page,image_dpi", image_dpi=72))

    rows = pages.select(pages.text, pages.image, pages.page, pages.image_dpi, pages.text.errortype,
                        pages.text.errormsg).collect().to_pandas().to_dict("records")
    fine = [r for r in rows if r["text_errortype"] is None]
    assert [r["text"] for r in fine if r["text"]] == ["First page.", "Second page."] * 2
    assert {(r["image"].size, r["image_dpi"]) for r in fine if r["text"]} == {((612, 792), 72)}
    (big,) = [r for r in fine if not r["text"]]
    assert big["image_dpi"] == 5 and big["image"].size == (1000, 1000)  # the largest dpi under the limit
    (crashed,) = [r for r in rows if r["text_errortype"] is not None]
    assert crashed["text_errortype"] == "resource_limit"
    message = crashed["text_errormsg"]
    assert message.startswith("text: ") and f"(doc {bomb.as_uri()}" in message and "pdf_memory_limit_g" in message
    _nothing_pending(docs, pages)
    assert docs.where(docs.pages == 2).count() == 2  # and the reader still reads


def test_a_pdf_request_over_the_time_limit_is_a_row_error(pxt_home, tmp_path, monkeypatch):
    from pxt_assets.functions import pdfchild
    from pxt_assets.limits import ResourceLimitError

    monkeypatch.setenv("PIXELTABLE_PDF_TIMEOUT_S", "0.000001")
    pdf = make_text_pdf(tmp_path / "doc.pdf", ["text"])
    with pytest.raises(ResourceLimitError, match=r"doc\.pdf took longer than the time limit .*pdf_timeout_s"):
        pdfchild.pdf_info(str(pdf))
    monkeypatch.setenv("PIXELTABLE_PDF_TIMEOUT_S", "60")
    assert pdfchild.pdf_info(str(pdf))["pages"] == 1  # a new reader replaced the one stopped


def test_a_pdf_is_read_in_a_process_holding_more_than_1024_descriptors(tmp_path):
    """A long-lived process (a notebook, the test suite) may hold more than 1,024 open files: the reader's
    pipe then gets a descriptor select() refuses ("filedescriptor out of range"); it is polled instead."""
    import resource

    from pxt_assets.functions import pdfchild

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"this machine allows {hard} open files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    pdf = make_text_pdf(tmp_path / "doc.pdf", ["text"])
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        pdfchild._POOL.close()  # a new reader, its pipes numbered past the 1,100 held here
        assert pdfchild.pdf_info(str(pdf))["pages"] == 1
    finally:
        for fd in held:
            os.close(fd)
        pdfchild._POOL.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_decoded_bytes_share_one_budget_and_an_image_larger_than_it_runs_alone():
    budget = DecodeBudget(limit=100)
    first = budget.reserve(60)
    waiting = threading.Event()
    got: list = []

    def second():
        waiting.set()
        got.append(budget.reserve(60))  # 120 > 100: waits for the first

    thread = threading.Thread(target=second)
    thread.start()
    waiting.wait()
    assert not got and budget.in_use == 60
    again = budget.reserve(60)  # this thread already holds bytes: never made to wait (no deadlock)
    again.release()
    first.release()
    thread.join(10)
    assert len(got) == 1 and budget.in_use == 60
    got[0].release()
    got[0].release()  # idempotent
    alone = budget.reserve(500)  # larger than the whole budget: runs when nothing else is held
    assert budget.in_use == 500
    alone.release()
    assert budget.in_use == 0 and budget.peak == 500
