"""Document functions: PDF through pypdfium2; Markdown, HTML and plain text read as UTF-8 text.

`t.doc.get_metadata()` (format, pages, title, ...), `t.doc.get_page_count()`.
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
from typing import Any

from pxt_assets.functions.pdfchild import open_pdf, pdf_info
from pxt_assets.functions.registry import ExpressionFunction, IteratorArgumentError, IteratorSpec, register
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
#: Pixeltable's metadata, and ours: `image_dpi` (the dpi a page image was rendered at)
METADATA = ("title", "heading", "sourceline", "page", "bounding_box", "image_dpi")


def _split_list(value: Any, allowed: tuple[str, ...], what: str) -> list[str]:
    """A comma-separated string (or a list) of names, checked as Pixeltable checks them."""
    items = [v.strip() for v in (value.split(",") if isinstance(value, str) else list(value or []))]
    items = [v.lower() if isinstance(v, str) else v for v in items if v]
    for v in items:
        if v not in allowed:
            raise ValueError(f"document_splitter: Invalid {what}: `{v}`. Valid {what}s are: {', '.join(allowed)}"
                             if what != "metadata" else
                             f"document_splitter: Invalid metadata: `{v}`. Valid metadata are: {', '.join(allowed)}")
    return items


def check_splitter_args(separators: Any, elements: Any = None, limit: Any = None, overlap: Any = None,
                        metadata: Any = "", image_dpi: Any = 300, image_format: Any = "png") -> None:
    """Pixeltable's checks (pixeltable/functions/document.py, document_splitter.validate), with its messages."""
    if elements is not None and not list(elements if not isinstance(elements, str) else elements.split(",")):
        raise ValueError("document_splitter: elements cannot be empty")
    elems = _split_list(elements if elements is not None else ["text"], ELEMENTS, "element")
    if not elems:
        raise ValueError("document_splitter: elements cannot be empty")
    _split_list(metadata, METADATA, "metadata")
    seps = _split_list(separators if separators is not None else "", SEPARATORS, "separator")
    if "image" in elems and seps != ["page"]:
        raise ValueError("document_splitter: Image elements are only supported for the 'page' separator on PDF "
                         "documents")
    if limit is not None or overlap is not None:
        if "token_limit" not in seps and "char_limit" not in seps:
            raise ValueError("document_splitter: limit/overlap requires the 'token_limit' or 'char_limit' separator")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0):
            raise ValueError("document_splitter: 'limit' must be a positive integer")
        if overlap is not None and (isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0):
            raise ValueError("document_splitter: 'overlap' must be a non-negative integer")
    if "token_limit" in seps or "char_limit" in seps:
        if "token_limit" in seps and "char_limit" in seps:
            raise ValueError("document_splitter: Cannot specify both 'token_limit' and 'char_limit' separators")
        if limit is None:
            raise ValueError("document_splitter: 'limit' must be specified with 'token_limit' and 'char_limit' "
                             "separators")
    if not isinstance(image_dpi, (int, float)) or not 1 <= image_dpi <= 1200:
        raise ValueError(f"document_splitter: image_dpi must be between 1 and 1200, got {image_dpi!r}")
    if str(image_format).lower() not in ("png", "jpeg", "jpg", "webp"):
        raise ValueError(f"document_splitter: image_format must be png, jpeg or webp, got {image_format!r}")


def splitter_outputs(elements: Any = None, metadata: Any = "") -> dict[str, Any]:
    """The columns document_splitter produces for these arguments, with their types."""
    from pxt_assets.media import Float, Image, Int, Json, String

    types = {"text": String, "image": Image, "title": String, "heading": Json, "sourceline": Int, "page": Int,
             "bounding_box": Json, "image_dpi": Float}
    names = _split_list(elements if elements is not None else ["text"], ELEMENTS, "element")
    names += _split_list(metadata, METADATA, "metadata")
    return {n: types[n] for n in names}


class _Section:
    __slots__ = ("text", "page", "heading", "sourceline")

    def __init__(self, text: str, page: int | None = None, heading: dict | None = None,
                 sourceline: int | None = None) -> None:
        self.text, self.page, self.heading, self.sourceline = text, page, heading, sourceline

    def derive(self, text: str) -> "_Section":
        return _Section(text, self.page, self.heading, self.sourceline)


class _Accumulator:
    """Pixeltable's section building for HTML and Markdown: text pieces accumulate (each stripped), and a
    section (the pieces joined by a space) is emitted at a heading when splitting by heading, paragraph or
    sentence, and at a paragraph when splitting by paragraph or sentence. A heading's own text opens the
    section after it. `heading` is the open headings ({'h1': ..., 'h2': ...})."""

    def __init__(self, seps: list[str]) -> None:
        self.on_paragraph = "paragraph" in seps or "sentence" in seps
        self.on_heading = "heading" in seps or self.on_paragraph
        self.pieces: list[str] = []
        self.headings: dict[str, str] = {}
        self.sourceline = 0
        self.out: list[_Section] = []

    def add(self, text: str) -> None:
        text = text.strip()
        if text:
            self.pieces.append(text)

    def emit(self) -> None:
        if self.pieces:
            self.out.append(_Section(" ".join(self.pieces), None, dict(self.headings), self.sourceline))
            self.pieces = []

    def heading(self, level: int, text: str, line: int = 0) -> None:
        if self.on_heading:
            self.emit()
        self.sourceline = line
        self.headings = {k: v for k, v in self.headings.items() if k <= f"h{level}"}
        self.headings[f"h{level}"] = text.strip()

    def paragraph(self, line: int = 0) -> None:
        if self.on_paragraph:
            self.emit()
        self.sourceline = line


def _markdown_inline(text: str) -> str:
    """A Markdown line's text without its inline markup (emphasis, code spans' backticks, links' targets)."""
    import re

    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"(\*\*|__|\*|_|`)(?=\S)(.+?)(?<=\S)\1", r"\2", text)
    return text


def _markdown_sections(text: str, seps: list[str]) -> list[_Section]:
    """Markdown split as Pixeltable splits its Markdown AST (mistune): ATX headings and paragraphs are the
    separators, a paragraph's lines are joined by spaces, code blocks are left out; `sourceline` is 0."""
    import re

    acc = _Accumulator(seps)
    fenced, in_paragraph = False, False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            fenced, in_paragraph = not fenced, False
            continue
        if fenced:
            continue
        m = re.match(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if m:
            acc.heading(len(m.group(1)), _markdown_inline(m.group(2)))
            acc.add(_markdown_inline(m.group(2)))
            in_paragraph = False
            continue
        if not stripped:
            in_paragraph = False
            continue
        item = re.match(r"^\s*(?:[-*+]|\d+[.)]|>)\s+(.*)$", line)
        if item:  # a list item or a quote: text, but not a paragraph (mistune's block_text)
            acc.add(_markdown_inline(item.group(1)))
            in_paragraph = True
            continue
        if line.startswith("    ") and not in_paragraph:
            continue  # an indented code block
        if not in_paragraph:
            acc.paragraph()
            in_paragraph = True
        acc.add(_markdown_inline(stripped))
    acc.emit()
    return acc.out


def _html_sections(text: str, seps: list[str], skip_tags: list[str]) -> tuple[str, list[_Section]]:
    """HTML split as Pixeltable splits it (BeautifulSoup): h1-h6 and p are the separators, text pieces are
    joined by spaces, `skip_tags` (default <nav>; and scripts, styles, comments) left out; `sourceline` is the
    line of the last heading or paragraph tag. Returns the <title> ('' without one) and the sections."""
    import html.parser

    acc = _Accumulator(seps)
    skipped = {"script", "style", *skip_tags}

    class Parser(html.parser.HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.title: str | None = None
            self.in_title = False
            self.skip = 0
            self.heading: tuple[int, int, list[str]] | None = None  # level, line, its text

        def handle_starttag(self, tag: str, attrs: Any) -> None:
            if tag in skipped:
                self.skip += 1
            elif self.skip:
                return
            elif tag == "title":
                self.in_title = True
            elif len(tag) == 2 and tag[0] == "h" and tag[1] in "123456":
                self.heading = (int(tag[1]), self.getpos()[0], [])
                if acc.on_heading:
                    acc.emit()
            elif tag == "p":
                acc.paragraph(self.getpos()[0])

        def handle_endtag(self, tag: str) -> None:
            if tag in skipped:
                self.skip = max(0, self.skip - 1)
            elif tag == "title":
                self.in_title = False
            elif self.heading is not None and tag == f"h{self.heading[0]}":
                level, line, parts = self.heading
                self.heading = None
                acc.heading(level, " ".join(p.strip() for p in parts if p.strip()), line)
                for p in parts:
                    acc.add(p)

        def handle_data(self, data: str) -> None:
            if self.skip:
                return
            if self.in_title:
                self.title = ((self.title or "") + data)
            if self.heading is not None:
                self.heading[2].append(data)
            else:
                acc.add(data)

    parser = Parser()
    parser.feed(text)
    parser.close()
    acc.emit()
    return (parser.title or "").strip(), acc.out


def _sentences(section: _Section) -> list[_Section]:
    """The section's sentences, each with the whitespace after it (as spaCy's sentences have it); a regular
    expression stands in for spaCy's model: a sentence ends at ., ! or ? followed by whitespace."""
    import re

    parts = re.split(r"(?<=[.!?])(\s+)", section.text)
    out = []
    for i in range(0, len(parts), 2):
        text = parts[i] + (parts[i + 1] if i + 1 < len(parts) else "")
        if text.strip():
            out.append(section.derive(text))
    return out


def _char_chunks(section: _Section, limit: int, overlap: int) -> list[_Section]:
    """Pixeltable's char_limit: `limit` characters at a time, the next starting `limit - overlap` later."""
    text, out, start = section.text, [], 0
    while start < len(text):
        out.append(section.derive(text[start:start + limit]))
        start += max(1, limit - overlap)
    return out


def _token_chunks(section: _Section, limit: int, overlap: int) -> list[_Section]:
    """token_limit with words as tokens (no tokenizer is downloaded): `limit` words at a time, the next
    starting `overlap` words before this one ended (Pixeltable's stepping)."""
    words, out, start = section.text.split(), [], 0
    while start < len(words):
        end = min(start + limit, len(words))
        out.append(section.derive(" ".join(words[start:end])))
        start = max(start + 1, end - overlap)
    return out


def iter_chunks(document: str, separators: Any = "", *, elements: Any = None, limit: int | None = None,
                overlap: int | None = None, metadata: Any = "", skip_tags: Any = None,
                spacy_model: str = "en_core_web_sm", tiktoken_encoding: str | None = "cl100k_base",
                tiktoken_target_model: str | None = None, image_dpi: int = 300, image_format: str = "png") -> Any:
    """Yield the chunks of a document as dicts of the columns `splitter_outputs` names, split as Pixeltable's
    document_splitter splits them: Markdown and HTML at headings and paragraphs (a text file is one section),
    PDFs by page (pypdfium2; without 'page', the whole text is one section; 'paragraph' is refused for PDFs);
    then sentences, then token or character limits."""
    check_splitter_args(separators, elements, limit, overlap, metadata, image_dpi, image_format)
    seps = _split_list(separators if separators is not None else "", SEPARATORS, "separator")
    wanted = splitter_outputs(elements, metadata)
    fmt = document_format(document)
    with contextlib.ExitStack() as stack:
        pdf = None
        title = ""
        if fmt == "pdf":  # read in a reader process, under its memory and time limits (pdfchild)
            if "paragraph" in seps:
                raise IteratorArgumentError(
                    "document_splitter: Paragraph splitting is not currently supported for PDF documents. Please "
                    "contact us at https://github.com/pixeltable/pixeltable/issues if you need this feature.")
            pdf = stack.enter_context(open_pdf(str(document)))
            images = "image" in wanted or "image_dpi" in wanted

            def pages() -> Any:
                for i in range(pdf.pages):
                    text = pdf.text(i)
                    if text or images:  # a page without text is left out (Pixeltable), unless its image is asked
                        yield _Section(text, i)

            if "page" in seps:
                sections: Any = pages()
            else:
                sections = [_Section("".join(s.text for s in pages()))]  # not split by page: no page
        else:
            text = pathlib.Path(document).read_text(encoding="utf-8")
            if fmt == "markdown":
                sections = _markdown_sections(text, seps)
            elif fmt == "html":
                title, sections = _html_sections(text, seps, ["nav"] if skip_tags is None else list(skip_tags))
            else:  # a text file is one section, as in Pixeltable
                sections = [_Section(text)]
        rendered: dict[int, tuple[Any, float]] = {}
        for section in sections:
            parts = [section]
            if "sentence" in seps:
                parts = [p for s in parts for p in _sentences(s)]
            if "token_limit" in seps:
                parts = [p for s in parts for p in _token_chunks(s, limit, overlap or 0)]
            if "char_limit" in seps:
                parts = [p for s in parts for p in _char_chunks(s, limit, overlap or 0)]
            for part in parts:
                chunk: dict[str, Any] = {}
                image, dpi = None, None
                if pdf is not None and part.page is not None and "page" in seps and (
                        "image" in wanted or "image_dpi" in wanted):
                    if part.page not in rendered:
                        rendered.clear()  # one page's image at a time
                        rendered[part.page] = _render(pdf, part.page, image_dpi)
                    image, dpi = rendered[part.page]
                values = {"text": part.text, "image": image, "title": title, "heading": part.heading,
                          "sourceline": part.sourceline, "page": part.page, "bounding_box": None,
                          "image_dpi": dpi}
                for name in wanted:
                    chunk[name] = values[name]
                yield chunk


def _render(pdf: Any, page: int, dpi: float) -> tuple[Any, float]:
    """Page `page`'s image at `dpi`, or at the largest dpi under the pixel limit (said in the log, and in the
    `image_dpi` metadata column when asked for); (image, dpi used)."""
    image, used = pdf.render(page, dpi)
    if used < dpi:
        log.warning("document_splitter: page %d of %s rendered at %g dpi, not %g: at %g dpi it would be over the "
                    "max_image_pixels setting", page + 1, pdf.path, used, dpi, dpi)
    return image, used


def _check_splitter_call(document: Any, separators: Any, *, elements: Any = None, limit: Any = None,
                         overlap: Any = None, metadata: Any = "", skip_tags: Any = None,
                         spacy_model: Any = "en_core_web_sm", tiktoken_encoding: Any = "cl100k_base",
                         tiktoken_target_model: Any = None, image_dpi: Any = 300, image_format: Any = "png") -> None:
    check_splitter_args(separators, elements, limit, overlap, metadata, image_dpi, image_format)


def _no_direct_call(*args: Any, **kwargs: Any) -> Any:
    from pxt_assets.functions.video import _no_direct_call as refuse

    return refuse()


register("document.document_splitter", applies_to=None, returns=Json,
         iterator=IteratorSpec(Document, iter_chunks, splitter_outputs))(_no_direct_call)

document_splitter = ExpressionFunction(
    "document.document_splitter", _check_splitter_call,
    """document_splitter(document, separators, *, elements=None, limit=None, overlap=None, metadata='',
    skip_tags=None, spacy_model='en_core_web_sm', tiktoken_encoding='cl100k_base', tiktoken_target_model=None,
    image_dpi=300, image_format='png'): chunks of a document, as Pixeltable's, for
    `pxt.create_view('dir/chunks', docs, iterator=document_splitter(docs.doc, 'page', elements=['text', 'image']))`.
    `separators` (comma-separated, '' for none): heading, paragraph, sentence, token_limit, char_limit, page.
    Markdown and HTML are split at headings (and paragraphs, for 'paragraph' and 'sentence'), a text file is
    one section, a PDF one section per page ('page') or one in all; then sentences, then `limit` tokens or
    characters, consecutive chunks sharing `overlap`. Columns: `pos`, `text`, `image` (PDF pages, 'page'
    alone: a stored page image at `image_dpi`, or at the largest dpi under max_image_pixels), and the
    `metadata` asked: title (HTML's <title>, else ''), heading ({'h1': ..., 'h2': ...}), sourceline, page,
    bounding_box (None, as in Pixeltable), and ours: image_dpi (the dpi a page image was rendered at).
    Differences: sentences are found by a regular expression (no spaCy model), tokens are words (no
    tiktoken); `spacy_model` and the tiktoken arguments are accepted and not used. PDFs through pypdfium2, in
    a reader process under memory and time limits.""")


__all__ = ["get_metadata", "get_page_count", "check_document", "document_splitter"]
