"""How close an output's footage is to its source: VMAF (libvmaf with its default model) and
SSIM, both against the source's footage fitted into 1280x720 with a high-quality scaler
(lanczos) exactly where the pipeline fits it, computed in one ffmpeg pass without a file."""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from anb.processing import pipeline
from anb.processing.probe import MediaInfo
from benchmarks.media import ffmpeg

_SSIM_ALL = re.compile(r"SSIM .*All:([\d.]+)")


@dataclass(frozen=True)
class Quality:
    vmaf: float  # mean over the frames, 0..100
    ssim: float  # SSIM "All", 0..1


def truth_filters(info: MediaInfo) -> str:
    """The source as the pipeline fits it (same size and position), scaled with lanczos, in
    the colours the output is tagged with (BT.709, limited range: `pipeline.to_bt709`)."""
    width, height = pipeline.fitted_size(info)
    return (
        f"scale={width}:{height}:flags=lanczos{pipeline.to_bt709(info)},setsar=1,"
        f"pad={pipeline.WIDTH}:{pipeline.HEIGHT}:(ow-iw)/2:(oh-ih)/2:color=black,"
        "format=yuv420p"
    )


def footage_quality(output: Path, skip: float, source: Path, info: MediaInfo) -> Quality:
    """VMAF and SSIM of `output`'s footage (what follows its `skip` seconds of opening
    bumper, accurately seeked) against the source's first seconds, frame by frame."""
    seconds = f"{pipeline.footage_seconds(info):.3f}"
    with tempfile.TemporaryDirectory(prefix="anb-vmaf-") as scratch:
        log = Path(scratch) / "vmaf.json"
        graph = ";".join(
            [
                "[0:v]setpts=PTS-STARTPTS,format=yuv420p[main]",
                f"[1:v]{truth_filters(info)},setpts=PTS-STARTPTS,split[truth1][truth2]",
                "[main][truth1]ssim=shortest=1[checked]",
                f"[checked][truth2]libvmaf=shortest=1:n_threads=2:log_fmt=json:log_path={log}",
            ]
        )
        stderr = ffmpeg(
            "-ss", f"{skip:.3f}", "-t", seconds, "-i", str(output),
            "-t", seconds, "-i", str(source),
            "-filter_complex", graph, "-f", "null", "-",
        )  # fmt: skip
        vmaf = json.loads(log.read_text())["pooled_metrics"]["vmaf"]["mean"]
    found = _SSIM_ALL.findall(stderr)
    if not found:
        raise RuntimeError(f"no SSIM in ffmpeg's output:\n{stderr[-1000:]}")
    return Quality(vmaf=float(vmaf), ssim=float(found[-1]))
