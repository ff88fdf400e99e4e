"""Structured logs and metrics of the worker (AWS Lambda Powertools).

Logs are JSON lines carrying the keys of the job in hand (`video_id`, `task_id`); metrics
are CloudWatch Embedded Metric Format lines on standard output, which CloudWatch turns into
metrics under the `ANB` namespace where it reads that output: on Lambda, and under `anb poll`
on EC2 (journald, then the CloudWatch agent). `anb serve` leaves them out of its console (see
`keep_metrics_off_the_console`); POWERTOOLS_METRICS_DISABLED says otherwise either way.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

NAMESPACE = "ANB"
SERVICE = "anb-worker"
METRICS_DISABLED = "POWERTOOLS_METRICS_DISABLED"


class _CurrentStdout:
    """Standard output as it is at each write (not as it was when logging was set up)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@lru_cache
def worker_logger() -> Logger:
    """The worker's JSON logger; the `anb` package's standard loggers write through it too."""
    logger = Logger(service=SERVICE, logger_handler=logging.StreamHandler(_CurrentStdout()))
    copy_config_to_registered_loggers(source_logger=logger, include={"anb"})
    return logger


@contextmanager
def job_log_keys(**keys: str) -> Iterator[None]:
    """Add keys to every log line this thread writes while the block runs."""
    logger = worker_logger()
    logger.thread_safe_append_keys(**keys)
    try:
        yield
    finally:
        logger.thread_safe_remove_keys(list(keys))


@lru_cache
def worker_metrics() -> Metrics:
    return Metrics(namespace=NAMESPACE, service=SERVICE)


def count(name: str, value: float = 1) -> None:
    worker_metrics().add_metric(name=name, unit=MetricUnit.Count, value=value)


def measure(name: str, value: float, unit: MetricUnit) -> None:
    worker_metrics().add_metric(name=name, unit=unit, value=value)


def keep_metrics_off_the_console() -> None:
    """No EMF lines where a person reads standard output and no CloudWatch does (`anb serve`),
    unless POWERTOOLS_METRICS_DISABLED=false asks for them."""
    os.environ.setdefault(METRICS_DISABLED, "true")


def flush_metrics() -> None:
    metrics = worker_metrics()
    if not metrics.metric_set:
        return
    if is_metrics_disabled():  # Powertools then keeps them: they would pile up in memory
        metrics.clear_metrics()
    else:
        metrics.flush_metrics()
