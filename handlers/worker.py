"""Lambda entry point of the worker: the SQS event source calls it with a batch of jobs and
retries only the records it names in `batchItemFailures` (ReportBatchItemFailures)."""

from anb.worker.batch import handle_batch as handler

__all__ = ["handler"]
