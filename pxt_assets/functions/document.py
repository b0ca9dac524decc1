"""Document functions: PDF through pypdfium2; Markdown, HTML and plain text read as UTF-8 text.

`t.doc.get_metadata()` (format, pages, title, ...), `t.doc.get_page_count()`.
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
from typing import Any

from pxt_assets.functions.pdfchild import open_pdf, pdf_info
from pxt_assets.functions.registry import ExpressionFunction, IteratorSpec, register
from pxt_assets.media import Document, Int, Json

log = logging.getLogger(__name__)

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
    """Raise ValueError unless the document opens: a PDF pypdfium2 can load (in a reader process: a PDF over
    its limits raises ResourceLimitError), or UTF-8 text."""
    fmt = document_format(path)
    if fmt == "pdf":
        pdf_info(str(path))  # in a reader process: PdfReadError (a ValueError), or ResourceLimitError
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
        info = pdf_info(str(document))
        out["pages"] = info["pages"]
        out.update({k.lower(): v for k, v in info["metadata"].items()})
    else:
        out["pages"] = 1  # text formats have no pages: the whole text is one
    return out


@register("document.get_page_count", applies_to=Document, returns=Int)
def get_page_count(document: str) -> int:
    """The number of pages (1 for Markdown, HTML and text)."""
    return get_metadata(document)["pages"]




# -- document_splitter ---------------------------------------------------------------------------------------

SEPARATORS = ("heading", "paragraph", "sentence", "token_limit", "char_limit", "page")
ELEMENTS = ("text", "image")
METADATA = ("title", "heading", "sourceline", "page", "image_dpi")


def _split_list(value: Any, allowed: tuple[str, ...], what: str) -> list[str]:
    items = [v.strip() for v in (value.split(",") if isinstance(value, str) else list(value or [])) if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad:
        raise ValueError(f"document_splitter: unknown {what} {bad}; known: {', '.join(allowed)}")
    return items


def check_splitter_args(separators: Any, elements: Any = None, limit: Any = None, overlap: Any = None,
                        metadata: Any = "", image_dpi: Any = 300, image_format: Any = "png") -> None:
    seps = _split_list(separators, SEPARATORS, "separators")
    if not seps:
        raise ValueError("document_splitter: give at least one separator, e.g. 'page' or 'paragraph'")
    elems = _split_list(elements if elements is not None else ["text"], ELEMENTS, "elements")
    if not elems:
        raise ValueError("document_splitter: elements cannot be empty")
    _split_list(metadata, METADATA, "metadata")
    if ("char_limit" in seps or "token_limit" in seps) and (not isinstance(limit, int) or limit < 1):
        raise ValueError("document_splitter: char_limit and token_limit need limit= (an integer >= 1)")
    if overlap is not None and (not isinstance(overlap, int) or overlap < 0 or (limit and overlap >= limit)):
        raise ValueError(f"document_splitter: overlap must be an integer >= 0 and below limit, got {overlap!r}")
    if not isinstance(image_dpi, (int, float)) or not 1 <= image_dpi <= 1200:
        raise ValueError(f"document_splitter: image_dpi must be between 1 and 1200, got {image_dpi!r}")
    if str(image_format).lower() not in ("png", "jpeg", "jpg", "webp"):
        raise ValueError(f"document_splitter: image_format must be png, jpeg or webp, got {image_format!r}")


def splitter_outputs(elements: Any = None, metadata: Any = "") -> dict[str, Any]:
    """The columns document_splitter produces for these arguments, with their types."""
    from pxt_assets.media import Float, Image, Int, Json, String

    types = {"text": String, "image": Image, "title": String, "heading": Json, "sourceline": Int, "page": Int,
             "image_dpi": Float}
    names = _split_list(elements if elements is not None else ["text"], ELEMENTS, "elements")
    names += _split_list(metadata, METADATA, "metadata")
    return {n: types[n] for n in names}


class _Section:
    __slots__ = ("text", "page", "heading", "sourceline")

    def __init__(self, text: str, page: int | None = None, heading: dict | None = None,
                 sourceline: int | None = None) -> None:
        self.text, self.page, self.heading, self.sourceline = text, page, heading, sourceline

    def derive(self, text: str) -> "_Section":
        return _Section(text, self.page, self.heading, self.sourceline)


def _paragraphs(section: _Section) -> list[_Section]:
    """The section's paragraphs (split at blank lines), each with its own first line."""
    import re

    out, start = [], 0
    for m in [*re.finditer(r"\n\s*\n", section.text), None]:
        end = m.start() if m is not None else len(section.text)
        text = section.text[start:end]
        if text.strip():
            part = section.derive(text.strip())
            if section.sourceline is not None:
                lead = len(text) - len(text.lstrip())
                part.sourceline = section.sourceline + section.text[:start + lead].count("\n")
            out.append(part)
        if m is not None:
            start = m.end()
    return out


def _sentences(section: _Section) -> list[_Section]:
    import re

    return [section.derive(s.strip()) for s in re.split(r"(?<=[.!?])\s+", section.text) if s.strip()]


def _limited(section: _Section, limit: int, overlap: int, tokens: bool) -> list[_Section]:
    """Chunks of at most `limit` characters (or words, for token_limit: no tokenizer is downloaded),
    consecutive chunks sharing `overlap` of them; character chunks end at whitespace where they can."""
    if tokens:
        words = section.text.split()
        step = max(1, limit - overlap)
        return [section.derive(" ".join(words[i:i + limit])) for i in range(0, len(words), step)
                if words[i:i + limit] and (i == 0 or i + overlap < len(words))]
    text, out, start = section.text, [], 0
    while start < len(text):
        end = min(len(text), start + limit)
        if end < len(text):
            cut = text.rfind(" ", start + 1, end)
            if cut > start + limit // 2:
                end = cut
        chunk = text[start:end].strip()
        if chunk:
            out.append(section.derive(chunk))
        if end >= len(text):
            break
        start = max(end - overlap, start + 1)
    return out


def _markdown_sections(text: str, by_heading: bool) -> tuple[str | None, list[_Section]]:
    import re

    title, headings, out, lines, first = None, {}, [], [], 1

    def flush() -> None:
        body = "\n".join(lines).strip()
        if body:
            out.append(_Section(body, None, dict(headings) or None, first))

    fenced = False
    for n, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced  # a code block: its '#' lines are code, not headings
        m = None if fenced else re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if m:
            level, name = len(m.group(1)), m.group(2)
            title = title or (name if level == 1 else None)
            if by_heading:
                flush()
                lines, first = [], n
            headings = {k: v for k, v in headings.items() if int(k) < level}
            headings[str(level)] = name
            if by_heading:
                continue
        if line.strip() and not any(x.strip() for x in lines):
            first = n  # a section's first line of content
        lines.append(line)
    flush()
    return title, out


def _html_sections(text: str, by_heading: bool) -> tuple[str | None, list[_Section]]:
    import html.parser

    blocks = {"p", "div", "li", "section", "article", "br", "tr", "pre", "blockquote", "ul", "ol", "table"}

    class Parser(html.parser.HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.title: str | None = None
            self.in_title = self.skip = False
            self.heading_level: int | None = None
            self.headings: dict[str, str] = {}
            self.sections: list[_Section] = []
            self.buf: list[str] = []
            self.line = 1

        def flush(self) -> None:
            body = "".join(self.buf).strip()
            if body:
                self.sections.append(_Section(body, None, dict(self.headings) or None, self.line))
            self.buf = []
            self.line = self.getpos()[0]

        def handle_starttag(self, tag: str, attrs: Any) -> None:
            if tag in ("script", "style"):
                self.skip = True
            elif tag == "title":
                self.in_title = True
            elif len(tag) == 2 and tag[0] == "h" and tag[1].isdigit():
                if by_heading:
                    self.flush()
                self.heading_level, self.heading_text = int(tag[1]), []
            elif tag in blocks:
                self.buf.append("\n\n")

        def handle_endtag(self, tag: str) -> None:
            if tag in ("script", "style"):
                self.skip = False
            elif tag == "title":
                self.in_title = False
            elif self.heading_level is not None and len(tag) == 2 and tag[0] == "h":
                name = "".join(self.heading_text).strip()
                level = self.heading_level
                self.headings = {k: v for k, v in self.headings.items() if int(k) < level}
                self.headings[str(level)] = name
                self.title = self.title or (name if level == 1 else None)
                self.heading_level = None
                if not by_heading:
                    self.buf.append("\n\n" + name + "\n\n")
            elif tag in blocks:
                self.buf.append("\n\n")

        def handle_data(self, data: str) -> None:
            if self.skip:
                return
            if self.in_title:
                self.title = data.strip() or self.title
            elif self.heading_level is not None:
                self.heading_text.append(data)
            else:
                self.buf.append(data)

    parser = Parser()
    parser.feed(text)
    parser.close()
    parser.flush()
    return parser.title, parser.sections


def iter_chunks(document: str, separators: Any, *, elements: Any = None, limit: int | None = None,
                overlap: int | None = None, metadata: Any = "", image_dpi: int = 300,
                image_format: str = "png") -> Any:
    """Yield the chunks of a document as dicts of the columns `splitter_outputs` names. PDFs are read page by
    page with pypdfium2 (a page's image rendered at `image_dpi` when 'image' is an element); Markdown, HTML and
    text are split at headings, paragraphs, sentences and limits as asked."""
    check_splitter_args(separators, elements, limit, overlap, metadata, image_dpi, image_format)
    seps = _split_list(separators, SEPARATORS, "separators")
    wanted = splitter_outputs(elements, metadata)
    fmt = document_format(document)
    with contextlib.ExitStack() as stack:
        pdf = None
        title: str | None = None
        if fmt == "pdf":  # read in a reader process, under its memory and time limits (pdfchild)
            pdf = stack.enter_context(open_pdf(str(document)))
            title = pdf.metadata.get("Title") or None

            def pages() -> Any:
                for i in range(pdf.pages):
                    yield _Section(pdf.text(i).replace("\r\n", "\n").replace("\r", "\n"), i)

            if "page" in seps:
                sections: Any = pages()
            else:
                sections = [_Section("\n\n".join(s.text for s in pages()), None)]  # not split by page: no page
        else:
            text = pathlib.Path(document).read_text(encoding="utf-8")
            if fmt == "markdown":
                title, sections = _markdown_sections(text, "heading" in seps)
            elif fmt == "html":
                title, sections = _html_sections(text, "heading" in seps)
            else:
                sections = [_Section(text, None, None, 1)]
        rendered: dict[int, tuple[Any, float]] = {}
        for section in sections:
            parts = [section]
            if "paragraph" in seps:
                parts = [p for s in parts for p in _paragraphs(s)]
            if "sentence" in seps:
                parts = [p for s in parts for p in _sentences(s)]
            if "token_limit" in seps:
                parts = [p for s in parts for p in _limited(s, limit, overlap or 0, tokens=True)]
            if "char_limit" in seps:
                parts = [p for s in parts for p in _limited(s, limit, overlap or 0, tokens=False)]
            for part in parts:
                if not part.text.strip() and "image" not in wanted:
                    continue
                chunk: dict[str, Any] = {}
                image, dpi = None, None
                if pdf is not None and part.page is not None and "page" in seps and (
                        "image" in wanted or "image_dpi" in wanted):
                    if part.page not in rendered:
                        rendered.clear()  # one page's image at a time
                        rendered[part.page] = _render(pdf, part.page, image_dpi)
                    image, dpi = rendered[part.page]
                if "text" in wanted:
                    chunk["text"] = part.text
                if "image" in wanted:
                    chunk["image"] = image
                if "title" in wanted:
                    chunk["title"] = title
                if "heading" in wanted:
                    chunk["heading"] = part.heading
                if "sourceline" in wanted:
                    chunk["sourceline"] = part.sourceline
                if "page" in wanted:
                    chunk["page"] = part.page
                if "image_dpi" in wanted:
                    chunk["image_dpi"] = dpi
                yield chunk


def _render(pdf: Any, page: int, dpi: float) -> tuple[Any, float]:
    """Page `page`'s image at `dpi`, or at the largest dpi under the pixel limit (said in the log, and in the
    `image_dpi` metadata column when asked for); (image, dpi used)."""
    image, used = pdf.render(page, dpi)
    if used < dpi:
        log.warning("document_splitter: page %d of %s rendered at %g dpi, not %g: at %g dpi it would be over the "
                    "max_image_pixels setting", page + 1, pdf.path, used, dpi, dpi)
    return image, used


def _check_splitter_call(document: Any, separators: Any = None, *, elements: Any = None, limit: Any = None,
                         overlap: Any = None, metadata: Any = "", image_dpi: Any = 300,
                         image_format: Any = "png") -> None:
    if separators is None:
        raise ValueError("document_splitter: give separators, e.g. 'page', 'heading' or 'paragraph'")
    check_splitter_args(separators, elements, limit, overlap, metadata, image_dpi, image_format)


def _no_direct_call(*args: Any, **kwargs: Any) -> Any:
    from pxt_assets.functions.video import _no_direct_call as refuse

    return refuse()


register("document.document_splitter", applies_to=None, returns=Json,
         iterator=IteratorSpec(Document, iter_chunks, splitter_outputs))(_no_direct_call)

document_splitter = ExpressionFunction(
    "document.document_splitter", _check_splitter_call,
    """document_splitter(document, separators, *, elements=['text'], limit=None, overlap=None, metadata='',
    image_dpi=300, image_format='png'): chunks of a document, for
    `pxt.create_view('dir/chunks', docs, iterator=document_splitter(docs.doc, 'page', elements=['text', 'image']))`.
    `separators` (comma-separated): page, heading, paragraph, sentence, char_limit, token_limit (`limit`
    characters or words, consecutive chunks sharing `overlap`). Columns: `pos`, `text`, `image` (a stored page
    image at `image_dpi`, PDFs, or at the largest dpi under max_image_pixels), and the `metadata` asked: title,
    heading, sourceline, page, image_dpi (the dpi a page image was rendered at). PDFs through pypdfium2, in a
    reader process under memory and time limits; Markdown, HTML and plain text.""")


__all__ = ["get_metadata", "get_page_count", "check_document", "document_splitter"]
