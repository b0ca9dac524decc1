"""`python -m bench video`: frames of a video into thumbnails in a bucket, pxt_assets against plain PyAV +
Pillow + boto3 measured in the same run.

A 60 s 1280x720 30 fps H.264 test video is encoded with PyAV (once; kept in bench/.cache) and put in a
bucket on a local moto server. Each side runs in a process of its own (peak RSS is that process's):

- baseline: download the video with boto3, decode it with PyAV, pick the frames, resize each to 224x224
  with Pillow, JPEG-encode and upload it with boto3 (8 uploads in flight);
- pxt_assets: a table with the video's s3:// URI, a view `frame_iterator(...)` (frames not written) with a
  computed column `thumb=frame.resize((224, 224))` to `s3://bench-out/thumbs/`; the insert makes the view's
  rows and thumbnails in one pass.

Modes: fps=1 (the headline), every frame, keyframes_only; and fps=1 / every frame with the view and its
column defined after the insert (`view_after`: rows made by create_view from the video's packets, nothing
decoded; thumbnails by the column's backfill, which decodes the video once, each row computed as its frame
comes, as the insert does for a view defined first, and fills the frames' decoder-only attributes). The last line is one JSON object:
{"frames", "seconds", "baseline_seconds", "ratio", "peak_rss_mb", "baseline_peak_rss_mb"} for fps=1 (ratio =
baseline time / ours), plus one such object per other mode (these also have `cpu_s` / `baseline_cpu_s`: each
side's process CPU seconds, imports included, in the per-mode lines printed as they finish).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

from bench.common import OUT_BUCKET, SRC_BUCKET, peak_rss_mb, s3_env, start_moto

CACHE = pathlib.Path(__file__).with_name(".cache")
KEY = "videos/test_720p_60s.mp4"
THUMB = (224, 224)


def make_video(path: pathlib.Path, seconds: int = 60, fps: int = 30, size: tuple[int, int] = (1280, 720)) -> None:
    """Moving gradients and a bouncing square: content an encoder has to work at (and frames tell apart)."""
    import av
    import numpy as np

    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    tmp = path.with_suffix(".part")
    with av.open(str(tmp), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "28"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(seconds * fps):
            img = np.empty((h, w, 3), dtype=np.uint8)
            img[..., 0] = (x + 4 * i) % 256
            img[..., 1] = (y + 2 * i) % 256
            img[..., 2] = (x + y + i) % 256
            sx, sy = (37 * i) % (w - 160), (23 * i) % (h - 160)
            img[sy:sy + 160, sx:sx + 160] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    tmp.rename(path)


def _kwargs(mode: str) -> dict:
    return {"fps1": {"fps": 1.0}, "all": {}, "keyframes": {"keyframes_only": True}}[mode]


# -- the two sides (each in its own process) ----------------------------------------------------------------


def run_baseline(mode: str) -> dict:
    import boto3
    from botocore.config import Config

    from pxt_assets.functions.video import iter_frames

    started = time.perf_counter()
    s3 = boto3.client("s3", config=Config(max_pool_connections=16))
    with tempfile.TemporaryDirectory() as tmp:
        local = pathlib.Path(tmp) / "video.mp4"
        s3.download_file(SRC_BUCKET, KEY, str(local))

        def put(i: int, img) -> None:
            buf = io.BytesIO()
            img.resize(THUMB).save(buf, format="JPEG", quality=90)
            s3.put_object(Bucket=OUT_BUCKET, Key=f"baseline/{mode}/{i:06d}.jpg", Body=buf.getvalue(),
                          ContentType="image/jpeg")

        n = 0
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            pending = []
            # the same frame choice as ours (the plain PyAV loop of pxt_assets.functions.video.iter_frames)
            for n, item in enumerate(iter_frames(str(local), **_kwargs(mode)), 1):
                pending.append(pool.submit(put, n, item["frame"]))
                if len(pending) >= 16:
                    pending.pop(0).result()
            for f in pending:
                f.result()
    return {"frames": n, "seconds": time.perf_counter() - started, "peak_rss_mb": peak_rss_mb()}


def run_pxt(mode: str, view_after: bool) -> dict:
    import pxt_assets as pxt
    from pxt_assets.functions.video import frame_iterator

    pxt.create_dir("bench")
    videos = pxt.create_table("bench/videos", {"video": pxt.Video})
    started = time.perf_counter()

    def define() -> None:
        frames = pxt.create_view("bench/frames", videos, iterator=frame_iterator(videos.video, **_kwargs(mode)))
        frames.add_computed_column(thumb=frames.frame.resize(THUMB), destination=f"s3://{OUT_BUCKET}/pxt/{mode}/")

    if not view_after:
        define()
        started = time.perf_counter()
    videos.insert([{"video": f"s3://{SRC_BUCKET}/{KEY}"}])
    if view_after:
        define()
    seconds = time.perf_counter() - started
    frames = pxt.get_table("bench/frames")
    n = frames.where(frames.thumb.errortype == None).count()  # noqa: E711
    return {"frames": n, "seconds": seconds, "peak_rss_mb": peak_rss_mb()}


# -- the driver ----------------------------------------------------------------------------------------------


def _child(args: list[str], env: dict[str, str]) -> dict:
    """Run one side in a process of its own: its JSON, with `cpu_s` (the process's user + system CPU seconds,
    startup and imports included: on a shared machine, a figure less noisy than the wall time)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-m", "bench.video", *args], env=env, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"bench video {args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "cpu_s": cpu}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench video")
    parser.add_argument("--modes", default="fps1,all,keyframes,fps1_after,all_after")
    parser.add_argument("--side", choices=["baseline", "pxt"], help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--after", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side == "baseline":
        print(json.dumps(run_baseline(args.mode)))
        return
    if args.side == "pxt":
        print(json.dumps(run_pxt(args.mode, args.after)))
        return

    video = CACHE / "test_720p_60s.mp4"
    if not video.exists():
        CACHE.mkdir(exist_ok=True)
        t = time.perf_counter()
        make_video(video)
        print(f"encoded {video} ({video.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t:.1f} s", flush=True)
    import boto3

    moto, endpoint = start_moto()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PIXELTABLE_", "DAGSTER_", "PXT_", "AWS_"))}
        env.update(s3_env(endpoint))
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                          aws_secret_access_key="bench")
        s3.create_bucket(Bucket=SRC_BUCKET)
        s3.create_bucket(Bucket=OUT_BUCKET)
        s3.upload_file(str(video), SRC_BUCKET, KEY)
        results: dict[str, dict] = {}
        for name in args.modes.split(","):
            mode, after = name.removesuffix("_after"), name.endswith("_after")
            home = tempfile.mkdtemp(prefix="bench-video-")
            pxt_env = {**env, "PIXELTABLE_HOME": home, "DAGSTER_HOME": os.path.join(home, "dagster")}
            base = _child(["--side", "baseline", "--mode", mode], env)
            ours = _child(["--side", "pxt", "--mode", mode] + (["--after"] if after else []), pxt_env)
            results[name] = {
                "frames": ours["frames"], "seconds": round(ours["seconds"], 2),
                "baseline_seconds": round(base["seconds"], 2), "ratio": round(base["seconds"] / ours["seconds"], 3),
                "peak_rss_mb": round(ours["peak_rss_mb"], 1), "baseline_peak_rss_mb": round(base["peak_rss_mb"], 1),
                "baseline_frames": base["frames"], "cpu_s": round(ours["cpu_s"], 2),
                "baseline_cpu_s": round(base["cpu_s"], 2),
            }
            print(f"{name}: {json.dumps(results[name])}", flush=True)
    finally:
        moto.terminate()
    head = results.get("fps1") or next(iter(results.values()))
    out = {k: head[k] for k in ("frames", "seconds", "baseline_seconds", "ratio", "peak_rss_mb",
                                "baseline_peak_rss_mb")}
    out.update({k: v for k, v in results.items() if k != "fps1"})
    if "fps1" in results and "all" in results:
        out["all_frames_peak_vs_fps1"] = round(results["all"]["peak_rss_mb"] / results["fps1"]["peak_rss_mb"], 2)
    if "fps1_after" in results and "all_after" in results:
        out["all_frames_peak_vs_fps1_view_after"] = round(
            results["all_after"]["peak_rss_mb"] / results["fps1_after"]["peak_rss_mb"], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
