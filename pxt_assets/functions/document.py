"""Document functions: PDF through pypdfium2; Markdown, HTML and plain text read as UTF-8 text.

`t.doc.get_metadata()` (format, pages, title, ...), `t.doc.get_page_count()`.
"""

from __future__ import annotations

import pathlib
from typing import Any

from pxt_assets.functions.registry import register
from pxt_assets.media import Document, Int, Json

TEXT_FORMATS = {".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html", ".txt": "text"}


def document_format(path: str) -> str:
    """'pdf', 'markdown', 'html' or 'text', from the file's first bytes and its extension."""
    p = pathlib.Path(path)
    with open(p, "rb") as f:
        head = f.read(1024)
    if head.startswith(b"%PDF-"):
        return "pdf"
    fmt = TEXT_FORMATS.get(p.suffix.lower())
    if fmt is None and head.lstrip().lower().startswith((b"<!doctype html", b"<html")):
        fmt = "html"
    if fmt is None:
        raise ValueError(f"not a readable document: {path}: not a PDF, and not Markdown, HTML or text "
                         f"(by its extension {p.suffix or '(none)'})")
    return fmt


def check_document(path: str) -> None:
    """Raise ValueError unless the document opens: a PDF pypdfium2 can load, or UTF-8 text."""
    fmt = document_format(path)
    if fmt == "pdf":
        import pypdfium2 as pdfium

        try:
            pdfium.PdfDocument(str(path)).close()
        except pdfium.PdfiumError as e:
            raise ValueError(f"not a readable PDF: {path}: {e}") from None
    else:
        try:
            pathlib.Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"not a readable {fmt} document (UTF-8): {path}: {e}") from None


@register("document.get_metadata", applies_to=Document, returns=Json)
def get_metadata(document: str) -> dict[str, Any]:
    """{'format', 'pages', 'size', plus a PDF's title, author, ... when it has them}."""
    fmt = document_format(document)
    out: dict[str, Any] = {"format": fmt, "size": pathlib.Path(document).stat().st_size}
    if fmt == "pdf":
        import pypdfium2 as pdfium

        pdf = pdfium.PdfDocument(str(document))
        try:
            out["pages"] = len(pdf)
            out.update({k.lower(): v for k, v in pdf.get_metadata_dict(skip_empty=True).items()})
        finally:
            pdf.close()
    else:
        out["pages"] = 1  # text formats have no pages: the whole text is one
    return out


@register("document.get_page_count", applies_to=Document, returns=Int)
def get_page_count(document: str) -> int:
    """The number of pages (1 for Markdown, HTML and text)."""
    return get_metadata(document)["pages"]


__all__ = ["get_metadata", "get_page_count", "check_document"]
