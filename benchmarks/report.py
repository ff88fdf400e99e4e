"""Statistics over the per-request logs of the Locust runs, the summary in Markdown, and the
plots of the report (matplotlib, of the `load` extra, is imported only to draw them)."""

from __future__ import annotations

import csv
import math
import sys
from collections import defaultdict
from collections.abc import Iterable
from importlib.util import find_spec
from pathlib import Path

SLO_P95_MS = 1000.0
SLO_ERROR_RATE = 0.05
ARRIVALS = ("all", "ramped")
"""How the users of a step arrive: all within ~1 s, or spread evenly over the ramp."""
CORE_GROUPS = ("gunicorn", "postgres", "moto", "locust", "machine")
SCENARIOS = {
    "upload": "uploads through the API",
    "direct": "direct uploads to storage (presigned POST)",
    "public": "public mix",
    "voters": "public mix, one login per session",
}


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
                "api": int(row.get("api", 1)),
                "upload": int(row.get("upload", 0)),
            }
            for row in csv.DictReader(handle)
        ]


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (as Locust reports them); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(math.ceil(fraction * len(ordered)) - 1, 0)]


def latencies(rows: list[dict]) -> dict[str, float]:
    times = [row["ms"] for row in rows]
    return {f"p{n}_ms": percentile(times, n / 100) for n in (50, 95, 99)}


def window(rows: list[dict], start: float, end: float) -> dict:
    """Requests that started in [start, end). The KPIs (rate, errors, percentiles) count the
    API's requests only; `by_name` lists every request, including the storage leg of a
    direct upload; `uploads` counts the uploads completed (the video exists)."""
    chosen = [row for row in rows if start <= row["time"] < end]
    api = [row for row in chosen if row["api"]]
    seconds = max(end - start, 1e-9)
    failures = sum(row["failed"] for row in api)
    uploads = sum(row["upload"] for row in chosen)
    by_name: dict[str, list[dict]] = defaultdict(list)
    for row in chosen:
        by_name[row["name"]].append(row)
    return {
        "requests": len(api),
        "failures": failures,
        "error_rate": failures / len(api) if api else math.nan,
        "rps": len(api) / seconds,
        "uploads": uploads,
        "uploads_per_s": uploads / seconds,
        **latencies(api),
        "by_name": {
            name: {
                "requests": len(items),
                "failures": sum(item["failed"] for item in items),
                "api": bool(items[0]["api"]),
                **latencies(items),
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


def first_to_degrade(stats: dict) -> str:
    """The KPI nearest its SLO limit (so the first to break as the load grows), as a share
    of the limit, and the API endpoint that is worst at it."""
    if not stats["requests"]:
        return "no requests"
    shares = {"p95": stats["p95_ms"] / SLO_P95_MS, "errors": stats["error_rate"] / SLO_ERROR_RATE}
    kpi = max(shares, key=lambda name: shares[name])
    measure = "p95_ms" if kpi == "p95" else "failures"
    endpoints = {name: item for name, item in stats["by_name"].items() if item["api"]}
    worst = max(endpoints, key=lambda name: endpoints[name][measure])
    return f"{kpi} {100 * shares[kpi]:.0f} % of SLO ({worst})"


def series(rows: list[dict], start: float, bin_seconds: float = 5) -> list[dict]:
    """Per `bin_seconds` bin since `start`, over the API's requests: users (max), p95, error
    rate and requests per second."""
    bins: dict[int, list[dict]] = defaultdict(list)
    for row in rows:
        if row["api"]:
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


# --- capacity and costs ----------------------------------------------------------------------


def judges(phase: dict, arrival: str) -> bool:
    """Whether a phase counts towards `arrival`'s verdict: its steps, and the smoke run (a
    handful of users, all at once, which gates every pattern)."""
    return phase["kind"] == "smoke" or (phase["kind"] == "step" and phase["arrival"] == arrival)


def best_users(phases: list[dict], arrival: str) -> int:
    """Most users of the `arrival` steps that met the SLO; else the smoke run's users if it
    met the SLO; else 0."""
    met = [p for p in phases if judges(p, arrival) and p["slo_met"]]
    steps = [p["users"] for p in met if p["kind"] == "step"]
    return max(steps or [p["users"] for p in met], default=0)


def broke_on(phases: list[dict], arrival: str) -> str:
    """What broke the SLO first for `arrival` ("" when nothing did)."""
    phase = next((p for p in phases if judges(p, arrival) and not p["slo_met"]), None)
    return f"{phase['kind']} {phase['users']}: {phase['first_to_degrade']}" if phase else ""


def cpu_ms_per(cpus: Iterable[dict], group: str, count: str) -> float:
    """CPU milliseconds of a process group per counted event ("api_requests", "uploads"),
    pooled over the measured intervals; NaN when nothing was counted."""
    cpus = list(cpus)
    used = sum(cpu["cores"].get(group, 0.0) * cpu["seconds"] for cpu in cpus)
    events = sum(cpu[count] for cpu in cpus)
    return 1000 * used / events if events else math.nan


def cpu_costs(cpus: Iterable[dict]) -> dict[str, float]:
    """API (Gunicorn, ffmpeg probes included) CPU-ms per API request and per upload, and
    moto's CPU-ms per upload (S3 and SQS work that AWS does off the instance)."""
    cpus = [cpu for cpu in cpus if cpu]
    return {
        "api_ms_per_request": cpu_ms_per(cpus, "gunicorn", "api_requests"),
        "api_ms_per_upload": cpu_ms_per(cpus, "gunicorn", "uploads"),
        "moto_ms_per_upload": cpu_ms_per(cpus, "moto", "uploads"),
    }


# --- Markdown --------------------------------------------------------------------------------


MISSING = "-"


def number(value: float | None, digits: int = 0) -> str:
    return MISSING if value is None or math.isnan(value) else f"{value:.{digits}f}"


def markdown(summary: dict) -> str:
    workloads = summary["workloads"]
    lines = [
        f"SLO: p95 ≤ {SLO_P95_MS:.0f} ms and errors ≤ {100 * SLO_ERROR_RATE:.0f} %, judged on the "
        "hold window of each step over the API's requests (the storage leg of a direct upload "
        "is listed per endpoint, not judged). Arrivals: `all` = every user starts within ~1 s; "
        "`ramped` = users start evenly over the ramp. Upload sizes: 0 MB = a ~20 KB clip. "
        "Queue: `sqs` = SQS on moto, `local` = the API's in-process queue (nothing consumes "
        "it). CPU-ms are CPU time per event: `API` = Gunicorn and the ffmpeg probes it "
        "spawns; `moto` = the S3/SQS emulator (work AWS does off the instance).",
        "",
        "## Max users at the SLO",
        "",
        *capacity_table(workloads),
    ]
    if comparison := paths_table(workloads):
        lines += ["", "## Uploads: through the API vs direct to storage", "", *comparison]
    for workload in workloads:
        lines += ["", f"## {workload['label']}: {SCENARIOS[workload['scenario']]}", ""]
        lines += phase_table(workload["phases"])
        lines += ["", "p95 per endpoint (hold window), ms:", ""]
        lines += [f"- {phase['name']}: {endpoints_line(phase['hold'])}"
                  for phase in workload["phases"]]  # fmt: skip
        if jobs := [phase for phase in workload["phases"] if phase.get("jobs")]:
            lines += ["", "Jobs and videos after each phase:", ""]
            lines += [f"- {phase['name']}: {jobs_line(phase['jobs'])}" for phase in jobs]
    if summary.get("embedded_worker_idle") is not None:
        idle = "yes" if summary["embedded_worker_idle"] else "NO"
        lines += ["", f"Local queue left unconsumed (no video processing or failed): {idle}"]
    return "\n".join(lines) + "\n"


def capacity_table(workloads: list[dict]) -> list[str]:
    arrivals = [a for a in ARRIVALS if any(a in w["best"] for w in workloads)]
    head = "| workload | upload | queue | " + " | ".join(
        f"{arrival}: max users | {arrival}: first break" for arrival in arrivals
    )
    lines = [
        head + " | API CPU-ms/req | API CPU-ms/upload | moto CPU-ms/upload |",
        "|---|---:|---|" + "---:|---|" * len(arrivals) + "---:|---:|---:|",
    ]
    for workload in workloads:
        cost = workload["cost"]
        cells = [workload["label"], upload_size(workload), workload["queue"] or MISSING]
        for arrival in arrivals:
            best = workload["best"].get(arrival)
            cells += [
                MISSING if best is None else str(best),
                broke_on(workload["phases"], arrival) or "none",
            ]
        cells += [number(cost["api_ms_per_request"], 1), number(cost["api_ms_per_upload"], 1),
                  number(cost["moto_ms_per_upload"], 1)]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def paths_table(workloads: list[dict]) -> list[str]:
    """API and moto CPU-ms per upload, through the API against direct, for each upload size
    and queue measured both ways."""
    by_key = {(w["scenario"], w["upload_mb"], w["queue"]): w["cost"] for w in workloads}
    pairs = [(mb, queue) for scenario, mb, queue in by_key
             if scenario == "upload" and ("direct", mb, queue) in by_key]  # fmt: skip
    if not pairs:
        return []
    lines = [
        "| upload | queue | API CPU-ms/upload: through API | direct | saved by direct | "
        "moto CPU-ms/upload: through API | direct |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for mb, queue in pairs:
        api, direct = by_key[("upload", mb, queue)], by_key[("direct", mb, queue)]
        saved = api["api_ms_per_upload"] - direct["api_ms_per_upload"]
        lines.append(
            f"| {mb} MB | {queue} | {number(api['api_ms_per_upload'], 1)} | "
            f"{number(direct['api_ms_per_upload'], 1)} | {number(saved, 1)} | "
            f"{number(api['moto_ms_per_upload'], 1)} | {number(direct['moto_ms_per_upload'], 1)} |"
        )
    return lines


def phase_table(phases: list[dict]) -> list[str]:
    lines = [
        "| phase | arrival | users | req/s | uploads/s | p50 ms | p95 ms | p99 ms | errors % | "
        "SLO | first KPI to degrade | API CPU-ms/req | API CPU-ms/upload | moto CPU-ms/upload | "
        "cores: " + " | ".join(CORE_GROUPS) + " |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|"
        + "---:|" * len(CORE_GROUPS),
    ]
    for phase in phases:
        hold, cost = phase["hold"], phase["cost"]
        cores = phase["cpu"]["cores"] if phase["cpu"] else {}
        cells = [
            phase["kind"], phase["arrival"], str(phase["users"]), number(hold["rps"], 1),
            number(hold["uploads_per_s"], 2), number(hold["p50_ms"]), number(hold["p95_ms"]),
            number(hold["p99_ms"]), number(100 * hold["error_rate"], 1),
            "met" if phase["slo_met"] else "**broken**", phase["first_to_degrade"],
            number(cost["api_ms_per_request"], 1), number(cost["api_ms_per_upload"], 1),
            number(cost["moto_ms_per_upload"], 1),
            *(number(cores.get(group, math.nan), 2) for group in CORE_GROUPS),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def endpoints_line(stats: dict) -> str:
    return "; ".join(
        f"{name} {number(item['p95_ms'])} (n={item['requests']}, fail {item['failures']})"
        for name, item in stats["by_name"].items()
    )


def jobs_line(jobs: dict) -> str:
    parts = [] if jobs.get("sqs") is None else [f"SQS messages {jobs['sqs']}"]
    parts.append("videos " + ", ".join(f"{k} {v}" for k, v in sorted(jobs["videos"].items())))
    return "; ".join(parts)


def upload_size(workload: dict) -> str:
    if workload["upload_bytes"] is None:
        return MISSING
    return f"{workload['upload_mb']} MB ({workload['upload_bytes'] / 1e6:.2f} MB)"


# --- plots -----------------------------------------------------------------------------------


def require_load_extra(*modules: str) -> None:
    """Exit before any load runs if matplotlib (or one of `modules`) is missing, rather than
    after the run, when the plots are drawn."""
    missing = [name for name in ("matplotlib", *modules) if find_spec(name) is None]
    if missing:
        sys.exit(
            f"{', '.join(missing)} not installed: scripts/loadtest and scripts/loadtest_worker"
            " install the `load` extra into .venv"
        )


def pyplot():
    """matplotlib's pyplot, drawing to files (the Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot

    return matplotlib.pyplot


ARRIVAL_STYLE = {"all": "s--", "ramped": "o-"}


def plot_ramps(workloads: list[dict], target: Path) -> None:
    """Users -> p95 (hold window) and error rate: a row per scenario, a colour per workload,
    a line style per arrival pattern."""
    plt = pyplot()
    scenarios = list(dict.fromkeys(workload["scenario"] for workload in workloads))
    fig, axes = plt.subplots(
        len(scenarios), 2, figsize=(12, 4 * len(scenarios)), squeeze=False, layout="constrained"
    )
    for (left, right), scenario in zip(axes, scenarios, strict=True):
        for index, workload in enumerate(workloads):
            if workload["scenario"] != scenario:
                continue
            for arrival in ARRIVALS:
                steps = [p for p in workload["phases"] if judges(p, arrival)]
                if not steps:
                    continue
                users = [p["users"] for p in steps]
                style = {"color": f"C{index % 10}", "label": f"{workload['label']}, {arrival}"}
                left.plot(users, [p["hold"]["p95_ms"] for p in steps], ARRIVAL_STYLE[arrival],
                          **style)  # fmt: skip
                right.plot(users, [100 * p["hold"]["error_rate"] for p in steps],
                           ARRIVAL_STYLE[arrival], **style)  # fmt: skip
        left.axhline(SLO_P95_MS, color="red", linestyle="--", linewidth=1, label="SLO p95 1 s")
        right.axhline(100 * SLO_ERROR_RATE, color="red", linestyle="--", linewidth=1,
                      label="SLO 5 %")  # fmt: skip
        left.set(xlabel="concurrent users (X)", ylabel="p95 latency, hold window (ms)",
                 title=f"{scenario}: p95 per step", yscale="log")  # fmt: skip
        right.set(xlabel="concurrent users (X)", ylabel="errors (%)",
                  title=f"{scenario}: error rate per step")  # fmt: skip
        for axis in (left, right):
            axis.grid(alpha=0.3)
            axis.legend(fontsize=7)
    _save(fig, target)


def plot_capacity(workloads: list[dict], target: Path) -> None:
    """Max users at the SLO per workload and arrival pattern; API and moto CPU-ms per upload
    per upload workload."""
    plt = pyplot()
    uploads = [workload for workload in workloads if workload["upload_bytes"] is not None]
    fig, axes = plt.subplots(
        1, 2 if uploads else 1, figsize=(13, 4.6), squeeze=False, layout="constrained"
    )
    labels = [workload["label"] for workload in workloads]
    arrivals = [a for a in ARRIVALS if any(a in w["best"] for w in workloads)]
    _grouped_bars(axes[0, 0], labels,
                  {arrival: [w["best"].get(arrival, 0) for w in workloads] for arrival in arrivals},
                  "%d")  # fmt: skip
    axes[0, 0].set(ylabel="users", title="max users at the SLO (p95 ≤ 1 s, errors ≤ 5 %)")
    if uploads:
        costs = {
            "API (Gunicorn + probes)": [w["cost"]["api_ms_per_upload"] for w in uploads],
            "moto (S3 + SQS emulator)": [w["cost"]["moto_ms_per_upload"] for w in uploads],
        }
        _grouped_bars(axes[0, 1], [w["label"] for w in uploads], costs, "%.0f")
        axes[0, 1].set(ylabel="CPU-ms per upload", title="CPU per completed upload")
    _save(fig, target)


def plot_timelines(workloads: list[dict], target: Path) -> None:
    """Each workload's phases end to end: users and p95 per 5 s bin."""
    plt = pyplot()
    fig, axes = plt.subplots(
        len(workloads), 1, figsize=(12, 3.6 * len(workloads)), squeeze=False, layout="constrained"
    )
    for axis, workload in zip(axes[:, 0], workloads, strict=True):
        offset = 0.0
        users_axis = axis.twinx()
        for phase in workload["phases"]:
            points = phase["series"]
            xs = [offset + point["t"] for point in points]
            axis.plot(xs, [point["p95_ms"] for point in points], color="tab:blue", linewidth=1)
            users_axis.plot(xs, [point["users"] for point in points], color="tab:gray",
                            linewidth=1, linestyle=":")  # fmt: skip
            end = offset + (points[-1]["t"] if points else 0)
            axis.axvline(end, color="black", alpha=0.15)
            axis.text(offset + 2, 0.98, f"{phase['arrival']} {phase['kind']} {phase['users']}",
                      transform=axis.get_xaxis_transform(), fontsize=7, va="top")  # fmt: skip
            offset = end + 5
        axis.axhline(SLO_P95_MS, color="red", linestyle="--", linewidth=1)
        axis.set(
            yscale="log",
            ylabel="p95 per 5 s (ms, blue)",
            xlabel="seconds (phases end to end)",
            title=f"{workload['label']}: p95 latency (blue) and users (dotted)",
        )
        users_axis.set_ylabel("users (dotted)")
        axis.grid(alpha=0.3)
    _save(fig, target)


def plot_worker(results: list[dict], target: Path) -> None:
    """Videos/min per worker count and input size; queue depth over time."""
    plt = pyplot()
    sizes = sorted({result["input_mb"] for result in results})
    workers = sorted({result["workers"] for result in results})
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    bars = {}
    for size in sizes:
        actual = next(r["input_bytes"] for r in results if r["input_mb"] == size) / 1e6
        bars[f"{actual:.0f} MB input"] = [
            next((r["videos_per_min"] for r in results
                  if r["workers"] == w and r["input_mb"] == size), 0)
            for w in workers
        ]  # fmt: skip
    _grouped_bars(left, [f"{w} worker(s)" for w in workers], bars, "%.2f")
    left.set(ylabel="videos per minute", title="worker throughput (2-core machine)")
    left.set_ylim(0, 1.25 * max((r["videos_per_min"] for r in results), default=1))
    for result in results:
        samples = result["queue"]
        label = f"{result['workers']} w, {result['input_bytes'] / 1e6:.0f} MB"
        right.plot([s["t"] for s in samples], [s["visible"] for s in samples], label=label)
    right.set(xlabel="seconds since the workers started",
              ylabel="ApproximateNumberOfMessagesVisible", title="queue backlog")  # fmt: skip
    right.legend(fontsize=7)
    right.grid(alpha=0.3)
    _save(fig, target)


def _grouped_bars(axis, groups: list[str], bars: dict[str, list[float]], fmt: str) -> None:
    """One cluster per group, one labelled bar per series in each cluster (NaN drawn as 0)."""
    width = 0.8 / max(len(bars), 1)
    for n, (label, values) in enumerate(bars.items()):
        xs = [i + (n - (len(bars) - 1) / 2) * width for i in range(len(groups))]
        heights = [0 if math.isnan(value) else value for value in values]
        axis.bar_label(axis.bar(xs, heights, width, label=label), fmt=fmt, fontsize=8)
    axis.set_xticks(range(len(groups)), groups, rotation=20 if len(groups) > 4 else 0,
                    ha="right" if len(groups) > 4 else "center", fontsize=8)  # fmt: skip
    axis.set_ylim(bottom=0)
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3, axis="y")


def _save(fig, target: Path) -> None:
    fig.savefig(target, dpi=110)
    pyplot().close(fig)
