"""Every repository file the docs cite exists: relative links and backticked paths (`pxt_assets/x.py`,
`docs/y.md`, `bench/z.py`) in README.md and docs/*.md, and the same in the comments and docstrings of
pxt_assets/."""

from __future__ import annotations

import ast
import io
import pathlib
import re
import tokenize

REPO = pathlib.Path(__file__).resolve().parents[1]

#: the repository's top folders and files a backticked path may start with
TOP = ("pxt_assets/", "pxt_assets_tests/", "docs/", "bench/", ".ci/")
ROOT_FILES = ("README.md", "pyproject.toml", "dagster.yaml", "workspace.yaml", "package.json")

_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_TICKED = re.compile(r"`([^`\s]+)`")
_NAMED_FILE = re.compile(r"(?<![\w/.-])((?:%s)[\w./*-]*\w)" % "|".join(re.escape(t) for t in TOP))
#: a Markdown file named in prose ("see DESIGN.md"): relative to the citing file's folder or the repository's
_NAMED_MD = re.compile(r"(?<![\w/.:-])([\w-]+(?:/[\w-]+)*\.md)\b")


def _exists(path: str, base: pathlib.Path) -> bool:
    if "*" in path:
        return any(base.glob(path))
    return (base / path).exists() or (base / f"{path}.py").exists()  # a module named without .py


def cited_paths(text: str, source: pathlib.Path, repo: pathlib.Path, *, markdown: bool) -> list[tuple[str, tuple]]:
    """(path as cited, the folders it may be relative to) for each file path `text` cites."""
    out: list[tuple[str, tuple]] = []
    if markdown:
        for target in _LINK.findall(text):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith(("#", "/")):
                continue  # a URL, a mailto:, an anchor in the same page, an absolute path
            out.append((target.split("#", 1)[0], (source.parent,)))
        text = _LINK.sub("", text)
    for ticked in _TICKED.findall(text):
        for path in _NAMED_FILE.findall(ticked) if not ticked.startswith(ROOT_FILES) else [ticked]:
            out.append((path, (repo,)))
    prose = _TICKED.sub("", re.sub(r"https?://\S+", "", text))
    out += [(path, (repo,)) for path in _NAMED_FILE.findall(prose)]
    out += [(path, (source.parent, repo)) for path in _NAMED_MD.findall(prose)]
    # a path `<...>` or `{...}` is a pattern, not a file
    return [(p.split("::", 1)[0].rstrip(".,:;"), bases) for p, bases in out if p and not re.search(r"[<>{}$]", p)]


def comments_and_docstrings(path: pathlib.Path) -> str:
    text = path.read_text()
    parts = [tok.string for tok in tokenize.generate_tokens(io.StringIO(text).readline) if tok.type == tokenize.COMMENT]
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                parts.append(doc)
    return "\n".join(parts)


def missing_citations(repo: pathlib.Path = REPO) -> list[str]:
    missing = []
    cited = [(doc, cited_paths(doc.read_text(), doc, repo, markdown=True))
             for doc in [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]]
    cited += [(module, cited_paths(comments_and_docstrings(module), module, repo, markdown=False))
              for module in sorted((repo / "pxt_assets").rglob("*.py"))]
    for source, paths in cited:
        for path, bases in paths:
            if not any(_exists(path, base) for base in bases):
                missing.append(f"{source.relative_to(repo)}: {path}")
    return list(dict.fromkeys(missing))


def test_every_file_the_docs_and_the_code_cite_exists():
    missing = missing_citations()
    assert not missing, "cited but not in the repository:\n" + "\n".join(missing)


def test_a_made_up_citation_is_found(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "pxt_assets").mkdir()
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "real.py").write_text("")
    (tmp_path / "README.md").write_text("See [the guide](docs/guide.md#top), [a site](https://example.com) and "
                                        "`bench/real.py`.\n")
    (tmp_path / "docs" / "guide.md").write_text("Back to the [README](../README.md); `docs/gone.md`; "
                                                "`pxt_assets/<module>.py` is a pattern; as NOTES.md says.\n")
    (tmp_path / "pxt_assets" / "m.py").write_text('"""Uses `bench/real.py`, see DESIGN.md."""\n\n'
                                                  'x = "`docs/string.md`"  # see `pxt_assets/nowhere.py`, bench/x\n')
    assert missing_citations(tmp_path) == ["docs/guide.md: docs/gone.md", "docs/guide.md: NOTES.md",
                                           "pxt_assets/m.py: pxt_assets/nowhere.py", "pxt_assets/m.py: bench/x",
                                           "pxt_assets/m.py: DESIGN.md"]
