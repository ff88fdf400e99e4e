"""The job timeout holds whatever ffmpeg does: a fake ffmpeg that never finishes is killed
at the deadline, reaped, its output removed, and `render` raises `PipelineTimedOut`."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from anb.processing import pipeline
from anb.processing.probe import MediaInfo

TIMEOUT = 1.0
MARGIN = 2.0  # the fake's start-up, the kill and the reaping
LIFETIME = 8  # each fake gives up by itself, so the unfixed code fails instead of hanging
SOURCE = MediaInfo(duration=10, width=1920, height=1080, codec="h264")

# Written to the output path at once (as ffmpeg does with its header), then:
BEHAVIOURS = {
    # progress lines forever, never closing its output
    "chatty": """
step = 0
while time.monotonic() < end:
    step += 1
    sys.stdout.write(f"frame={step}\\nout_time_us={step * 10_000}\\nprogress=continue\\n")
    sys.stdout.flush()
    time.sleep(0.005)
""",
    # not a word, not an exit
    "silent": """
time.sleep(max(0.0, end - time.monotonic()))
""",
    # ignores SIGTERM (and SIGINT), still printing now and then
    "stubborn": """
signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGINT, signal.SIG_IGN)
while time.monotonic() < end:
    print("progress=continue", flush=True)
    time.sleep(0.2)
""",
}


def _fake_ffmpeg(directory: Path, behaviour: str) -> Path:
    script = directory / "ffmpeg"
    script.write_text(
        f"#!{sys.executable}\n"
        "import os, signal, sys, time\n"
        f"end = time.monotonic() + {LIFETIME}\n"
        f"open({str(directory / 'ffmpeg.pid')!r}, 'w').write(str(os.getpid()))\n"
        "open(sys.argv[-1], 'wb').write(b'ftyp, and nothing more yet')\n"
        f"{BEHAVIOURS[behaviour]}"
    )
    script.chmod(0o755)
    return script


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # succeeds for a running process and for an unreaped zombie
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("behaviour", sorted(BEHAVIOURS))
def test_ffmpeg_is_killed_at_the_deadline(
    behaviour: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _fake_ffmpeg(tmp_path, behaviour)
    monkeypatch.setattr(pipeline, "ffmpeg_exe", lambda: str(fake))
    output = tmp_path / "processed.mp4"
    progress: list[float] = []
    open_fds = len(os.listdir("/proc/self/fd"))

    started = time.monotonic()
    with pytest.raises(pipeline.PipelineTimedOut) as raised:
        pipeline.render(
            tmp_path / "original.mp4", output, SOURCE,
            on_progress=progress.append, timeout_seconds=TIMEOUT,
        )  # fmt: skip
    elapsed = time.monotonic() - started

    assert elapsed < TIMEOUT + MARGIN, f"ffmpeg ran {elapsed:.1f} s past a {TIMEOUT} s timeout"
    assert isinstance(raised.value, pipeline.PipelineFailed)  # what `anb process` catches
    assert "1 s" in raised.value.reason
    pid = int((tmp_path / "ffmpeg.pid").read_text())
    assert _gone(pid), f"ffmpeg (pid {pid}) is still there"
    assert not output.exists(), "the partial output was left behind"
    assert len(os.listdir("/proc/self/fd")) == open_fds, "a pipe or file was left open"
    if behaviour == "chatty":  # progress still reaches the caller until the deadline
        assert progress and progress == sorted(progress) and 0 < progress[-1] <= 1
