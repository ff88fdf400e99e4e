"""Gunicorn settings of the API: `gunicorn -c python:anb.gunicorn_conf 'anb.api:create_app()'`.

Sizing, per instance: one Uvicorn worker per CPU (`GUNICORN_WORKERS`; each runs one event
loop and its blocking work in small thread pools, see `anb.core.concurrency`), and each worker
holds at most `ANB_DB_POOL_SIZE` PostgreSQL connections. A deployment must keep
instances x workers x ANB_DB_POOL_SIZE (plus the video workers' connections) below the
database's `max_connections` with a margin; docs/api.md ("Under load") gives the figures for RDS.
"""

from __future__ import annotations

import os
from typing import Any

from anb.core.heap import freeze_startup_objects

worker_class = "uvicorn_worker.UvicornWorker"
workers = int(os.environ.get("GUNICORN_WORKERS") or os.cpu_count() or 1)
graceful_timeout = 30  # as long as the load balancer's deregistration delay
timeout = 120
forwarded_allow_ips = ""  # the server believes no proxy: the app applies ANB_TRUSTED_PROXIES
keepalive = 125  # seconds; longer than the load balancer's idle timeout (120 s), so an idle
# connection is always closed by the balancer first, never by Gunicorn under a new request


def post_worker_init(worker: Any) -> None:
    """Each worker has built the app: its start-up objects leave the collector's walks
    (`anb.core.heap`)."""
    freeze_startup_objects()
