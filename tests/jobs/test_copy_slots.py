"""The copier's stay: a scheduled sweep that had to defer copies waits for AWS's 20 copy
slots of a destination to free and starts the next copy, oldest first, as each one does."""

import time
import types
from datetime import timedelta

import pytest
from conftest import (
    DEST,
    DEST2,
    NOW,
    REGION,
    ec2,
    make_snapshot,
    moto_snapshot,
    snapshot_details,
    snapshots,
)
from moto.ec2.models.elastic_block_store import EBSBackend

import ebs_snapshot_copier as copier

LATER = "2026-12-03"
SCHEDULED = {
    "version": "0",
    "id": "sweep-1",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "time": NOW.strftime("%Y-%m-%dT%H:%M:%SZ"),
    "detail": {},
}


class Clock:
    """The copier's time: each sleep moves it on and lets ``on_sleep`` change AWS."""

    def __init__(self, on_sleep=lambda: None):
        self.now, self.on_sleep, self.sleeps = 0.0, on_sleep, []

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds
        self.sleeps.append(seconds)
        self.on_sleep()


@pytest.fixture
def pending_copies(monkeypatch):
    """Copies stay pending (moto completes them at once); returns the copies, in order."""
    started = []
    original = EBSBackend.copy_snapshot

    def copy_snapshot(self, *args, **kwargs):
        snapshot = original(self, *args, **kwargs)
        snapshot.status = "pending"
        started.append(snapshot)
        return snapshot

    monkeypatch.setattr(EBSBackend, "copy_snapshot", copy_snapshot)
    return started


def primaries(count, dests=DEST):
    ids = []
    for n in range(count):
        tags = {"Type": "Automated", "DeleteOn": LATER, "Copy_Dest": dests, "Copy_State": "pending"}
        sid = make_snapshot(tags)
        moto_snapshot(sid).start_time = (NOW - timedelta(hours=3, minutes=count - n)).replace(
            tzinfo=None
        )
        ids.append(sid)
    return ids  # oldest first


def complete_oldest(started, per_sleep=1):
    def on_sleep():
        for snapshot in [s for s in started if s.status == "pending"][:per_sleep]:
            snapshot.status = "completed"

    return on_sleep


def in_flight(region=DEST):
    return sum(1 for s in snapshot_details(region).values() if s["State"] == "pending")


def run_with(monkeypatch, clock, event=SCHEDULED, context=None):
    fake = types.SimpleNamespace(monotonic=clock.monotonic, sleep=clock.sleep, time=time.time)
    monkeypatch.setattr(copier, "time", fake)
    return copier.run(event, context, region=REGION, now=NOW)


def sources_of_copies(region=DEST):
    return [tags["Source_SnapshotId"] for tags in snapshots(region).values()]


def test_a_scheduled_sweep_starts_each_deferred_copy_as_a_slot_frees(monkeypatch, pending_copies):
    monkeypatch.setattr(copier, "WORKERS", 1)  # the sweep's own copies start in order too
    ids = primaries(25)
    peak = []

    def on_sleep():
        complete_oldest(pending_copies)()
        peak.append(in_flight())

    clock = Clock(on_sleep)
    result = run_with(monkeypatch, clock)
    assert [s.id for s in pending_copies] == [
        next(sid for sid, t in snapshots(DEST).items() if t["Source_SnapshotId"] == p) for p in ids
    ]  # oldest primary first, the five deferred ones too
    assert sorted(sources_of_copies()) == sorted(ids)  # each once
    assert clock.sleeps == [copier.STAY_POLL_S] * 5  # one slot frees a poll
    assert max(peak) <= copier.COPIES_IN_FLIGHT - 1  # a freed slot, never a 21st copy
    assert result["counts"]["copied"] == 25 and "deferred" not in result["counts"]
    assert result["failures"] == []


def test_the_stay_ends_copy_stay_minutes_after_the_scheduled_time(monkeypatch, pending_copies):
    primaries(22)  # two wait; no copy ever completes
    clock = Clock()
    result = run_with(monkeypatch, clock)
    assert sum(clock.sleeps) <= copier.STAY_MINUTES * 60
    assert sum(clock.sleeps) > copier.STAY_MINUTES * 60 - 2 * copier.STAY_POLL_S
    assert len(snapshots(DEST)) == 20
    assert [(d["id"], d["count"]) for d in result["deferred"]] == [(DEST, 2)]


def test_the_time_the_sweep_took_before_the_stay_counts(monkeypatch, pending_copies):
    primaries(22)
    clock = Clock()
    execute = copier.execute

    def slow_execute(*args):  # the sweep's own copies take five minutes
        clock.now += 300
        return execute(*args)

    monkeypatch.setattr(copier, "execute", slow_execute)
    run_with(monkeypatch, clock)
    assert 300 < clock.now <= copier.STAY_MINUTES * 60


def test_a_late_delivery_stays_less_and_one_after_the_stay_not_at_all(monkeypatch, pending_copies):
    primaries(21)
    late = {**SCHEDULED, "time": (NOW - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")}
    clock = Clock()
    run_with(monkeypatch, clock, late)
    assert 0 < sum(clock.sleeps) <= 2 * 60  # until 12 minutes after its scheduled time
    retried = {**SCHEDULED, "time": (NOW - timedelta(minutes=13)).strftime("%Y-%m-%dT%H:%M:%SZ")}
    clock = Clock()
    run_with(monkeypatch, clock, retried)
    assert clock.sleeps == []


@pytest.mark.parametrize("event", [{}, {"dry_run": True}], ids=["command line", "dry run"])
def test_only_a_scheduled_sweep_stays(monkeypatch, pending_copies, event):
    primaries(21)
    clock = Clock()
    result = run_with(monkeypatch, clock, {**SCHEDULED, **event} if event else event)
    assert clock.sleeps == []
    assert sum(d["count"] for d in result["deferred"]) == 1


def test_a_notified_snapshot_does_not_stay(monkeypatch, pending_copies):
    *_, newest = primaries(21)
    notified = {
        "detail-type": "EBS Snapshot Notification",
        "source": "aws.ec2",
        "detail": {"event": "createSnapshot", "result": "succeeded", "snapshot_id": newest},
    }
    run_with(monkeypatch, Clock(), {**SCHEDULED, "id": "first"})  # fills the 20 slots
    clock = Clock()
    result = run_with(monkeypatch, clock, notified)
    assert clock.sleeps == [] and result["counts"]["deferred"] == 1


def test_copy_stay_minutes_zero_is_todays_sweep(monkeypatch, pending_copies):
    monkeypatch.setenv("COPY_STAY_MINUTES", "0")
    primaries(21)
    clock = Clock()
    result = run_with(monkeypatch, clock)
    assert clock.sleeps == [] and result["counts"]["deferred"] == 1


def test_an_unreadable_stay_warns_and_uses_the_default(monkeypatch, pending_copies):
    monkeypatch.setenv("COPY_STAY_MINUTES", "forever")
    primaries(21)
    clock = Clock()
    result = run_with(monkeypatch, clock)
    assert sum(clock.sleeps) > 10 * 60
    assert any(w["id"] == "COPY_STAY_MINUTES" for w in result["warnings"])


def test_the_stay_leaves_lambda_time_for_the_summary(monkeypatch, pending_copies):
    primaries(21)
    clock = Clock()
    deadline = 200.0  # seconds of Lambda time at the start
    context = types.SimpleNamespace(
        get_remaining_time_in_millis=lambda: (deadline - clock.now) * 1000,
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:copier",
        aws_request_id="r-1",
    )
    run_with(monkeypatch, clock, context=context)
    assert clock.now <= deadline - copier.STOP_MARGIN_S


def test_a_copy_made_meanwhile_by_another_run_is_not_made_twice(monkeypatch, pending_copies, api):
    ids = primaries(21)

    def another_run_copies_the_last():
        if len(pending_copies) == 20:  # at the first poll: the notified run of ids[-1]
            ec2(DEST).copy_snapshot(
                SourceRegion=REGION,
                SourceSnapshotId=ids[-1],
                TagSpecifications=[
                    {
                        "ResourceType": "snapshot",
                        "Tags": [
                            {"Key": "Type", "Value": "Automated"},
                            {"Key": "Source_SnapshotId", "Value": ids[-1]},
                            {"Key": "Source_Region", "Value": REGION},
                        ],
                    }
                ],
            )
        complete_oldest(pending_copies, per_sleep=2)()

    result = run_with(monkeypatch, Clock(another_run_copies_the_last))
    assert sorted(sources_of_copies()) == sorted(ids)  # one copy each
    assert result["counts"]["copied"] == 20 and "deferred" not in result["counts"]


def test_a_destination_that_fails_while_waiting_is_left_to_the_next_sweep(
    monkeypatch, pending_copies, api
):
    primaries(21, f"{DEST},{DEST2}")
    polls = []

    def on_sleep():
        polls.append(1)
        complete_oldest(pending_copies, per_sleep=40)()

    api.fail(
        "DescribeSnapshots",
        "InternalError",
        when=lambda params, region: region == DEST and polls,
    )
    result = run_with(monkeypatch, Clock(on_sleep))
    api.faults.clear()
    assert len(snapshots(DEST)) == 20 and len(snapshots(DEST2)) == 21
    assert any(
        w["id"] == DEST and "waiting for copy slots" in w["reason"] for w in result["warnings"]
    )
    assert [(d["id"], d["count"]) for d in result["deferred"]] == [(DEST, 1)]


def test_a_slot_taken_by_someone_else_waits_for_the_next_poll(monkeypatch, pending_copies, api):
    ids = primaries(22)
    refusals = []

    def first_stay_copy_refused(params, region):
        if len(pending_copies) == 20 and not refusals:
            refusals.append(params["SourceSnapshotId"])
            return True
        return False

    api.fail("CopySnapshot", "ResourceLimitExceeded", when=first_stay_copy_refused)
    result = run_with(monkeypatch, Clock(complete_oldest(pending_copies, per_sleep=2)))
    assert refusals == [ids[20]]
    assert sorted(sources_of_copies()) == sorted(ids)
    assert result["failures"] == []
