"""EC2's 20 copy slots a region: oldest first, waiting for a slot, what is deferred."""

import os
import threading
import time
from datetime import timedelta

from ebs_snapshots.common.aws import describe_error, make_client
from ebs_snapshots.common.budget import STOP_MARGIN_S, OutOfTime
from ebs_snapshots.common.events import SCHEDULED, clock_of, scheduled_time
from ebs_snapshots.common.locking import RELOCK, lock_snapshot
from ebs_snapshots.common.runtime import Pacer, in_parallel
from ebs_snapshots.common.tags import COPY_LAG_ENV, COPY_LAG_HOURS, count_or, env_hours
from ebs_snapshots.copier.copies import copy_snapshot, keep_forever
from ebs_snapshots.copier.plan import (
    COPIES_IN_FLIGHT,
    NOTIFICATION,
    existing_copies,
)

# A scheduled sweep that had to defer copies stays until this long after the time it was
# scheduled for, starting the next copy as each slot frees: with sweeps every 15 minutes,
# slots stay busy while copies wait. It ends before the next sweep starts; 0: no stay.
STAY_ENV, STAY_MINUTES, MAX_STAY_MINUTES = "COPY_STAY_MINUTES", 12, 14
STAY_POLL_S = 15  # one look at each waiting destination's copies in flight, this often


def stay_until(event, now):
    """(when a sweep stops waiting for copy slots, or None; warning or None). Only a
    scheduled sweep stays, until COPY_STAY_MINUTES after the time it was scheduled for: a
    late or retried delivery stays less, so that it never runs beside the next sweep."""
    if event.get("detail-type") != SCHEDULED:
        return None, None  # a notified snapshot, a command-line run: no stay
    raw = os.environ.get(STAY_ENV, "").strip()
    minutes, problem = (
        (0, None) if raw == "0" else count_or(raw or None, STAY_ENV, MAX_STAY_MINUTES, STAY_MINUTES)
    )
    scheduled = scheduled_time(event) or now
    return (min(scheduled, now) + timedelta(minutes=minutes) if minutes else None), problem


def notified_snapshot(event):
    """(snapshot id, None) for an EBS Snapshot Notification of a completed CreateSnapshot;
    (id or None, why nothing is copied) for one about something else, or without a snapshot
    id; (None, None) for any other event (a sweep)."""
    if event.get("detail-type") != NOTIFICATION:
        return None, None
    detail = event.get("detail")
    detail = detail if isinstance(detail, dict) else {}
    sid = str(detail.get("snapshot_id") or "").rsplit("/", 1)[-1] or None
    if (detail.get("event"), detail.get("result")) != ("createSnapshot", "succeeded"):
        return sid, f"notification of {detail.get('event')} {detail.get('result')}: nothing to copy"
    if sid is None:
        return None, f"an {NOTIFICATION} without a snapshot_id: nothing to copy"
    return sid, None


def execute(work, deferred, summary, budget):
    """Copy and tag, WORKERS at a time; returns (started, stopped by OutOfTime).

    Should a destination still refuse a copy (ResourceLimitExceeded: copies from elsewhere
    took the slots), its remaining copies wait for the next run; KeepForever tags go on.
    """
    lock, refused = threading.Lock(), set()

    def act(entry):
        dest, dest_ec2, (kind, primary, *rest) = entry
        if kind == "lock":  # primary: the id of a copy whose lock is missing
            lock_snapshot(dest_ec2, primary, rest[0], summary, dest_region=dest, reason=RELOCK)
        elif kind == "keep":
            keep_forever(dest_ec2, dest, primary, rest[0], summary)
        elif dest in refused or not copy_snapshot(dest_ec2, dest, primary, summary):
            with lock:
                refused.add(dest)
                deferred.setdefault(dest, []).append(primary)

    def failed(entry, exc):
        dest, _, (kind, primary, *rest) = entry
        rid = primary if kind == "lock" else rest[0] if rest else primary["id"]
        summary.error(rid, exc, dest_region=dest)

    return in_parallel(work, act, budget, failed)


def stay(deferred, summary, budget, now, until):
    """Wait for copy slots and fill each as it frees, oldest primary first, until ``until``
    (or Lambda time runs short): every STAY_POLL_S, one look at each waiting destination's
    copies in flight. What is still waiting at the end is the next sweep's."""
    pacer = Pacer()
    waiting = {dest: make_client("ec2", dest, budget, pacer) for dest in deferred}
    while waiting:
        clock = clock_of(now, summary) + timedelta(seconds=STAY_POLL_S)
        if clock > until or budget.left() < STOP_MARGIN_S + STAY_POLL_S:
            return
        time.sleep(STAY_POLL_S)
        for dest in sorted(waiting):
            readable = fill_slots(waiting[dest], deferred[dest], summary)
            if not deferred[dest]:
                del deferred[dest]
            if not (readable and dest in deferred):
                del waiting[dest]


def fill_slots(dest_ec2, queue, summary):
    """Start as many copies from the head of ``queue`` (removed from it once started or
    failed) as the destination has free slots. False: stop waiting for this destination
    (it cannot be read; a warning, and the next sweep tries again)."""
    dest = dest_ec2.meta.region_name
    heads = [p["id"] for p in queue[:COPIES_IN_FLIGHT]]  # no more can start at once
    try:
        # Another run (a notified snapshot's, with no reserved concurrency) may have copied
        # one of them since this sweep looked: a second copy would take a slot for nothing.
        made, in_flight, *_ = existing_copies(dest_ec2, summary.region, heads)
    except OutOfTime:
        raise
    except Exception as exc:
        summary.warn(dest, f"stopped waiting for copy slots there: {describe_error(exc)}")
        return False
    for primary in queue[: max(COPIES_IN_FLIGHT - in_flight, 0)]:
        try:
            if primary["id"] not in made and not copy_snapshot(dest_ec2, dest, primary, summary):
                break  # ResourceLimitExceeded: someone else's copy took the slot
        except OutOfTime:
            raise
        except Exception as exc:  # a network failure, a bug of ours: this copy only
            summary.error(primary["id"], exc, dest_region=dest)
        queue.remove(primary)
    return True


def report_deferred(deferred, summary, now):
    """One item per destination with copies left for the next sweep. Copies deferred for
    longer than the copy allowance (COPY_MAX_LAG_HOURS) mean the destination's 20 copy
    slots never free up in time: a warning, and their volumes count as unprotected."""
    lag, problem = env_hours(COPY_LAG_ENV, COPY_LAG_HOURS)
    if problem:
        summary.warn(COPY_LAG_ENV, problem)
    for dest, primaries in sorted(deferred.items()):
        summary.add(
            "deferred",
            "WARN",
            id=dest,
            count=len(primaries),
            reason=f"{COPIES_IN_FLIGHT} copies already in flight into this region "
            "(AWS's limit); the next run continues",
        )
        summary.count("deferred", len(primaries) - 1)  # one item per region; counts copies
        late = [p for p in primaries if now - p["start"] > lag]
        if late:
            volumes = {p["volume_id"] or p["id"] for p in late}
            hours = f"{lag.total_seconds() / 3600:g}"
            oldest = min(p["start"] for p in late)
            summary.warn(
                dest,
                f"copies into {dest} are more than {hours} h behind: {len(late)} snapshots of "
                f"{len(volumes)} volumes, the oldest from {oldest:%Y-%m-%d %H:%M} UTC, still "
                "wait for a copy slot; those volumes are unprotected there",
            )
            summary.count("unprotected", len(volumes))
