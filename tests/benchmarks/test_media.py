"""Generated inputs are cached whole, and an ffmpeg failure says why."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmarks.media import cached, ffmpeg


def test_cached_makes_a_file_once(tmp_path: Path) -> None:
    made: list[Path] = []

    def make(target: Path) -> None:
        made.append(target)
        target.write_text("video")

    path = tmp_path / "inputs" / "clip.mp4"
    assert cached(path, make) == path
    assert cached(path, make) == path
    assert made == [tmp_path / "inputs" / "partial-clip.mp4"]
    assert path.read_text() == "video"


def test_an_interrupted_make_leaves_nothing_to_reuse(tmp_path: Path) -> None:
    def interrupted(target: Path) -> None:
        target.write_text("half a vid")
        raise KeyboardInterrupt

    path = tmp_path / "clip.mp4"
    with pytest.raises(KeyboardInterrupt):
        cached(path, interrupted)
    assert not path.exists()


def test_ffmpeg_failure_carries_its_stderr(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"(?s)ffmpeg failed: .*\nError opening input"):
        ffmpeg("-i", str(tmp_path / "missing.mp4"), "-f", "null", "-")
