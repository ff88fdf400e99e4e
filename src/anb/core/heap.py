"""A long-running API process and the garbage collector.

An API process makes ~110 000 objects at start-up (the modules, classes and functions of
FastAPI, SQLAlchemy, Pydantic, boto3, redis and ours) that live as long as it does.
CPython's full collection (its oldest generation) walks every one of them each time it runs,
and it runs every few seconds under load: 90 ms idle on the 2-core machine of
docs/capacity.md and 85-300 ms under `scripts/bench_rankings`' mix, during which the whole
process (its event loop and every thread) stands still. Those pauses were most of the
benchmark's slowest 5 % of requests. `gc.freeze()` (the Python documentation suggests it for
processes that fork; it serves here for the pause) takes the objects alive at that moment
out of every later collection, so a full collection walks only what was made since.
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> int:
    """Collect once (start-up garbage is freed, not frozen), then freeze what is left:
    call once the app is built, before serving. Answers how many objects are frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
