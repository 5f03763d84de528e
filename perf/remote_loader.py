"""Loader throughput from an S3-compatible server against the same shards on local disk (issue 17).

Baseline: the same shard set read from local disk. Remote: the set uploaded to a ``moto_server`` started on
127.0.0.1 by this script (loopback: no network latency, but every byte goes through HTTP, botocore and s3fs).
Both sides run the full loader (manifest, size check, tar reading, webdataset decode to PIL, batching) with one
DataLoader worker and its default prefetch, for one epoch; the two are interleaved round by round. Printed:
samples/s per round, the median of each and their ratio (remote / local; target >= 0.9), and the time to the
first batch (median over rounds). An optional third arm reads S3 through the local cache (its second epoch).

    .venv/bin/python perf/remote_loader.py [--rounds 7] [--samples 2000] [--image-size 64] [--workers 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def _moto(port: int) -> subprocess.Popen:
    exe = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    if exe is None:
        sys.exit("moto_server not found: install clipzoo-core's dev extras (moto[server])")
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit("moto_server did not start within 30 s")


def _epoch(shards, storage, workers: int, batch: int) -> tuple[float, float, int]:
    """(seconds to the first batch, samples/s over the epoch, samples) for one loader epoch."""
    from clipzoo.core.data.loader import ResumableLoader, ShardStream, StreamConfig

    def keep(sample):  # decoded by the loader; keep a pixel so the decode cannot be skipped
        image = sample.get("png") or sample.get("jpg") or sample.get("image.png")
        return {"key": sample["__key__"], "px": image.getpixel((0, 0))[0]}

    cfg = StreamConfig(batch_size=batch, seed=0, shuffle_buffer=100, split="shards", storage=storage)
    loader = ResumableLoader(ShardStream(shards, keep, cfg), num_workers=workers)
    t0 = time.perf_counter()
    first, n = None, 0
    for b in loader.epoch_batches():
        if first is None:
            first = time.perf_counter() - t0
        n += len(b["key"])
    total = time.perf_counter() - t0
    return first or total, n / total, n


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--per-shard", type=int, default=250)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--batch", type=int, default=50)
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    import boto3

    from clipzoo.core.data.shardset import Storage, resolve_shard_set
    from clipzoo.core.data.synthetic import synthetic_samples
    from clipzoo.core.data.writer import ShardWriter

    work = Path(tempfile.mkdtemp(prefix="clipzoo-remote-bench-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = _moto(port)
    try:
        local_dir = work / "set"
        with ShardWriter(local_dir, max_count=args.per_shard) as writer:
            for sample in synthetic_samples(args.samples, 0, image_size=args.image_size):
                writer.write(sample)
        endpoint = f"http://127.0.0.1:{port}"
        client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench", aws_secret_access_key="bench",
                              region_name="us-east-1")
        client.create_bucket(Bucket="bench")
        for path in sorted(local_dir.iterdir()):
            client.upload_file(str(path), "bench", f"set/{path.name}")
        options = {"endpoint_url": endpoint, "key": "bench", "secret": "bench"}
        size_mb = sum(f.stat().st_size for f in local_dir.glob("*.tar")) / 1e6
        local = resolve_shard_set(local_dir)
        s3 = Storage(options=options)
        remote = resolve_shard_set("s3://bench/set/", storage=s3)
        cached = Storage(options=options, cache_dir=str(work / "cache"))
        _epoch(resolve_shard_set("s3://bench/set/", storage=cached), cached, args.workers, args.batch)  # fill it
        arms = {"local disk (baseline)": (local, Storage()), "s3 (moto, loopback)": (remote, s3),
                "s3 via local cache": (remote, cached)}
        print(f"{args.samples} samples of {args.image_size}x{args.image_size} in {len(local)} shards ({size_mb:.1f} MB), "
              f"{args.workers} loader worker(s), batch {args.batch}, {args.rounds} interleaved rounds")
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in arms}
        for r in range(args.rounds):
            for name, (shards, storage) in arms.items():
                first, rate, n = _epoch(shards, storage, args.workers, args.batch)
                results[name].append((first, rate))
            print(f"  round {r + 1}: " + ", ".join(f"{name.split(' (')[0]} {results[name][-1][1]:.0f}/s"
                                                  for name in arms))
        base = statistics.median(rate for _, rate in results["local disk (baseline)"])
        print(f"\n{'arm':28s} {'samples/s (median, min-max)':>30s} {'ratio':>7s} {'first batch s (median)':>24s}")
        for name, rows in results.items():
            rates = [rate for _, rate in rows]
            med = statistics.median(rates)
            first = statistics.median(f for f, _ in rows)
            print(f"{name:28s} {med:14.0f} ({min(rates):.0f}-{max(rates):.0f}){'':6s} {med / base:7.2f} {first:24.3f}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
