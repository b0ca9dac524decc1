"""`python -m bench torture --seconds 120 --procs 4 --db sqlite|postgres --dest local|s3 [--seed S]`

A seeded, bounded, replayable torture run of one table shared by several processes. Each round starts
`--procs` worker processes on one home and database; each does random operations (inserts with bad values and
bad files mixed in, adds and drops of columns, batch deletes, resumes, one column's asset materialized alone
for a batch, `gc --delete --min-age 0`), and some of them are killed with SIGKILL at a fault point of the code
(`pxt_assets/faults.py`; each point of FAULT_POINTS is armed in turn, so a 30-second run hits each). When
every worker of a round has ended, the invariants are checked (see `check_invariants`); the last round also
resumes every pending batch and collects garbage first, then checks that no file is left that no row names.

The last line of output is one JSON object: {"ops": N, "kills": K, "violations": V, "seed": S, ...}; each
violation is printed before it. The same seed replays the same choices (the timing of processes does not
replay: the kill points do)."""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import pathlib
import random
import subprocess
import sys
import tempfile
import time
from typing import Any

TABLE = "torture/t"
#: where a worker may be killed (each is a fault_point(...) in pxt_assets; see pxt_assets/faults.py)
FAULT_POINTS = ("before_upload", "after_upload", "mid_upload", "before_commit", "mid_commit", "after_commit")
OPS = {"insert": 6, "resume": 2, "partial": 2, "delete": 1, "add_column": 1, "drop_column": 1, "gc": 1}
GOOD_IMAGES = 6


# -- the worker: random operations on the table ---------------------------------------------------------------

def _deep(levels: int) -> list:
    top: list = []
    cur = top
    for _ in range(levels):
        cur.append([])
        cur = cur[0]
    return top


def _value(rng: random.Random, column: str, i: int) -> Any:
    """A value for an inserted column: usually good, sometimes one its column or a database cannot hold."""
    bad = rng.random() < 0.15
    if column == "n":
        return rng.choice([2**64, True, -(2**63) - 1]) if bad else i
    if column == "j":
        return rng.choice([{"x": float("nan")}, {"s": "a\x00b"}, _deep(150)]) if bad else {"i": i}
    return rng.choice(["nul\x00", "\ud800"]) if bad else f"row {i}"


def worker(seed: int, ops: int, inputs: pathlib.Path, dest: str) -> None:
    import dagster as dg

    import pxt_assets as pxt
    from pxt_assets import lifecycle
    from pxt_assets.assets import batch_job_name

    rng = random.Random(seed)
    images = sorted(inputs.glob("*"))
    for k in range(ops):
        op = rng.choices(list(OPS), weights=list(OPS.values()))[0]
        started = time.monotonic()
        try:
            t = pxt.get_table(TABLE)
            if op == "insert":
                rows = [{"img": str(rng.choice(images)), "n": _value(rng, "n", k), "j": _value(rng, "j", k),
                         "s": _value(rng, "s", k)} for _ in range(rng.randint(1, 3))]
                t.insert(rows, on_error="ignore")  # bad values are kept as bad rows, as a sensor keeps them
            elif op == "resume":
                t.resume()
            elif op == "partial":
                batches, computed = t.batches(), [c.name for c in t.spec.computed_columns()]
                if batches and computed:
                    job = t.definitions().resolve_job_def(batch_job_name(t.spec)).get_subset(
                        asset_selection={dg.AssetKey([*t.spec.path, rng.choice(computed)])})
                    job.execute_in_process(partition_key=rng.choice(batches), raise_on_error=False,
                                           instance=dg.DagsterInstance.get())
            elif op == "delete":
                batches = t.batches()
                if batches:
                    t.delete(batch=rng.choice(batches))
            elif op == "add_column":
                t.add_computed_column(**{f"h{seed % 10000}_{k}": t.img.height}, on_error="ignore")
            elif op == "drop_column":
                added = [c for c in t.spec.columns if c.startswith("h")]
                if added:
                    t.drop_column(rng.choice(added))
            elif op == "gc":
                lifecycle.collect_garbage(dest, delete=True, min_age=0)
            outcome = {"op": op, "ok": True}
        except Exception as e:  # noqa: BLE001 - an operation may fail (a batch deleted meanwhile): reported
            outcome = {"op": op, "ok": False, "error": f"{type(e).__name__}: {str(e)[:300]}"}
        outcome["s"] = round(time.monotonic() - started, 2)
        print(json.dumps(outcome), flush=True)


# -- the invariants --------------------------------------------------------------------------------------

def check_invariants(dest: str, *, after_gc: bool) -> list[str]:
    """What must hold whenever no worker is running (each failure is one line naming what broke):
    - every row of a committed batch is complete: each computed column has a value or an error (or, but for
      the last round, was never computed for it: a column added later whose backfill was killed, which
      resume() completes);
    - every file a committed row names exists;
    - no duplicate rows: a committed batch has as many rows as were inserted in it;
    - the catalog and the SQL table agree on the columns;
    - every batch that is not committed says why;
    - after gc (`after_gc`, every pending batch resumed first): no file under the destination that no row names."""
    import pxt_assets as pxt
    from pxt_assets import lifecycle, rowstore, stores

    t = pxt.get_table(TABLE)
    store = t._rowstore()
    rt = store.row_table(t.spec.slug)
    out: list[str] = []
    catalog = set(t.spec.columns)
    if rt is None or set(rt.column_types) != catalog:
        out.append(f"catalog columns {sorted(catalog)} != SQL columns {sorted(rt.column_types) if rt else None}")
        return out
    computed = [c.name for c in t.spec.computed_columns()]
    media = [c.name for c in t.spec.columns.values() if c.is_media]
    named: set[str] = set()
    uncomputed = store.uncomputed(rt, computed)
    for batch in store.batches(t.spec.slug):
        info = store.batch_info(t.spec.slug, batch)
        if info.status != rowstore.COMMITTED:
            if not info.reason:
                out.append(f"batch {batch}: {info.status} with no reason")
            continue
        records = store.read_columns(rt, batch, list(catalog))
        manifest = store.manifest(t.spec.slug, batch) or []
        got = records.get("img", {})
        if len(got) != len(manifest):
            out.append(f"batch {batch}: {len(got)} rows for {len(manifest)} inserted")
        for col in computed:
            # a column added after the batch committed, whose backfill was killed, is not computed for it yet
            # (no version: `uncomputed()`, which resume() completes): allowed until the last round resumes
            later = not after_gc and col in uncomputed.get(batch, ())
            for rid, rec in records.get(col, {}).items():
                if rec.get("value") is None and rec.get("error") is None and not (later and rec.get("version") is None):
                    out.append(f"batch {batch}, row {rid}: column {col} has neither a value nor an error")
            missing = set(got) - set(records.get(col, {}))
            if missing:
                out.append(f"batch {batch}: column {col} lacks rows {sorted(missing)[:3]}")
        for col in media:
            for rid, rec in records.get(col, {}).items():
                uri = rec.get("value")
                if uri and rec.get("owned"):
                    named.add(stores.canonical_uri(uri))
                    if not stores.store_for(uri).exists(uri):
                        out.append(f"batch {batch}, row {rid}: column {col} names {uri}, which does not exist")
    if after_gc:
        referenced = lifecycle.referenced_uris(store)
        for uri in stores.store_for(dest).list(dest):
            if stores.canonical_uri(uri) not in referenced:
                out.append(f"after gc: {uri} is named by no row")
    return out


# -- the run ---------------------------------------------------------------------------------------------

def _media(inputs: pathlib.Path) -> None:
    import PIL.Image

    inputs.mkdir(parents=True)
    for i in range(GOOD_IMAGES):
        PIL.Image.new("RGB", (32 + 8 * i, 24), (40 * i, 100, 200)).save(inputs / f"good{i}.jpg")
    good = io.BytesIO()
    PIL.Image.new("RGB", (64, 48), "red").save(good, format="PNG")
    (inputs / "truncated.png").write_bytes(good.getvalue()[:60])
    (inputs / "text.jpg").write_text("not an image")


def _setup(dest: str) -> None:
    import pxt_assets as pxt

    pxt.create_dir("torture", if_exists="ignore")
    t = pxt.create_table(TABLE, {"img": pxt.Image, "n": pxt.Int, "j": pxt.Json, "s": pxt.String},
                         if_exists="replace")
    t.add_computed_column(w=t.img.width)
    t.add_computed_column(rot=t.img.rotate(90), destination=dest)


def run(*, seconds: float, procs: int, db: str, dest_kind: str, seed: int, ops_per_worker: int = 4,
        log=print, postgres: Any = None) -> dict[str, Any]:
    """The torture run; `postgres`: a running localservers.Postgres to use (else one is started)."""
    saved = dict(os.environ)
    try:
        return _run(seconds=seconds, procs=procs, db=db, dest_kind=dest_kind, seed=seed,
                    ops_per_worker=ops_per_worker, log=log, postgres=postgres)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _run(*, seconds: float, procs: int, db: str, dest_kind: str, seed: int, ops_per_worker: int, log,
         postgres: Any) -> dict[str, Any]:
    rng = random.Random(seed)
    root = pathlib.Path(tempfile.mkdtemp(prefix="pxt-torture-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIXELTABLE_", "DAGSTER_", "PXT_", "AWS_"))}
    env.update(PIXELTABLE_HOME=str(root / "home"), DAGSTER_HOME=str(root / "home" / "dagster"))
    servers: list[Any] = []
    from pxt_assets import localservers

    try:
        if db == "postgres":
            if postgres is None:
                postgres = localservers.Postgres()
                servers.append(postgres)
            env["PIXELTABLE_DB_URL"] = postgres.create_database("torture")
        if dest_kind == "s3":
            moto = localservers.MotoS3()
            servers.append(moto)
            moto.client().create_bucket(Bucket="torture")
            env.update(AWS_ENDPOINT_URL=moto.endpoint, AWS_ACCESS_KEY_ID="torture", AWS_SECRET_ACCESS_KEY="torture",
                       AWS_DEFAULT_REGION="us-east-1")
            dest = "s3://torture/out/"
        else:
            (root / "out").mkdir()
            dest = str(root / "out")
        _media(root / "inputs")
        os.environ.update(env)  # the invariants are checked from this process
        for k in [k for k in os.environ if k.startswith(("PIXELTABLE_", "DAGSTER_", "PXT_", "AWS_")) and k not in env]:
            del os.environ[k]
        subprocess.run([sys.executable, "-m", "bench.torture", "setup", dest], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        points = itertools.cycle(FAULT_POINTS)
        hits = dict.fromkeys(FAULT_POINTS, 0)
        totals = {"ops": 0, "failed_ops": 0, "kills": 0, "rounds": 0}
        violations: list[str] = []
        errors: dict[str, str] = {}  # one example of each kind of failed operation
        deadline = time.monotonic() + seconds
        while True:
            # past the deadline once every fault point was hit (a run goes on for at most as long again to hit
            # them: a worker armed with a point may not reach it)
            now = time.monotonic()
            last = (now >= deadline and all(hits.values())) or now >= deadline + seconds
            children = []
            unhit = [p for p in FAULT_POINTS if not hits[p]]  # armed first, so a short run hits every point
            for _ in range(0 if last else procs):
                if unhit:
                    point = unhit.pop(0)
                else:
                    point = next(points) if rng.random() < 0.6 else None
                child_env = {**env, "PXT_FAULT_POINT": f"{point}:{rng.randint(1, 2)}"} if point else env
                children.append((point, subprocess.Popen(
                    [sys.executable, "-m", "bench.torture", "worker", str(rng.randrange(2**31)),
                     str(ops_per_worker), str(root / "inputs"), dest],
                    env=child_env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)))
            for point, child in children:
                out, _ = child.communicate(timeout=600)
                done = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
                totals["ops"] += len(done)
                totals["failed_ops"] += sum(1 for d in done if not d["ok"])
                for d in done:
                    if not d["ok"]:
                        errors.setdefault(d["error"].split(":")[0] + ": " + d["op"], d["error"])
                if child.returncode == -9:
                    totals["kills"] += 1
                    hits[point] += 1
            if last:  # finish: every pending or incomplete batch run again, gc, then nothing may be left unnamed
                subprocess.run([sys.executable, "-c", "import pxt_assets as pxt; pxt.get_table('torture/t').resume()"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                subprocess.run([sys.executable, "-m", "pxt_assets", "gc", dest, "--delete", "--min-age", "0"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            found = check_invariants(dest, after_gc=last)
            totals["rounds"] += 1
            for v in found:
                log(f"violation (round {totals['rounds']}): {v}")
            violations += found
            if last:
                break
        for kind, example in errors.items():
            log(f"failed operation ({kind}), e.g.: {example}")
        return {**totals, "violations": len(violations), "seed": seed, "procs": procs, "db": db,
                "dest": dest_kind, "seconds": seconds, "fault_hits": hits}
    finally:
        for server in servers:
            server.stop()


def main(argv: list[str]) -> None:
    if argv[:1] == ["worker"]:
        worker(int(argv[1]), int(argv[2]), pathlib.Path(argv[3]), argv[4])
        return
    if argv[:1] == ["setup"]:
        _setup(argv[1])
        return
    parser = argparse.ArgumentParser(prog="python -m bench torture")
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--dest", choices=("local", "s3"), default="local")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--ops", type=int, default=4, help="operations per worker process")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    result = run(seconds=args.seconds, procs=args.procs, db=args.db, dest_kind=args.dest, seed=seed,
                 ops_per_worker=args.ops)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
