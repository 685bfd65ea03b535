"""The archive tier: the creator tags the monthly and yearly primaries an instance's Archive
tag names, the copier carries the tag to copies, and the manager of each region archives
them a day on when 90 days or more remain to their DeleteOn, once their copies are made;
a Restore tag brings one back, once.

moto (5.2.3 and later) archives and restores at once and enforces none of AWS's rules:
these tests check the rules the jobs enforce themselves, and force the states AWS passes
through (archival or restore in progress, failed) on moto's snapshot objects.
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
    moto_snapshot,
    set_snapshot_state,
    snapshot_details,
    snapshots,
)

import ebs_snapshot_copier as copier
import ebs_snapshot_creator as creator
import ebs_snapshot_manager as manager

NOW = datetime(2026, 12, 2, 5, tzinfo=UTC)  # the manager's run, a day after a monthly
FIRST = datetime(2026, 12, 1, 2, tzinfo=UTC)  # the 1st of a month: the monthly tier applies


def run(job, now=NOW, region=REGION, event=None):
    try:
        return job.run(event or {}, None, region=region, now=now)
    except job.JobFailed as failed:
        return failed.summary


def automated(delete_on, taken=FIRST, region=REGION, **tags):
    """An automated snapshot taken at ``taken`` (moto stamps its own clock: set it)."""
    sid = make_snapshot({"Type": "Automated", "DeleteOn": delete_on, **tags}, region=region)
    moto_snapshot(sid, region).start_time = taken.replace(tzinfo=None)
    return sid


def tier(sid, region=REGION):
    return snapshot_details(region)[sid].get("StorageTier")


def force(sid, status, storage_tier=None, progress=50, region=REGION):
    """The tier states AWS passes through, which moto skips."""
    snap = moto_snapshot(sid, region)
    snap.last_tiering_operation_status = status
    snap.last_tiering_progress = progress
    snap.last_tiering_operation_status_detail = f"forced: {status}"
    if storage_tier:
        snap.storage_tier = storage_tier


def skipped(result, sid):
    return [s["reason"] for s in result["skipped"] if s["id"] == sid]


# ---- the creator: which primaries ask for the archive tier ----------------------------------


@pytest.mark.parametrize(
    "archive, day, expected",
    [
        ("monthly", FIRST, "Yes"),
        ("Monthly, Yearly", FIRST, "Yes"),
        ("monthly", FIRST + timedelta(days=1), None),  # a daily snapshot
        ("yearly", FIRST, None),  # the 1st of December is a monthly, not a yearly
        ("yearly", datetime(2027, 1, 1, 2, tzinfo=UTC), "Yes"),
        ("monthly", datetime(2027, 1, 1, 2, tzinfo=UTC), None),  # 1 January is the yearly
        ("no", FIRST, None),
    ],
)
def test_the_creator_tags_the_primaries_of_the_tiers_archive_names(archive, day, expected):
    tags = {"Backup": "Yes", "Retention_Monthly": "12", "Retention_Yearly": "7"}
    launch(tags | {"Archive": archive})
    result = run(creator, now=day)
    (written,) = snapshots().values()
    assert written.get("Archive") == expected
    assert result["warnings"] == []
    assert written["Retention_Tier"] in ("monthly", "yearly", "daily")


@pytest.mark.parametrize("archive", ["weekly", "sometimes", "monthly,daily"])
def test_an_unreadable_archive_tag_warns_and_archives_nothing(archive):
    launch({"Backup": "Yes", "Retention_Monthly": "12", "Archive": archive})
    result = run(creator, now=FIRST)
    (written,) = snapshots().values()
    assert "Archive" not in written
    (warning,) = result["warnings"]
    assert repr(archive) in warning["reason"] and "not archived" in warning["reason"]


def test_archive_naming_a_tier_the_instance_does_not_keep_warns():
    launch({"Backup": "Yes", "Archive": "monthly"})
    result = run(creator, now=FIRST)
    (written,) = snapshots().values()
    assert written["Retention_Tier"] == "daily" and "Archive" not in written
    (warning,) = result["warnings"]
    assert "no Retention_Monthly tag" in warning["reason"]


def test_the_copier_carries_archive_to_the_copies():
    primary = automated("2027-12-01", Copy_Dest=DEST, Archive="Yes")
    run(copier, now=FIRST + timedelta(hours=2))
    (copy,) = snapshots(DEST).values()
    assert copy["Source_SnapshotId"] == primary and copy["Archive"] == "Yes"


# ---- the manager: when a snapshot goes to the archive tier -------------------------------


@pytest.mark.dates  # also run a year ahead (make test)
def test_a_day_old_snapshot_with_90_days_or_more_to_go_is_archived():
    far = automated("2027-12-01", Archive="Yes")
    edge = automated((NOW.date() + timedelta(days=90)).isoformat(), Archive="Yes")
    plain = automated("2027-12-01")
    result = run(manager)
    assert (tier(far), tier(edge), tier(plain)) == ("archive", "archive", "standard")
    assert {a["snapshot_id"] for a in result["sent_to_archive"]} == {far, edge}
    assert result["counts"]["archived"] == 2 and "restoring" not in result["counts"]


def test_a_snapshot_under_a_day_old_or_not_completed_waits():
    young = automated("2027-12-01", taken=NOW - timedelta(hours=23), Archive="Yes")
    pending = automated("2027-12-01", Archive="Yes")
    set_snapshot_state(pending, "pending")
    run(manager)
    assert (tier(young), tier(pending)) == ("standard", "standard")
    assert run(manager, now=NOW + timedelta(hours=2))["counts"]["archived"] == 1
    assert tier(young) == "archive"


@pytest.mark.dates  # also run a year ahead (make test)
def test_under_90_days_to_delete_on_it_stays_standard_and_says_why_once():
    sid = automated((NOW.date() + timedelta(days=89)).isoformat(), Archive="Yes")
    first = run(manager)
    assert tier(sid) == "standard"
    (reason,) = skipped(first, sid)
    assert "89 days to its DeleteOn" in reason and "90-day minimum" in reason
    assert snapshots()[sid]["Archive_Note"].startswith("2026-12-02: stays standard: 89 days")
    second = run(manager, now=NOW + timedelta(days=1))
    assert skipped(second, sid) == [] and tier(sid) == "standard"
    assert second["warnings"] == [] and second["failures"] == []


def test_keep_forever_is_archived_whatever_its_delete_on():
    sid = automated(
        (NOW.date() + timedelta(days=10)).isoformat(), Archive="Yes", KeepForever="audit"
    )
    run(manager)
    assert tier(sid) == "archive"


def test_a_primary_is_archived_only_once_every_copy_it_asks_for_is_complete():
    """An archived snapshot cannot be copied: its copies come first."""
    sid = automated("2027-12-01", Archive="Yes", Copy_Dest=f"{DEST},eu-west-1")
    result = run(manager)
    assert tier(sid) == "standard"
    assert "copies in eu-west-1, us-west-2 are complete" in skipped(result, sid)[0]
    run(copier, now=NOW)  # both copies made, and complete at once (moto)
    (copy,) = snapshots(DEST)
    set_snapshot_state(copy, "pending", region=DEST)
    run(manager, now=NOW + timedelta(hours=1))
    assert tier(sid) == "standard"  # one copy still pending
    set_snapshot_state(copy, "completed", region=DEST)
    run(manager, now=NOW + timedelta(hours=2))
    assert tier(sid) == "archive"


def test_a_copy_is_archived_by_its_own_regions_manager_by_its_own_delete_on():
    primary = automated("2027-12-01", Copy_Dest=DEST, Archive="Yes", Copy_Retention="60")
    run(copier, now=FIRST + timedelta(hours=2))
    (copy,) = snapshots(DEST)
    moto_snapshot(copy, DEST).start_time = FIRST.replace(tzinfo=None)
    result = run(manager, region=DEST)
    assert tier(copy, DEST) == "standard"  # 60 days from the primary: under 90 days left
    assert "under the archive's 90-day minimum" in skipped(result, copy)[0]
    long_primary = automated("2027-12-01", Copy_Dest=DEST, Archive="Yes")
    run(copier, now=FIRST + timedelta(hours=2))
    (long_copy,) = set(snapshots(DEST)) - {copy}
    moto_snapshot(long_copy, DEST).start_time = FIRST.replace(tzinfo=None)
    run(manager, region=DEST)
    assert tier(long_copy, DEST) == "archive"
    assert {tier(primary), tier(long_primary)} == {"standard"}  # not this region's manager


def test_an_archive_already_under_way_is_not_asked_for_again(api):
    sid = automated("2027-12-01", Archive="Yes")
    force(sid, "archival-in-progress")
    result = run(manager)
    assert api.ops("ModifySnapshotTier") == []
    assert result["counts"]["archived"] == 1
    (lookup,) = api.ops("DescribeSnapshotTierStatus")
    assert lookup["Filters"] == [{"Name": "snapshot-id", "Values": [sid]}]


def test_an_archived_snapshot_is_deleted_on_its_delete_on():
    sid = automated("2027-03-15", Archive="Yes")
    run(manager)
    assert tier(sid) == "archive"
    result = run(manager, now=datetime(2027, 3, 15, 5, tzinfo=UTC))
    assert sid not in snapshots()
    assert [d["snapshot_id"] for d in result["deleted"]] == [sid]


def test_a_refused_archive_fails_that_snapshot_only(api):
    refused, other = automated("2027-12-01", Archive="Yes"), automated("2027-12-01", Archive="Yes")
    api.fail("ModifySnapshotTier", "IncorrectState", when=lambda p, r: p["SnapshotId"] == refused)
    result = run(manager)
    assert (tier(refused), tier(other)) == ("standard", "archive")
    (failure,) = result["failures"]
    assert failure["id"] == refused and "not archived" in failure["error"]


def test_tier_status_unreadable_delays_the_archives_with_a_warning(api):
    sid = automated("2027-12-01", Archive="Yes")
    api.fail("DescribeSnapshotTierStatus", "UnauthorizedOperation")
    result = run(manager)
    assert tier(sid) == "standard" and result["failures"] == []
    assert any("tier status not read" in w["reason"] for w in result["warnings"])


def test_dry_run_archives_nothing_and_says_it_would(api):
    sid = automated("2027-12-01", Archive="Yes")
    result = run(manager, event={"dry_run": True})
    assert tier(sid) == "standard"
    assert [a["snapshot_id"] for a in result["would_archive"]] == [sid]
    assert {"permission": "ec2:ModifySnapshotTier", "id": REGION} in result["permitted"]


# ---- restores ----------------------------------------------------------------------------


def archived(delete_on="2027-12-01", **tags):
    sid = automated(delete_on, Archive="Yes", **tags)
    ec2().modify_snapshot_tier(SnapshotId=sid, StorageTier="archive")
    return sid


def test_a_restore_tag_is_asked_for_once_and_becomes_restore_requested(api):
    sid = archived(Restore="7")
    result = run(manager)
    (call,) = api.ops("RestoreSnapshotTier")
    assert call == {"SnapshotId": sid, "TemporaryRestoreDays": 7}
    tags = snapshots()[sid]
    assert "Restore" not in tags and tags["Restore_Requested"] == "2026-12-02"
    assert tags["Archive"] == "Yes"  # a temporary restore goes back to the archive by itself
    assert result["restore_started"] == [{"snapshot_id": sid, "restore": "7"}]
    assert result["counts"]["restoring"] == 1
    force(sid, "temporary-restore-in-progress", progress=40)
    again = run(manager, now=NOW + timedelta(days=1))
    assert api.ops("RestoreSnapshotTier") == [call]
    (restoring,) = again["restoring"]
    assert restoring == {"snapshot_id": sid, "requested": "2026-12-02", "progress": "40%"}


def test_a_finished_restore_is_said_once_and_its_request_tag_goes():
    sid = archived(Restore="3")
    run(manager)
    force(sid, "temporary-restore-completed", progress=100)
    result = run(manager, now=NOW + timedelta(days=2))
    (ready,) = result["restored"]
    assert ready["snapshot_id"] == sid and ready["ready"].startswith("until ")
    assert "Restore_Requested" not in snapshots()[sid]
    later = run(manager, now=NOW + timedelta(days=3))
    assert "restored" not in later and "restoring" not in later["counts"]


def test_a_permanent_restore_drops_archive_so_it_is_not_archived_again(api):
    sid = archived(Restore="Permanent")
    api.calls.clear()  # the test's own ModifySnapshotTier
    run(manager)
    assert api.ops("RestoreSnapshotTier") == [{"SnapshotId": sid, "PermanentRestore": True}]
    tags = snapshots()[sid]
    assert "Archive" not in tags and "Restore" not in tags
    assert tier(sid) == "standard"
    run(manager, now=NOW + timedelta(days=5))
    assert tier(sid) == "standard" and api.ops("ModifySnapshotTier") == []


def test_a_failed_restore_is_a_failure_once():
    sid = archived(Restore="3")
    run(manager)
    force(sid, "temporary-restore-failed", storage_tier="archive")
    result = run(manager, now=NOW + timedelta(days=1))
    (failure,) = result["failures"]
    assert failure["id"] == sid and "temporary-restore-failed" in failure["error"]
    assert "Restore_Requested" not in snapshots()[sid]
    assert run(manager, now=NOW + timedelta(days=2))["failures"] == []


@pytest.mark.parametrize("value", ["soon", "0", "-3", ""])
def test_an_unreadable_restore_tag_warns_and_restores_nothing(value, api):
    sid = archived(Restore=value)
    result = run(manager)
    assert api.ops("RestoreSnapshotTier") == []
    assert snapshots()[sid]["Restore"] == value
    (warning,) = result["warnings"]
    assert warning["id"] == sid and "nor permanent; not restored" in warning["reason"]


def test_restore_on_a_snapshot_that_is_not_archived_warns(api):
    sid = automated("2027-12-01", Restore="5")
    result = run(manager)
    assert api.ops("RestoreSnapshotTier") == []
    (warning,) = result["warnings"]
    assert warning["id"] == sid and "it is not archived" in warning["reason"]


def test_a_refused_restore_keeps_its_tag_for_the_next_run(api):
    sid = archived(Restore="5")
    api.fail("RestoreSnapshotTier", "IncorrectState", times=1)
    first = run(manager)
    assert snapshots()[sid]["Restore"] == "5" and len(first["failures"]) == 1
    run(manager, now=NOW + timedelta(hours=1))
    assert "Restore_Requested" in snapshots()[sid]


# ---- what the manager reports, and what it no longer counts on --------------------------


def test_the_summary_and_metrics_count_archived_and_restoring(capsys):
    archived()
    archived(Restore="2")
    run(manager)
    line = [x for x in capsys.readouterr().out.splitlines() if '"summary"' in x][-1]
    assert '"SnapshotsArchived": 2' in line and '"SnapshotsRestoring": 1' in line


def test_an_archived_snapshot_is_not_a_volumes_recent_backup():
    _, volumes = launch({"Backup": "Yes"})
    (volume,) = volumes.values()
    launched = NOW - timedelta(days=30)
    for attachment in ec2_attachments(volume):
        attachment.attach_time = launched.replace(tzinfo=None)
    sid = ec2().create_snapshot(
        VolumeId=volume,
        TagSpecifications=[
            {
                "ResourceType": "snapshot",
                "Tags": [
                    {"Key": "Type", "Value": "Automated"},
                    {"Key": "DeleteOn", "Value": "2027-12-01"},
                ],
            }
        ],
    )["SnapshotId"]
    moto_snapshot(sid).start_time = (NOW - timedelta(hours=3)).replace(tzinfo=None)
    assert run(manager)["counts"]["unprotected"] == 0
    ec2().modify_snapshot_tier(SnapshotId=sid, StorageTier="archive")
    (unprotected,) = run(manager)["unprotected"]
    assert unprotected["volume_id"] == volume and "no completed snapshot" in unprotected["reason"]


def ec2_attachments(volume_id):
    """moto stamps attachments with its own clock: the test sets them back."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends

    backend = ec2_backends[DEFAULT_ACCOUNT_ID][REGION]
    attachment = backend.volumes[volume_id].attachment
    devices = [
        bdm
        for instance in backend.all_instances()
        for bdm in instance.block_device_mapping.values()
        if bdm.volume_id == volume_id
    ]
    return [attachment, *devices]


def test_the_archive_rule_by_hand():
    now = datetime(2026, 12, 2, 5, tzinfo=UTC)

    def snap(**tags):
        return {
            "SnapshotId": "snap-1",
            "State": "completed",
            "StartTime": now - timedelta(days=2),
            "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
        }

    assert manager.archive_verdict(snap(DeleteOn="2027-12-01"), now) is None  # not asked
    assert manager.archive_verdict(snap(Archive="Yes", DeleteOn="2027-03-02"), now)[0] == "archive"
    assert manager.archive_verdict(snap(Archive="Yes", DeleteOn="2027-03-01"), now)[0] == (
        "standard"
    )
    assert manager.archive_verdict(snap(Archive="Yes", DeleteOn="never"), now)[0] == "standard"
    restored = snap(Archive="Yes", DeleteOn="2027-12-01") | {"RestoreExpiryTime": now}
    assert manager.archive_verdict(restored, now) is None  # temporarily restored: archived
    assert manager.restore_request(" PERMANENT ") == ({"PermanentRestore": True}, None)
    assert manager.restore_request("10") == ({"TemporaryRestoreDays": 10}, None)
    assert date(2027, 3, 2) - now.date() == timedelta(days=90)


def test_dry_run_restores_nothing_and_leaves_the_tag(api):
    sid = archived(Restore="permanent")
    result = run(manager, event={"dry_run": True})
    assert api.ops("RestoreSnapshotTier") == [
        {"SnapshotId": sid, "PermanentRestore": True, "DryRun": True}
    ]
    assert snapshots()[sid]["Restore"] == "permanent" and snapshots()[sid]["Archive"] == "Yes"
    assert result["would_restore"] == [{"snapshot_id": sid, "restore": "permanent"}]
    assert {"permission": "ec2:RestoreSnapshotTier", "id": REGION} in result["permitted"]


def test_a_failed_archive_is_said_and_asked_again(api):
    sid = automated("2027-12-01", Archive="Yes")
    force(sid, "archival-failed")
    result = run(manager)
    (warning,) = result["warnings"]
    assert (
        warning["id"] == sid
        and "its last archive failed: forced: archival-failed" in (warning["reason"])
    )
    assert [c["SnapshotId"] for c in api.ops("ModifySnapshotTier")] == [sid]
    assert tier(sid) == "archive"


def test_a_snapshot_listed_twice_is_restored_once(api):
    """Pages shift while they are read: a snapshot may come twice. It acts once (the
    archived gauge may count it twice: remembering every archived id would make memory
    grow with the snapshots)."""
    sid = archived()
    other = archived(Restore="4")
    api.page_size = 1
    api.after["DescribeSnapshots"] = lambda response: {
        **response,
        "Snapshots": response["Snapshots"] * 2,
    }
    run(manager)
    assert [c["SnapshotId"] for c in api.ops("RestoreSnapshotTier")] == [other]
    assert sid != other


def test_an_archive_note_refused_is_a_warning_and_said_again(api):
    sid = automated((NOW.date() + timedelta(days=30)).isoformat(), Archive="Yes")
    api.fail("CreateTags", "UnauthorizedOperation", times=1)
    first = run(manager)
    (warning,) = first["warnings"]
    assert warning["id"] == sid and "Archive_Note not written" in warning["reason"]
    assert first["failures"] == [] and "Archive_Note" not in snapshots()[sid]
    second = run(manager, now=NOW + timedelta(days=1))
    assert skipped(second, sid) and "Archive_Note" in snapshots()[sid]


# ---- issue 26: nothing waits for a copy that will never be made; a held one restores ---------


@pytest.mark.parametrize(
    "tags, waits",
    [
        ({"Copy_Dest": DEST, "Copy_Retention": "1"}, False),  # the copy's DeleteOn has come
        ({"Copy_Dest": DEST, "Copy_Retention": "400"}, True),
        ({"Copy_Dest": "eu-west-l"}, False),  # a typo: no such region, no copy
        ({"Copy_Dest": DEST, "Copy_Retention": "seven"}, True),  # unreadable: the DeleteOn
    ],
)
@pytest.mark.dates  # also run a year ahead (make test)
def test_an_archive_waits_only_for_a_copy_the_copier_will_make(tags, waits):
    sid = automated("2027-12-01", Archive="Yes", **tags)
    result = run(manager)
    assert tier(sid) == ("standard" if waits else "archive")
    assert any("copies in" in reason for reason in skipped(result, sid)) == waits
    if not waits:  # and the copier agrees: it makes no copy, so none is waited for
        run(copier, now=NOW)
        assert snapshots(DEST) == {}


def test_an_archive_waits_for_a_vault_copy_only_while_one_is_to_be_made(monkeypatch):
    vault = "222233334444"
    monkeypatch.setenv("VAULT_ACCOUNT_IDS", vault)
    short = automated("2027-12-01", Archive="Yes", Vault_Account=vault, Vault_Retention="1")
    long = automated("2027-12-01", Archive="Yes", Vault_Account=vault)
    result = run(manager)  # the vault cannot be read here: only the long one waits for it
    assert tier(short) == "archive" and tier(long) == "standard"
    assert any(f"copies in {vault}/{REGION}" in r for r in skipped(result, long))


def test_a_restore_tag_on_a_held_last_backup_is_acted_on():
    """After an outage the volume's newest snapshot, an archived monthly, is kept past its
    DeleteOn as the volume's last backup: exactly the one someone wants back."""
    _, volumes = launch({"Backup": "Yes"})
    volume = volumes["/dev/sda1"]
    older = make_snapshot({"Type": "Automated", "DeleteOn": "2026-11-01"})
    sid = ec2().create_snapshot(VolumeId=volume)["SnapshotId"]
    tags = {"Type": "Automated", "DeleteOn": "2026-11-30", "Archive": "Yes"}
    ec2().create_tags(Resources=[sid], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    ec2().modify_snapshot_tier(SnapshotId=sid, StorageTier="archive")
    ec2().create_tags(Resources=[sid], Tags=[{"Key": "Restore", "Value": "permanent"}])
    result = run(manager)
    assert sid in snapshots() and older not in snapshots()  # held; the other one went
    assert result["restore_started"] == [{"snapshot_id": sid, "restore": "permanent"}]
    assert tier(sid) == "standard" and "Restore_Requested" in snapshots()[sid]


def test_a_restore_tag_on_a_snapshot_that_goes_now_asks_for_nothing(api):
    sid = archived("2026-11-30", Restore="7")  # due, and no volume keeps it
    result = run(manager)
    assert sid not in snapshots() and api.ops("RestoreSnapshotTier") == []
    assert "restore_started" not in result


def test_a_volumes_newest_snapshot_is_never_archived_it_is_its_quick_restore():
    """After an outage of the creator, an Archive=Yes monthly may be a volume's only recent
    backup (and anyone who can tag may write Archive=Yes): it stays standard until a newer
    snapshot of the volume completes."""
    _, volumes = launch({"Backup": "Yes"})
    volume = volumes["/dev/sda1"]
    with clock(FIRST):
        monthly = ec2().create_snapshot(VolumeId=volume)["SnapshotId"]
    tags = {"Type": "Automated", "DeleteOn": "2027-12-01", "Archive": "Yes"}
    ec2().create_tags(Resources=[monthly], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    result = run(manager)
    assert tier(monthly) == "standard"
    assert "its volume's newest snapshot" in skipped(result, monthly)[0]
    with clock(NOW):
        daily = ec2().create_snapshot(VolumeId=volume)["SnapshotId"]
    ec2().create_tags(
        Resources=[daily],
        Tags=[{"Key": "Type", "Value": "Automated"}, {"Key": "DeleteOn", "Value": "2026-12-09"}],
    )
    run(manager, now=NOW + timedelta(hours=1))
    assert tier(monthly) == "archive"
