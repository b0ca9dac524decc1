"""Command line: `python -m pxt_assets demo | insert | show | resume | gc | check | watch-setup | scale-demo`.

    python -m pxt_assets demo                               # the seed walkthrough on the embedded default
    python -m pxt_assets insert blob_storage_demo/media a.jpg https://host/b.jpg
    python -m pxt_assets show blob_storage_demo/media
    python -m pxt_assets resume blob_storage_demo/media [BATCH]   # re-run batches that failed or were killed
    python -m pxt_assets gc s3://bucket/prefix/ [--delete] [--min-age SECONDS] [--reconcile]  # files we wrote that no row names
    python -m pxt_assets check [TABLE] [--json]             # the tables' invariants: missing files, drift
    python -m pxt_assets watch-setup blob_storage_demo/media      # bucket notifications -> the watch's SQS queue
    python -m pxt_assets scale-demo [--images N]    # the demo table on PostgreSQL, Redis, moto, two Celery workers
"""

from __future__ import annotations

import argparse
import importlib
import sys

import pandas as pd

from pxt_assets.api import MediaTable
from pxt_assets.spec import parse_table_path


def _tables(module: str) -> dict[tuple[str, ...], MediaTable]:
    mod = importlib.import_module(module)
    loaded = mod.load_tables() if callable(getattr(mod, "load_tables", None)) else getattr(mod, "tables", [])
    return {v.spec.path: v for v in vars(mod).values() if isinstance(v, MediaTable)} | {v.spec.path: v for v in loaded}


def _table(module: str, path: str) -> MediaTable:
    tables = _tables(module)
    key = parse_table_path(path)
    if key not in tables:
        known = ", ".join("/".join(k) for k in tables) or "none"
        raise SystemExit(f"no table {path!r} in {module}; tables there: {known} (a table that cannot be "
                         "loaded is named, with the reason, in the warnings above)")
    return tables[key]


def _print(frame: pd.DataFrame) -> None:
    with pd.option_context("display.max_colwidth", None, "display.width", 10_000, "display.max_columns", None):
        print(frame.to_string() if len(frame) else "(no rows)")


def _check(args: argparse.Namespace) -> int:
    import json

    from pxt_assets import check as invariants
    from pxt_assets import rowstore
    from pxt_assets.config import current_settings

    store = rowstore.for_settings(current_settings())
    declared = _tables(args.module)
    targets = invariants.database_targets(store, declared.values())
    if args.table is not None:
        try:
            path = "/".join(parse_table_path(args.table))
        except ValueError as e:  # SpecError
            raise SystemExit(f"check: {e}") from None
        targets = [t for t in targets if t.path == path]
        if not targets:
            known = ", ".join(sorted({"/".join(k) for k in declared} | {rt.path for rt in store.all_row_tables()}))
            raise SystemExit(f"no table {args.table!r} in {args.module} nor in {store!r}; tables: {known or 'none'}")
    report = invariants.check(targets, store=store, concurrency=args.concurrency, files=not args.no_files)
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        for problem in report.problems:
            print(problem)
        print(report.summary())
    return 0 if report.ok else 1


def _watch_setup(args: argparse.Namespace) -> int:
    import json

    from pxt_assets import stores
    from pxt_assets.redaction import redact
    from pxt_assets.stores import sqs

    try:
        key = parse_table_path(args.table)
    except ValueError as e:  # SpecError
        raise SystemExit(f"watch-setup: {e}") from None
    table = _tables(args.module).get(key)
    if table is None:  # a catalog table (pxt.create_table, watch recorded with it)
        from pxt_assets.api.catalog import get_table

        try:
            table = get_table(args.table)
        except Exception as e:  # noqa: BLE001 - named below
            raise SystemExit(f"watch-setup: no table {args.table!r} in {args.module} nor in the catalog "
                             f"({e})") from None
    watch = table._watch
    if watch is None or not watch.queue:
        raise SystemExit(f"watch-setup: table {args.table!r} has no watch with queue= (t.watch(prefix, queue=URL))")
    try:
        done = sqs.setup_notifications(watch.prefix, watch.queue, f"pxt-{table.spec.slug}"[:64])
    except stores.StoreError as e:
        print(f"watch-setup: {redact(str(e))}", file=sys.stderr)
        return 1
    print(json.dumps({"table": table.path, "queue": redact(watch.queue), **done}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pxt_assets", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--module", default="pxt_assets.definitions",
                        help="module declaring the tables (default: pxt_assets.definitions)")
    sub = parser.add_subparsers(dest="command", required=True)
    demo_p = sub.add_parser("demo", help="run the seed's blob storage walkthrough on the demo table")
    demo_p.add_argument("--dest", help="bucket prefix for rotated/thumbnail (s3://, gs://, wasbs://, R2/B2/Tigris "
                                       "https); default: local folders. Same as $PXT_DEMO_DEST")
    ins = sub.add_parser("insert", help="insert files or URLs as one new batch and materialize it")
    ins.add_argument("table")
    ins.add_argument("files", nargs="+", help="local paths, file:// or http(s):// URLs")
    ins.add_argument("--column", help="media column to insert into (default: the first media column)")
    show = sub.add_parser("show", help="print a table's rows: the fileurl of each media column, other values")
    show.add_argument("table")
    resume = sub.add_parser("resume", help="run again the batches of a table that failed or were killed "
                                           "(their rows become visible once; nothing is duplicated)")
    resume.add_argument("table")
    resume.add_argument("batch", nargs="?", help="one batch key (default: every pending batch)")
    gc = sub.add_parser(
        "gc", help="list (or --delete) orphaned files under a destination: files this database wrote that no row "
                   "refers to",
        description="List the orphaned files under DESTINATION, one URI a line, then a count line. An orphan "
                    "is a file this database wrote (its write journal recorded the key before writing it), that "
                    "no row or staged record of any table in the database (db_url, shared by every process that "
                    "uses it) refers to, that belongs to no batch that is pending or being written, and that was "
                    "written more than --min-age ago. A file this database did not write (your own files, "
                    "another database's files under the same prefix) is never listed nor deleted, and nothing "
                    "is listed in the bucket. Just before deleting, each file is checked again (rows, journal, "
                    "modification time): a batch being re-run meanwhile keeps its files. Safe to run while "
                    "inserts are running, from any machine that shares the database.")
    gc.add_argument("destination", metavar="DESTINATION",
                    help="a local folder, file:// URL or bucket URI (s3://, gs://, wasbs://, abfss://, https)")
    gc.add_argument("--delete", action="store_true", help="delete the orphaned files (default: only list them)")
    gc.add_argument("--min-age", type=float, default=3600.0, metavar="SECONDS",
                    help="leave files written less than this long ago alone (default: 3600)")
    gc.add_argument("--reconcile", action="store_true",
                    help="instead: list DESTINATION and report the files named like ours that this database's "
                         "journal does not hold (another database's, or written before the journal and named by "
                         "no row); deletes nothing")
    chk = sub.add_parser(
        "check", help="check the tables' invariants: files rows name exist, columns and SQL agree, no pending "
                      "batch without a reason, no staged records of committed batches",
        description="Check TABLE (default: every table the module declares and every table the database has "
                    "rows of): every file a row names exists (locally or in its bucket: one existence check per "
                    "file, a few at once), the table's columns and its SQL table agree, no batch is pending "
                    "without a reason, no records stay staged for a committed batch, each view batch has its base "
                    "batch. Prints one line per problem, then a summary; exits 1 when there are problems. Only "
                    "reads: nothing is changed.")
    chk.add_argument("table", nargs="?", help="one table or view (default: all)")
    chk.add_argument("--json", action="store_true", help="print one JSON object instead")
    chk.add_argument("--no-files", action="store_true", help="skip the existence check of files")
    chk.add_argument("--concurrency", type=int, default=16, metavar="N",
                     help="existence checks in flight at once (default: 16)")
    setup = sub.add_parser(
        "watch-setup", help="send the bucket's new-object notifications to the SQS queue of TABLE's watch",
        description="For a watch declared with queue= (an s3:// prefix and an SQS queue URL), and a user who "
                    "owns both: add to the queue's policy a statement letting S3 send it the bucket's events, and "
                    "add to the bucket's notifications one sending s3:ObjectCreated:* events of keys under the "
                    "prefix to the queue (both named pxt-<table>; the bucket's and the queue's others are kept). "
                    "Run it again after changing the prefix or the queue: it replaces its own configuration.")
    setup.add_argument("table")
    scale = sub.add_parser(
        "scale-demo", help="the demo table scaled out on 127.0.0.1 (docs/scale.md); prints one JSON line",
        description="Start a throwaway PostgreSQL cluster, Redis, a moto S3 server, the Dagster daemon and two "
                    "Celery workers on 127.0.0.1, each process with its own empty homes, each worker and the "
                    "daemon in a mount namespace of its own where the host allows (private /tmp and homes, the "
                    "checkout read-only); put N generated images in the demo table's watched prefix; wait until "
                    "every row is materialized; check every file is in the bucket; scan both databases for local "
                    "paths (shared_disk); stop everything; print one JSON line. "
                    "Needs the scale-demo extra and Debian's postgresql and redis-server.")
    scale.add_argument("--images", type=int, default=24)
    scale.add_argument("--batch-rows", type=int, default=None, help="rows per batch (default: images / 6)")
    scale.add_argument("--timeout", type=float, default=600, metavar="SECONDS")
    scale.add_argument("--executor", choices=("runs", "steps"), default="runs",
                       help="runs: each batch's run is one Celery task, its steps in that process (default); steps: "
                            "the daemon starts a process per run and each step is a Celery task (docs/scale.md)")
    args = parser.parse_args(argv)

    if args.command == "demo":
        import os

        if args.dest:
            os.environ["PXT_DEMO_DEST"] = args.dest
        from pxt_assets import demo

        demo.run()
        return 0
    if args.command == "scale-demo":
        import json

        from pxt_assets import scale_demo

        print(json.dumps(scale_demo.main(args.images, args.batch_rows, args.timeout, args.executor)))
        return 0
    if args.command == "gc":
        from pxt_assets import lifecycle, stores

        if args.reconcile and args.delete:
            print("gc: --reconcile only reports (it deletes nothing): leave out --delete", file=sys.stderr)
            return 2
        try:
            if args.reconcile:
                unknown = lifecycle.reconcile(args.destination)
                for uri in unknown:
                    print(uri)
                noun = "file" if len(unknown) == 1 else "files"
                print(f"{len(unknown)} {noun} named like ours that this database did not write (none deleted)")
                return 0
            orphans = lifecycle.collect_garbage(args.destination, delete=args.delete, min_age=args.min_age)
        except (stores.StoreError, OSError, RuntimeError, ValueError) as e:
            print(f"gc: {e}", file=sys.stderr)
            return 1
        for uri in orphans:
            print(uri)
        noun = "orphaned file" if len(orphans) == 1 else "orphaned files"
        print(f"{len(orphans)} {noun}" + (" deleted" if args.delete else ""))
        return 0
    if args.command == "check":
        return _check(args)
    if args.command == "watch-setup":
        return _watch_setup(args)
    table = _table(args.module, args.table)
    if args.command == "resume":
        results = table.resume(args.batch)
        if not results:
            print(f"{table.path}: no pending batches")
        return 0
    if args.command == "insert":
        media_cols = [c.name for c in table.spec.source_columns() if c.is_media]
        column = args.column or (media_cols[0] if media_cols else None)
        if column is None:
            raise SystemExit(f"table {table.path!r} has no media column")
        result = table.insert([{column: f} for f in args.files], on_error="ignore")  # bad files kept, counted
        print(f"batch {result.batch}, run {result.run_id}")
        return 0 if result.num_errors == 0 else 1
    if args.command == "show":
        exprs = {c.name: (table[c.name].fileurl if c.is_media else table[c.name]) for c in table.spec.columns.values()}
        frame = table.select(**exprs).collect().to_pandas()
        names = list(table.spec.columns)
        errs = table.select(**{f"m{i}": table[c].errormsg for i, c in enumerate(names)},
                            **{f"k{i}": table[c].errortype for i, c in enumerate(names)}).collect().to_pandas()

        def root_errors(r) -> str:
            # a failed source fails every column computed from it: show the cause once, not once per column
            return "; ".join(f"{c}: {r[f'm{i}']}" for i, c in enumerate(names)
                             if isinstance(r[f"m{i}"], str) and r[f"k{i}"] != "upstream_error")

        frame["errors"] = errs.apply(root_errors, axis=1) if len(errs) else []
        _print(frame)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
