"""Bad days that last: the three jobs run as scheduled, day after day, in two regions, while
something stays broken. Each scenario asserts what the operator is told, and which
snapshots exist in each region at the end.

moto stamps snapshots with its own clock; ``clock`` makes it the scenario's.
"""

from datetime import UTC, datetime, timedelta

import pytest
from conftest import DEST, REGION, clock, ec2, launch, snapshot_details, snapshots

import ebs_snapshot_copier as copier
import ebs_snapshot_creator as creator
import ebs_snapshot_manager as manager

pytestmark = pytest.mark.dates  # make test runs it again with the clock a year ahead

START = datetime(2026, 12, 1, tzinfo=UTC)
JOBS = {"manager": manager, "creator": creator, "copier": copier}


def at(day, hour):
    return START + timedelta(days=day - 1, hours=hour)


def run(job, region, now, event=None):
    """One scheduled run; its summary, failed or not."""
    with clock(now):
        try:
            return JOBS[job].run(event or {}, None, region=region, now=now)
        except JOBS[job].JobFailed as failed:
            return failed.summary


def play(days, regions_of, skip=lambda job, region, day: False, before=None):
    """Days of the schedule: managers at 01:00, creator 02:00, copier 06:00, in the regions
    ``regions_of[job]``. Returns {(day, job, region): summary}."""
    seen = {}
    for day in days:
        if before:
            before(day)
        for hour, job in ((1, "manager"), (2, "creator"), (6, "copier")):
            for region in regions_of[job]:
                if not skip(job, region, day):
                    seen[(day, job, region)] = run(job, region, at(day, hour))
    return seen


def primaries_of(volume, region=REGION):
    return sorted(
        (s["StartTime"], sid)
        for sid, s in snapshot_details(region).items()
        if s["VolumeId"] == volume and "Source_SnapshotId" not in snapshots(region)[sid]
    )


def copies_of(volume, region=DEST):
    return sorted(
        (s["StartTime"], sid)
        for sid, s in snapshot_details(region).items()
        if snapshots(region)[sid].get("Source_VolumeId") == volume
    )


def reasons(summary, kind):
    return [item.get("reason", "") for item in summary.get(kind, [])]


EVERYWHERE = {"manager": (REGION, DEST), "creator": (REGION,), "copier": (REGION,)}


def test_a_short_retention_and_a_destination_that_refuses_copies_is_reported_by_day_3(api):
    (volume,) = launch({"Backup": "Yes", "Retention": "1", "Copy_Dest": DEST})[1].values()
    api.fail("CopySnapshot", "UnauthorizedOperation", when=lambda p, region: region == DEST)
    seen = play(range(1, 11), EVERYWHERE)
    missing_copy = f"no completed copy in {DEST} of a snapshot of the last 50 h"
    told = {
        day: any(missing_copy in r for r in reasons(seen[(day, "manager", REGION)], "unprotected"))
        for day in range(1, 11)
    }
    assert told == {day: day >= 3 for day in range(1, 11)}  # day 2's snapshot is 23 h old
    assert seen[(10, "manager", REGION)]["counts"]["unprotected"] == 1
    assert all(seen[(day, "copier", REGION)]["failures"] for day in range(1, 11))
    # Retention=1 still leaves the newest snapshot until the next one has completed.
    assert [t.day for t, _ in primaries_of(volume)] == [9, 10]
    assert snapshots(DEST) == {}


def test_with_the_destination_healthy_the_same_volume_is_protected_every_day():
    launch({"Backup": "Yes", "Retention": "1", "Copy_Dest": DEST})
    seen = play(range(1, 6), EVERYWHERE)
    assert [seen[(day, "manager", REGION)]["counts"]["unprotected"] for day in range(2, 6)] == [
        0
    ] * 4
    assert all(
        not seen[(day, "manager", r)]["warnings"]
        for day in range(2, 6)
        for r in EVERYWHERE["manager"]
    )


def test_a_dr_region_without_a_manager_is_reported_two_days_after_copies_expire():
    launch({"Backup": "Yes", "Retention": "2", "Copy_Dest": DEST})
    no_dr_manager = {"manager": (REGION,), "creator": (REGION,), "copier": (REGION,)}
    seen = play(range(1, 9), no_dr_manager)
    told = {
        day: [
            w
            for w in seen[(day, "manager", REGION)]["warnings"]
            if w["reason"].startswith(f"no manager is deleting expired copies in {DEST}")
        ]
        for day in range(1, 9)
    }
    # The first copy's DeleteOn is 3 December: more than two days past it on the 6th.
    assert [day for day, warnings in told.items() if warnings] == [6, 7, 8]
    assert seen[(6, "manager", REGION)]["counts"]["expired_copies_left"] == 1
    assert seen[(8, "manager", REGION)]["counts"]["expired_copies_left"] == 3
    assert told[8][0]["id"] == DEST
    assert len(snapshots(DEST)) == 8  # nothing deletes them there: hence the warning


def test_a_dr_region_with_its_manager_is_never_reported():
    (volume,) = launch({"Backup": "Yes", "Retention": "2", "Copy_Dest": DEST})[1].values()
    seen = play(range(1, 9), EVERYWHERE)
    # From day 2 its copies exist, and the check counts the expired ones left there: none.
    left = [seen[(day, "manager", REGION)]["counts"]["expired_copies_left"] for day in range(2, 9)]
    assert left == [0] * 7
    assert [t.day for t, _ in copies_of(volume)] == [7, 8]  # two days, as the primaries


def test_a_week_without_the_creator_keeps_each_volumes_newest_snapshot_and_copy(api):
    (copied,) = launch({"Backup": "Yes", "Retention": "2", "Copy_Dest": DEST})[1].values()
    (local,) = launch({"Backup": "Yes", "Retention": "3"})[1].values()
    doomed_instance, doomed = launch({"Backup": "Yes", "Retention": "2"})
    (doomed,) = doomed.values()

    def terminate_on_day_4(day):
        if day == 4:
            ec2().terminate_instances(InstanceIds=[doomed_instance])

    seen = play(
        range(1, 11),
        EVERYWHERE,
        skip=lambda job, region, day: job == "creator" and day >= 4,
        before=terminate_on_day_4,
    )
    # Each backed-up volume keeps its newest snapshot (3 December), and its newest copy.
    assert [t.day for t, _ in primaries_of(copied)] == [3]
    assert [t.day for t, _ in primaries_of(local)] == [3]
    assert [t.day for t, _ in copies_of(copied)] == [3]
    assert primaries_of(doomed) == []  # its instance is gone: its snapshots expired as before
    source, dr = seen[(10, "manager", REGION)], seen[(10, "manager", DEST)]
    kept = {w["volume_id"]: w["reason"] for w in source["warnings"] if "volume_id" in w}
    assert set(kept) == {copied, local}
    assert "none newer since 2026-12-03 02:00 UTC" in kept[local]
    assert source["counts"]["last_kept"] == 2
    (copy_warning,) = [w for w in dr["warnings"] if "volume_id" in w]
    assert (
        copy_warning["volume_id"] == copied
        and f"newest copy of {copied} from {REGION}" in (copy_warning["reason"])
    )
    assert dr["counts"]["last_kept"] == 1
    # The coverage check says the same from its side.
    assert source["counts"]["unprotected"] == 2


def test_the_newest_copy_expires_once_its_grace_period_is_over():
    (volume,) = launch({"Backup": "Yes", "Retention": "1", "Copy_Dest": DEST})[1].values()
    seen = play(
        range(1, 20),
        {"manager": (DEST,), "creator": (REGION,), "copier": (REGION,)},
        skip=lambda job, region, day: job in ("creator", "copier") and day >= 2,
    )
    # Its only copy is due on 2 December; kept 14 days past it, then deleted.
    assert [
        day for day in range(2, 20) if seen[(day, "manager", DEST)]["counts"].get("deleted")
    ] == [16]
    assert copies_of(volume) == []


def test_keep_forever_on_a_primary_just_before_the_dr_manager_runs_keeps_the_copy(api):
    (volume,) = launch({"Backup": "Yes", "Retention": "1", "Copy_Dest": DEST})[1].values()
    play(range(1, 3), EVERYWHERE)
    (_, first), _ = primaries_of(volume)
    (_, first_copy), _ = copies_of(volume)
    ec2().create_tags(Resources=[first], Tags=[{"Key": "KeepForever", "Value": "audit"}])
    api.calls.clear()
    summary = run("manager", DEST, at(3, 0))  # before the copier's next sweep
    assert first_copy in snapshots(DEST)
    assert snapshots(DEST)[first_copy]["KeepForever"] == "audit"
    (tagged,) = summary["tagged"]
    assert tagged["snapshot_id"] == first_copy and first in tagged["reason"]
    (lookup,) = api.ops("DescribeSnapshots", REGION)  # one batched lookup, by a filter
    assert lookup["Filters"] == [{"Name": "snapshot-id", "Values": [first]}]
