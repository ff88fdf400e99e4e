"""Capacity test of the video worker (scenario 2): jobs injected straight into SQS, then
timed through 1, 2 and 4 `anb poll` processes, with ~50 MB and ~100 MB inputs.

Inputs: 60 s of 1080p30 H.264 (`testsrc2` with light temporal noise at a capped target
bitrate), made with the ffmpeg of imageio-ffmpeg and cached in --cache. For each input size
and worker count: --videos copies of the input are put in S3 (moto) under their videos'
keys, the `videos` rows are inserted with the app's models (status `uploaded`) and their
jobs sent with the app's queue adapter, exactly what an upload does; then the workers start
(ANB_WORKER_CONCURRENCY=1 each) and the script samples the queue
(ApproximateNumberOfMessagesVisible / NotVisible) and the database every 2 s until every
video is processed or failed. Measured: videos/min (videos / seconds from the workers'
start to the last processed_at), mean service time (the workers' EMF `ProcessingSeconds`:
download + probe + ffmpeg + upload), mean time in the system (uploaded_at -> processed_at),
and CPU cores used by the workers (ffmpeg included) and by the whole machine.

The script starts and stops what it needs (a fresh PostgreSQL database anb_load_*, Redis
db 14, moto) and writes summary.json, summary.md, worker logs and worker.png under --out.

No targets: exits with 1 when a video failed or was not processed within --timeout (the
figures are then not the worker's throughput). Needs matplotlib (the `load` extra).

Usage: scripts/loadtest_worker [--out DIR] [--workers 1,2,4] [--sizes 50,97] [--videos 6]
                               [--cache DIR] [--timeout 1200]
(or `.venv/bin/python -m benchmarks.loadtest_worker` from the repository root).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import ROOT, report, targets
from benchmarks.media import MB, worker_input
from benchmarks.processes import BIN, CpuMeter, machine_jiffies, process_tree, stop
from benchmarks.stack import Stack, seed_users

SAMPLE_SECONDS = 2


def inject(stack: Stack, source: Path, owner_id: str, count: int) -> list[str]:
    """`count` uploaded videos of `source`, their originals in S3 and their jobs in SQS."""
    from anb.core.db import unit_of_work
    from anb.queue import get_queue
    from anb.storage import get_storage
    from anb.users.models import new_id
    from anb.videos.models import Video, original_key_for

    storage, queue = get_storage(), get_queue()
    staged = f"load/{source.name}"
    if not storage.exists(staged):
        storage.put_file(source, staged)
    videos = []
    for n in range(count):
        video = Video(id=new_id(), owner_id=owner_id, title=f"Carga {source.stem} {n}")
        video.original_key = original_key_for(video.id)
        video.original_bytes, video.task_id = source.stat().st_size, new_id()
        storage.client.copy_object(  # server-side copy: the same bytes as a real upload
            Bucket=storage.bucket,
            Key=storage._object(video.original_key),
            CopySource={"Bucket": storage.bucket, "Key": storage._object(staged)},
        )
        videos.append(video)
    with unit_of_work() as session:
        session.add_all(videos)
    for video in videos:
        queue.send({"video_id": video.id, "task_id": video.task_id})
    return [video.id for video in videos]


def video_states(ids: list[str]) -> list[dict]:
    from sqlalchemy import select

    from anb.core.db import unit_of_work
    from anb.videos.models import Video

    with unit_of_work() as session:
        rows = session.execute(
            select(Video.id, Video.status, Video.uploaded_at, Video.processed_at,
                   Video.processed_key, Video.original_key, Video.error)
            .where(Video.id.in_(ids))
        ).all()  # fmt: skip
    return [row._asdict() for row in rows]


def emf_values(log: Path, metric: str) -> list[float]:
    """The values of one EMF metric in a worker's stdout (JSON lines, others skipped)."""
    values: list[float] = []
    for line in log.read_text(errors="replace").splitlines():
        if metric not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        value = record.get(metric)
        if isinstance(value, list):
            values.extend(float(item) for item in value)
        elif value is not None:
            values.append(float(value))
    return values


def run_config(
    stack: Stack, out: Path, source: Path, label: int, workers: int, videos: int, timeout: float
) -> dict:
    from anb.storage import get_storage

    name = f"worker-{workers}w-{label}MB"
    owner = seed_users(f"owner-{name}", 1)[0]
    from sqlalchemy import select

    from anb.core.db import unit_of_work
    from anb.users.models import User

    with unit_of_work() as session:
        owner_id = session.scalar(select(User.id).where(User.email == owner))
    ids = inject(stack, source, owner_id, videos)
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {videos} jobs of {source.name} "
          f"({source.stat().st_size / MB:.1f} MB) queued; starting {workers} worker(s)",
          flush=True)  # fmt: skip
    processes, logs = [], []
    busy0, total0 = machine_jiffies()
    started = time.time()
    for n in range(workers):
        log = out / f"{name}-poll{n}.log"
        logs.append(log)
        env = stack.child_env(
            ANB_WORKER_CONCURRENCY="1",
            ANB_POLL_WAIT_SECONDS="2",
            ANB_DATA_DIR=str(stack.work / f"{name}-{n}"),
            POWERTOOLS_LOG_LEVEL="INFO",
        )
        with log.open("wb") as handle:
            processes.append(subprocess.Popen([str(BIN / "anb"), "poll"], env=env,
                                              stdout=handle, stderr=subprocess.STDOUT))  # fmt: skip
    meter = CpuMeter({"workers": lambda: [p for w in processes for p in process_tree(w.pid)]})
    queue, last_cpu = [], meter.snapshot()
    cpu_seconds = 0.0
    states: list[dict] = []
    try:
        while time.time() - started < timeout:
            visible, in_flight = stack.queue_depth()
            states = video_states(ids)
            done = sum(s["status"] in ("processed", "failed") for s in states)
            snap = meter.snapshot()  # children that exit are lost: accumulate deltas
            cpu_seconds += max(snap["workers"] - last_cpu["workers"], 0.0)
            last_cpu = snap
            queue.append({"t": round(time.time() - started, 1), "visible": visible,
                          "in_flight": in_flight, "done": done})  # fmt: skip
            if done == len(ids):
                break
            time.sleep(SAMPLE_SECONDS)
    finally:
        for process in processes:
            stop(process, timeout=60)
    busy1, total1 = machine_jiffies()
    processed = [s for s in states if s["status"] == "processed"]
    failed = [s for s in states if s["status"] == "failed"]
    start_dt = datetime.fromtimestamp(started, UTC)
    last = max((s["processed_at"] for s in processed), default=None)
    wall = (last - start_dt).total_seconds() if last else float("nan")
    service = [v for log in logs for v in emf_values(log, "ProcessingSeconds")]
    in_system = [(s["processed_at"] - s["uploaded_at"]).total_seconds() for s in processed]
    ncpu = os.cpu_count() or 1
    result = {
        "name": name, "workers": workers, "input_mb": label,
        "input_bytes": source.stat().st_size, "videos": len(ids),
        "processed": len(processed), "failed": len(failed),
        "errors": sorted({s["error"] for s in failed if s["error"]}),
        "wall_s": round(wall, 1),
        "videos_per_min": round(len(processed) * 60 / wall, 3) if processed else 0.0,
        "service_mean_s": round(statistics.mean(service), 1) if service else None,
        "service_median_s": round(statistics.median(service), 1) if service else None,
        "service_samples": len(service),
        "in_system_mean_s": round(statistics.mean(in_system), 1) if in_system else None,
        "worker_cores": round(cpu_seconds / wall, 2) if processed else None,
        "cpu_s_per_video": round(cpu_seconds / len(processed), 1) if processed else None,
        "machine_cores": round((busy1 - busy0) / max(total1 - total0, 1) * ncpu, 2),
        "queue": queue,
    }  # fmt: skip
    print(f"    {result['processed']}/{videos} processed ({result['failed']} failed) in "
          f"{result['wall_s']} s: {result['videos_per_min']} videos/min, service mean "
          f"{result['service_mean_s']} s, in system {result['in_system_mean_s']} s, workers "
          f"{result['worker_cores']} cores, machine {result['machine_cores']} cores",
          flush=True)  # fmt: skip
    storage = get_storage()  # keep moto's memory bounded: drop this configuration's objects
    storage.delete(*[key for s in states for key in (s["original_key"], s["processed_key"]) if key])
    return result


def code_version() -> dict:
    """The commit, and whether the worker's code had uncommitted changes when measured."""

    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return result.stdout.strip()

    return {"head": git("rev-parse", "--short", "HEAD"),
            "uncommitted": git("status", "--porcelain", "--", "src/anb")}  # fmt: skip


def markdown(results: list[dict]) -> str:
    lines = [
        "| workers | input | videos | processed | failed | wall s | videos/min | "
        "service mean s | service median s | in system mean s | worker cores | "
        "CPU s/video | machine cores |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['workers']} | {r['input_bytes'] / MB:.1f} MB | {r['videos']} | "
            f"{r['processed']} | {r['failed']} | {r['wall_s']} | {r['videos_per_min']} | "
            f"{r['service_mean_s']} | {r['service_median_s']} | {r['in_system_mean_s']} | "
            f"{r['worker_cores']} | {r['cpu_s_per_video']} | {r['machine_cores']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="results directory (default: a new temp dir)")
    parser.add_argument("--workers", default="1,2,4", help="`anb poll` processes per run")
    parser.add_argument("--sizes", default="50,97", help="input sizes, MB (97 lands near 100)")
    parser.add_argument("--videos", type=int, default=6, help="videos per configuration")
    parser.add_argument("--cache", type=Path,
                        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                        / "anb-loadtest", help="where generated inputs are kept")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=1200, help="seconds per configuration")
    args = parser.parse_args(argv)
    report.require_load_extra()
    workers = [int(n) for n in args.workers.split(",")]
    sizes = [int(n) for n in args.sizes.split(",")]
    out = (args.out or Path(tempfile.mkdtemp(prefix="anb-loadtest-worker-"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    print(f"results in {out}; inputs cached in {args.cache}", flush=True)
    inputs = {size: worker_input(args.cache, size) for size in sizes}
    work = Path(tempfile.mkdtemp(prefix="anb-loadtest-worker-work-"))
    started = time.monotonic()
    results = []
    try:
        with Stack(work / "stack") as stack:
            for size, source in inputs.items():
                for count in workers:
                    results.append(
                        run_config(stack, out, source, size, count, args.videos, args.timeout)
                    )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = {"args": {k: str(v) for k, v in vars(args).items()}, "code": code_version(),
               "results": results, "elapsed_s": round(time.monotonic() - started)}  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    (out / "summary.md").write_text(markdown(results))
    report.plot_worker(results, out / "worker.png")
    print(markdown(results))
    print(f"done in {summary['elapsed_s']} s; results in {out}")
    short = [r["name"] for r in results if r["processed"] < r["videos"]]
    return targets.failed_checks("videos failed or not processed in time", short)


if __name__ == "__main__":
    sys.exit(main())
