"""The invocation: its event's fields, its region, today's date."""

import os
import time
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import boto3

from ebs_snapshots.common.budget import LambdaContext
from ebs_snapshots.common.reporting import Summary
from ebs_snapshots.common.tags import parse_bool


def read_event(event: object) -> dict[str, Any]:
    """The event as a dict (None is {}); anything but a JSON object is refused."""
    if event is None:
        return {}
    if not isinstance(event, dict):
        shown = repr(event)[:80]
        raise ValueError(f"the event must be a JSON object, not {type(event).__name__} {shown}")
    return event


def event_dry_run(event: Mapping[str, Any]) -> bool:
    """Strict: a dry_run the job cannot read stops it before it changes anything."""
    flag = parse_bool(event.get("dry_run", False))
    if flag is None:
        raise ValueError(f"event dry_run must be true or false, not {event['dry_run']!r}")
    return flag


def event_key(event: Mapping[str, Any], context: LambdaContext) -> str | None:
    """What identifies this piece of work across deliveries: the event's id (EventBridge
    may deliver an event twice), else the Lambda request id (kept when Lambda retries a
    failed run), else nothing (a command-line run). Cut to fit a tag value."""
    key = event.get("id") or getattr(context, "aws_request_id", None)
    return str(key)[:256] if key else None


def resolve_region(region: str | None = None) -> str:
    """Explicit, else AWS_REGION (Lambda sets it), else AWS_DEFAULT_REGION or the profile."""
    region = region or os.environ.get("AWS_REGION") or boto3.session.Session().region_name
    if not region:
        raise ValueError("no region: set AWS_REGION (or AWS_DEFAULT_REGION, or --region)")
    return region


SCHEDULED = "Scheduled Event"  # EventBridge's detail-type of a scheduled event


def scheduled_time(event: Mapping[str, Any]) -> datetime | None:
    """The time a scheduled event was scheduled for, or None (not a scheduled event, no
    time, one that cannot be read, or one without a zone: not trusted)."""
    if event.get("detail-type") != SCHEDULED:
        return None
    try:
        when = datetime.fromisoformat(str(event.get("time")).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else None


def utc_today(now: datetime | None = None) -> date:
    return (now or datetime.now(UTC)).astimezone(UTC).date()


def clock_of(now: datetime, summary: Summary) -> datetime:
    """The time now, on the run's clock: ``now`` (its start, injectable) plus the time since
    the summary was started with it."""
    return now + timedelta(seconds=time.monotonic() - summary.started)
