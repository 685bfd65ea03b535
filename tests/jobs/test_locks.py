"""Snapshot Lock: the creator and the copier lock what they make until its DeleteOn, and lock
on a later run what they could not; the manager never unlocks, leaves a locked due snapshot
with a warning, and reports Lock snapshots still unlocked after a day.

moto has no snapshot locks: testkit/moto_gaps.py emulates LockSnapshot, UnlockSnapshot,
DescribeLockedSnapshots and DeleteSnapshot's refusal, as the EC2 API reference states them.
Lock states follow moto's clock (``clock`` moves it).
"""

from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ReadTimeoutError
from conftest import (
    DEST,
    NOW,
    REGION,
    clock,
    ec2,
    launch,
    make_snapshot,
    set_snapshot_state,
    snapshot_details,
    snapshots,
)

import ebs_snapshot_copier as copier
import ebs_snapshot_creator as creator
import ebs_snapshot_manager as manager

pytestmark = pytest.mark.dates  # make test runs it again with the clock a year ahead

DELETE_ON = "2026-12-03"  # NOW + the default 7 days
MIDNIGHT = datetime(2026, 12, 3, tzinfo=UTC)


def run(job, event=None, now=NOW, region=REGION):
    """One run at ``now`` (moto's clock too); its summary, failed or not."""
    with clock(now):
        try:
            return job.run(event or {}, None, region=region, now=now)
        except job.JobFailed as failed:
            return failed.summary


def locks(region=REGION):
    """{snapshot id: lock} as DescribeLockedSnapshots reports them now (every state)."""
    pages, params = [], {"MaxResults": 1000}
    while True:
        page = ec2(region).describe_locked_snapshots(**params)
        pages += page["Snapshots"]
        if not page.get("NextToken"):
            return {lock["SnapshotId"]: lock for lock in pages}
        params["NextToken"] = page["NextToken"]


def reasons(summary, kind="warnings"):
    return [item.get("reason", "") for item in summary.get(kind, [])]


# ---- the creator ----------------------------------------------------------------------


def test_a_lock_instance_has_each_snapshot_locked_until_its_delete_on():
    launch({"Backup": "Yes", "Lock": "Governance"}, devices=("/dev/sda1", "/dev/sdb"))
    result = run(creator)
    made = snapshots()
    assert len(made) == 2
    assert all(tags["Lock"] == "governance" for tags in made.values())
    assert "Lock_CoolOffHours" not in next(iter(made.values()))
    found = locks()
    assert set(found) == set(made)
    for lock in found.values():
        assert lock["LockState"] == "governance"
        assert lock["LockExpiresOn"] == MIDNIGHT
    assert {(i["lock"], i["until"]) for i in result["locked"]} == {("governance", DELETE_ON)}
    assert result["counts"]["locked"] == 2


def test_the_lock_is_in_the_create_call_tags(api):
    launch({"Backup": "Yes", "Lock": "compliance", "Lock_CoolOffHours": "6"})
    run(creator)
    (params,) = api.ops("CreateSnapshot")
    tags = {t["Key"]: t["Value"] for t in params["TagSpecifications"][0]["Tags"]}
    assert tags["Lock"] == "compliance" and tags["Lock_CoolOffHours"] == "6"
    (lock,) = api.ops("LockSnapshot")
    assert lock["LockMode"] == "compliance" and lock["CoolOffPeriod"] == 6
    assert lock["ExpirationDate"] == MIDNIGHT


def test_a_snapshot_is_locked_while_still_pending(api):
    launch({"Backup": "Yes", "Lock": "governance"})
    api.after["CreateSnapshot"] = lambda made: (
        set_snapshot_state(made["SnapshotId"], "pending"),
        made,
    )[1]
    run(creator)
    ((sid, details),) = snapshot_details().items()
    assert details["State"] == "pending"
    assert locks()[sid]["LockExpiresOn"] == MIDNIGHT


def test_compliance_has_a_cooling_off_period_in_which_a_person_can_still_undo_it():
    launch({"Backup": "Yes", "Lock": "COMPLIANCE"})  # Lock_CoolOffHours: 24 by default
    run(creator)
    (sid,) = snapshots()
    with clock(NOW + timedelta(hours=1)):
        assert locks()[sid]["LockState"] == "compliance-cooloff"
        assert locks()[sid]["CoolOffPeriod"] == 24
    with clock(NOW + timedelta(hours=25)):  # after it, nobody can unlock it
        assert locks()[sid]["LockState"] == "compliance"
        with pytest.raises(ec2().exceptions.ClientError):
            ec2().unlock_snapshot(SnapshotId=sid)
    with clock(NOW + timedelta(hours=2)):  # within it, a wrong tag can be undone that day
        ec2().unlock_snapshot(SnapshotId=sid)
        ec2().delete_snapshot(SnapshotId=sid)
    assert snapshots() == {}


@pytest.mark.parametrize(
    "tags, warning, tagged",
    [
        ({"Lock": "no"}, None, {}),
        ({"Lock": ""}, None, {}),
        ({"Lock": "yes please"}, "is not governance or compliance; not locked", {}),
        (
            {"Lock": "compliance", "Lock_CoolOffHours": "100"},
            "is too large; using 72",
            {"Lock": "compliance", "Lock_CoolOffHours": "72"},
        ),
        (
            {"Lock": "compliance", "Lock_CoolOffHours": "a day"},
            "not a whole number, 1 or more; using 24",
            {"Lock": "compliance", "Lock_CoolOffHours": "24"},
        ),
        ({"Lock": " governance "}, None, {"Lock": "governance"}),
    ],
)
def test_lock_tags_are_read_strictly(tags, warning, tagged):
    launch({"Backup": "Yes", **tags})
    result = run(creator)
    ((sid, written),) = snapshots().items()
    assert {k: v for k, v in written.items() if k.startswith("Lock")} == tagged
    assert (sid in locks()) == bool(tagged)
    if warning:
        assert len([r for r in reasons(result) if warning in r]) == 1
    else:
        assert reasons(result) == []


def test_each_snapshot_of_a_set_is_locked():
    launch(
        {"Backup": "Yes", "Lock": "governance", "Consistency": "instance"},
        devices=("/dev/sda1", "/dev/sdb"),
    )
    run(creator)
    assert set(locks()) == set(snapshots()) and len(snapshots()) == 2


def test_a_lock_that_fails_never_costs_the_snapshot_and_a_later_run_locks_it(api):
    launch({"Backup": "Yes", "Lock": "governance"})
    api.fail("LockSnapshot", "IncorrectState")  # every LockSnapshot of the first run
    first = run(creator, {"id": "day-1"})
    (sid,) = snapshots()
    assert first["failures"] == [] and sid not in locks()
    assert any("not locked (IncorrectState" in r for r in reasons(first))
    api.faults.clear()
    later = run(creator, {"id": "day-1-retry"}, now=NOW + timedelta(hours=1))
    assert locks()[sid]["LockState"] == "governance"
    assert locks()[sid]["LockExpiresOn"] == MIDNIGHT
    (relocked,) = [i for i in later["locked"] if i["snapshot_id"] == sid]
    assert relocked["reason"] == creator.RELOCK


def test_a_lock_lost_to_the_network_is_made_by_the_same_runs_sweep(api):
    launch({"Backup": "Yes", "Lock": "governance"})
    timeout = lambda url: ReadTimeoutError(endpoint_url=url)  # noqa: E731
    api.network(timeout, "LockSnapshot", times=10)  # every attempt of the first call
    result = run(creator)
    (sid,) = snapshots()
    assert sid in locks() and result["failures"] == []
    assert any("not locked (ReadTimeoutError" in r for r in reasons(result))
    assert [i.get("reason") for i in result["locked"]] == [creator.RELOCK]


def test_the_sweep_leaves_copies_due_snapshots_and_locked_ones_alone(api):
    tags = {"Type": "Automated", "Lock": "governance"}
    copy = make_snapshot(tags | {"DeleteOn": DELETE_ON, "Source_SnapshotId": "snap-1"})
    due = make_snapshot(tags | {"DeleteOn": "2026-11-26"})
    locked = make_snapshot(tags | {"DeleteOn": DELETE_ON})
    ec2().lock_snapshot(SnapshotId=locked, LockMode="governance", LockDuration=30)
    unlocked = make_snapshot(tags | {"DeleteOn": DELETE_ON})
    result = run(creator)
    assert [i["snapshot_id"] for i in result["locked"]] == [unlocked]
    assert set(locks()) == {locked, unlocked}
    assert copy and due  # the copier locks copies; a due snapshot is not locked again


def test_locks_that_cannot_be_listed_are_a_warning_not_a_failure(api):
    launch({"Backup": "Yes", "Lock": "governance"})
    make_snapshot({"Type": "Automated", "Lock": "governance", "DeleteOn": DELETE_ON})
    api.fail("DescribeLockedSnapshots", "UnauthorizedOperation")
    result = run(creator)
    assert result["failures"] == [] and result["counts"]["created"] == 1
    assert any(r.startswith("locks not checked: UnauthorizedOperation") for r in reasons(result))


def test_dry_run_reports_the_locks_and_asks_aws_whether_it_may_lock(api):
    launch({"Backup": "Yes", "Lock": "governance"})
    earlier = make_snapshot({"Type": "Automated", "Lock": "governance", "DeleteOn": DELETE_ON})
    result = run(creator, {"dry_run": True})
    assert locks() == {} and set(snapshots()) == {earlier}
    would = result["would_lock"]
    assert {(i.get("snapshot_id"), i["lock"], i["until"]) for i in would} == {
        (None, "governance", DELETE_ON),  # the snapshot it would create
        (earlier, "governance", DELETE_ON),  # the one whose lock is missing
    }
    assert {"permission": "ec2:LockSnapshot", "id": REGION} in result["permitted"]
    (probe,) = [p for p in api.ops("LockSnapshot")]
    assert probe["DryRun"] is True and probe["SnapshotId"] == earlier


def test_dry_run_with_no_lock_snapshot_yet_says_it_could_not_ask():
    launch({"Backup": "Yes", "Lock": "governance"})
    result = run(creator, {"dry_run": True})
    assert any("ec2:LockSnapshot not probed" in s["reason"] for s in result["skipped"])
    assert locks() == {}


# ---- the copier -----------------------------------------------------------------------


def primary(delete_on=DELETE_ON, **extra):
    tags = {"Type": "Automated", "DeleteOn": delete_on, "Copy_Dest": DEST, **extra}
    return make_snapshot(tags)


def test_a_copy_is_locked_as_its_primary_until_its_own_delete_on():
    source = primary(Lock="compliance", Lock_CoolOffHours="12", Copy_Retention="30")
    result = run(copier)
    ((copy, tags),) = snapshots(DEST).items()
    assert tags["Lock"] == "compliance" and tags["Lock_CoolOffHours"] == "12"
    own = tags["DeleteOn"]
    assert own != DELETE_ON  # Copy_Retention: 30 days from the primary's creation
    with clock(NOW):
        lock = locks(DEST)[copy]
    assert lock["LockState"] == "compliance-cooloff" and lock["CoolOffPeriod"] == 12
    assert lock["LockExpiresOn"] == datetime.fromisoformat(own).replace(tzinfo=UTC)
    (item,) = result["locked"]
    assert item == {"snapshot_id": copy, "lock": "compliance", "until": own, "dest_region": DEST}
    assert source not in locks()  # the primary is the creator's to lock


def test_a_copy_of_an_unlocked_primary_is_not_locked(api):
    primary()
    run(copier)
    assert locks(DEST) == {} and api.ops("LockSnapshot") == []
    assert "Lock" not in next(iter(snapshots(DEST).values()))


def test_a_copy_whose_lock_failed_is_locked_by_the_next_sweep(api):
    primary(Lock="governance")
    api.fail("LockSnapshot", "IncorrectState", when=lambda params, region: region == DEST)
    first = run(copier)
    (copy,) = snapshots(DEST)
    assert first["failures"] == [] and copy not in locks(DEST)
    assert any("not locked (IncorrectState" in r for r in reasons(first))
    api.faults.clear()
    second = run(copier, now=NOW + timedelta(minutes=30))
    assert locks(DEST)[copy]["LockState"] == "governance"
    assert second["locked"] == [
        {
            "snapshot_id": copy,
            "lock": "governance",
            "until": DELETE_ON,
            "dest_region": DEST,
            "reason": copier.RELOCK,
        }
    ]
    assert "copied" not in second  # and nothing is copied twice


def test_a_notified_snapshot_run_looks_at_no_other_lock(api):
    source = primary(Lock="governance")
    event = {
        "detail-type": "EBS Snapshot Notification",
        "detail": {"event": "createSnapshot", "result": "succeeded", "snapshot_id": source},
    }
    run(copier, event)
    assert api.ops("DescribeLockedSnapshots") == []
    assert len(locks(DEST)) == 1


# ---- the manager ----------------------------------------------------------------------


def automated(delete_on, region=REGION, **extra):
    return make_snapshot({"Type": "Automated", "DeleteOn": delete_on, **extra}, region=region)


def test_on_its_delete_on_the_lock_has_expired_and_the_snapshot_is_deleted():
    launch({"Backup": "No"})
    with clock(NOW):
        sid = automated(DELETE_ON, Lock="governance")
        ec2().lock_snapshot(SnapshotId=sid, LockMode="governance", ExpirationDate=MIDNIGHT)
    before = run(manager, now=MIDNIGHT - timedelta(hours=1))
    assert sid in snapshots() and "deleted" not in before
    after = run(manager, now=MIDNIGHT + timedelta(hours=5))
    assert [d["snapshot_id"] for d in after["deleted"]] == [sid]
    assert snapshots() == {}


def test_a_due_snapshot_whose_lock_was_extended_is_left_with_a_warning(api):
    with clock(NOW - timedelta(days=8)):
        sid = automated("2026-11-20", Lock="governance")
    until = datetime(2027, 1, 1, tzinfo=UTC)
    ec2().lock_snapshot(SnapshotId=sid, LockMode="governance", ExpirationDate=until)
    result = run(manager)
    assert sid in snapshots() and result["failures"] == []
    assert api.ops("DeleteSnapshot") == []  # known locked: not even asked
    (warning,) = [w for w in result["warnings"] if w["id"] == sid]
    assert "locked (governance) until 2027-01-01 00:00 UTC" in warning["reason"]
    assert {"id": sid, "reason": "locked"} in result["skipped"]
    assert api.ops("UnlockSnapshot") == []


def test_a_lock_placed_after_the_listing_is_found_when_the_delete_is_refused(api):
    sid = automated("2026-11-20")
    api.fail("DescribeLockedSnapshots", "RequestLimitExceeded", times=10)  # the first call
    api.after["DescribeSnapshots"] = lambda response: (
        ec2().lock_snapshot(SnapshotId=sid, LockMode="governance", LockDuration=7) and response
    )
    result = run(manager)
    assert sid in snapshots() and result["failures"] == []
    assert any(r.startswith("snapshot locks not read") for r in reasons(result))
    (warning,) = [w for w in result["warnings"] if w["id"] == sid]
    assert "due, but locked (governance) until " in warning["reason"]
    assert api.ops("UnlockSnapshot") == []


def test_keep_forever_on_a_locked_snapshot_keeps_it_after_the_lock_expires():
    with clock(NOW):
        sid = automated(DELETE_ON, Lock="governance", KeepForever="yes")
        ec2().lock_snapshot(SnapshotId=sid, LockMode="governance", ExpirationDate=MIDNIGHT)
    result = run(manager, now=MIDNIGHT + timedelta(days=30))
    assert sid in snapshots() and "deleted" not in result


def test_a_lock_snapshot_still_unlocked_after_a_day_is_reported(capsys):
    with clock(NOW - timedelta(hours=30)):
        old = automated(DELETE_ON, Lock="governance")
        old_copy = automated(
            DELETE_ON, Lock="compliance", Source_SnapshotId="snap-1", Source_Region=DEST
        )
        locked = automated(DELETE_ON, Lock="governance")
        no_lock = automated(DELETE_ON)
    ec2().lock_snapshot(SnapshotId=locked, LockMode="governance", LockDuration=30)
    with clock(NOW - timedelta(hours=3)):
        young = automated(DELETE_ON, Lock="governance")
    result = run(manager)
    missing = {w["id"]: w["reason"] for w in result["warnings"] if "not locked" in w["reason"]}
    assert set(missing) == {old, old_copy}
    assert "see the creator's warnings" in missing[old]
    assert f"see the copier of {DEST}'s warnings" in missing[old_copy]
    assert result["counts"]["lock_missing"] == 2
    assert young and no_lock
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert '"LocksMissing": 2' in summary


def test_the_manager_reports_no_missing_lock_when_all_are_locked(capsys):
    launch({"Backup": "No"})
    result = run(manager)
    assert "lock_missing" not in result["counts"]
    assert '"LocksMissing": 0' in capsys.readouterr().out.strip().splitlines()[-1]


# ---- days, end to end -----------------------------------------------------------------


def test_a_week_of_locked_backups_is_deleted_on_the_day_each_lock_expires():
    """Retention=2: each day's snapshot is locked two days, then deleted by the manager the
    morning its lock has expired; never earlier, and never unlocked."""
    launch({"Backup": "Yes", "Lock": "governance", "Retention": "2"})
    start = datetime(2026, 12, 1, 5, tzinfo=UTC)
    made = {}
    for day in range(5):
        now = start + timedelta(days=day)
        run(manager, now=now - timedelta(hours=1))
        run(creator, {"id": f"day-{day}"}, now=now)
        new = set(snapshots()) - set(made)
        made |= {sid: now for sid in new}
        with clock(now):
            live = {s for s, lock in locks().items() if lock["LockState"] == "governance"}
        assert set(snapshots()) == live  # every snapshot there is locked; none lingers
    assert len(made) == 5 and len(snapshots()) == 2


# ---- after review: undo, Multi-Attach, dry run, paging, what is left alone ----------------


def test_undo_is_removing_the_lock_tag_then_unlocking_else_the_sweep_locks_again():
    launch({"Backup": "Yes", "Lock": "compliance"})
    run(creator, {"id": "day-1"})
    (sid,) = snapshots()
    with clock(NOW + timedelta(hours=1)):  # within the cooling-off period
        ec2().unlock_snapshot(SnapshotId=sid)
    run(creator, {"id": "retry"}, now=NOW + timedelta(hours=2))
    assert sid in locks()  # the Lock tag stayed: locked again
    with clock(NOW + timedelta(hours=3)):
        ec2().delete_tags(Resources=[sid], Tags=[{"Key": "Lock"}])
        ec2().unlock_snapshot(SnapshotId=sid)
    run(creator, {"id": "again"}, now=NOW + timedelta(hours=4))
    assert sid not in locks()


def test_a_shortened_lock_is_extended_to_delete_on(api):
    sid = make_snapshot({"Type": "Automated", "Lock": "governance", "DeleteOn": DELETE_ON})
    with clock(NOW):
        ec2().lock_snapshot(SnapshotId=sid, LockMode="governance", LockDuration=2)
    result = run(creator)
    assert [i["snapshot_id"] for i in result["locked"]] == [sid]
    with clock(NOW):
        assert locks()[sid]["LockExpiresOn"] == MIDNIGHT


def test_a_multi_attach_volume_is_locked_until_its_own_delete_on():
    short, _ = launch({"Backup": "Yes", "Retention": "3", "Lock": "governance"})
    long, _ = launch({"Backup": "Yes", "Retention": "30"})
    client = ec2()
    vid = client.create_volume(
        AvailabilityZone=REGION + "a", Size=4, VolumeType="io2", Iops=100, MultiAttachEnabled=True
    )["VolumeId"]
    for iid in (short, long):
        client.attach_volume(VolumeId=vid, InstanceId=iid, Device="/dev/sdf")
    run(creator)
    (sid,) = [
        s
        for s, tags in snapshots().items()
        if tags["DeleteOn"] == "2026-12-26"
        and ec2().describe_snapshots(SnapshotIds=[s])["Snapshots"][0]["VolumeId"] == vid
    ]
    assert snapshots()[sid]["Lock"] == "governance"
    with clock(NOW):
        assert locks()[sid]["LockExpiresOn"] == datetime(2026, 12, 26, tzinfo=UTC)


def test_a_dry_run_in_a_region_with_compliance_locks_does_not_fail(api):
    launch({"Backup": "Yes", "Lock": "compliance"})
    locked = make_snapshot({"Type": "Automated", "Lock": "compliance", "DeleteOn": DELETE_ON})
    ec2().lock_snapshot(SnapshotId=locked, LockMode="compliance", LockDuration=30)
    with clock(NOW + timedelta(days=3)):  # past its cooling-off: it refuses any other lock
        result = creator.run({"dry_run": True}, None, now=NOW)
    assert result["failures"] == []
    assert any("not probed" in s["reason"] for s in result["skipped"])


def test_the_copier_leaves_locked_copies_alone_and_a_notified_run_other_copies(api):
    source = primary(Lock="governance")
    run(copier)
    other = make_snapshot(
        {
            "Type": "Automated",
            "DeleteOn": DELETE_ON,
            "Lock": "governance",
            "Source_SnapshotId": "snap-other",
            "Source_Region": REGION,
        },
        region=DEST,
    )
    api.calls.clear()
    event = {
        "detail-type": "EBS Snapshot Notification",
        "detail": {"event": "createSnapshot", "result": "succeeded", "snapshot_id": source},
    }
    run(copier, event, now=NOW + timedelta(minutes=5))
    assert api.ops("LockSnapshot") == []  # the notified run: that snapshot only
    run(copier, now=NOW + timedelta(minutes=30))
    assert [p["SnapshotId"] for p in api.ops("LockSnapshot")] == [other]  # not the locked copy


def test_every_page_of_locks_is_read(api):
    api.page_size = 2
    due = [automated("2026-11-20", Lock="governance") for _ in range(5)]
    for sid in due:
        ec2().lock_snapshot(SnapshotId=sid, LockMode="governance", LockDuration=30)
    api.calls.clear()
    result = run(manager)
    assert set(snapshots()) == set(due) and api.ops("DeleteSnapshot") == []
    assert len([w for w in result["warnings"] if "due, but locked" in w["reason"]]) == 5
    assert len(api.ops("DescribeLockedSnapshots")) == 3


def test_no_missing_lock_once_delete_on_has_come_or_for_a_failed_snapshot():
    with clock(NOW - timedelta(days=3)):
        due = automated("2026-11-26", Lock="governance")
        broken = automated(DELETE_ON, Lock="governance")
    set_snapshot_state(broken, "error")
    result = run(manager)
    assert "lock_missing" not in result["counts"]
    assert due not in [w["id"] for w in result["warnings"] if "not locked" in w["reason"]]
