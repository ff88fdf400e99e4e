"""The one batch handler: Lambda calls it with an SQS event; the EC2 poller and the
embedded worker call it with records of the same shape."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from anb.cache import get_cache
from anb.core import db, observability
from anb.core.settings import get_settings
from anb.storage import get_storage
from anb.worker.jobs import Job, Outcome, Report, Worker

METRIC_NAMES = {Outcome.processed: "VideosProcessed", Outcome.failed: "VideosFailed"}


def _worker() -> Worker:
    return Worker(settings=get_settings(), storage=get_storage(), cache=get_cache())


def handle_batch(event: dict[str, Any], context: Any = None) -> PartialItemFailureResponse:
    """Process every record; answer the ids of those to retry (`batchItemFailures`)."""
    db.use_application_name("anb-worker")
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    try:
        return process_partial_response(
            event=event, record_handler=_handle_record, processor=processor, context=context
        )
    finally:
        observability.flush_metrics()


def _handle_record(record: SQSRecord) -> str:
    logger = observability.worker_logger()
    attribute = record.message_attributes["correlation_id"]
    correlation = (attribute.string_value if attribute else None) or ""
    with observability.job_log_keys(message_id=record.message_id, correlation_id=correlation):
        try:
            job = Job.parse(record.body)
        except ValueError:
            logger.error("poison message: the body is not a job")
            observability.count("PoisonMessages")
            raise
        attempt = int(record.attributes.approximate_receive_count or 1)
        with observability.job_log_keys(video_id=job.video_id, task_id=job.task_id):
            try:
                report = _worker().handle(job, attempt=attempt)
            except Exception:
                logger.exception("attempt %d failed; the job will be retried", attempt)
                raise
            logger.info("job done: %s", report.outcome.value)
            _record_metrics(report)
            return report.outcome.value


def _record_metrics(report: Report) -> None:
    if report.outcome in METRIC_NAMES:
        observability.count(METRIC_NAMES[report.outcome])
    if report.outcome is Outcome.processed:
        observability.measure("ProcessingSeconds", report.seconds, MetricUnit.Seconds)
        observability.measure("InputBytes", report.input_bytes, MetricUnit.Bytes)
        observability.measure("OutputBytes", report.output_bytes, MetricUnit.Bytes)
