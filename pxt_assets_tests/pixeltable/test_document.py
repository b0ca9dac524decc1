"""Pixeltable's tests/test_document.py, ported: document_splitter views (separators, limits, metadata, the
argument checks). Pixeltable's small documents are kept in pxt_assets_tests/data/pixeltable/ (pxtbrief.txt,
pxtfaq.txt, simple.md, simple1.html, simple2.html); its PDFs are megabytes, so a PDF is generated. Sentences
are found by a regular expression here, not spaCy, and tokens are words, not tiktoken's: the cases whose
assertions depend on those are left out (docs/pixeltable.md)."""

from __future__ import annotations

import difflib
import itertools
import re
from typing import Any

import PIL.Image
import pytest

import pxt_assets as pxt
from pxt_assets.functions.document import document_splitter
from pxt_assets_tests.mediagen import make_text_pdf
from pxt_assets_tests.pixeltable._media_fixtures import DOCUMENTS, Error, column, rows, view_errors


def _check_pdf_metadata(rec: dict, sep1: str, metadata: list[str]) -> None:
    assert sep1 != "paragraph"  # not currently supported for PDF
    if "page" in metadata and sep1 in ["page"]:
        assert rec.get("page") is not None


def normalize(text: str) -> str:
    return re.sub(r"\s+", "", text)


def diff_snippet(text1: str, text2: str, diff_line_limit: int | None = 20) -> str:
    diff = difflib.unified_diff(text1.splitlines(), text2.splitlines(), lineterm="")
    if diff_line_limit is not None:
        snippet = [line for i, line in enumerate(diff) if i < diff_line_limit]
    else:
        snippet = list(diff)
    return "\n".join(snippet)


@pytest.fixture
def documents(pxt_home, tmp_path) -> list[str]:
    """Pixeltable's get_documents() as far as kept here, and a generated two-page PDF."""
    pdf = make_text_pdf(tmp_path / "report.pdf", ["Intro page. It has two sentences.", "Results page. More."],
                        title="Quarterly report")
    return [str(p) for p in sorted(DOCUMENTS.iterdir())] + [str(pdf)]


def test_doc_splitter_errors(documents):
    """Ported from pixeltable tests/test_document.py::TestDocument::test_doc_splitter_errors (without the spaCy
    model case: no spaCy here)."""
    t = pxt.create_table("docs", {"doc": pxt.Document})

    # test invalid separators, or combinations of separators
    invalid_separators = [
        "page paragraph",  # no comma
        "pagagaph",  # non existent separator
        "page, block",  # block does not exist
    ]
    for sep in invalid_separators:
        with pytest.raises(Error, match="Invalid separator"):
            _ = pxt.create_view("chunks", t, iterator=document_splitter(document=t.doc, separators=sep))

    with pytest.raises(Error, match="both"):
        _ = pxt.create_view(
            "chunks", t, iterator=document_splitter(document=t.doc, separators="char_limit, token_limit", limit=10))

    # test that limit is required for char_limit and token_limit
    with pytest.raises(Error, match="limit"):
        _ = pxt.create_view("chunks", t, iterator=document_splitter(document=t.doc, separators="char_limit"))

    with pytest.raises(Error, match="limit"):
        _ = pxt.create_view("chunks", t, iterator=document_splitter(document=t.doc, separators="token_limit"))

    # test invalid metadata
    invalid_metadata = [
        "chapter",  # invalid
        "page, bounding_box, chapter",  # mix of valid and invalid
        "page bounding_box",  # separator
    ]
    for md in invalid_metadata:
        with pytest.raises(Error, match="Invalid metadata"):
            _ = pxt.create_view("chunks", t, iterator=document_splitter(document=t.doc, separators="", metadata=md))

    invalid_separators = ["page, sentence", "paragraph, sentence", "char_limit, sentence", "token_limit, sentence"]
    for sep in invalid_separators:
        with pytest.raises(Error, match="Image elements are only supported for the 'page' separator"):
            _ = pxt.create_view(
                "chunks", t, iterator=document_splitter(document=t.doc, separators=sep, elements=["image"]))

    # paragraphs of a PDF: Pixeltable's insert aborts; ours keeps the base row as one view row in error (a bad
    # file never stops an insert), with Pixeltable's message; a view created on it raises, as Pixeltable's
    pdf_file = next(f for f in documents if f.endswith(".pdf"))
    t = pxt.create_table("docs2", {"doc": pxt.Document})
    paragraphs = pxt.create_view("paragraphs", t, iterator=document_splitter(t.doc, separators="paragraph"))
    t.insert(doc=pdf_file)
    (message,) = view_errors(paragraphs, "text")
    assert re.search(r"not currently supported.+contact us", message)
    with pytest.raises(Error, match=r"not currently supported.+contact us"):
        _ = pxt.create_view("paragraphs2", t, iterator=document_splitter(t.doc, separators="paragraph"))


@pytest.mark.parametrize("pdf", [True, False], ids=["pdf_docs", "non_pdf_docs"])
def test_doc_splitter(documents, pdf: bool):
    """Ported from pixeltable tests/test_document.py::TestDocument::test_doc_splitter: every combination of
    separators, limits and metadata extracts the same text in aggregate. Tokens are words here (no
    tiktoken): the token limit is checked in words."""
    file_paths = [p for p in documents if pdf == p.endswith(".pdf")]
    doc_t = pxt.create_table("docs", {"doc": pxt.Document})
    doc_t.insert([{"doc": p} for p in file_paths])

    all_metadata = ["title", "heading", "sourceline", "page", "bounding_box"]
    sep1_values = ["", "heading", "page", "sentence"]
    if not pdf:
        sep1_values += ["paragraph"]
    combinations: list[tuple[str, Any, Any, list[str]]] = [
        (sep1, None, None, metadata) for sep1, metadata in itertools.product(sep1_values, [[], all_metadata])
    ]
    combinations += [
        (sep1, sep2, limit, all_metadata)
        for sep1, sep2, limit in itertools.product(sep1_values, ["token_limit", "char_limit"], [10, 20, 100])
    ]

    all_text_reference: str | None = None
    for sep1, sep2, limit, metadata in combinations:
        args: dict[str, Any] = {
            "document": doc_t.doc,
            "separators": sep1 if sep2 is None else ",".join([sep1, sep2]),
        }
        if len(metadata) > 0:
            args["metadata"] = ",".join(metadata)
        if sep2 is not None:
            args["limit"] = limit
            args["overlap"] = 0

        chunks_t = pxt.create_view("chunks", doc_t, iterator=document_splitter(**args))
        res = rows(chunks_t.order_by(chunks_t.doc, chunks_t.pos).collect())

        if all_text_reference is None:
            assert sep1 == "" and sep2 is None
            # when sep1 and sep2 are both '', there should be a single result per input file.
            assert len(res) == len(file_paths)
            for r in res:
                assert r["text"]  # non-empty text
                assert all(md in r for md in metadata)
            all_text_reference = normalize("".join(r["text"] for r in res))
            assert all_text_reference
        else:
            all_text = normalize("".join([r["text"] for r in res]))
            diff = diff_snippet(all_text, all_text_reference)
            assert not diff, f"{sep1}, {sep2}, {limit}\n{diff}"

            # check splitter honors limits
            if sep2 == "char_limit":
                for r in res:
                    assert len(r["text"]) <= limit
            if sep2 == "token_limit":
                for r in res:
                    assert len(r["text"].split()) <= limit

            for r in res:
                if r["doc"].endswith("pdf"):
                    _check_pdf_metadata(r, sep1, metadata)
                assert all(md in r for md in metadata)

        pxt.drop_table("chunks")


def test_doc_splitter_headings(documents):
    """Ported from pixeltable tests/test_document.py::TestDocument::test_doc_splitter_headings: a result has the
    metadata asked for, and no other."""
    file_paths = [p for p in documents if not (p.endswith(".pdf") or p.endswith(".xml") or p.endswith(".txt"))]
    doc_t = pxt.create_table("docs", {"doc": pxt.Document})
    doc_t.insert([{"doc": p} for p in file_paths])

    md_elements = ["title", "heading", "sourceline"]
    md_tuples = list(
        itertools.chain.from_iterable(itertools.combinations(md_elements, i) for i in range(len(md_elements) + 1)))
    for md_str in [",".join(t) for t in md_tuples]:
        chunks_t = pxt.create_view(
            "chunks", doc_t, iterator=document_splitter(document=doc_t.doc, separators="sentence", metadata=md_str))
        res = chunks_t.order_by(chunks_t.doc, chunks_t.pos).collect()
        requested_md_elements = set(md_str.split(","))
        for md_element in md_elements:
            if md_element in requested_md_elements:
                _ = column(res, md_element)
            else:
                with pytest.raises((KeyError, *Error)):
                    _ = column(res, md_element)
        pxt.drop_table("chunks")


def test_doc_splitter_txt(pxt_home):
    """Ported from pixeltable tests/test_document.py::TestDocument::test_doc_splitter_txt: a text file is one
    section whatever the separators ('' and 'paragraph'); with 'sentence, char_limit' every chunk is at most
    the limit and has Pixeltable's metadata for a text file (the counts of sentences, 22, and of chunks, 67,
    are spaCy's: ours, by a regular expression, are 18 and 64)."""
    file_paths = [str(DOCUMENTS / "pxtbrief.txt")]
    doc_t = pxt.create_table("docs", {"doc": pxt.Document})
    doc_t.insert([{"doc": p} for p in file_paths])

    # no separator, and 'paragraph' (which has no effect on a text file): the whole text, one chunk
    for separators in ("", "paragraph"):
        chunks_t = pxt.create_view(
            "chunks", doc_t, iterator=document_splitter(document=doc_t.doc, separators=separators, metadata="page"))
        res = rows(chunks_t.order_by(chunks_t.doc, chunks_t.pos).collect())
        assert len(res) == 1
        assert len(res[0]["text"]) == 2793
        assert str(res[0]["text"]).startswith(
            "Pixeltable Briefing Doc\nSource: GitHub Repository: pixeltable/pixeltable\n")
        assert res[0]["page"] is None
        pxt.drop_table("chunks")

    # 'sentence': the first and the last sentence are Pixeltable's (spaCy's), whitespace after them included
    chunks_t = pxt.create_view(
        "chunks", doc_t, iterator=document_splitter(document=doc_t.doc, separators="sentence", metadata="page"))
    res = rows(chunks_t.order_by(chunks_t.doc, chunks_t.pos).collect())
    assert res[0]["text"] == (
        "Pixeltable Briefing Doc\nSource: GitHub Repository: pixeltable/pixeltable\n\nMain Themes:\n\n"
        "AI Data Infrastructure: Pixeltable is a Python library designed to simplify the management "
        "and processing of multimodal data for machine learning workflows.\n"
    )
    assert len(res[0]["text"]) == 245
    assert res[-1]["text"] == (
        "Its declarative approach, incremental updates, and seamless Python integration make it a "
        "valuable tool for streamlining AI development and enhancing productivity.\n"
    )
    assert len(res[-1]["text"]) == 163

    pxt.drop_table("chunks")
    chunks_t = pxt.create_view(
        "chunks",
        doc_t,
        iterator=document_splitter(
            document=doc_t.doc,
            separators="sentence, char_limit",
            limit=50,
            overlap=0,
            metadata="title,heading,sourceline,page,bounding_box",
        ),
    )
    res = rows(chunks_t.order_by(chunks_t.doc, chunks_t.pos).collect())
    assert res[0]["text"] == "Pixeltable Briefing Doc\nSource: GitHub Repository:"
    assert "Its declarative approach, incremental updates, and" in [r["text"] for r in res]
    for r in res:
        assert len(r["text"]) <= 50
        assert r["title"] == ""
        assert r["heading"] is None
        assert r["sourceline"] is None
        assert r["page"] is None
        assert r["doc"].endswith("pxtbrief.txt")

    pxt.drop_table("chunks")


def test_doc_splitter_images(documents):
    """Ported from pixeltable tests/test_document.py::TestDocument::test_doc_splitter_images."""
    file_paths = [p for p in documents if p.endswith(".pdf")]
    t = pxt.create_table("docs", {"doc": pxt.Document})

    chunks = pxt.create_view(
        "chunks", t,
        iterator=document_splitter(document=t.doc, separators="page", elements=["image"], metadata="title,page"))
    t.insert([{"doc": p} for p in file_paths])

    res = rows(chunks.collect())
    assert len(res) == 2 and all(isinstance(r["image"], PIL.Image.Image) for r in res)


def test_markdown_and_html_chunks_as_pixeltable(pxt_home):
    """Not a Pixeltable test: the chunks of Pixeltable's own simple.md and simple*.html as its document_splitter
    code makes them (pixeltable/functions/document.py: a heading's text opens its section, 'paragraph' splits
    at headings as well, text pieces are joined by a space, only HTML has a title)."""
    t = pxt.create_table("docs", {"doc": pxt.Document})
    t.insert([{"doc": str(DOCUMENTS / n)} for n in ("simple.md", "simple1.html", "simple2.html")])
    counts = {}
    for sep in ("", "heading", "paragraph"):
        v = pxt.create_view("chunks", t, iterator=document_splitter(t.doc, sep, metadata="title,heading"))
        res = rows(v.order_by(v.doc, v.pos).collect())
        counts[sep] = {name: sum(1 for r in res if r["doc"].endswith(name))
                       for name in ("simple.md", "simple1.html", "simple2.html")}
        if sep == "heading":
            md = [r for r in res if r["doc"].endswith(".md")]
            assert [r["text"] for r in md] == ["A simple markdown doc This is a markdown doc",
                                               "Section 1 This is a section", "Section 2 This is different section"]
            assert md[2]["heading"] == {"h1": "A simple markdown doc", "h2": "Section 2"}
            assert {r["title"] for r in res if r["doc"].endswith("simple2.html")} == {"My page title"}
            assert {r["title"] for r in md} == {""}
        pxt.drop_table("chunks")
    assert counts == {"": {"simple.md": 1, "simple1.html": 1, "simple2.html": 1},
                      "heading": {"simple.md": 3, "simple1.html": 1, "simple2.html": 1},
                      "paragraph": {"simple.md": 6, "simple1.html": 1, "simple2.html": 1}}
