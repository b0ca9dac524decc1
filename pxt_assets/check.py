"""The invariants of a table, checked against what is actually stored: the one module behind
`python -m pxt_assets check`, each table's Dagster asset check, and benches that torture the tables.

What must hold, for each table (and view):

- **files**: every file a committed row names exists: the files we wrote and the user's files that rows
  only reference, locally or in a bucket (one existence check per file, through `stores`, a few at once).
  A frame stored as a reference into its video needs the video. A plain web URL cannot be checked (it is
  counted, not reported).
- **schema**: the table's columns and its SQL table agree: every column has its SQL columns, no SQL column
  belongs to no column, and each column is stored as the type it is declared with.
- **pending batches**: a batch that is not committed records why (failed, killed, waiting for a column)
  unless a run is writing it now.
- **staged records**: no column's records stay staged for a batch that is committed once no run is writing
  it (a commit takes them with it).
- **computed columns**: every computed column is computed (a value or a row error) in every committed
  batch, unless a run is writing it now: a column added after a batch committed whose backfill stopped is
  reported until `resume()` computes it.
- **views**: a view's batch has its base table's batch (deleting a batch takes its view rows with it).

A problem is one line (`str(problem)`); a `Report` gathers them with a summary, and as JSON or asset check
metadata. Checks only read: nothing is changed or repaired here.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import dagster as dg

from pxt_assets import rowstore, stores
from pxt_assets.assets.names import asset_key
from pxt_assets.config import current_settings
from pxt_assets.evaluate import frame_reference_of
from pxt_assets.redaction import redact, scrubbing
from pxt_assets.spec import SpecError, TableSpec, parse_table_path

# kinds of problem
MISSING_FILE = "missing_file"
UNREACHABLE_FILE = "unreachable_file"
SCHEMA = "schema"
PENDING_WITHOUT_REASON = "pending_without_reason"
STAGED_OF_COMMITTED = "staged_of_committed"
ORPHANED_VIEW_BATCH = "orphaned_view_batch"
NOT_COMPUTED = "not_computed"
KINDS = (MISSING_FILE, UNREACHABLE_FILE, SCHEMA, PENDING_WITHOUT_REASON, STAGED_OF_COMMITTED, ORPHANED_VIEW_BATCH,
         NOT_COMPUTED)

#: existence checks in flight at once (per table checked)
DEFAULT_CONCURRENCY = 16
#: problems shown in an asset check's metadata (the count is always whole)
METADATA_PROBLEMS = 50
#: the asset check of each table, on its first inserted column's asset
CHECK_NAME = "pxt_invariants"


@dataclasses.dataclass(frozen=True)
class Problem:
    table: str
    kind: str
    message: str

    def __str__(self) -> str:
        return f"{self.table}: {self.kind}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Report:
    """What a check found: the tables checked, their problems, and how many files were checked."""

    tables: list[str] = dataclasses.field(default_factory=list)
    problems: list[Problem] = dataclasses.field(default_factory=list)
    files_checked: int = 0
    #: files whose store cannot tell whether they exist (plain web URLs)
    files_unchecked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, other: Report) -> Report:
        self.tables += other.tables
        self.problems += other.problems
        self.files_checked += other.files_checked
        self.files_unchecked += other.files_unchecked
        return self

    def counts(self) -> dict[str, int]:
        return {k: n for k in KINDS if (n := sum(1 for p in self.problems if p.kind == k))}

    def summary(self) -> str:
        tables = f"{len(self.tables)} table{'' if len(self.tables) == 1 else 's'}"
        files = f"{self.files_checked} file{'' if self.files_checked == 1 else 's'} checked"
        if self.files_unchecked:
            files += f", {self.files_unchecked} that cannot be checked (web URLs)"
        if self.ok:
            return f"ok: {tables}, {files}, no problems"
        kinds = ", ".join(f"{n} {k}" for k, n in self.counts().items())
        noun = "problem" if len(self.problems) == 1 else "problems"
        return f"{len(self.problems)} {noun} ({kinds}): {tables}, {files}"

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "tables": list(self.tables), "files_checked": self.files_checked,
                "files_unchecked": self.files_unchecked, "counts": self.counts(),
                "problems": [p.to_dict() for p in self.problems], "summary": self.summary()}

    def metadata(self) -> dict[str, Any]:
        """As an asset check's metadata: the counts, and the first problems one a line."""
        shown = [str(p) for p in self.problems[:METADATA_PROBLEMS]]
        if len(self.problems) > len(shown):
            shown.append(f"... and {len(self.problems) - len(shown)} more (python -m pxt_assets check)")
        return {"problems": dg.MetadataValue.md("\n".join(f"- {line}" for line in shown) or "none"),
                "problem_count": len(self.problems), "files_checked": self.files_checked,
                "files_unchecked": self.files_unchecked, "summary": self.summary(),
                **{f"count/{k}": n for k, n in self.counts().items()}}


@dataclasses.dataclass(frozen=True)
class Target:
    """One table to check: its slug and path, its declared columns ((name, storage type); None: as the row
    store recorded them, for a table known only from the database), and its base table's path (a view)."""

    slug: str
    path: str
    columns: tuple[tuple[str, str], ...] | None = None
    base_path: str | None = None
    computed: tuple[str, ...] = ()  # its computed columns (a declared table's)

    @classmethod
    def of(cls, table: Any) -> Target:
        """A declared table (a MediaTable or MediaView: anything with a `spec`, and a `base_spec` if a view)."""
        spec: TableSpec = table.spec
        base = getattr(table, "base_spec", None)
        return cls(spec.slug, spec.display_path, tuple((c.name, c.storage_type) for c in spec.stored_columns()),
                   base.display_path if base is not None else None,
                   tuple(c.name for c in spec.computed_columns()))


# ---------------------------------------------------------------------------------------------------------
# the invariants, one function each


def _exists(uri: str) -> bool | None:
    """Whether the file at `uri` exists; None when its store cannot tell (a plain web URL). Any other
    failure (denied, unreachable) raises."""
    try:
        return stores.store_for(uri).exists(uri)
    except stores.StoreError as e:
        if e.kind in ("unsupported", "not_found"):
            return None if e.kind == "unsupported" else False
        raise


def _file_of(uri: str) -> str:
    """The file a stored value needs: a frame stored as a reference needs its video."""
    ref = frame_reference_of(uri)
    return ref[0] if ref is not None else uri


def file_problems(store: rowstore.RowStore, target: Target, *, concurrency: int = DEFAULT_CONCURRENCY,
                  exists: Callable[[str], bool | None] = _exists) -> Report:
    """Every file the table's committed rows name exists (each file checked once, `concurrency` at once)."""
    report = Report()
    rt = store.row_table(target.slug)
    if rt is None:
        return report
    first: dict[str, rowstore.NamedFile] = {}
    naming: dict[str, int] = {}
    outcome: dict[str, bool | None | BaseException] = {}
    lock = threading.Lock()

    def one(uri: str) -> None:
        try:
            result: bool | None | BaseException = exists(uri)
        except Exception as e:  # noqa: BLE001 - reported as the file's problem
            result = e
        with lock:
            outcome[uri] = result

    in_flight: set[concurrent.futures.Future] = set()
    with concurrent.futures.ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="pxt-check") as pool:
        for named in store.named_files(rt):
            uri = _file_of(named.uri)
            if uri in naming:
                naming[uri] += 1
                continue
            naming[uri], first[uri] = 1, named
            if len(in_flight) >= 4 * max(1, concurrency):  # bounded: a million rows queue no million checks
                _, in_flight = concurrent.futures.wait(in_flight, return_when=concurrent.futures.FIRST_COMPLETED)
            in_flight.add(pool.submit(one, uri))
    for uri, result in outcome.items():
        if result is None:
            report.files_unchecked += 1
            continue
        report.files_checked += 1
        if result is True:
            continue
        named = first[uri]
        whose = "a file we wrote" if named.owned else "a referenced file"
        more = naming[uri] - 1
        where = f"column {named.column!r}, batch {named.batch}, row {named.row_id}" + (
            f", and {more} more row{'' if more == 1 else 's'}" if more else "")
        if result is False:
            report.problems.append(Problem(target.path, MISSING_FILE, redact(f"{whose} is missing: {uri} ({where})")))
        else:
            report.problems.append(Problem(target.path, UNREACHABLE_FILE, redact(
                f"cannot tell whether {whose} exists: {uri} ({where}): {type(result).__name__}: {result}")))
    report.problems.sort(key=lambda p: p.message)
    return report


def schema_problems(store: rowstore.RowStore, target: Target) -> list[Problem]:
    """The table's columns and its SQL table agree (a table without rows has no SQL table: nothing to
    disagree)."""
    drift = store.schema_drift(target.slug, target.columns)
    if not drift:
        return []
    out = []
    for column, names in drift.missing.items():
        if column and not names:  # the row table never recorded the column
            out.append(Problem(target.path, SCHEMA, f"column {column!r} has no SQL columns in {drift.sql_name}"))
        elif column:
            out.append(Problem(target.path, SCHEMA, f"column {column!r} has no SQL column{'s' if len(names) > 1 else ''} "
                                                   f"{', '.join(names)} in {drift.sql_name}"))
        else:
            out.append(Problem(target.path, SCHEMA, f"the SQL table {drift.sql_name} lacks {', '.join(names)}"))
    for name in drift.stray:
        out.append(Problem(target.path, SCHEMA, f"SQL column {name} of {drift.sql_name} belongs to no column of "
                                               "the table (a column left out of its definition without "
                                               "drop_column?)"))
    for column, (recorded, declared) in drift.retyped.items():
        out.append(Problem(target.path, SCHEMA, f"column {column!r} is declared {declared} but stored as {recorded}"))
    return out


def pending_without_reason(store: rowstore.RowStore, target: Target) -> list[Problem]:
    """Every batch that is not committed records why (`reason` of RowStore.batch_info), unless a run is
    writing it now. A BatchInfo without a `reason` field counts as recording none."""
    committed = set(store.batches(target.slug, rowstore.COMMITTED))
    todo = [b for b in store.batches(target.slug) if b not in committed]
    running = store.running_batches(target.slug) if todo else set()
    out = []
    for batch in todo:
        if batch in running:
            continue
        info = store.batch_info(target.slug, batch)
        if info is None or info.status == rowstore.COMMITTED or getattr(info, "reason", None):
            continue
        out.append(Problem(target.path, PENDING_WITHOUT_REASON,
                           f"batch {batch} is {info.status}, no run is writing it, and it records no reason "
                           "(run it again with resume, or delete it)"))
    return out


def staged_problems(store: rowstore.RowStore, target: Target) -> list[Problem]:
    """No records stay staged for a committed batch once no run is writing it."""
    return [Problem(target.path, STAGED_OF_COMMITTED,
                    f"records of column {column!r} are staged for batch {batch}, which is committed, by a run "
                    f"({run_id or 'unknown'}) that is not writing it: materialize the column for the batch "
                    "again, or delete the batch")
            for batch, column, run_id in store.staged_of_committed(target.slug)]


def uncomputed_problems(store: rowstore.RowStore, target: Target) -> list[Problem]:
    """Every computed column is computed for every committed batch, unless a run is writing it now (a column
    added after a batch committed whose backfill stopped is not)."""
    found = store.uncomputed(store.row_table(target.slug), target.computed) if target.computed else {}
    running = store.running_batches(target.slug) if found else set()
    return [Problem(target.path, NOT_COMPUTED,
                    f"column(s) {', '.join(columns)} of batch {batch} were never computed (added after the batch "
                    f"committed; the backfill stopped): pxt.get_table({target.path!r}).resume() computes them")
            for batch, columns in found.items() if batch not in running]


def view_problems(store: rowstore.RowStore, target: Target) -> list[Problem]:
    """Each batch of a view has its base table's batch."""
    if target.base_path is None:
        return []
    try:
        base_slug = TableSpec(parse_table_path(target.base_path)).slug
    except SpecError:
        return []
    base = set(store.batches(base_slug))
    return [Problem(target.path, ORPHANED_VIEW_BATCH,
                    f"batch {batch} has no batch {batch} of its base table {target.base_path!r} any more (its rows "
                    f"outlived a delete): delete it (pxt.get_table({target.path!r}).delete(batch={batch!r}))")
            for batch in store.batches(target.slug) if batch not in base]


def check_target(store: rowstore.RowStore, target: Target, *, concurrency: int = DEFAULT_CONCURRENCY,
                 files: bool = True) -> Report:
    """Every invariant of one table."""
    report = Report(tables=[target.path])
    if files:
        report.add(file_problems(store, target, concurrency=concurrency))
    report.problems += schema_problems(store, target)
    report.problems += pending_without_reason(store, target)
    report.problems += staged_problems(store, target)
    report.problems += uncomputed_problems(store, target)
    report.problems += view_problems(store, target)
    return report


# ---------------------------------------------------------------------------------------------------------
# entry points


def _store_for(table: Any = None) -> rowstore.RowStore:
    settings = getattr(table, "settings", None) if table is not None else None
    return rowstore.for_settings(settings or current_settings())


def check_table(table: Any, *, store: rowstore.RowStore | None = None, concurrency: int = DEFAULT_CONCURRENCY,
                files: bool = True) -> Report:
    """Check a declared table or view (see the module's docstring)."""
    return check_target(store or _store_for(table), Target.of(table), concurrency=concurrency, files=files)


def database_targets(store: rowstore.RowStore, declared: Iterable[Any] = ()) -> list[Target]:
    """A target for each of `declared`, then for each table the database has rows of that is not among them
    (as the row store recorded it: a table declared elsewhere, or nowhere any more)."""
    targets = {t.slug: t for t in map(Target.of, declared)}
    bases = {v.slug: v.base_path for v in store.views()}
    for rt in store.all_row_tables():
        if rt.slug not in targets:
            targets[rt.slug] = Target(rt.slug, rt.path, None, bases.get(rt.slug))
    return sorted(targets.values(), key=lambda t: t.path)


def check(targets: Sequence[Target] | None = None, *, store: rowstore.RowStore | None = None,
          concurrency: int = DEFAULT_CONCURRENCY, files: bool = True) -> Report:
    """Check `targets` (default: every table the database has rows of), one after the other."""
    store = store or _store_for()
    report = Report()
    for target in (database_targets(store) if targets is None else targets):
        report.add(check_target(store, target, concurrency=concurrency, files=files))
    return report


def asset_check(table: Any) -> dg.AssetChecksDefinition:
    """The table's asset check, on its first inserted column's asset (a view's: `pos`): runs `check_table`
    and shows what it found in the check's metadata. Non-blocking, with severity WARN: drift is shown, and
    nothing downstream is held back."""
    spec: TableSpec = table.spec
    column = spec.source_columns()[0].name

    @dg.asset_check(asset=asset_key(spec, column), name=CHECK_NAME, blocking=False,
                    description=f"The invariants of {spec.display_path!r}: every file its rows name exists, its "
                                "columns and SQL table agree, no pending batch without a reason, no staged "
                                "records of committed batches (python -m pxt_assets check).")
    @scrubbing
    def invariants() -> dg.AssetCheckResult:
        report = check_table(table)
        return dg.AssetCheckResult(passed=report.ok, severity=dg.AssetCheckSeverity.WARN,
                                   metadata=report.metadata(), description=report.summary())

    return invariants


__all__ = ["CHECK_NAME", "KINDS", "Problem", "Report", "Target", "asset_check", "check", "check_table",
           "check_target", "database_targets", "file_problems", "pending_without_reason", "schema_problems",
           "staged_problems", "view_problems"]
