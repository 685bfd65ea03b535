"""The run frame: Lambda's time budget, pacing, parallel work, the hand-off."""

import functools
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from ebs_snapshots.common.aws import Item, Unreachable, make_client
from ebs_snapshots.common.budget import (
    MIN_START_S,
    Budget,
    Client,
    LambdaContext,
    OutOfTime,
    too_short,
)
from ebs_snapshots.common.events import (
    event_dry_run,
    event_key,
    read_event,
    resolve_region,
    utc_today,
)
from ebs_snapshots.common.reporting import Summary

# EC2 meters each account and region with token buckets (EC2 "Request throttling"):
# operation -> (bucket, its size, refill per second). A run spends PACE_SHARE of a bucket's
# size and refill, so that it neither meets RequestLimitExceeded nor empties a bucket the
# account's other callers share.
BUCKETS: dict[str, tuple[str, float, float]] = {
    "CreateSnapshot": ("snapshots", 100, 5),
    "CreateSnapshots": ("snapshots", 100, 5),
    "DeleteSnapshot": ("snapshots", 100, 5),
    "CopySnapshot": ("mutating", 50, 5),
    "LockSnapshot": ("mutating", 50, 5),
    "CreateVolume": ("mutating", 50, 5),
    "DeleteVolume": ("mutating", 50, 5),
    "ModifySnapshotTier": ("mutating", 50, 5),
    "RestoreSnapshotTier": ("mutating", 50, 5),
    "CreateTags": ("tags", 100, 10),
    "DeleteTags": ("tags", 100, 10),
}
PACE_SHARE = 0.9
WORKERS = 4  # calls in flight at once: enough to reach EC2's rates when latency is high


class Pacer:
    """Client-side token buckets, one per region and EC2 bucket, shared by a run's threads.

    A call takes a token before each attempt, waiting for it if need be; a throttled answer
    means the account's bucket is emptier than ours thinks (other callers), so ours empties.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[
            tuple[str, str], list[float]
        ] = {}  # (region, bucket) -> [tokens, time of last refill]

    def guard(self, client: Client) -> Client:
        region = client.meta.region_name
        for operation in BUCKETS:
            client.meta.events.register_first(
                f"before-send.ec2.{operation}", functools.partial(self._take, region, operation)
            )
        client.meta.events.register("needs-retry.ec2", functools.partial(self._throttled, region))
        return client

    def _bucket(self, region: str, operation: str) -> tuple[list[float], float]:
        name, size, rate = BUCKETS[operation]
        size, rate = size * PACE_SHARE, rate * PACE_SHARE
        bucket = self._buckets.setdefault((region, name), [size, time.monotonic()])
        now = time.monotonic()
        bucket[0] = min(size, bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now
        return bucket, rate

    def _take(self, region: str, operation: str, **kwargs: Any) -> None:
        with self._lock:
            bucket, rate = self._bucket(region, operation)
            bucket[0] -= 1  # a reservation: whoever drives the bucket below zero waits its turn
            wait = -bucket[0] / rate
        if wait > 0:
            time.sleep(wait)

    def _throttled(
        self,
        region: str,
        response: tuple[Any, dict[str, Any]] | None = None,
        operation: Any = None,
        **kwargs: Any,
    ) -> None:
        code = (response or (None, {}))[1].get("Error", {}).get("Code")
        if code == "RequestLimitExceeded" and operation.name in BUCKETS:
            with self._lock:
                bucket, _ = self._bucket(region, operation.name)
                bucket[0] = min(bucket[0], 0)


def in_parallel(
    items: Iterable[Item],
    work: Callable[[Item], object],
    budget: Budget,
    failed: Callable[[Item, Exception], object],
) -> tuple[int, int]:
    """work(item) for each item, WORKERS at a time, until Lambda time runs short.

    Any exception but OutOfTime from work(item), a bug of ours included, is that item's
    failure: failed(item, exception) records it and every other item is still done. Items
    may be a generator, read only as workers come free; if reading raises OutOfTime, no
    more work starts (the caller knows whether its generator finished), and any other
    exception from reading is raised once the started work is over, as is one from
    failed() itself (so that no failure goes unrecorded). Returns (started, stopped): items
    started, and how many of those OutOfTime stopped.
    """
    slots, lock = threading.Semaphore(WORKERS), threading.Lock()
    tally = {"started": 0, "stopped": 0}
    unrecorded: list[Exception] = []  # what failed() itself raised

    def task(item: Item) -> None:
        try:
            if stopped_by_time(item, work, failed, unrecorded):
                with lock:
                    tally["stopped"] += 1
        finally:
            slots.release()

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        for item in while_time_left(iter(items), budget, slots):
            tally["started"] += 1
            pool.submit(task, item)
    if unrecorded:
        raise unrecorded[0]
    return tally["started"], tally["stopped"]


def stopped_by_time(
    item: Item,
    work: Callable[[Item], object],
    failed: Callable[[Item, Exception], object],
    unrecorded: list[Exception],
) -> bool:
    """in_parallel's work(item), on a worker: whether OutOfTime stopped it. Any other
    exception is the item's failure, failed(item, exception); one from failed() itself is
    added to ``unrecorded``."""
    try:
        work(item)
    except OutOfTime:
        return True
    except Exception as exc:
        try:
            failed(item, exc)
        except Exception as lost:
            unrecorded.append(lost)
    return False


def while_time_left(
    items: Iterator[Item], budget: Budget, slots: threading.Semaphore
) -> Iterator[Item]:
    """in_parallel's items, each once a worker slot is free (taken for it), until the budget
    runs low or the items end (OutOfTime or StopIteration from reading them: the slot is
    given back, and no more). Any other exception from reading gives the slot back and is
    raised."""
    while True:
        slots.acquire()
        try:
            if budget.low():
                raise OutOfTime("stop starting")
            item = next(items)
        except (OutOfTime, StopIteration):
            slots.release()
            return
        except BaseException:
            slots.release()
            raise
        yield item


def hand_off(
    context: LambdaContext,
    event: Mapping[str, Any],
    summary: Summary,
    done_here: int,
    left: int | None = None,
    carry: Mapping[str, Any] | None = None,
) -> None:
    """Out of time: invoke this same function again, asynchronously, on the same event id,
    so the rest (``left`` items, when known) is done there; ``carry``, added to the event,
    tells it what is done (Describe calls are eventually consistent: what this invocation
    just made may not be listed there yet). Without progress here, fail instead, so that a
    run that cannot move never chains invocations forever."""
    rest = f"{left} left" if left is not None else "the rest"
    if not done_here:
        summary.fail(summary.region, f"out of Lambda time before any progress; {rest} not done")
        return
    payload = json.dumps({**event, "id": summary.data["event_id"], **(carry or {})})
    arn = context.invoked_function_arn
    try:
        make_client("lambda", summary.region, Budget(context)).invoke(
            FunctionName=arn, InvocationType="Event", Payload=payload
        )
    except Exception as exc:  # the run fails: Lambda retries the event, which skips what is done
        summary.error(arn, exc, f"could not hand {rest} over to a new invocation")
        return
    counted = {} if left is None else {"count": left}
    summary.add(
        "handed_off",
        "WARN",
        id=arn,
        **counted,
        reason="Lambda time ran short; a new invocation on the same event does the rest",
    )


def run_job(
    job: str,
    body: Callable[[dict[str, Any], LambdaContext, Summary, Budget, datetime], object],
    event: object,
    context: LambdaContext,
    region: str | None = None,
    now: datetime | None = None,
    check: Callable[[dict[str, Any]], object] | None = None,
) -> dict[str, Any]:
    """The frame of every run: read the event, then body(event, context, summary, budget, now).

    An event that cannot be read (not a JSON object, a dry_run that is not yes/no, what
    ``check`` refuses) raises ValueError before anything is done. Otherwise the summary
    line and its metrics are written whatever happens: a body that raises (it could not
    list the region's resources, or a bug of ours) is one failure saying why, and a run
    that starts with too little Lambda time does nothing and fails at once. Returns the
    summary, or raises JobFailed once it is written if anything failed (or, on the command
    line, Unreachable: AWS could not be reached at all).
    """
    region = resolve_region(region)
    now = now or datetime.now(UTC)
    event, dry_run = read_or_refuse(job, event, check, region, now)
    summary = Summary(job, region, utc_today(now), dry_run, event_key(event, context))
    budget = Budget(context)
    if budget.left() < MIN_START_S:
        who = getattr(context, "invoked_function_arn", None) or job
        summary.fail(who, too_short(budget.left()))
        return summary.result()
    try:
        body(event, context, summary, budget, now)
    except Unreachable as exc:  # the command line's: its summary line, then its one line
        summary.error(region, exc, "AWS unreachable, the run stopped")
        summary.finish()
        raise
    except Exception as exc:  # listing the region failed, or a bug: the summary says which
        summary.error(region, exc, "the run stopped")
    return summary.result()


def read_or_refuse(
    job: str,
    event: object,
    check: Callable[[dict[str, Any]], object] | None,
    region: str,
    now: datetime,
) -> tuple[dict[str, Any], bool]:
    """run_job's event, read: (the event, its dry_run). One it cannot read raises ValueError
    once the run's summary line (one failure: the event refused) has said why."""
    try:
        read = read_event(event)
        dry_run = event_dry_run(read)
        if check:
            check(read)
    except ValueError as exc:
        refused = Summary(job, region, utc_today(now), False)
        refused.fail("event", f"event refused: {exc}")
        refused.finish()
        raise
    return read, dry_run
