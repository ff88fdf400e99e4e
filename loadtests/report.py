"""Statistics over the per-request logs of the Locust runs, and the plots of the report."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

SLO_P95_MS = 1000.0
SLO_ERROR_RATE = 0.05


def read_requests(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as handle:
        return [
            {
                "time": float(row["time"]),
                "name": row["name"],
                "ms": float(row["ms"]),
                "failed": int(row["failed"]),
                "users": int(row["users"]),
            }
            for row in csv.DictReader(handle)
        ]


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (as Locust reports them); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(math.ceil(fraction * len(ordered)) - 1, 0)]


def window(rows: list[dict], start: float, end: float) -> dict:
    """Requests that started in [start, end): counts, error rate, latency percentiles, per name."""
    chosen = [row for row in rows if start <= row["time"] < end]
    seconds = max(end - start, 1e-9)
    times = [row["ms"] for row in chosen]
    failures = sum(row["failed"] for row in chosen)
    by_name: dict[str, list[dict]] = defaultdict(list)
    for row in chosen:
        by_name[row["name"]].append(row)
    return {
        "requests": len(chosen),
        "failures": failures,
        "error_rate": failures / len(chosen) if chosen else math.nan,
        "rps": len(chosen) / seconds,
        "p50_ms": percentile(times, 0.50),
        "p95_ms": percentile(times, 0.95),
        "p99_ms": percentile(times, 0.99),
        "by_name": {
            name: {
                "requests": len(items),
                "failures": sum(item["failed"] for item in items),
                "p50_ms": percentile([item["ms"] for item in items], 0.50),
                "p95_ms": percentile([item["ms"] for item in items], 0.95),
            }
            for name, items in sorted(by_name.items())
        },
    }


def meets_slo(stats: dict) -> bool:
    return (
        stats["requests"] > 0
        and stats["p95_ms"] <= SLO_P95_MS
        and stats["error_rate"] <= SLO_ERROR_RATE
    )


def series(rows: list[dict], start: float, bin_seconds: float = 5) -> list[dict]:
    """Per `bin_seconds` bin since `start`: users (max), p95 and error rate."""
    bins: dict[int, list[dict]] = defaultdict(list)
    for row in rows:
        bins[int((row["time"] - start) // bin_seconds)].append(row)
    return [
        {
            "t": (index + 0.5) * bin_seconds,
            "users": max(row["users"] for row in items),
            "p95_ms": percentile([row["ms"] for row in items], 0.95),
            "error_rate": sum(row["failed"] for row in items) / len(items),
            "rps": len(items) / bin_seconds,
        }
        for index, items in sorted(bins.items())
    ]


# --- plots -----------------------------------------------------------------------------------


def plot_ramps(scenarios: dict[str, list[dict]], target: Path) -> None:
    """Users -> p95 (hold window) and error rate, one line per scenario."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, phases in scenarios.items():
        ramps = [phase for phase in phases if phase["kind"] in ("smoke", "ramp")]
        users = [phase["users"] for phase in ramps]
        left.plot(users, [phase["hold"]["p95_ms"] for phase in ramps], "o-", label=label)
        right.plot(users, [100 * phase["hold"]["error_rate"] for phase in ramps], "o-", label=label)
    left.axhline(SLO_P95_MS, color="red", linestyle="--", linewidth=1, label="SLO p95 1 s")
    right.axhline(100 * SLO_ERROR_RATE, color="red", linestyle="--", linewidth=1, label="SLO 5 %")
    left.set(xlabel="concurrent users (X)", ylabel="p95 latency, hold window (ms)",
             title="p95 latency per ramp", yscale="log")  # fmt: skip
    right.set(xlabel="concurrent users (X)", ylabel="errors (%)", title="error rate per ramp")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend()
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    plt.close(fig)


def plot_timelines(scenarios: dict[str, list[dict]], target: Path) -> None:
    """Each scenario's phases end to end: users and p95 per 5 s bin."""
    fig, axes = plt.subplots(len(scenarios), 1, figsize=(11, 3.6 * len(scenarios)), squeeze=False)
    for axis, (label, phases) in zip(axes[:, 0], scenarios.items(), strict=True):
        offset = 0.0
        users_axis = axis.twinx()
        for phase in phases:
            points = phase["series"]
            xs = [offset + point["t"] for point in points]
            axis.plot(xs, [point["p95_ms"] for point in points], color="tab:blue", linewidth=1)
            users_axis.plot(xs, [point["users"] for point in points], color="tab:gray",
                            linewidth=1, linestyle=":")  # fmt: skip
            end = offset + (points[-1]["t"] if points else 0)
            axis.axvline(end, color="black", alpha=0.15)
            axis.text(offset + 2, 0.98, phase["name"], transform=axis.get_xaxis_transform(),
                      fontsize=7, va="top")  # fmt: skip
            offset = end + 5
        axis.axhline(SLO_P95_MS, color="red", linestyle="--", linewidth=1)
        axis.set(
            yscale="log",
            ylabel="p95 per 5 s (ms, blue)",
            xlabel="seconds (phases end to end)",
            title=f"{label}: p95 latency (blue) and users (dotted)",
        )
        users_axis.set_ylabel("users (dotted)")
        axis.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    plt.close(fig)


def plot_worker(results: list[dict], target: Path) -> None:
    """Videos/min per worker count and input size; queue depth over time."""
    sizes = sorted({result["input_mb"] for result in results})
    workers = sorted({result["workers"] for result in results})
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.8 / len(sizes)
    for n, size in enumerate(sizes):
        values = [
            next((r["videos_per_min"] for r in results
                  if r["workers"] == w and r["input_mb"] == size), 0)
            for w in workers
        ]  # fmt: skip
        xs = [i + (n - (len(sizes) - 1) / 2) * width for i in range(len(workers))]
        actual = next(r["input_bytes"] for r in results if r["input_mb"] == size) / 1e6
        bars = left.bar(xs, values, width, label=f"{actual:.0f} MB input")
        left.bar_label(bars, fmt="%.2f", fontsize=8)
    left.set_xticks(range(len(workers)), [f"{w} worker(s)" for w in workers])
    left.set(ylabel="videos per minute", title="worker throughput (2-core machine)")
    left.set_ylim(0, 1.25 * max((r["videos_per_min"] for r in results), default=1))
    left.legend()
    left.grid(alpha=0.3, axis="y")
    for result in results:
        samples = result["queue"]
        label = f"{result['workers']} w, {result['input_bytes'] / 1e6:.0f} MB"
        right.plot([s["t"] for s in samples], [s["visible"] for s in samples], label=label)
    right.set(xlabel="seconds since the workers started",
              ylabel="ApproximateNumberOfMessagesVisible", title="queue backlog")  # fmt: skip
    right.legend(fontsize=7)
    right.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    plt.close(fig)
