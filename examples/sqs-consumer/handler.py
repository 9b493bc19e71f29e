"""An example AWS Lambda consumer of the SQS destination (docs/forwarding-sqs.md).

Each SQS message is one archive record (the envelope line, docs/envelope-format.md). The handler
takes the exact body Stripe sent (the record's `raw`, or for an oversize pointer the S3 object it
names, checked against its length and SHA-256), verifies the original `Stripe-Signature` with the
official Stripe SDK, and hands the event to `process`. Any failure is reported for that message
only (`ReportBatchItemFailures`), so SQS redelivers it and, after the queue's maxReceiveCount,
moves it to the dead-letter queue.

Environment: STRIPE_WEBHOOK_SECRET, the endpoint's signing secret(s) (`whsec_…`, several
comma-separated during a rotation). Runtime: Python 3.11+ with the `stripe` package (boto3 is in
the Lambda runtime; needed only for oversize pointers).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any

import stripe

log = logging.getLogger()
log.setLevel(logging.INFO)


def secrets() -> list[str]:
    return [s for s in os.environ["STRIPE_WEBHOOK_SECRET"].split(",") if s]


def exact_body(record: dict[str, Any]) -> str:
    """The exact body Stripe sent, from the record or the oversize object it points to."""
    pointer = record.get("oversize")
    if pointer is None:
        raw = record.get("raw")
        if raw is None:
            raise ValueError("no raw body: the service runs with ENVELOPE_INCLUDE_RAW=false")
        return raw
    import boto3  # only for oversize pointers

    body = boto3.client("s3").get_object(Bucket=pointer["bucket"], Key=pointer["key"])["Body"].read()
    if len(body) != pointer["bytes"] or hashlib.sha256(body).hexdigest() != pointer["sha256"]:
        raise ValueError(f"s3://{pointer['bucket']}/{pointer['key']} is not the archived body")
    return body.decode("utf-8")


def verified_event(message_body: str) -> stripe.Event:
    """The Stripe event of one SQS message, its original signature verified."""
    record = json.loads(message_body)
    body, signature = exact_body(record), record.get("signature")
    if signature is None:
        raise ValueError("no signature: the service runs with ENVELOPE_INCLUDE_RAW=false")
    error: Exception | None = None
    for secret in secrets():
        try:
            # tolerance=None: the signature may be hours old by the time the message is read; the
            # queue is your own, and duplicates are dropped on the event id (see `process`).
            return stripe.Webhook.construct_event(body, signature, secret, tolerance=None)
        except stripe.SignatureVerificationError as e:
            error = e
    raise ValueError(f"event {record.get('id')}: signature does not verify") from error


def process(event: stripe.Event) -> None:
    """Your code. Delivery is at least once: make it idempotent on `event.id`."""
    log.info("verified %s %s", event.id, event.type)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    failures = []
    for message in event["Records"]:
        try:
            process(verified_event(message["body"]))
        except Exception:
            log.exception("message %s not processed", message["messageId"])
            failures.append({"itemIdentifier": message["messageId"]})
    return {"batchItemFailures": failures}
