"""The baseline: a plain, well-tuned boto3 + Pillow thread pool doing the seed pipeline's work, no framework.
Per source: one GET, one decode, three encodes and three PUTs (rotated, flipped, thumbnail), width and
height, a presigned URL. Prints one JSON line."""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import json
import os
import time

import boto3
import PIL.Image
from botocore.config import Config

from bench.common import OUT_BUCKET, SRC_BUCKET, RequestCounter, cpu_seconds, peak_rss_mb


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    config = Config(max_pool_connections=32, retries={"mode": "standard", "max_attempts": 6})
    s3 = boto3.client("s3", config=config)
    signer = boto3.client("s3", config=Config(signature_version="s3v4"))
    counter = RequestCounter()
    counter.attach(s3)

    def put(img: PIL.Image.Image, key: str) -> None:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        s3.put_object(Bucket=OUT_BUCKET, Key=key, Body=buf.getvalue(), ContentType="image/jpeg")

    def row(i: int) -> dict:
        body = s3.get_object(Bucket=SRC_BUCKET, Key=f"src/{i:06d}.jpg")["Body"].read()
        with PIL.Image.open(io.BytesIO(body)) as img:
            img.load()
            put(img.rotate(90, expand=True), f"baseline/rotated/{i}.jpg")
            put(img.transpose(PIL.Image.Transpose.FLIP_LEFT_RIGHT), f"baseline/flipped/{i}.jpg")
            thumb = img.copy()
            thumb.thumbnail((128, 128))
            put(thumb, f"baseline/thumbnail/{i}.jpg")
            url = signer.generate_presigned_url("get_object", Params={"Bucket": OUT_BUCKET,
                                                "Key": f"baseline/thumbnail/{i}.jpg"}, ExpiresIn=3600)
            return {"width": img.width, "height": img.height, "url": url}

    started, cpu0, times0 = time.perf_counter(), cpu_seconds(), os.times()
    with concurrent.futures.ThreadPoolExecutor(args.threads) as pool:
        rows = list(pool.map(row, range(args.n)))
    seconds, cpu, times1 = time.perf_counter() - started, cpu_seconds() - cpu0, os.times()
    assert len(rows) == args.n and all(r["width"] == 1024 for r in rows)
    print(json.dumps({
        "rows_per_s": args.n / seconds, "seconds": seconds, "cpu_s": cpu,
        "user_s": times1.user - times0.user, "sys_s": times1.system - times0.system,
        "gets_per_source": counter.get("GET", SRC_BUCKET) / args.n,
        "puts_per_output": counter.get("PUT", OUT_BUCKET) / (3 * args.n),
        "peak_rss_mb": peak_rss_mb(),
    }))


if __name__ == "__main__":
    main()
