"""The API process's start-up objects are frozen out of the garbage collector's walks."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from anb import gunicorn_conf
from anb.api import create_app
from anb.core.heap import freeze_startup_objects


@pytest.fixture
def unfrozen_afterwards() -> Iterator[None]:
    """An unfrozen heap before and after (a test that loads the Lambda handler, as a cold
    start does, freezes the test process's)."""
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    yield
    gc.unfreeze()


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


@pytest.mark.usefixtures("unfrozen_afterwards")
def test_a_full_collection_walks_only_what_was_made_after_start_up() -> None:
    create_app()
    walked_before = len(gc.get_objects())

    frozen = freeze_startup_objects()

    assert frozen >= walked_before // 2  # the app's modules, classes and functions
    assert len(gc.get_objects()) < walked_before // 20


@pytest.mark.usefixtures("unfrozen_afterwards")
def test_garbage_made_after_the_freeze_is_still_collected() -> None:
    freeze_startup_objects()
    node = _Node()
    gone = weakref.ref(node)
    del node

    gc.collect()

    assert gone() is None


@pytest.mark.usefixtures("unfrozen_afterwards")
def test_garbage_of_start_up_is_freed_not_frozen() -> None:
    node = _Node()
    gone = weakref.ref(node)
    del node

    freeze_startup_objects()

    assert gone() is None


@pytest.mark.usefixtures("unfrozen_afterwards")
def test_each_gunicorn_worker_freezes_once_it_has_built_the_app() -> None:
    gunicorn_conf.post_worker_init(worker=None)

    assert gc.get_freeze_count() > 0
