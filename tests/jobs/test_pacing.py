"""Pacing, copy slots and the worker pool (issue: performance at EC2's own rate limits).

The pacing tests run the real jobs against testkit/ec2sim.py, EC2's token buckets scaled
down (a bucket of 10 refilling 20 a second) so that a run takes about a second.
"""

import contextlib
import json
import time
from collections import Counter
from datetime import timedelta

import pytest
from conftest import DEST, DEST2, NOW, REGION, launch, make_snapshot, moto_snapshot, snapshots

import ebs_snapshot_copier as copier
import ebs_snapshot_creator as creator
import ebs_snapshot_manager as manager
from testkit import ec2sim

SIZE, RATE = 10, 20  # the scaled-down snapshots bucket: EC2's is 100 and 5 a second


@pytest.fixture
def scaled(monkeypatch):
    """EC2's snapshot bucket scaled down, in the simulator and in the jobs' pacer alike."""
    monkeypatch.setitem(ec2sim.BUCKETS, "snapshots", (SIZE, RATE))
    for job in (creator, manager):
        scaled_buckets = {
            op: ("snapshots", SIZE, RATE) for op in ("CreateSnapshot", "DeleteSnapshot")
        }
        monkeypatch.setattr(job, "BUCKETS", scaled_buckets)


def fleet(volumes):
    for _ in range(volumes // 2):
        launch({"Backup": "Yes"}, devices=("/dev/sda1", "/dev/sdb"))


def test_a_paced_creator_meets_almost_no_throttling_and_runs_near_the_floor(scaled):
    fleet(60)
    with ec2sim.simulated_ec2(latency=0) as sim:
        start = time.monotonic()
        result = creator.run({}, None, now=NOW)
        wall = time.monotonic() - start
    assert result["counts"]["created"] == 60 and result["failures"] == []
    assert sim.calls["CreateSnapshot"] - sim.throttled["CreateSnapshot"] == 60
    assert sum(sim.throttled.values()) < 0.1 * sum(sim.calls.values())
    floor = (60 - SIZE) / RATE  # EC2's bucket: the burst at once, then the refill
    assert floor * 0.9 <= wall <= floor * 2 + 1  # it waits for the refill; bench measures how close


def test_without_pacing_the_same_run_is_throttled_much_more(scaled, monkeypatch):
    monkeypatch.setattr(creator, "BUCKETS", {})
    monkeypatch.setattr(time, "sleep", lambda seconds: None)  # botocore's backoff, not waited
    fleet(60)
    # Some may fail when botocore's retries run out: the storm the pacer prevents.
    with ec2sim.simulated_ec2(latency=0) as sim, contextlib.suppress(creator.JobFailed):
        creator.run({}, None, now=NOW)
    assert sum(sim.throttled.values()) > 0.3 * sum(sim.calls.values())


def test_a_paced_manager_deletes_everything_without_failures(scaled):
    due = {make_snapshot({"Type": "Automated", "DeleteOn": "2026-11-01"}) for _ in range(40)}
    with ec2sim.simulated_ec2(latency=0) as sim:
        result = manager.run({}, None, now=NOW)
    assert result["failures"] == [] and not set(snapshots()) & due
    assert sum(sim.throttled.values()) < 0.1 * sum(sim.calls.values())


def test_calls_are_exact_at_scale(scaled):
    """The creator at EC2's page size: one listing call each (volumes: opt-outs and
    Multi-Attach), one CreateSnapshot per volume."""
    fleet(40)
    with ec2sim.simulated_ec2(latency=0) as sim:
        creator.run({"id": "evt"}, None, now=NOW)
    assert dict(sim.calls) == {
        "DescribeRegions": 1,
        "DescribeVolumes": 2,
        "DescribeSnapshots": 2,  # this event's snapshots; those tagged Lock (the lock sweep)
        "DescribeInstances": 1,
        "CreateSnapshot": 40 + sim.throttled["CreateSnapshot"],
    }


# ---- copy slots ---------------------------------------------------------------------------


def in_flight(n, region=DEST):
    """n copies, from another region, still being made in ``region``."""
    for _ in range(n):
        sid = make_snapshot(
            {
                "Type": "Automated",
                "DeleteOn": "2026-12-31",
                "Source_SnapshotId": "snap-elsewhere",
                "Source_Region": DEST2,
            },
            region=region,
        )
        moto_snapshot(sid, region).status = "pending"


def primaries(n):
    made = [
        make_snapshot({"Type": "Automated", "DeleteOn": "2026-12-31", "Copy_Dest": DEST})
        for _ in range(n)
    ]
    for hour, sid in enumerate(made):
        moto_snapshot(sid).start_time = NOW.replace(hour=hour)
    return made


def test_the_copier_starts_only_the_free_slots_oldest_first(api):
    oldest, second, *_ = primaries(5)
    in_flight(18)
    result = copier.run({}, None, now=NOW)
    copied = {t["Source_SnapshotId"] for t in snapshots(DEST).values()} - {"snap-elsewhere"}
    assert copied == {oldest, second}
    assert len(api.ops("CopySnapshot")) == 2  # never asked for more than the slots
    assert [(d["id"], d["count"]) for d in result["deferred"]] == [(DEST, 3)]
    assert result["failures"] == []
    for sid in snapshots(DEST):  # AWS is still copying them (moto finished at once)
        moto_snapshot(sid, DEST).status = "pending"
    copier.run({}, None, now=NOW)  # nothing has finished: still no slot
    assert len(api.ops("CopySnapshot")) == 2


def test_completed_copies_free_their_slots_for_the_next_run():
    made = primaries(3)
    in_flight(20)
    copier.run({}, None, now=NOW)
    assert len(snapshots(DEST)) == 20
    for sid in snapshots(DEST):
        moto_snapshot(sid, DEST).status = "completed"
    copier.run({}, None, now=NOW)
    copied = Counter(t["Source_SnapshotId"] for t in snapshots(DEST).values())
    assert all(copied[m] == 1 for m in made)


def test_copies_deferred_longer_than_the_copy_allowance_warn_and_count_as_unprotected(capsys):
    made = primaries(3)  # taken between 00:00 and 02:00 on NOW's day
    in_flight(20)
    result = copier.run({}, None, now=NOW + timedelta(hours=19, minutes=30))  # 00:30 next day
    (warning,) = result["warnings"]
    assert (
        warning["id"] == DEST
        and "more than 24 h behind: 1 snapshots of 1 volumes" in (warning["reason"])
    )
    assert result["counts"]["unprotected"] == 1  # the one taken at 00:00: over 24 h ago
    line = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"summary"' in x][-1]
    assert line["UnprotectedVolumes"] == 1
    result = copier.run({}, None, now=NOW + timedelta(hours=18))  # all within the allowance
    assert result["warnings"] == [] and "unprotected" not in result["counts"]
    assert len(made) == 3


def notification(target):
    return {
        "detail-type": "EBS Snapshot Notification",
        "detail": {
            "event": "createSnapshot",
            "result": "succeeded",
            "snapshot_id": f"arn:aws:ec2:{REGION}::snapshot/{target}",
        },
    }


def test_a_notification_respects_the_slots_too(api):
    (target,) = primaries(1)
    in_flight(20)
    result = copier.run(notification(target), None, now=NOW)
    assert api.ops("CopySnapshot") == []
    assert [(d["id"], d["count"]) for d in result["deferred"]] == [(DEST, 1)]


@pytest.mark.parametrize("busy, copied", [(9, 1), (10, 0)])
def test_a_notification_leaves_a_busy_destination_to_the_oldest_first_sweep(api, busy, copied):
    """Beyond half the slots, older primaries may be waiting: the notified (newest) one
    does not jump ahead of them; the sweep starts it in its turn."""
    (target,) = primaries(1)
    in_flight(busy)
    result = copier.run(notification(target), None, now=NOW)
    assert len(api.ops("CopySnapshot")) == copied
    assert sum(d["count"] for d in result.get("deferred", [])) == 1 - copied
    assert copier.NOTIFIED_MAX_IN_FLIGHT == 10
    swept = copier.run({}, None, now=NOW)
    assert len(api.ops("CopySnapshot")) == 1 and swept.get("deferred", []) == []
