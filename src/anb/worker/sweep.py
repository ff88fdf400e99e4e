"""What interrupted work leaves behind, swept away: direct uploads granted and never
completed (with their files), and scratch files of uploads and jobs cut short (a killed
worker's `job-*` directories, a dropped upload's `upload-*.part`)."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path

from anb.core.db import in_session
from anb.core.settings import Settings
from anb.storage import get_storage
from anb.videos.service import sweep_abandoned_uploads

log = logging.getLogger(__name__)
SWEEP_EVERY_SECONDS = 3600
SCRATCH_PATTERNS = ("job-*", "upload-*.part")


def sweep_scratch(tmp_dir: Path, *, older_than_seconds: float) -> int:
    """Remove scratch entries untouched for `older_than_seconds`; how many."""
    cutoff = time.time() - older_than_seconds
    stale = [
        path
        for pattern in SCRATCH_PATTERNS
        for path in tmp_dir.glob(pattern)
        if path.lstat().st_mtime < cutoff
    ]
    for path in stale:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return len(stale)


def scratch_age_limit(settings: Settings) -> float:
    """Older than any job may run (twice its timeout) and than an hour without a write."""
    return max(2 * settings.job_timeout_seconds, 3600)


def sweep_once(settings: Settings) -> None:
    scratch = sweep_scratch(settings.tmp_dir, older_than_seconds=scratch_age_limit(settings))
    storage = get_storage()
    uploads = in_session(lambda session: sweep_abandoned_uploads(session, storage=storage))
    if scratch or uploads:
        log.info("swept %d scratch entries and %d abandoned direct uploads", scratch, uploads)


class Sweeper:
    """`sweep_once` at start and then every SWEEP_EVERY_SECONDS, in a daemon thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="anb-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sweep_once(self.settings)
            except Exception:  # a failed sweep is retried at the next round
                log.exception("sweep failed")
            self._stop.wait(SWEEP_EVERY_SECONDS)
