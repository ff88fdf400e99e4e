"""Jobs on Amazon SQS (or any endpoint speaking its API, such as a local emulator)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # boto3-stubs' SQS types: for the type checker only
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef


class SqsQueue:
    def __init__(self, queue_url: str, client: SQSClient) -> None:
        self.queue_url = queue_url
        self.client = client

    def send(self, job: dict[str, Any]) -> str:
        """Send a job, with its task id as the correlation id that the worker logs carry."""
        attributes: dict[str, MessageAttributeValueTypeDef] = {}
        if job.get("task_id"):
            attributes["correlation_id"] = {"DataType": "String", "StringValue": job["task_id"]}
        response = self.client.send_message(
            QueueUrl=self.queue_url, MessageBody=json.dumps(job), MessageAttributes=attributes
        )
        return response["MessageId"]

    def check(self) -> None:
        self.client.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])
