"""The job queue interface. Jobs are small JSON objects: {"video_id", "task_id"}."""

from __future__ import annotations

from typing import Any, Protocol


class JobQueue(Protocol):
    def send(self, job: dict[str, Any]) -> str:
        """Enqueue a job; returns the queue's message id."""

    def check(self) -> None:
        """Raise if the queue cannot be reached (readiness)."""
