"""What the ported media tests (test_video, test_audio, test_document, functions/test_image) share: generated
test media in place of Pixeltable's (tests/data holds megabytes of video and audio), the small documents its
repository holds (copied into pxt_assets_tests/data/pixeltable/), and results read the same way whether
collect() gives Pixeltable's ResultSet or a DataFrame."""

from __future__ import annotations

import pathlib
from typing import Any

import pandas as pd

#: Pixeltable's tests/data/documents files small enough to keep (pxtbrief.txt, simple.md, simple1.html, ...)
DOCUMENTS = pathlib.Path(__file__).resolve().parent.parent / "data" / "pixeltable"

#: what Pixeltable raises as pxt.RequestError for an invalid argument; ours: ValueError (SpecError is one)
Error = (ValueError, TypeError)


def rows(res: Any) -> list[dict[str, Any]]:
    """A query result's rows as dicts (Pixeltable: `list(res)`)."""
    return res.to_dict("records") if isinstance(res, pd.DataFrame) else list(res)


def column(res: Any, name: str) -> list[Any]:
    """A query result's column as a list (Pixeltable: `res[name]`)."""
    return list(res[name])


def view_errors(view: Any, column_name: str) -> list[str]:
    """The error messages of a view's rows in `column_name` (a base row its iterator failed on)."""
    col = getattr(view, column_name)
    return column(view.where(col.errortype != None).select(msg=col.errormsg).collect(), "msg")  # noqa: E711
