"""`python -m bench scale --rows N --batch B [--db URL]`: see bench/scale.py. `python -m bench udf`: bench/udf.py.
`python -m bench scaleout --images N --batch-rows B`: the distributed path's rows/s and fixed cost (bench/scaleout.py).
`python -m bench watch [--objects N]`: what a sensor tick costs on a prefix of N taken objects (bench/watch.py).
`python -m bench first-use [--homes N]`: P processes' first inserts into each of N new homes at once (bench/first_use.py).

`python -m bench --n 200`: the seed pipeline at N synthetic 1024x768 JPEGs on a local moto S3 server,
pxt_assets against a plain boto3 + Pillow baseline measured in the same run (`--repeat R`: R interleaved
pairs, each side going first in every other pair, medians reported). The last line of output is one JSON
object (see bench/README.md)."""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import tempfile

import boto3
from botocore.config import Config

from bench.common import OUT_BUCKET, SRC_BUCKET, s3_env, start_moto, synthetic_jpeg


def _child(module: str, n: int, env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, "-m", module, "--n", str(n)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{module} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _server_with_sources(n: int, images: list[bytes]) -> tuple[subprocess.Popen, str]:
    """A fresh moto server holding the same N sources (plus 30 extra: 10 for the 10-row batches, 20 for the 20-row one)."""
    moto, endpoint = start_moto()
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                      aws_secret_access_key="bench", config=Config(max_pool_connections=16))
    s3.create_bucket(Bucket=SRC_BUCKET)
    s3.create_bucket(Bucket=OUT_BUCKET)
    keys = [f"src/{i:06d}.jpg" for i in range(n)] + [f"extra/{i:06d}.jpg" for i in range(30)]

    def upload(i: int) -> None:
        s3.put_object(Bucket=SRC_BUCKET, Key=keys[i], Body=images[i], ContentType="image/jpeg")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(upload, range(len(keys))))
    return moto, endpoint


def _pair(n: int, images: list[bytes], baseline_first: bool = True) -> tuple[dict, dict]:
    """One baseline run and one pxt_assets run, each on a fresh moto server holding identical sources: moto
    keeps every object in memory and slows as it fills, so a side measured second on a shared server would
    also pay for the first one's 3N outputs. `baseline_first` alternates between pairs, so a drift in the
    machine's speed during a run does not always favour the same side."""
    servers = [_server_with_sources(n, images) for _ in range(2)]
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("PIXELTABLE_", "DAGSTER_", "PXT_", "AWS_"))}
    print(f"{n} sources in s3://{SRC_BUCKET}/src/ on two moto servers: "
          f"{servers[0][1]} (baseline), {servers[1][1]} (pxt_assets)", flush=True)
    results: dict[str, dict] = {}

    def run_baseline() -> None:
        results["baseline"] = _child("bench.baseline", n, {**base_env, **s3_env(servers[0][1])})

    def run_framework() -> None:
        with tempfile.TemporaryDirectory() as home:
            fw_env = {**base_env, **s3_env(servers[1][1]), "PIXELTABLE_HOME": home,
                      "DAGSTER_HOME": os.path.join(home, "dagster")}
            results["pxt_assets"] = _child("bench.framework", n, fw_env)

    sides = [("baseline", run_baseline), ("pxt_assets", run_framework)]
    try:
        for side, run in sides if baseline_first else sides[::-1]:
            run()
            print(f"{side}: {json.dumps(results[side])}", flush=True)
    finally:
        for moto, _ in servers:
            moto.terminate()
            moto.wait(10)
    return results["baseline"], results["pxt_assets"]


def main() -> None:
    if sys.argv[1:2] == ["video"]:  # python -m bench video [--modes ...]
        from bench import video

        video.main(sys.argv[2:])
        return
    if sys.argv[1:2] == ["torture"]:  # python -m bench torture --seconds S --procs P --db D --dest L
        from bench import torture

        torture.main(sys.argv[2:])
        return
    if sys.argv[1:2] == ["badfiles"]:  # python -m bench badfiles [--scenario S]
        from bench import badfiles

        badfiles.main(sys.argv[2:])
        return
    if sys.argv[1:2] == ["watch"]:  # python -m bench watch [--objects N] [--new K]
        from bench import watch

        watch.main(sys.argv[2:])
        return
    if sys.argv[1:2] == ["udf"]:  # python -m bench udf [--rows N]
        from bench import udf

        udf.main(sys.argv[2:])
        return
    if sys.argv[1:2] == ["first-use"]:  # python -m bench first-use [--homes N] [--processes P]
        from bench import first_use

        first_use.main(sys.argv[2:])
        return
    if sys.argv[1:2] == ["scaleout"]:  # python -m bench scaleout --images N --batch-rows B
        from bench import scaleout

        scaleout.main(sys.argv[2:])
        return
    if sys.argv[1:2] == ["scale"]:  # python -m bench scale --rows N --batch B [--db URL]
        from bench import scale

        scale.main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=1,
                        help="run R (baseline, pxt_assets) pairs and report medians: the machine is shared and "
                             "noisy, and pairs interleave the two sides in time")
    args = parser.parse_args()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        images = list(pool.map(synthetic_jpeg, [*range(args.n), *(10**6 + i for i in range(30))]))
    pairs = []
    for r in range(args.repeat):
        if args.repeat > 1:
            print(f"--- pair {r + 1}/{args.repeat}", flush=True)
        pairs.append(_pair(args.n, images, baseline_first=r % 2 == 0))
    ratios = [fw["rows_per_s"] / bl["rows_per_s"] for bl, fw in pairs]

    def med(side: int, key: str) -> float:
        return statistics.median(p[side][key] for p in pairs)

    print(json.dumps({
        "n": args.n,
        "rows_per_s": round(med(1, "rows_per_s"), 2),
        "baseline_rows_per_s": round(med(0, "rows_per_s"), 2),
        "ratio": round(statistics.median(ratios), 3),
        "gets_per_source": max(fw["gets_per_source"] for _, fw in pairs),
        "puts_per_output": max(fw["puts_per_output"] for _, fw in pairs),
        "peak_rss_mb": round(max(fw["peak_rss_mb"] for _, fw in pairs), 1),
        "baseline_peak_rss_mb": round(max(bl["peak_rss_mb"] for bl, _ in pairs), 1),
        "cpu_s_per_row": round(med(1, "cpu_s") / args.n, 4),
        "baseline_cpu_s_per_row": round(med(0, "cpu_s") / args.n, 4),
        "batch10_on_n_s": round(med(1, "batch10_on_n_s"), 3),
        "batch20_on_n_s": round(med(1, "batch20_on_n_s"), 3),
        "batch10_on_empty_s": round(med(1, "batch10_on_empty_s"), 3),
        "presign_per_s": round(med(1, "presign_per_s")),
        "pairs": len(pairs),
        "ratios": [round(r, 3) for r in ratios],
    }))


if __name__ == "__main__":
    main()
