"""Durable local writes (pxt_assets.fsutil): atomic replacement against real failures, killed writers and
concurrent writer processes; every write in the package goes through the helper (an AST scan keeps it so).
"""

from __future__ import annotations

import ast
import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import pytest

from pxt_assets import fsutil
from pxt_assets_tests.conftest import BARE_PACKAGE, PACKAGE_DIR

PACKAGE = PACKAGE_DIR


def temps_in(folder: pathlib.Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(fsutil.TEMP_PREFIX))


# --- the helper ---------------------------------------------------------------------------------------


def test_atomic_write_replaces_the_file_with_bytes_text_or_a_writer(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "a" / "b" / "out.bin"  # folders created on the way
    assert fsutil.atomic_write(target, b"first") is True
    assert target.read_bytes() == b"first"
    fsutil.atomic_write(target, "second ✓")
    assert target.read_text(encoding="utf-8") == "second ✓"
    fsutil.atomic_write(target, lambda tmp: pathlib.Path(tmp).write_bytes(b"third"))
    assert target.read_bytes() == b"third"
    with fsutil.atomic_file(target) as f:
        f.write(b"fourth")
        assert target.read_bytes() == b"third"  # nothing visible until the block ends
    assert target.read_bytes() == b"fourth"
    assert temps_in(target.parent) == []


def test_writer_sees_the_targets_extension_and_new_files_get_umask_permissions(tmp_path: pathlib.Path) -> None:
    seen = []
    fsutil.atomic_write(tmp_path / "img.png", lambda tmp: seen.append(pathlib.Path(tmp).suffix))
    assert seen == [".png"]  # encoders that pick a format from the name (Pillow, PyAV) work on the temp
    if hasattr(os, "fchmod"):
        umask = os.umask(0o022)
        os.umask(umask)
        assert (tmp_path / "img.png").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
        (tmp_path / "img.png").chmod(0o640)
        fsutil.atomic_write(tmp_path / "img.png", b"again")
        assert (tmp_path / "img.png").stat().st_mode & 0o777 == 0o640  # a replaced file keeps its mode


def test_a_failure_mid_write_leaves_the_old_file_and_no_temp(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "out.txt"
    fsutil.atomic_write(target, "old")

    def half_then_fail(tmp: pathlib.Path) -> None:
        pathlib.Path(tmp).write_text("new but only ha")
        raise OSError("disk on fire")

    with pytest.raises(OSError, match="disk on fire"):
        fsutil.atomic_write(target, half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        with fsutil.atomic_file(target, "w") as f:
            f.write("new but only ha")
            raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_replace_false_keeps_the_first_file(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "config.yaml"
    assert fsutil.atomic_write(target, "mine", replace=False) is True
    assert fsutil.atomic_write(target, "theirs", replace=False) is False
    assert target.read_text() == "mine"
    assert temps_in(tmp_path) == []


def test_the_file_is_synced_before_the_rename_and_the_folder_after(tmp_path: pathlib.Path, monkeypatch) -> None:
    """The order that makes a write survive a power cut, observed on the real calls (each one made)."""
    target = tmp_path / "new" / "out.bin"
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst) -> None:
        events.append(("replace", os.fspath(dst)))
        real_replace(src, dst)

    if not os.path.exists("/proc/self/fd"):
        pytest.skip("needs /proc to name a descriptor's file")
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    fsutil.atomic_write(target, b"x" * 1000)
    names = [(op, pathlib.Path(p).name) for op, p in events]
    # the new folder is synced into its parent, then the temp file, the rename, and the folder
    assert names[0] == ("fsync", tmp_path.name)
    assert names[1][0] == "fsync" and names[1][1].startswith(fsutil.TEMP_PREFIX)
    assert names[2:] == [("replace", "out.bin"), ("fsync", "new")]


# --- real processes -----------------------------------------------------------------------------------

# fsutil without the package __init__ (BARE_PACKAGE)
_PRELUDE = BARE_PACKAGE + r"""
import os
from pxt_assets import fsutil
"""

CONCURRENT_WRITER = _PRELUDE + r"""
target, me, rounds, size = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
sys.stdin.readline()  # all writers start together
for r in range(rounds):
    data = bytes([me]) * size
    fsutil.atomic_write(target, data)
print("done", flush=True)
"""

KILLED_WRITER = _PRELUDE + r"""
target = sys.argv[2]
with fsutil.atomic_file(target) as f:
    f.write(b"N" * 100_000)
    f.flush()
    print("half written", flush=True)
    sys.stdin.readline()  # killed here
"""

FIRST_WINS_WRITER = _PRELUDE + r"""
target, me = sys.argv[2], int(sys.argv[3])
sys.stdin.readline()
won = fsutil.atomic_write(target, bytes([me]) * 100_000, replace=False)
print("won" if won else "lost", flush=True)
"""


def _start(script: str, *args: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script, str(PACKAGE), *map(str, args)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def test_concurrent_writer_processes_never_produce_a_torn_file(tmp_path: pathlib.Path) -> None:
    target, size, rounds = tmp_path / "shared.bin", 1 << 20, 15
    fsutil.atomic_write(target, bytes([0]) * size)
    procs = [_start(CONCURRENT_WRITER, target, me, rounds, size) for me in (1, 2, 3)]
    try:
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        # Read the file over and over while they write: every read is one writer's whole file.
        reads, writers_seen = 0, set()
        while any(p.poll() is None for p in procs) or reads == 0:
            data = target.read_bytes()
            assert len(data) == size, f"a torn file of {len(data)} bytes"
            assert data.count(data[:1]) == size, "bytes of two writers in one file"
            writers_seen.add(data[0])
            reads += 1
        for p in procs:
            assert p.stdout.readline().strip() == "done"
            assert p.wait() == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            p.stdin.close()
            p.stdout.close()
    final = target.read_bytes()
    assert final[0] in (1, 2, 3) and final.count(final[:1]) == size
    assert temps_in(tmp_path) == []  # every writer's temp file was renamed away, none shared a name


def test_a_writer_killed_mid_write_leaves_the_old_file(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "out.bin"
    fsutil.atomic_write(target, b"O" * 1000)
    p = _start(KILLED_WRITER, target)
    try:
        assert p.stdout.readline().strip() == "half written"
        assert target.read_bytes() == b"O" * 1000
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    finally:
        p.stdin.close()
        p.stdout.close()
    assert target.read_bytes() == b"O" * 1000
    left = temps_in(tmp_path)  # a killed process cannot clean up: its temp is hidden and in no one's way
    assert len(left) == 1
    fsutil.atomic_write(target, b"new")
    assert target.read_bytes() == b"new"


def test_of_writers_racing_with_replace_false_exactly_one_wins(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "dagster.yaml"
    procs = [_start(FIRST_WINS_WRITER, target, me) for me in (1, 2, 3, 4)]
    try:
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        results = {me: p.stdout.readline().strip() for me, p in zip((1, 2, 3, 4), procs)}
        for p in procs:
            assert p.wait() == 0
    finally:
        for p in procs:
            p.stdin.close()
            p.stdout.close()
    winners = [me for me, r in results.items() if r == "won"]
    assert len(winners) == 1 and sorted(results.values()) == ["lost", "lost", "lost", "won"]
    assert target.read_bytes() == bytes([winners[0]]) * 100_000
    assert temps_in(tmp_path) == []


# --- every local write goes through the helper ------------------------------------------------------

# Modules that may write files themselves: the helper, the file cache (its own directory, through the
# helper's publish), and the stores (a download writes the temp file its caller handed it).
WRITERS = {"fsutil.py", "cache.py", "stores/"}

# Other writes, each with the reason it is not a file of ours being published: (module, function, call).
ALLOWED = {
    ("evaluate.py", "Row._prop", ".save"):
        "a cache fetch callback: writes the temp file FileCache.pin hands it, which the cache publishes",
    ("functions/audio.py", "iter_segments.write", "av.open(w)"):
        "muxes a segment into a scratch file from fsutil.scratch_file, which the writer then uploads",
    ("functions/pdfworker.py", "serve", "os.fdopen(w)"):
        "the PDF reader's answers go to a duplicate of its stdout descriptor (a pipe to its parent, not a file)",
    ("scale_demo.py", "Services.spawn", ".open(w)"):
        "the log of a server or worker the demo starts, in the demo's scratch folder (not a file of ours)",
    ("console.py", "_forward", "open(w)"):
        "wraps a duplicate of this process's stderr descriptor (a terminal or a pipe, not a file) to forward "
        "child processes' stderr",
}

_TEMP_MAKERS = {"mkstemp", "NamedTemporaryFile"}
_MOVERS = {("os", "replace"), ("os", "rename"), ("os", "link"), ("os", "symlink")}


def _write_mode(call: ast.Call, position: int, *, strict: bool = True) -> str | None:
    """The mode a call opens with when it writes ('w', 'a', 'x', '+' in it); with `strict`, '?' when the
    mode is not a literal (it may write)."""
    mode = call.args[position] if len(call.args) > position else None
    for kw in call.keywords:
        if kw.arg == "mode":
            mode = kw.value
    if mode is None:
        return None
    if isinstance(mode, ast.Constant) and isinstance(mode.value, str):
        return mode.value if set(mode.value) & set("wax+") else None
    return "?" if strict else None


def _in_memory_names(tree: ast.AST) -> set[str]:
    """Names bound to io.BytesIO()/StringIO() in a module: saving into them writes no file."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            func = node.value.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("BytesIO", "StringIO"):
                names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def file_writes(source: str) -> list[tuple[int, str, str]]:
    """(line, enclosing function, call) of every call in `source` that writes a local file."""
    tree = ast.parse(source)
    in_memory = _in_memory_names(tree)
    found: list[tuple[int, str, str]] = []

    def visit(node: ast.AST, scope: list[str]) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            scope = [*scope, node.name]
        if isinstance(node, ast.Call):
            what = _classify(node, in_memory)
            if what:
                found.append((node.lineno, ".".join(scope), what))
        for child in ast.iter_child_nodes(node):
            visit(child, scope)

    visit(tree, [])
    return found


def _classify(call: ast.Call, in_memory: set[str]) -> str | None:
    func = call.func
    if isinstance(func, ast.Name):
        if func.id == "open" and _write_mode(call, 1):
            return "open(w)"
        if func.id in _TEMP_MAKERS:
            return func.id
        return None
    if not isinstance(func, ast.Attribute):
        return None
    owner = func.value.id if isinstance(func.value, ast.Name) else None
    attr = func.attr
    if attr == "open" and owner == "os":
        flags = ast.dump(call.args[1]) if len(call.args) > 1 else ""
        return "os.open(w)" if any(f in flags for f in ("O_WRONLY", "O_RDWR", "O_CREAT")) else None
    if attr in ("open", "fdopen"):
        if owner in ("io", "av", "os", "gzip", "bz2", "lzma"):  # open(path, mode) of a module
            return f"{owner}.{attr}(w)" if _write_mode(call, 1) else None
        # path.open(mode), or some object's open(name) (PIL.Image.open(path), reader.open(uri)): only a
        # literal writing mode counts
        literal = _write_mode(call, 0, strict=False) or _write_mode(call, 1, strict=False)
        return ".open(w)" if literal else None
    if attr in ("write_text", "touch") or (attr == "write_bytes" and len(call.args) == 1):
        return f".{attr}"  # pathlib.Path's (a store's write_bytes takes (data, uri))
    if owner == "shutil" and (attr.startswith("copy") or attr == "move") and attr != "copyfileobj":
        return f"shutil.{attr}"
    if (owner, attr) in _MOVERS:
        return f"os.{attr}"
    if owner == "tempfile" and attr in _TEMP_MAKERS:
        return f"tempfile.{attr}"
    if attr in ("save", "to_parquet", "to_csv") and call.args:
        target = call.args[0]
        if isinstance(target, ast.Name) and target.id in in_memory:
            return None
        return f".{attr}"
    return None


def test_the_scanner_finds_each_kind_of_write() -> None:
    source = textwrap.dedent("""
        import io, os, shutil, tempfile
        def f(p, q, img):
            open(p, "w"); open(p, mode="ab"); open(p, "rb"); open(p)
            p.open("w"); p.open(); p.write_text("x"); p.write_bytes(b"x"); store.write_bytes(b"x", "s3://b/k")
            shutil.copyfile(p, q); shutil.move(p, q); os.replace(p, q); os.open(p, os.O_WRONLY | os.O_CREAT)
            tempfile.mkstemp(); av.open(p, "w"); av.open(p)
            buf = io.BytesIO(); img.save(buf, format="PNG"); img.save(p)
    """)
    kinds = [what for _, _, what in file_writes(source)]
    assert kinds == ["open(w)", "open(w)", ".open(w)", ".write_text", ".write_bytes", "shutil.copyfile",
                     "shutil.move", "os.replace", "os.open(w)", "tempfile.mkstemp", "av.open(w)", ".save"]


def test_no_module_writes_a_file_except_through_the_helper() -> None:
    """Every local write in pxt_assets is fsutil's, the cache's or a store's (see WRITERS), or an ALLOWED
    exception with its reason. A new `open(path, "w")`, `Path.write_bytes`, `shutil.copy`, `os.replace`,
    `mkstemp` or `img.save(path)` elsewhere fails here: write through fsutil.atomic_write / atomic_file."""
    found, used = [], set()
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in WRITERS or any(rel.startswith(w) for w in WRITERS if w.endswith("/")):
            continue
        for line, scope, what in file_writes(path.read_text(encoding="utf-8")):
            key = (rel, scope, what)
            if key in ALLOWED:
                used.add(key)
            else:
                found.append(f"{rel}:{line} in {scope or '<module>'}: {what}")
    assert found == [], "files written outside pxt_assets.fsutil:\n" + "\n".join(found)
    assert used == set(ALLOWED), f"stale ALLOWED entries: {set(ALLOWED) - used}"


def test_no_fixed_temp_names_in_the_package() -> None:
    """Temp files are named by mkstemp (fsutil.new_temp): no literal '.tmp' or '.part' file names."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            values = []
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                values = [node.value]
            elif isinstance(node, ast.JoinedStr):
                values = [v.value for v in node.values if isinstance(v, ast.Constant)]
            for v in values:
                if v.endswith((".tmp", ".part")) and "\n" not in v:
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {v!r}")
    assert offenders == []



def test_the_sqlite_row_store_syncs_every_commit(tmp_path: pathlib.Path) -> None:
    """Rows, batches, the catalog and schedule cursors are committed with synchronous=FULL: a commit that
    returned survives a power cut (NORMAL, SQLite's default advice for WAL, may roll the last ones back)."""
    from pxt_assets import rowstore

    store = rowstore.RowStore(rowstore.default_url(tmp_path / "home"))
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    finally:
        store.engine.dispose()
