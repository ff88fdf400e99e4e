"""Benchmark: how much does `anb serve`'s memory grow while it receives a ~100 MB upload?

Starts the server on a free port with a fresh ANB_DATA_DIR, signs a user up, warms up with a
small upload, then, for each round, resets the server's peak RSS (VmHWM, via
/proc/PID/clear_refs), streams a ~100 MiB MP4 as multipart/form-data and reports
VmHWM - idle VmRSS. The ffmpeg probe the server spawns is a separate process: not counted.

Target: the median delta at most --target-mib (32 MiB); exits with 1 when it is missed.

Usage: scripts/bench_upload_rss [--rounds N] [--target-mib M]
(or `.venv/bin/python -m benchmarks.upload_rss` from the repository root).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from benchmarks import targets
from benchmarks.figures import Column, Table
from benchmarks.media import encode_tiny
from benchmarks.processes import BIN, free_port, log_tail, stop, wait_http
from benchmarks.uploads import content_type, envelope

MIB = 1024 * 1024
UPLOAD_MAX_BYTES = 100 * MIB  # the server's default ANB_UPLOAD_MAX_BYTES
BIG_FILE_BYTES = UPLOAD_MAX_BYTES - 64 * 1024  # just under the limit
WARMUP_FILE_BYTES = 1 * MIB
CHUNK_BYTES = 1 * MIB
SAMPLE_SECONDS = 0.005
PASSWORD = "bench-Passw0rd!"
CLIP_SECONDS = 21


@dataclass
class Round:
    idle_kib: int
    peak_kib: int
    seconds: float
    sampled_peak_kib: int
    sampled_peak_at: float
    file_bytes: int

    @property
    def delta_mib(self) -> float:
        return (self.peak_kib - self.idle_kib) / 1024

    @property
    def mib_per_second(self) -> float:
        return self.file_bytes / MIB / self.seconds


@dataclass
class Server:
    process: subprocess.Popen
    base_url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid


# --- files -----------------------------------------------------------------------------------


def padded_copy(clip: Path, target: Path, size: int) -> None:
    """Copy `clip` to `target`, padded to exactly `size` bytes with one top-level `free` box,
    written in chunks (the padding is never held in memory)."""
    shutil.copyfile(clip, target)
    padding = size - clip.stat().st_size
    if not 8 <= padding < 2**32:
        raise ValueError(f"cannot pad {clip.stat().st_size} bytes to {size} with one box")
    zeros = bytes(CHUNK_BYTES)
    with target.open("ab") as handle:
        handle.write(struct.pack(">I4s", padding, b"free"))
        remaining = padding - 8
        while remaining:
            count = min(remaining, CHUNK_BYTES)
            handle.write(zeros[:count])
            remaining -= count


# --- server ----------------------------------------------------------------------------------


def start_server(data_dir: Path, log_path: Path) -> Server:
    """`anb serve` with a fresh data dir and otherwise default settings (ANB_* not inherited)."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANB_")}
    env["ANB_DATA_DIR"] = str(data_dir)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(BIN / "anb"), "serve", "--port", str(port)],
            env=env, cwd=data_dir.parent, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return Server(process, f"http://127.0.0.1:{port}", log_path)


def stop_server(server: Server) -> None:
    stop(server.process, timeout=15)


# --- /proc -----------------------------------------------------------------------------------


def status_kib(pid: int, key: str) -> int:
    """A `kB` field of /proc/PID/status, e.g. VmRSS or VmHWM."""
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    raise KeyError(key)


def reset_peak(pid: int) -> None:
    """Reset VmHWM to the current RSS (needs to own the process or be root)."""
    with open(f"/proc/{pid}/clear_refs", "w") as handle:
        handle.write("5")


@dataclass
class RssSampler:
    """Polls VmRSS in a thread; keeps the highest value and when (s after start) it was seen."""

    pid: int
    peak_kib: int = 0
    peak_at: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RssSampler:
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = status_kib(self.pid, "VmRSS")
            if rss > self.peak_kib:
                self.peak_kib, self.peak_at = rss, time.monotonic() - self._started
            time.sleep(SAMPLE_SECONDS)


# --- API -------------------------------------------------------------------------------------


def sign_in(client: httpx.Client) -> str:
    """Sign a fresh user up, log in, return the bearer token."""
    email = f"bench-{uuid.uuid4().hex[:12]}@example.com"
    signup = {
        "first_name": "Bench", "last_name": "Mark", "email": email,
        "password1": PASSWORD, "password2": PASSWORD, "city": "Bogotá", "country": "Colombia",
    }  # fmt: skip
    response = client.post("/api/auth/signup", json=signup)
    expect(response, 201)
    response = client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    expect(response, 200)
    return response.json()["access_token"]


def expect(response: httpx.Response, status: int) -> None:
    if response.status_code != status:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path}: expected {status}, "
            f"got {response.status_code}: {response.text[:500]}"
        )


def multipart_body(path: Path, title: str, boundary: str) -> tuple[int, Iterator[bytes]]:
    """The body's exact length and an iterator that reads the file from disk in chunks."""
    head, tail = envelope(title, path.name, boundary)

    def chunks() -> Iterator[bytes]:
        yield head
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                yield chunk
        yield tail

    return len(head) + path.stat().st_size + len(tail), chunks()


def upload(client: httpx.Client, token: str, path: Path, title: str) -> str:
    """Stream `path` to /api/videos/upload; expect 201; return the video id."""
    boundary = uuid.uuid4().hex
    length, body = multipart_body(path, title, boundary)
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": content_type(boundary),
        "Content-Length": str(length),
    }
    response = client.post("/api/videos/upload", content=body, headers=headers)
    expect(response, 201)
    return response.json()["video_id"]


def delete_video(client: httpx.Client, token: str, video_id: str) -> None:
    """Best effort: keep the data dir from growing by 100 MB a round."""
    with contextlib.suppress(httpx.HTTPError):
        client.delete(f"/api/videos/{video_id}", headers={"Authorization": f"Bearer {token}"})


# --- benchmark -------------------------------------------------------------------------------


def measure_round(client: httpx.Client, server: Server, token: str, path: Path, n: int) -> Round:
    idle = status_kib(server.pid, "VmRSS")
    reset_peak(server.pid)
    with RssSampler(server.pid) as sampler:
        started = time.monotonic()
        video_id = upload(client, token, path, f"bench round {n}")
        seconds = time.monotonic() - started
    peak = status_kib(server.pid, "VmHWM")
    delete_video(client, token, video_id)
    return Round(idle, peak, seconds, sampler.peak_kib, sampler.peak_at, path.stat().st_size)


ROUNDS = Table(
    (
        Column("round", 5),
        Column("idle MiB", 8, ".1f"),
        Column("peak MiB", 8, ".1f"),
        Column("delta MiB", 9, ".1f"),
        Column("peak at s", 11, ".2f"),
        Column("time s", 6, ".2f"),
        Column("MiB/s", 7, ".1f"),
    ),
    gap="  ",
)


def print_round(n: int, result: Round) -> None:
    print(
        ROUNDS.row(
            n, result.idle_kib / 1024, result.peak_kib / 1024, result.delta_mib,
            result.sampled_peak_at, result.seconds, result.mib_per_second,
        ),
        flush=True,
    )  # fmt: skip


def print_summary(results: list[Round], target_mib: float) -> int:
    """The deltas, the throughput and the target; the exit status."""
    deltas = [result.delta_mib for result in results]
    median = statistics.median(deltas)
    print()
    print(f"deltas (MiB):      {', '.join(f'{delta:.1f}' for delta in deltas)}")
    print(f"median delta:      {median:.1f} MiB  (min {min(deltas):.1f}, max {max(deltas):.1f})")
    print(f"median throughput: {statistics.median(r.mib_per_second for r in results):.1f} MiB/s")
    target = targets.at_most("median delta, MiB", median, target_mib, ".1f")
    return targets.report("target:", [target])


def run(rounds: int, target_mib: float, work: Path) -> int:
    """The upload file, the server, the rounds; the exit status of the target."""
    data_dir, files = work / "data", work / "files"
    data_dir.mkdir()
    files.mkdir()
    clip, warmup, big = files / "clip.mp4", files / "warmup.mp4", files / "big.mp4"
    encode_tiny(clip, CLIP_SECONDS)
    padded_copy(clip, warmup, WARMUP_FILE_BYTES)
    padded_copy(clip, big, BIG_FILE_BYTES)
    print(
        f"upload file: {big.stat().st_size} bytes ({big.stat().st_size / MIB:.2f} MiB) = a "
        f"{clip.stat().st_size}-byte {CLIP_SECONDS} s 1080p H.264 clip padded with one "
        "top-level `free` box.\n  Padding is fine: the server's memory does not depend on the "
        "content, and every byte\n  flows through the same streaming path (multipart parser -> "
        "temp file); the box walk\n  and ffmpeg accept the file (201)."
    )
    server = start_server(data_dir, work / "server.log")
    try:
        wait_http(f"{server.base_url}/health", server.process)
        print(f"server pid {server.pid} at {server.base_url}, data dir {data_dir}")
        with httpx.Client(base_url=server.base_url, timeout=300) as client:
            token = sign_in(client)
            delete_video(client, token, upload(client, token, warmup, "warm-up"))
            time.sleep(1)
            print(
                "\nRSS of the server process only (the ffmpeg probe it spawns is a separate "
                "process: not counted).\ndelta = VmHWM after the upload - VmRSS before it "
                "(VmHWM reset via clear_refs);\npeak at = seconds into the upload when VmRSS, "
                "sampled every 5 ms, was highest.\n"
            )
            print(ROUNDS.header())
            results = []
            for n in range(1, rounds + 1):
                results.append(measure_round(client, server, token, big, n))
                print_round(n, results[-1])
                time.sleep(1)
        return print_summary(results, target_mib)
    except BaseException:
        print(f"--- server log (tail) ---\n{log_tail(server.log_path)}", file=sys.stderr)
        raise
    finally:
        stop_server(server)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="uploads to measure (default 5)")
    parser.add_argument(
        "--target-mib", type=float, default=32, help="PASS when the median delta is <= this"
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))  # clean up too
    with tempfile.TemporaryDirectory(prefix="anb-bench-rss-", ignore_cleanup_errors=True) as work:
        return run(args.rounds, args.target_mib, Path(work))


if __name__ == "__main__":
    sys.exit(main())
