"""Restore drills: the manager restores each protected volume's newest snapshot (and each
source volume's newest copy) once a week to a new volume, waits until it is available,
deletes it, and leaves the result on the snapshot, in the summary and in metrics.

moto makes volumes from snapshots, at once: ``force`` (testkit/moto_gaps.py) keeps one
"creating" or sends it to "error", as EC2 can.
"""

from datetime import UTC, date, datetime, timedelta

import pytest
from conftest import (
    DEST,
    REGION,
    clock,
    ec2,
    launch,
    make_snapshot,
    read_timeout,
    snapshot_of,
    snapshots,
)
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends

import ebs_snapshot_copier as copier
import ebs_snapshot_creator as creator
import ebs_snapshot_manager as manager
from testkit.moto_gaps import force_volume_state

BASE = datetime(2026, 12, 10, 5, tzinfo=UTC)  # after moto's own clock: attachments are older


def run(job, now, region=REGION, event=None):
    with clock(now):
        try:
            return job.run(event or {}, None, region=region, now=now)
        except job.JobFailed as failed:
            return failed.summary


def drill_date(key, after=BASE):
    """The first day from ``after`` on which the manager drills ``key``."""
    day = after
    while day.date().toordinal() % 7 != manager.drill_day(key):
        day += timedelta(days=1)
    return day


def backed_up(n=1, devices=("/dev/sda1",), **tags):
    """n instances with Backup=Yes (30 days: nothing expires), each snapshotted at BASE."""
    volumes = []
    for _ in range(n):
        _, vols = launch({"Backup": "Yes", "Retention": "30", **tags}, devices=devices)
        volumes += vols.values()
    run(creator, BASE - timedelta(hours=4), event={"id": "base"})
    return volumes


def drill_volumes(region=REGION):
    """Volumes tagged Type=RestoreDrill that still exist."""
    found = ec2(region).describe_volumes(Filters=[{"Name": "tag:Type", "Values": ["RestoreDrill"]}])
    return found["Volumes"]


def newest_of(volume_id):
    snaps = ec2().describe_snapshots(
        OwnerIds=["self"], Filters=[{"Name": "volume-id", "Values": [volume_id]}]
    )["Snapshots"]
    return max(snaps, key=lambda s: s["StartTime"])["SnapshotId"]


def force_on_create(api, state):
    """Every drill volume goes to ``state`` as soon as it is created."""

    def forced(created):
        backend = ec2_backends[DEFAULT_ACCOUNT_ID][REGION]
        force_volume_state(backend.volumes[created["VolumeId"]], state)
        return created

    api.after["CreateVolume"] = forced


def tag_list(params):
    return {t["Key"]: t["Value"] for t in params["TagSpecifications"][0]["Tags"]}


# ---- a drill ----------------------------------------------------------------------------


def test_a_drill_restores_the_newest_snapshot_in_its_zone_then_deletes_the_volume(api, capsys):
    (volume,) = backed_up()
    zone = ec2().describe_volumes(VolumeIds=[volume])["Volumes"][0]["AvailabilityZone"]
    older = newest_of(volume)
    run(creator, BASE - timedelta(hours=2), event={"id": "second"})
    newest = newest_of(volume)
    assert newest != older
    when = drill_date(volume)
    api.calls.clear()
    result = run(manager, when)
    (params,) = api.ops("CreateVolume")
    assert params["SnapshotId"] == newest and params["AvailabilityZone"] == zone
    assert params["VolumeType"] == "gp3"
    after = (when + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert tag_list(params) == {
        "Type": "RestoreDrill",
        "Source_SnapshotId": newest,
        "DeleteAfter": after,
    }
    (drilled,) = result["drilled"]
    assert drilled["snapshot_id"] == newest and drilled["volume_id"] == volume
    assert [p["VolumeId"] for p in api.ops("DeleteVolume")] == [drilled["drill_volume_id"]]
    assert drill_volumes() == []  # nothing left behind
    assert not [op for op in api.names() if "Attach" in op or op == "ModifyVolume"]
    assert snapshots()[newest]["RestoreDrill"] == f"{when.date()} ok 0s"
    assert "RestoreDrill" not in snapshots()[older]
    assert result["counts"]["drills_passed"] == 1 and result["failures"] == []
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert '"RestoreDrillsPassed": 1' in line and '"RestoreDrillsFailed": 0' in line
    assert '"RestoreSeconds": 0' in line and '{"Name": "RestoreSeconds", "Unit": "Seconds"}' in line


@pytest.mark.dates  # also run a year ahead (make test)
def test_each_protected_volume_is_drilled_exactly_once_in_any_seven_days():
    volumes = backed_up(6, devices=("/dev/sda1", "/dev/sdb"))
    drilled = []
    for day in range(7):
        result = run(manager, BASE + timedelta(days=day, hours=1))
        drilled += [d["volume_id"] for d in result.get("drilled", [])]
    assert sorted(drilled) == sorted(volumes)
    assert len({manager.drill_day(v) for v in volumes}) > 1  # spread over the week
    assert drill_volumes() == []


def test_a_volume_that_goes_to_error_is_a_failed_drill_and_is_still_deleted(api, capsys):
    (volume,) = backed_up()
    force_on_create(api, "error")
    result = run(manager, drill_date(volume))
    sid = newest_of(volume)
    (failure,) = result["failures"]
    assert failure["id"] == sid
    assert failure["error"] == "restore drill failed: the restored volume went to error"
    assert any("restore drill of" in w["reason"] for w in result["warnings"])
    assert snapshots()[sid]["RestoreDrill"].endswith("failed: the restored volume went to error")
    assert len(api.ops("DeleteVolume")) == 1 and drill_volumes() == []
    assert result["counts"]["drills_failed"] == 1
    assert '"RestoreDrillsFailed": 1' in capsys.readouterr().out.strip().splitlines()[-1]


def test_a_volume_still_creating_fails_after_a_bounded_wait_and_is_left_to_a_later_run(api):
    (volume,) = backed_up()
    force_on_create(api, "creating")
    result = run(manager, drill_date(volume))
    (failure,) = result["failures"]
    assert (
        failure["error"]
        == "restore drill failed: the restored volume was not available within 300 s"
    )
    polls = manager.DRILL_WAIT_S // manager.DRILL_POLL_S
    assert api.slept.count(manager.DRILL_POLL_S) == polls  # then it gives up
    # EC2 deletes only an available volume: this one waits for a later run (DeleteAfter).
    assert len(api.ops("DeleteVolume")) == 1 and len(drill_volumes()) == 1
    assert any(
        "drill volume not deleted (IncorrectState" in w["reason"] for w in result["warnings"]
    )


def test_the_wait_never_reaches_into_the_lambdas_last_minute(api):
    (volume,) = backed_up()
    force_on_create(api, "creating")

    class Context:  # 200 s left, minus what the sleeps used
        def get_remaining_time_in_millis(self):
            return (200 - sum(api.slept)) * 1000

    with clock(drill_date(volume)), pytest.raises(manager.JobFailed) as failed:
        manager.run({}, Context(), now=drill_date(volume))
    assert sum(api.slept) <= 200 - manager.STOP_MARGIN_S
    (failure,) = failed.value.summary["failures"]
    assert "not available within" in failure["error"]


def test_a_refused_create_volume_is_a_failed_drill(api):
    (volume,) = backed_up()
    api.fail("CreateVolume", "KMSKeyNotAccessibleFault", message="The KMS key is disabled")
    result = run(manager, drill_date(volume))
    (failure,) = result["failures"]
    assert failure["error"].startswith(
        "restore drill failed: CreateVolume: KMSKeyNotAccessibleFault"
    )
    assert (
        "failed: CreateVolume: KMSKeyNotAccessibleFault"
        in snapshots()[newest_of(volume)]["RestoreDrill"]
    )


def test_a_drill_volume_that_cannot_be_deleted_is_left_to_a_later_run(api):
    (volume,) = backed_up()
    api.fail("DeleteVolume", "IncorrectState")
    when = drill_date(volume)
    result = run(manager, when)
    assert result["counts"]["drills_passed"] == 1
    assert any(
        "drill volume not deleted (IncorrectState" in w["reason"] for w in result["warnings"]
    )
    (left,) = drill_volumes()
    api.faults.clear()
    later = run(manager, when + timedelta(hours=3))  # its DeleteAfter has passed
    assert drill_volumes() == [] and later["counts"]["drill_volumes_deleted"] == 1
    assert any(w["id"] == left["VolumeId"] for w in later["warnings"])


# ---- the round, the cap, the switch ------------------------------------------------------


def test_the_cap_per_run_and_a_warning_when_the_week_cannot_be_done(api, monkeypatch):
    volumes = backed_up(5, devices=("/dev/sda1", "/dev/sdb", "/dev/sdc"))  # 15 volumes
    monkeypatch.setenv("RESTORE_DRILL_PER_RUN", "1")
    busiest = max(range(7), key=lambda d: sum(manager.drill_day(v) == d for v in volumes))
    due = sum(manager.drill_day(v) == busiest for v in volumes)
    assert due >= 3
    when = BASE
    while when.date().toordinal() % 7 != busiest:
        when += timedelta(days=1)
    result = run(manager, when)
    assert len(result["drilled"]) == 1 and len(api.ops("CreateVolume")) == 1
    assert f"{due - 1} drills due today over RESTORE_DRILL_PER_RUN=1" in str(result["warnings"])
    assert result["counts"]["drills_overdue"] == due - 1
    (warning,) = [w for w in result["warnings"] if w["id"] == "RESTORE_DRILL_PER_RUN"]
    assert (
        "15 volumes to drill each week, at most 1 a run: the weekly round cannot complete"
        in (warning["reason"])
    )


@pytest.mark.parametrize("value", ["off", "OFF", "no", "false", "0"])
def test_restore_drill_off_turns_them_off(api, monkeypatch, value):
    (volume,) = backed_up()
    monkeypatch.setenv("RESTORE_DRILL", value)
    result = run(manager, drill_date(volume))
    assert api.ops("CreateVolume") == [] and "drilled" not in result


def test_an_unreadable_switch_warns_and_drills(api, monkeypatch):
    (volume,) = backed_up()
    monkeypatch.setenv("RESTORE_DRILL", "weekly")
    result = run(manager, drill_date(volume))
    assert len(result["drilled"]) == 1
    assert any(w["id"] == "RESTORE_DRILL" for w in result["warnings"])


def tagged_volume(tags, created, snapshot=None, volume_type="gp3"):
    """A volume made at ``created`` (moto's clock), tagged at creation."""
    spec = {"SnapshotId": snapshot} if snapshot else {"Size": 1}
    with clock(created):
        return ec2().create_volume(
            AvailabilityZone=REGION + "a",
            VolumeType=volume_type,
            TagSpecifications=[
                {
                    "ResourceType": "volume",
                    "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
                }
            ],
            **spec,
        )["VolumeId"]


def drill_tags(snapshot, delete_after):
    return {"Type": "RestoreDrill", "Source_SnapshotId": snapshot, "DeleteAfter": delete_after}


@pytest.mark.dates  # also run a year ahead (make test)
def test_leftover_drill_volumes_are_deleted_once_their_time_has_passed(api, monkeypatch):
    monkeypatch.setenv("RESTORE_DRILL", "off")  # none of today's: its volume would go too
    (volume,) = backed_up()
    snap, made = newest_of(volume), BASE - timedelta(hours=3)  # DeleteAfter: an hour ago
    stale = tagged_volume(drill_tags(snap, "2026-12-10T04:00:00Z"), made, snap)
    running = tagged_volume(drill_tags(snap, "2026-12-10T07:00:00Z"), BASE, snap)
    unreadable = tagged_volume(drill_tags(snap, "soon"), made, snap)
    foreign = tagged_volume({"Type": "Database", "DeleteAfter": "2020-01-01T00:00:00Z"}, made)
    result = run(manager, BASE)
    left = {v["VolumeId"] for v in ec2().describe_volumes()["Volumes"]}
    assert stale not in left and {running, unreadable, foreign} <= left
    assert result["counts"]["drill_volumes_deleted"] == 1
    assert [p["VolumeId"] for p in api.ops("DeleteVolume")] == [stale]
    assert {"id": unreadable, "tag": "DeleteAfter", "value": "soon"} in result["tag_errors"]


def test_a_volume_someone_tagged_as_a_drill_is_left_and_named(api, monkeypatch):
    """A tag alone deletes nothing: only a volume made as the manager makes its drills."""
    monkeypatch.setenv("RESTORE_DRILL", "off")  # none of today's: its volume would go too
    (volume,) = backed_up()
    snap, other = newest_of(volume), make_snapshot({"Type": "Automated"})
    after, made = "2026-12-10T04:00:00Z", BASE - timedelta(hours=3)
    impostors = {
        "no snapshot": tagged_volume(drill_tags(snap, after), made),
        "another snapshot": tagged_volume(drill_tags(snap, after), made, other),
        "not gp3": tagged_volume(drill_tags(snap, after), made, snap, "gp2"),
        "made a day earlier": tagged_volume(
            drill_tags(snap, after), made - timedelta(days=1), snap
        ),
    }
    attached = tagged_volume(drill_tags(snap, after), made, snap)
    instance, _ = launch()
    ec2().attach_volume(VolumeId=attached, InstanceId=instance, Device="/dev/sdf")
    impostors["attached"] = attached
    result = run(manager, BASE)
    left = {v["VolumeId"] for v in ec2().describe_volumes()["Volumes"]}
    assert set(impostors.values()) <= left and api.ops("DeleteVolume") == []
    said = {w["id"]: w["reason"] for w in result["warnings"]}
    for vid in impostors.values():
        assert "not a restore drill, left" in said[vid], vid
    assert "made from vol-" not in said[impostors["no snapshot"]]
    assert f"made from {other}" in said[impostors["another snapshot"]]
    assert "attached" in said[attached] and "gp2" in said[impostors["not gp3"]]
    assert "not 2 h before it" in said[impostors["made a day earlier"]]


@pytest.mark.parametrize(
    ("minutes", "drill"), [(0, True), (14, True), (-14, True), (16, False), (-16, False)]
)
def test_a_drill_is_created_two_hours_before_its_delete_after_give_or_take_fifteen_minutes(
    minutes, drill
):
    after = datetime(2026, 12, 10, 4, tzinfo=UTC)
    volume = {
        "SnapshotId": "snap-1",
        "VolumeType": "gp3",
        "Attachments": [],
        "State": "available",
        "CreateTime": after - timedelta(hours=2) + timedelta(minutes=minutes),
        "Tags": [{"Key": "Source_SnapshotId", "Value": "snap-1"}],
    }
    assert (manager.not_a_drill(volume, after) is None) == drill


# ---- copies, archives, dry run ---------------------------------------------------------------


def test_copies_are_drilled_in_their_own_region_newest_copy_of_each_source_volume(api):
    def copy(volume, hours):
        with clock(BASE - timedelta(hours=hours)):
            return make_snapshot(
                {
                    "Type": "Automated",
                    "DeleteOn": "2027-01-31",
                    "Source_SnapshotId": f"snap-{hours}",
                    "Source_Region": REGION,
                    "Source_VolumeId": volume,
                },
                region=DEST,
            )

    old, newest = copy("vol-0123456789abcdef0", 30), copy("vol-0123456789abcdef0", 6)
    result = run(manager, drill_date("vol-0123456789abcdef0"), region=DEST)
    (params,) = [p for p in api.ops("CreateVolume", DEST) if "SnapshotId" in p]  # not fixtures
    assert params["SnapshotId"] == newest and params["AvailabilityZone"] == DEST + "a"
    assert result["drilled"][0]["volume_id"] == "vol-0123456789abcdef0"
    assert "RestoreDrill" in snapshots(DEST)[newest] and "RestoreDrill" not in snapshots(DEST)[old]
    assert drill_volumes(DEST) == []


def test_an_archived_snapshot_is_not_drilled(api):
    (volume,) = backed_up()
    archived = newest_of(volume)
    ec2().modify_snapshot_tier(SnapshotId=archived, StorageTier="archive")
    result = run(manager, drill_date(volume))
    assert api.ops("CreateVolume") == [] and "drilled" not in result


def test_dry_run_lists_the_drills_and_asks_aws_whether_it_may_create_the_volume(api):
    (volume,) = backed_up()
    result = run(manager, drill_date(volume), event={"dry_run": True})
    (would,) = result["would_drill"]
    assert would["volume_id"] == volume and would["snapshot_id"] == newest_of(volume)
    assert {"permission": "ec2:CreateVolume", "id": REGION} in result["permitted"]
    (probe,) = api.ops("CreateVolume")
    assert probe["DryRun"] is True
    assert drill_volumes() == [] and "RestoreDrill" not in snapshots()[newest_of(volume)]


def test_the_copier_never_carries_a_primarys_drill_result_to_its_copies():
    make_snapshot(
        {
            "Type": "Automated",
            "DeleteOn": "2026-12-31",
            "Copy_Dest": DEST,
            "RestoreDrill": "2026-11-20 ok 12s",
        }
    )
    copier.run({}, None, now=BASE - timedelta(days=14))
    (copy_tags,) = snapshots(DEST).values()
    assert "RestoreDrill" not in copy_tags


@pytest.mark.dates  # also run a year ahead (make test)
def test_drill_days_are_stable_and_cover_the_week():
    ids = [f"vol-{n:017x}" for n in range(70)]
    assert [manager.drill_day(i) for i in ids] == [manager.drill_day(i) for i in ids]
    assert set(manager.drill_day(i) for i in ids) == set(range(7))
    assert manager.drill_result(date(2026, 12, 1), 42) == "2026-12-01 ok 42s"


# ---- what a drill does not call a failed restore, and what it does -------------------------


def test_a_volume_that_vanishes_is_a_failed_drill(api):
    """EC2 accepts CreateVolume with a KMS key it cannot use, then removes the volume."""
    (volume,) = backed_up()

    def vanish(created):
        del ec2_backends[DEFAULT_ACCOUNT_ID][REGION].volumes[created["VolumeId"]]
        return created

    api.after["CreateVolume"] = vanish
    result = run(manager, drill_date(volume))
    (failure,) = result["failures"]
    assert failure["error"].startswith("restore drill failed: the restored volume vanished")
    assert api.slept.count(manager.DRILL_POLL_S) == manager.DRILL_GONE_POLLS - 1


@pytest.mark.parametrize("code", ["VolumeLimitExceeded", "InsufficientVolumeCapacity"])
def test_capacity_and_throttling_are_not_a_failed_restore(api, code):
    (volume,) = backed_up()
    api.fail("CreateVolume", code)
    result = run(manager, drill_date(volume))
    assert result["failures"] == [] and "drills_failed" not in result["counts"]
    assert any(f"not drilled ({code}" in w["reason"] for w in result["warnings"])
    assert "RestoreDrill" not in snapshots()[newest_of(volume)]


def test_a_network_failure_is_not_a_failed_restore(api):
    from botocore.exceptions import EndpointConnectionError

    (volume,) = backed_up()
    api.network(lambda url: EndpointConnectionError(endpoint_url=url), "CreateVolume")
    result = run(manager, drill_date(volume))
    assert result["failures"] == []
    assert any("not drilled (EndpointConnectionError" in w["reason"] for w in result["warnings"])


def test_volumes_that_cannot_be_watched_are_deleted_and_not_judged(api):
    (volume,) = backed_up()
    api.fail(
        "DescribeVolumes",
        "UnauthorizedOperation",
        when=lambda params, region: "volume-id" in str(params),
    )
    result = run(manager, drill_date(volume))
    assert result["failures"] == [] and drill_volumes() == []
    assert any("restore drill not judged" in w["reason"] for w in result["warnings"])
    assert "RestoreDrill" not in snapshots()[newest_of(volume)]


def test_each_drill_has_its_own_client_token_and_a_retried_call_keeps_it(api):
    (volume,) = backed_up()
    when = drill_date(volume)
    api.network(read_timeout, "CreateVolume", times=1)  # botocore sends it again
    run(manager, when)
    run(manager, when + timedelta(hours=3))  # a second run that day drills again
    tokens = [params["ClientToken"] for params in api.ops("CreateVolume")]
    assert len(tokens) == 2 and tokens[0] != tokens[1], tokens
    assert all(t.startswith(f"drill-{newest_of(volume)}-") and len(t) <= 64 for t in tokens)
    sent = [params["ClientToken"] for op, params in api.sent if op == "CreateVolume"]
    assert sent == [tokens[0], tokens[0], tokens[1]]  # the retry sent the same token


def test_only_protected_volumes_and_completed_snapshots_are_drilled(api):
    (kept,) = backed_up()
    _, vols = launch({"Backup": "No"})
    (unprotected,) = vols.values()
    make_snapshot_of = snapshot_of(unprotected, {"Type": "Automated", "DeleteOn": "2027-06-01"})
    completed = newest_of(kept)
    with clock(BASE - timedelta(hours=1)):
        pending = run(creator, BASE - timedelta(hours=1), event={"id": "later"})["created"][0]
    ec2_backends[DEFAULT_ACCOUNT_ID][REGION].snapshots[pending["snapshot_id"]].status = "pending"
    for when in {drill_date(kept), drill_date(unprotected)}:
        run(manager, when)
    drilled = {p["SnapshotId"] for p in api.ops("CreateVolume") if "SnapshotId" in p}
    assert drilled == {completed}  # not the pending newer one, not the unprotected volume's
    assert make_snapshot_of not in drilled


def test_over_the_cap_the_least_recently_drilled_go_first(api, monkeypatch):
    volumes = backed_up(10)
    by_day = {}
    for v in volumes:
        by_day.setdefault(manager.drill_day(v), []).append(v)
    group = next(vs for vs in by_day.values() if len(vs) >= 2)
    oldest = group[-1]
    for n, v in enumerate(group):
        drilled = "2026-10-01" if v == oldest else f"2026-11-{10 + n}"
        ec2().create_tags(
            Resources=[newest_of(v)], Tags=[{"Key": "RestoreDrill", "Value": f"{drilled} ok 3s"}]
        )
    monkeypatch.setenv("RESTORE_DRILL_PER_RUN", "1")
    result = run(manager, drill_date(oldest))
    assert [d["volume_id"] for d in result["drilled"]] == [oldest]


def test_no_drill_when_the_sweep_stopped_early(api):
    (volume,) = backed_up()

    class Short:  # enough to start, not to finish the sweep's margin
        def get_remaining_time_in_millis(self):
            return (manager.MIN_START_S + 1) * 1000

    api.page_size = 1
    with clock(drill_date(volume)):
        try:
            result = manager.run({}, Short(), now=drill_date(volume))
        except manager.JobFailed as failed:
            result = failed.summary
    assert api.ops("CreateVolume") == [] and "drilled" not in result


def test_a_dry_run_deletes_no_leftover_drill_volume(api):
    ec2().create_volume(
        AvailabilityZone=REGION + "a",
        Size=1,
        TagSpecifications=[
            {
                "ResourceType": "volume",
                "Tags": [
                    {"Key": "Type", "Value": "RestoreDrill"},
                    {"Key": "DeleteAfter", "Value": "2026-01-01T00:00:00Z"},
                ],
            }
        ],
    )
    run(manager, BASE, event={"dry_run": True})
    assert api.ops("DeleteVolume") == [] and len(drill_volumes()) == 1
