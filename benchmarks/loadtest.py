"""Capacity test of the API (scenario 1): Locust, headless, against Gunicorn + Uvicorn on
PostgreSQL, Redis and S3/SQS (moto), with the video worker decoupled (not running: the
jobs of the uploads just accumulate in the queue).

Workloads (Locust user classes in loadtests/locustfile.py), run one after the other:
- upload: players upload a real 1080p MP4 through the API (`POST /api/videos/upload`);
- direct: players upload it straight to storage: `POST /api/videos/uploads`, the presigned
  form POSTed to moto's S3 (the bytes never reach the API), `POST /api/videos/{id}/complete`;
- public: lists, rankings, votes and logins (each user logs in again now and then);
- voters: the same mix with one login per session, as real voters behave.
Each upload workload runs for every --upload-sizes (MB; 30 s 1920x1080 H.264 at the bitrate
that reaches the size, made once with ffmpeg and cached in --cache; 0 = a ~20 KB clip) and
every --queue: `sqs` (SQS on moto) or `local` (ANB_QUEUE_URL=local: the API's in-process
queue, which nothing consumes under Gunicorn, so the API does no queue I/O). The public
mixes never enqueue and run once.

For each workload: a smoke run (5 users, --smoke s), then for each --arrivals pattern
(`all`: every user starts within ~1 s; `ramped`: over --ramp s) steps of X users held
--hold s, X growing (--steps) until the SLO breaks (p95 <= 1 s and errors <= 5 % over the
API's requests, judged on the hold window), then a sustained run at 80 % of the best X.
The script starts and stops everything it needs (a fresh PostgreSQL database anb_load_*,
Redis db 14, moto, Gunicorn per queue) and writes Locust's CSVs, per-request logs, CPU per
process group (API CPU apart from moto's), summary.json, summary.md and PNG plots under
--out (default: a new temporary directory).

No targets: a broken SLO is what ends the steps, a finding rather than a failure.
Needs the `load` extra (Locust, matplotlib).

Usage: scripts/loadtest [--out DIR] [--scenarios upload,direct,public,voters]
                        [--upload-sizes 5,50]
                        [--queue sqs,local] [--arrivals all,ramped] [--steps 10,25,50,100,200]
                        [--ramp 60] [--hold 60] [--smoke 60] [--sustain 180] [--cache DIR]
(or `.venv/bin/python -m benchmarks.loadtest` from the repository root).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import ROOT, media, report
from benchmarks.processes import BIN, CpuMeter, pids_matching, process_tree
from benchmarks.stack import (
    CITIES,
    PASSWORD,
    Stack,
    gunicorn,
    seed_public_videos,
    seed_users,
)

LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"
CLASSES = {
    "upload": "UploadUser",
    "direct": "DirectUploadUser",
    "public": "PublicUser",
    "voters": "VoterUser",
}
PUBLIC_MIXES = ("public", "voters")
UPLOADERS = ("upload", "direct")
QUEUES = ("sqs", "local")
SMOKE_USERS = 5
SUSTAIN_FRACTION = 0.8
STOP_TIMEOUT_S = 75
"""How long Locust lets users finish the task in flight at the end of a run: longer than
the locustfile's request timeout, so that every request that started (a slow upload
included) is logged with its time rather than dropped."""
CPU_SAMPLE_SECONDS = 2
JANITOR_SECONDS = 10
DELETE_BATCH = 1000  # most keys one S3 DeleteObjects takes


@dataclasses.dataclass(frozen=True)
class Workload:
    scenario: str
    queue: str | None = None  # None: the scenario never enqueues
    upload_mb: int | None = None
    upload: Path | None = None

    @property
    def label(self) -> str:
        if self.upload is None:
            return self.scenario
        return f"{self.scenario}-{self.upload_mb}MB-{self.queue}"

    @property
    def role(self) -> str:
        """Whose accounts its users log in with."""
        return "voter" if self.scenario in PUBLIC_MIXES else "uploader"


class Periodic(threading.Thread):
    """Calls `tick` every `every` s until `stop` (a failing tick is reported and skipped)."""

    def __init__(self, every: float) -> None:
        super().__init__(daemon=True)
        self.every = every
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                self.tick()
            except Exception as exc:
                print(f"    {type(self).__name__}: {exc!r}", file=sys.stderr, flush=True)
            self.done.wait(self.every)

    def tick(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=self.every + 30)


class Sampler(Periodic):
    """Snapshots of a CpuMeter, with wall-clock times."""

    def __init__(self, meter: CpuMeter, every: float = CPU_SAMPLE_SECONDS) -> None:
        super().__init__(every)
        self.meter = meter
        self.samples: list[tuple[float, dict[str, float]]] = []

    def tick(self) -> None:
        self.samples.append((time.time(), self.meter.snapshot()))

    def measure(self, start: float, end: float) -> tuple[float, float, dict[str, float]] | None:
        """(first, last) sample times inside [start, end] and the cores used between them."""
        inside = [(at, snap) for at, snap in self.samples if start <= at <= end]
        if len(inside) < 2:
            return None
        (first, before), (last, after) = inside[0], inside[-1]
        return first, last, CpuMeter.cores(before, after)


class Janitor(Periodic):
    """Deletes uploaded originals from storage as they arrive. Nothing reads them (no worker
    runs), and moto keeps every object in memory, or in a temporary file past 5 MB: 50 MB
    uploads would otherwise pile up GBs during a run."""

    def __init__(self, every: float = JANITOR_SECONDS) -> None:
        super().__init__(every)
        from anb.storage import get_storage

        self.storage = get_storage()

    def tick(self) -> None:
        originals = [key for key in self.storage.keys("videos/") if key.endswith("/original.mp4")]
        self.delete(originals)

    def sweep(self) -> None:
        """Everything, abandoned direct uploads included (call it between phases)."""
        self.delete(self.storage.keys(""))

    def delete(self, keys: list[str]) -> None:
        for first in range(0, len(keys), DELETE_BATCH):
            self.storage.delete(*keys[first : first + DELETE_BATCH])


class Runner:
    """Runs the phases of the workloads, one Locust process each, against one API."""

    def __init__(self, args: argparse.Namespace, stack: Stack, seed: Path) -> None:
        self.args, self.stack, self.seed = args, stack, seed
        self.offsets = {"uploader": 0, "voter": 0}
        self.locust_pid = 0
        self.base = ""
        self.sampler: Sampler | None = None
        self.janitor: Janitor | None = None

    def workload(self, workload: Workload) -> dict:
        """The smoke run, then the steps and sustained run of each arrival pattern."""
        phases = []
        if self.args.smoke:
            phases.append(self.phase(workload, "smoke", "all", SMOKE_USERS, self.args.smoke))
        if not phases or phases[0]["slo_met"]:
            for arrival in self.args.arrivals:
                phases += self.steps(workload, arrival, smoke=phases[:1])
        return summarise(workload, phases, self.args.arrivals)

    def steps(self, workload: Workload, arrival: str, smoke: list[dict]) -> list[dict]:
        """Growing steps until one breaks the SLO, then the sustained run at 80 % of the
        best X."""
        phases: list[dict] = []
        for users in self.args.steps:
            phases.append(self.phase(workload, "step", arrival, users, self.args.hold))
            if not phases[-1]["slo_met"]:
                break
        best = report.best_users(smoke + phases, arrival)
        if best and self.args.sustain:
            users = max(math.floor(best * SUSTAIN_FRACTION), 1)
            phases.append(self.phase(workload, "sustained", arrival, users, self.args.sustain))
        return phases

    def phase(self, workload: Workload, kind: str, arrival: str, users: int, hold: int) -> dict:
        ramp = self.args.ramp if arrival == "ramped" else 0
        name = f"{workload.label}-{arrival}-{kind}-{users:03d}"
        requests = self.args.out / f"{name}_requests.csv"
        if workload.queue == "sqs":
            self.stack.sqs().purge_queue(QueueUrl=self.stack.env["ANB_QUEUE_URL"])
        print(f"[{time.strftime('%H:%M:%S')}] {name}: 0 -> {users} users in {ramp} s, "
              f"hold {hold} s", flush=True)  # fmt: skip
        self.locust(workload, name, users, ramp, hold, requests)
        rows = report.read_requests(requests)
        start = min((row["time"] for row in rows), default=time.time())
        hold_start, end = start + ramp, start + ramp + hold
        phase = {
            "name": name, "workload": workload.label, "kind": kind, "arrival": arrival,
            "users": users, "ramp_s": ramp, "hold_s": hold,
            "hold": report.window(rows, hold_start, end),
            "whole": report.window(rows, start, end + 1),
            "cpu": self.cpu(rows, hold_start, end),
            "series": report.series(rows, start),
            "jobs": self.jobs(workload),
        }  # fmt: skip
        phase["cost"] = report.cpu_costs([phase["cpu"]])
        phase["slo_met"] = report.meets_slo(phase["hold"])
        phase["first_to_degrade"] = report.first_to_degrade(phase["hold"])
        print_phase(phase)
        if self.janitor and workload.upload:
            self.janitor.sweep()
        time.sleep(self.args.pause)
        return phase

    def locust(
        self, workload: Workload, name: str, users: int, ramp: int, hold: int, requests: Path
    ) -> None:
        """One headless Locust run: `users` started over `ramp` s (all at once for 0), then
        held `hold` s, then the tasks in flight finished; killed if it overstays."""
        out = self.args.out
        env = {
            **os.environ,
            "LOADTEST_SEED": str(self.seed),
            "LOADTEST_REQUESTS": str(requests),
            "LOADTEST_ACCOUNT_OFFSET": str(self.offsets[workload.role]),
            "LOADTEST_UPLOAD": str(workload.upload or ""),
        }
        self.offsets[workload.role] += users
        rate = users / ramp if ramp else users
        command = [
            str(BIN / "locust"), "-f", str(LOCUSTFILE), "--headless",
            "-u", str(users), "-r", f"{rate:.3f}", "-t", f"{ramp + hold}s",
            "--host", self.base, "--csv", str(out / name), "--csv-full-history",
            "--only-summary", "--stop-timeout", str(STOP_TIMEOUT_S), "--loglevel", "WARNING",
            CLASSES[workload.scenario],
        ]  # fmt: skip
        with (out / f"{name}_locust.log").open("wb") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
            self.locust_pid = process.pid
            try:
                process.wait(timeout=ramp + hold + STOP_TIMEOUT_S + 60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.locust_pid = 0

    def cpu(self, rows: list[dict], start: float, end: float) -> dict | None:
        """Cores of each process group between the first and last CPU samples inside
        [start, end], and the API requests and uploads that started between the same two
        samples (so that costs per event divide like by like)."""
        measured = self.sampler.measure(start, end) if self.sampler else None
        if measured is None:
            return None
        first, last, cores = measured
        counted = report.window(rows, first, last)
        return {
            "seconds": last - first,
            "cores": cores,
            "api_requests": counted["requests"],
            "uploads": counted["uploads"],
        }

    def jobs(self, workload: Workload) -> dict | None:
        """What the uploads left behind: messages in SQS (purged before each phase) and the
        videos by status (a consumer at work would move some past `uploaded`)."""
        if workload.upload is None:
            return None
        sqs = self.stack.queue_depth()[0] if workload.queue == "sqs" else None
        return {"sqs": sqs, "videos": videos_by_status()}

    def serve(self, queue: str, workloads: list[Workload]) -> list[dict]:
        """Gunicorn with `queue`, the workloads run against it, Gunicorn stopped."""
        log = self.args.out / f"gunicorn-{queue}.log"
        api = gunicorn(api_stack(self.stack, queue), self.args.gunicorn_workers, log)
        with api as (base, pid):
            self.base = base
            self.sampler = Sampler(self.meter(pid))
            self.sampler.start()
            try:
                return [self.workload(workload) for workload in workloads]
            finally:
                self.sampler.stop()

    def meter(self, gunicorn_pid: int) -> CpuMeter:
        stack = self.stack
        return CpuMeter({
            "gunicorn": lambda: process_tree(gunicorn_pid),
            "postgres": pids_matching(stack.database),
            "moto": lambda: process_tree(stack.moto.pid),
            "locust": lambda: process_tree(self.locust_pid) if self.locust_pid else [],
            "redis": pids_matching("redis-server"),
        })  # fmt: skip


def api_stack(stack: Stack, queue: str) -> Stack:
    """The stack as the API sees it: its SQS queue, or the in-process one."""
    if queue == "sqs":
        return stack
    return dataclasses.replace(stack, env={**stack.env, "ANB_QUEUE_URL": "local"})


def summarise(workload: Workload, phases: list[dict], arrivals: list[str]) -> dict:
    return {
        "label": workload.label,
        "scenario": workload.scenario,
        "queue": workload.queue,
        "upload_mb": workload.upload_mb,
        "upload_bytes": workload.upload.stat().st_size if workload.upload else None,
        "phases": phases,
        "best": {arrival: report.best_users(phases, arrival) for arrival in arrivals},
        "cost": report.cpu_costs(phase["cpu"] for phase in phases),
    }


def print_phase(phase: dict) -> None:
    hold, cost, number = phase["hold"], phase["cost"], report.number
    print(
        f"    hold: {hold['requests']} API req, {hold['rps']:.1f} req/s, "
        f"{hold['uploads_per_s']:.2f} uploads/s, p50 {number(hold['p50_ms'])} ms, "
        f"p95 {number(hold['p95_ms'])} ms, errors {number(100 * hold['error_rate'], 1)} %, "
        f"SLO {'met' if phase['slo_met'] else 'BROKEN'} ({phase['first_to_degrade']}); "
        f"API CPU-ms/req {number(cost['api_ms_per_request'], 1)}, "
        f"/upload {number(cost['api_ms_per_upload'], 1)}, "
        f"moto CPU-ms/upload {number(cost['moto_ms_per_upload'], 1)}; "
        f"cores {phase['cpu']['cores'] if phase['cpu'] else {}}",
        flush=True,
    )


def videos_by_status() -> dict[str, int]:
    from sqlalchemy import func, select

    from anb.core.db import unit_of_work
    from anb.videos.models import Video

    with unit_of_work() as session:
        counts = session.execute(select(Video.status, func.count()).group_by(Video.status))
        return {str(status): count for status, count in counts}


def local_queue_untouched(workloads: list[dict], public_videos: int) -> bool | None:
    """Whether, after every phase on the local queue, no video was taken by a consumer
    (none processing or failed, only the seeded ones processed); None without such phases."""
    seen = [phase["jobs"]["videos"] for workload in workloads if workload["queue"] == "local"
            for phase in workload["phases"] if phase["jobs"]]  # fmt: skip
    if not seen:
        return None
    return all(
        videos.get("processing", 0) == 0
        and videos.get("failed", 0) == 0
        and videos.get("processed", 0) == public_videos
        for videos in seen
    )


def plan(args: argparse.Namespace, uploads: dict[int, Path]) -> dict[str, list[Workload]]:
    """The workloads against each queue's API, in order. The public mix never enqueues: it
    runs once, against the first API."""
    planned: dict[str, list[Workload]] = {}
    for queue in args.queue:
        planned[queue] = [
            Workload(scenario, queue, megabytes, uploads[megabytes])
            for scenario in args.scenarios
            if scenario in UPLOADERS
            for megabytes in args.upload_sizes
        ]
    for mix in PUBLIC_MIXES:
        if mix in args.scenarios:
            planned[args.queue[0]].append(Workload(mix))
    return {queue: workloads for queue, workloads in planned.items() if workloads}


def upload_inputs(cache: Path, sizes: list[int]) -> dict[int, Path]:
    """The upload files (made once, then cached), each checked against the API's rules."""
    from anb.core.settings import Settings
    from anb.processing.probe import UploadRules, check_upload

    settings = Settings()
    rules = UploadRules.from_settings(settings)
    inputs = {}
    for megabytes in sizes:
        path = media.upload_input(cache, megabytes)
        check_upload(path, rules)
        if path.stat().st_size > settings.upload_max_bytes:
            sys.exit(f"{path} is larger than ANB_UPLOAD_MAX_BYTES ({settings.upload_max_bytes})")
        print(f"upload input {megabytes} MB: {path} ({path.stat().st_size:,} bytes)", flush=True)
        inputs[megabytes] = path
    return inputs


def longest_run_s(args: argparse.Namespace, planned: dict[str, list[Workload]]) -> int:
    """Seconds of load if no step breaks the SLO (pauses included)."""
    count = sum(len(workloads) for workloads in planned.values())
    per_arrival = {
        "all": sum(args.hold + args.pause for _ in args.steps),
        "ramped": sum(args.ramp + args.hold + args.pause for _ in args.steps),
    }
    sustained = {"all": args.sustain, "ramped": args.ramp + args.sustain} if args.sustain else {}
    one = (args.smoke + args.pause if args.smoke else 0) + sum(
        per_arrival[arrival] + sustained.get(arrival, 0) for arrival in args.arrivals
    )
    return count * one


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return ""


def machine() -> dict:
    def run(*command: str) -> str:
        try:
            return subprocess.run(command, capture_output=True, text=True).stdout.strip()
        except OSError:
            return ""

    from importlib.metadata import version

    return {
        "nproc": run("nproc"),
        "free_h": run("free", "-h"),
        "cpu": cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "locust": version("locust"),
        "postgres": run("psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc", "show server_version"),
        "redis": run("redis-cli", "-n", "14", "info", "server")
        .partition("redis_version:")[2]
        .split("\r")[0]
        .strip(),
        "loadavg_start": Path("/proc/loadavg").read_text().strip(),
    }


def listed(allowed: tuple[str, ...] | None, convert: Callable = str) -> Callable[[str], list]:
    """An argparse type: a comma-separated list, each item converted (and, with `allowed`,
    one of those), in the order given, without repeats."""

    def parse(text: str) -> list:
        words = (word.strip() for word in text.split(","))
        items = list(dict.fromkeys(convert(word) for word in words if word))
        if allowed is not None and (unknown := [item for item in items if item not in allowed]):
            raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {list(allowed)}")
        if not items:
            raise argparse.ArgumentTypeError("empty list")
        return items

    return parse


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    option = parser.add_argument
    option("--out", type=Path, help="results directory (default: a new temp dir)")
    option("--scenarios", type=listed(tuple(CLASSES)), default=list(CLASSES),
           help="upload (through the API), direct (presigned POST to storage), public")  # fmt: skip
    option("--upload-sizes", type=listed(None, int), default=[5, 50],
           help="MB of the uploaded files (0: a ~20 KB clip)")  # fmt: skip
    option("--queue", type=listed(QUEUES), default=list(QUEUES),
           help="job queue of the API during uploads: sqs (moto), local (in-process)")  # fmt: skip
    option("--arrivals", type=listed(report.ARRIVALS), default=list(report.ARRIVALS),
           help="all: every user starts within ~1 s; ramped: over --ramp s")  # fmt: skip
    option("--steps", type=listed(None, int), default=[10, 25, 50, 100, 200],
           help="X of the steps, growing")  # fmt: skip
    option("--ramp", type=int, default=60, help="seconds of each ramp 0 -> X (ramped)")
    option("--hold", type=int, default=60, help="seconds each X is held")
    option("--smoke", type=int, default=60, help="seconds of the 5-user smoke run (0: none)")
    option("--sustain", type=int, default=180, help="hold of the sustained run (0: none)")
    option("--pause", type=int, default=5, help="seconds between phases")
    option("--gunicorn-workers", type=int, default=2)
    option("--public-videos", type=int, default=40)
    option("--cache", type=Path, default=Path(tempfile.gettempdir()) / "anb-loadtest-cache",
           help="where the generated upload files are kept")  # fmt: skip
    args = parser.parse_args(argv)
    args.steps = sorted(args.steps)
    args.upload_sizes = sorted(args.upload_sizes)
    if any(size < 0 for size in args.upload_sizes) or min(args.steps) < 1:
        parser.error("sizes must be >= 0 and steps >= 1")
    args.out = (args.out or Path(tempfile.mkdtemp(prefix="anb-loadtest-"))).resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    report.require_load_extra("locust")
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"results in {args.out}", flush=True)
    needs_uploads = any(scenario in UPLOADERS for scenario in args.scenarios)
    uploads = upload_inputs(args.cache, args.upload_sizes) if needs_uploads else {}
    planned = plan(args, uploads)
    print(f"{sum(map(len, planned.values()))} workloads: at most "
          f"{longest_run_s(args, planned) / 60:.0f} min of load", flush=True)  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="anb-loadtest-work-"))
    try:
        return run(args, planned, work)
    finally:
        keep_moto_log(work / "stack" / "moto.log", args.out)
        shutil.rmtree(work, ignore_errors=True)


def keep_moto_log(log: Path, out: Path) -> None:
    """moto's log (one line per request, and the tracebacks behind its 500s) into --out."""
    if log.exists():
        shutil.copyfile(log, out / "moto.log")


def run(args: argparse.Namespace, planned: dict[str, list[Workload]], work: Path) -> int:
    # Accounts: every phase of a workload gets fresh ones (smoke + steps + sustained per
    # arrival pattern); uploaders are reused from one workload to the next.
    accounts = SMOKE_USERS + len(args.arrivals) * (sum(args.steps) + max(args.steps))
    summary: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "machine": machine()}
    started = time.monotonic()
    # Each phase empties the job queue first, so that moto's SQS cost (which grows with the
    # messages it holds) does not depend on the phases before; moto allows one purge a minute
    # unless told otherwise. The moto server inherits this environment.
    os.environ["MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR"] = "false"
    with Stack(work / "stack") as stack:
        seed = args.out / "seed.json"
        uploaders = seed_users("uploader", accounts)
        voters = seed_users("voter", accounts)
        seed.write_text(json.dumps({
            "password": PASSWORD, "uploaders": uploaders, "voters": voters,
            "public_videos": seed_public_videos(uploaders[:25], args.public_videos),
            "cities": [city for city, _ in CITIES],
        }))  # fmt: skip
        runner = Runner(args, stack, seed)
        runner.janitor = Janitor()
        runner.janitor.start()
        try:
            summary["workloads"] = [
                result
                for queue, workloads in planned.items()
                for result in runner.serve(queue, workloads)
            ]
        finally:
            runner.janitor.stop()
    workloads = summary["workloads"]
    summary["embedded_worker_idle"] = local_queue_untouched(workloads, args.public_videos)
    summary["elapsed_s"] = round(time.monotonic() - started)
    write_report(args.out, summary)
    print(report.markdown(summary))
    print(f"done in {summary['elapsed_s']} s; results in {args.out}")
    return 0


def write_report(out: Path, summary: dict) -> None:
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    (out / "summary.md").write_text(report.markdown(summary))
    report.plot_ramps(summary["workloads"], out / "api-ramps.png")
    report.plot_capacity(summary["workloads"], out / "api-capacity.png")
    report.plot_timelines(summary["workloads"], out / "api-timeline.png")


if __name__ == "__main__":
    sys.exit(main())
