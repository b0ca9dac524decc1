"""`python -m bench --n 200`: the seed pipeline at N synthetic 1024x768 JPEGs on a local moto S3 server,
pxt_assets against a plain boto3 + Pillow baseline measured in the same run. The last line of output is
one JSON object (see README, "Performance")."""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
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


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    moto, endpoint = start_moto()
    try:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("PIXELTABLE_", "DAGSTER_", "PXT_"))},
               **s3_env(endpoint)}
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                          aws_secret_access_key="bench", config=Config(max_pool_connections=16))
        s3.create_bucket(Bucket=SRC_BUCKET)
        s3.create_bucket(Bucket=OUT_BUCKET)

        def upload(key_i):
            key, i = key_i
            s3.put_object(Bucket=SRC_BUCKET, Key=key, Body=synthetic_jpeg(i), ContentType="image/jpeg")

        keys = [(f"src/{i:06d}.jpg", i) for i in range(args.n)] + [(f"extra/{i:06d}.jpg", 10**6 + i) for i in range(10)]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(upload, keys))
        print(f"{args.n} sources in s3://{SRC_BUCKET}/src/ on {endpoint}", flush=True)

        baseline = _child("bench.baseline", args.n, env)
        print(f"baseline: {json.dumps(baseline)}", flush=True)
        with tempfile.TemporaryDirectory() as home:
            fw_env = {**env, "PIXELTABLE_HOME": home, "DAGSTER_HOME": os.path.join(home, "dagster")}
            framework = _child("bench.framework", args.n, fw_env)
        print(f"pxt_assets: {json.dumps(framework)}", flush=True)
    finally:
        moto.terminate()
        moto.wait(10)
    print(json.dumps({
        "n": args.n,
        "rows_per_s": round(framework["rows_per_s"], 2),
        "baseline_rows_per_s": round(baseline["rows_per_s"], 2),
        "ratio": round(framework["rows_per_s"] / baseline["rows_per_s"], 3),
        "gets_per_source": framework["gets_per_source"],
        "puts_per_output": framework["puts_per_output"],
        "peak_rss_mb": round(framework["peak_rss_mb"], 1),
        "baseline_peak_rss_mb": round(baseline["peak_rss_mb"], 1),
        "batch10_on_n_s": round(framework["batch10_on_n_s"], 3),
        "batch10_on_empty_s": round(framework["batch10_on_empty_s"], 3),
        "presign_per_s": round(framework["presign_per_s"]),
    }))


if __name__ == "__main__":
    main()
