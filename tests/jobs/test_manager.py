import itertools
from datetime import timedelta

import pytest
from conftest import DEST, NOW, REGION, ec2, launch, make_snapshot, snapshot_of, snapshots

import ebs_snapshot_manager as manager

NO_VOLUMES = {"protected": 0, "unprotected": 0}  # the coverage check ran; no Backup instance


def automated(delete_on, region=REGION, **extra):
    return make_snapshot({"Type": "Automated", "DeleteOn": delete_on, **extra}, region=region)


def run(event=None, region=REGION, now=NOW):
    return manager.run(event or {}, None, region=region, now=now)


def test_deletes_what_expired_today_or_earlier_and_keeps_the_rest():
    today, yesterday, long_ago = (
        automated("2026-11-26"),
        automated("2026-11-25"),
        automated("2025-01-01"),
    )
    tomorrow, later = automated("2026-11-27"), automated("2027-06-01")
    result = run()
    assert set(snapshots()) == {tomorrow, later}
    assert {d["snapshot_id"] for d in result["deleted"]} == {today, yesterday, long_ago}
    assert result["counts"] == NO_VOLUMES | {"deleted": 3, "kept": 2}


def test_missed_days_are_caught_up():
    """The manager did not run for three days: all that expired meanwhile goes at once."""
    ids = [automated(f"2026-11-{d}") for d in (23, 24, 25, 26)]
    keep = automated("2026-11-27")
    run(now=NOW - timedelta(days=4))  # last run before the outage: nothing due yet
    assert set(snapshots()) == {*ids, keep}
    run()
    assert set(snapshots()) == {keep}


@pytest.mark.parametrize(
    "tags",
    [
        {"DeleteOn": "2026-11-01"},  # no Type at all: someone's own snapshot
        {"Type": "Manual", "DeleteOn": "2026-11-01"},
        {"Type": "automated", "DeleteOn": "2026-11-01"},  # tag values are case-sensitive
        {},
    ],
)
def test_never_touches_a_snapshot_without_type_automated(tags, api):
    sid = make_snapshot(tags)
    api.calls.clear()
    result = run()
    assert sid in snapshots()
    assert "DeleteSnapshot" not in api.names()
    assert result["counts"] == NO_VOLUMES | {}


def test_never_deletes_what_is_not_automated_even_if_the_filter_fails(monkeypatch):
    """Defence in depth: were the server-side filter lost, the verdict still refuses."""
    mine = make_snapshot({"DeleteOn": "2026-11-01"})
    due = automated("2026-11-01")

    def unfiltered(client):
        return client.describe_snapshots(OwnerIds=["self"])["Snapshots"]

    monkeypatch.setattr(manager, "automated_snapshots", unfiltered)
    run()
    assert set(snapshots()) == {mine}
    assert due not in snapshots()


@pytest.mark.parametrize("value", ["yes", "", "true", "2030-01-01", "legal hold", "No way"])
def test_keep_forever_keeps(value):
    sid = automated("2026-11-01", KeepForever=value)
    result = run()
    assert sid in snapshots()
    assert result["skipped"][0]["id"] == sid
    assert result["counts"] == NO_VOLUMES | {"kept_forever": 1, "skipped": 1}


def test_keep_forever_before_its_delete_on_is_only_counted():
    sid = automated("2026-12-01", KeepForever="yes")
    result = run()
    assert sid in snapshots()
    assert result["counts"] == NO_VOLUMES | {"kept_forever": 1}


@pytest.mark.parametrize("key", ["keepforever", "Keepforever", "KeepForever ", " keepForever"])
def test_a_near_miss_keep_forever_key_keeps_with_a_warning_naming_it(key):
    sid = automated("2026-11-01", **{key: "yes"})
    result = run()
    assert sid in snapshots()
    (warning,) = result["warnings"]
    assert warning["id"] == sid and repr(key) in warning["reason"] and "rename" in warning["reason"]
    assert result["counts"]["kept_forever"] == 1


@pytest.mark.parametrize("value", [" no", "no ", "n o"])
def test_keep_forever_is_released_only_by_exactly_a_no_word(value):
    """As the IAM policy's Deny reads it: a value with spaces keeps (a backup kept too long
    costs little)."""
    sid = automated("2026-11-01", KeepForever=value)
    run()
    assert sid in snapshots()


@pytest.mark.parametrize("value", ["No", "no", "false", "0", "off"])
def test_keep_forever_no_does_not_keep(value):
    sid = automated("2026-11-01", KeepForever=value)
    run()
    assert sid not in snapshots()


@pytest.mark.parametrize(
    "value",
    [
        "",
        "2026/11/01",
        "01-11-2026",
        "2026-11-1",
        "20261101",
        "2026-02-30",
        "soon",
        " 2026-11-01",
        "2026-11-01T00:00:00",
    ],
)
def test_unreadable_delete_on_keeps_with_a_warning(value):
    sid = automated(value)
    result = run()
    assert sid in snapshots()
    assert [w["id"] for w in result["warnings"]] == [sid]
    assert repr(value) in result["warnings"][0]["reason"]


def test_missing_delete_on_keeps_with_a_warning():
    sid = make_snapshot({"Type": "Automated"})
    result = run()
    assert sid in snapshots()
    assert [w["id"] for w in result["warnings"]] == [sid]


def test_snapshot_used_by_an_ami_is_skipped_with_a_warning_and_the_rest_deleted():
    iid, _ = launch({"Name": "golden"})
    image = ec2().create_image(InstanceId=iid, Name="golden-image")["ImageId"]
    (in_use,) = [s["SnapshotId"] for s in ec2().describe_snapshots(OwnerIds=["self"])["Snapshots"]]
    ec2().create_tags(
        Resources=[in_use],
        Tags=[{"Key": "Type", "Value": "Automated"}, {"Key": "DeleteOn", "Value": "2026-11-01"}],
    )
    others = [automated("2026-11-01") for _ in range(2)]
    result = run()  # no exception: not a failure
    assert set(snapshots()) == {in_use}
    assert {d["snapshot_id"] for d in result["deleted"]} == set(others)
    (warning,) = result["warnings"]
    assert warning["id"] == in_use and image in warning["reason"]
    assert result["failures"] == []


def test_a_snapshot_already_gone_is_not_a_failure(api):
    sid = automated("2026-11-01")
    api.fail("DeleteSnapshot", "InvalidSnapshot.NotFound")
    result = run()
    assert result["failures"] == []
    assert result["skipped"] == [{"id": sid, "reason": "already deleted"}]


def test_an_unexpected_error_fails_that_snapshot_only_and_the_run_raises(api):
    _, b, _ = (automated("2026-11-01") for _ in range(3))
    api.fail("DeleteSnapshot", "UnauthorizedOperation", when=lambda p, r: p["SnapshotId"] == b)
    with pytest.raises(manager.JobFailed) as err:
        run()
    assert set(snapshots()) == {b}
    assert b in str(err.value) and "UnauthorizedOperation" in str(err.value)
    assert err.value.summary["counts"]["deleted"] == 2


def test_copies_are_deleted_only_by_the_manager_of_their_own_region(api):
    here = automated("2026-11-01")
    copy = automated("2026-11-01", region=DEST, Source_SnapshotId=here, Source_Region=REGION)
    api.calls.clear()
    run()
    assert {r for r, _, _ in api.calls} == {REGION}
    assert copy in snapshots(DEST)
    run(region=DEST)
    assert snapshots(DEST) == {}


def test_dry_run_deletes_nothing_and_lists_what_it_would(api):
    due = sorted(automated("2026-11-01") for _ in range(3))
    automated("2026-12-01")
    result = run({"dry_run": True})
    assert len(snapshots()) == 4
    deletes = api.ops("DeleteSnapshot")
    assert len(deletes) == 1 and deletes[0]["DryRun"] is True  # one permission probe
    assert sorted(d["snapshot_id"] for d in result["would_delete"]) == due
    assert result["permitted"] == [{"permission": "ec2:DeleteSnapshot", "id": REGION}]


def test_dry_run_reports_a_refused_delete_permission(api):
    automated("2026-11-01")
    api.fail("DeleteSnapshot", "UnauthorizedOperation")
    with pytest.raises(manager.JobFailed, match="ec2:DeleteSnapshot would be refused"):
        run({"dry_run": True})
    assert len(snapshots()) == 1


def test_deletes_while_paging_and_misses_nothing(api):
    api.page_size = 3
    due = {automated("2026-11-01") for _ in range(8)}
    kept = {automated("2026-12-31") for _ in range(4)}
    api.calls.clear()
    result = run()
    assert len(api.ops("DescribeSnapshots")) == 4  # 12 snapshots, 3 a page
    assert all(p["MaxResults"] == 1000 for p in api.ops("DescribeSnapshots"))
    assert set(snapshots()) == kept
    assert {d["snapshot_id"] for d in result["deleted"]} == due


def test_lists_with_server_side_filters_owned_by_this_account(api):
    run()
    (params,) = api.ops("DescribeSnapshots")
    assert params["OwnerIds"] == ["self"]
    assert params["Filters"] == [{"Name": "tag:Type", "Values": ["Automated"]}]


def test_calls_are_one_listing_and_one_delete_per_expired_snapshot(api):
    for _ in range(3):
        automated("2026-11-01")
    for _ in range(2):
        automated("2027-01-01")
    api.calls.clear()
    run()
    # The listing, the coverage check's three reads (regions, instances, volume opt-outs),
    # the snapshots locked now (a due one that is locked is not deleted), and the drill
    # volumes a run that died may have left (filtered on Type=RestoreDrill).
    coverage = ["DescribeInstances", "DescribeRegions", "DescribeSnapshots", "DescribeVolumes"]
    assert sorted(api.names()) == sorted(
        ["DeleteSnapshot"] * 3 + coverage + ["DescribeLockedSnapshots", "DescribeVolumes"]
    )


def test_keep_forever_added_after_the_listing_is_kept_not_failed(api):
    """The IAM policy refuses to delete a KeepForever snapshot (UnauthorizedOperation, as
    IAM answers): if someone tagged it after the listing, it is kept, and said so."""
    sid = automated("2026-11-01")

    def tag_it_after_listing(response):
        ec2().create_tags(Resources=[sid], Tags=[{"Key": "KeepForever", "Value": "audit"}])
        return response

    api.after["DescribeSnapshots"] = tag_it_after_listing
    api.fail("DeleteSnapshot", "UnauthorizedOperation", when=lambda p, r: p["SnapshotId"] == sid)
    result = run()
    assert sid in snapshots() and result["failures"] == []
    assert any("added since it was listed" in s["reason"] for s in result["skipped"])


def test_a_refused_delete_of_a_snapshot_still_not_kept_is_a_failure(api):
    sid = automated("2026-11-01")
    api.fail("DeleteSnapshot", "UnauthorizedOperation", when=lambda p, r: p["SnapshotId"] == sid)
    with pytest.raises(manager.JobFailed, match="UnauthorizedOperation"):
        run()


def test_the_last_backup_of_an_instance_with_an_unreadable_backup_tag_is_kept():
    """The creator skips Backup=Yse with a warning; the manager must not then delete its
    volumes' last snapshots: a typo must never cost a backup."""
    _, vols = launch({"Backup": "Yse"})
    vid = vols["/dev/sda1"]
    older, newest = (
        snapshot_of(vid, {"Type": "Automated", "DeleteOn": "2026-11-01"}) for _ in range(2)
    )
    run()
    assert len({older, newest} & set(snapshots())) == 1  # the newest of the two stays


@pytest.mark.parametrize("value", [" no", "No ", " OFF "])
def test_a_keep_forever_no_word_with_spaces_keeps_with_a_warning(value):
    sid = automated("2026-11-01", KeepForever=value)
    result = run()
    assert sid in snapshots()
    (warning,) = result["warnings"]
    assert "not exactly a no-word" in warning["reason"]


def test_expired_copies_are_counted_whatever_the_listing_order():
    """The newest completed copy of a source volume is never counted as left behind (its
    region's manager keeps it for a while), whichever copy the listing shows first."""

    def copy(n, state, delete_on="2026-11-01"):
        snap = {
            "SnapshotId": f"snap-{n}",
            "StartTime": NOW - timedelta(days=10 - n),
            "State": state,
        }
        return snap, {"DeleteOn": delete_on, "Source_VolumeId": "vol-1"}

    # snap-3, the newest completed, is one day past DeleteOn: not left behind, whatever order.
    copies = [copy(5, "error"), copy(1, "completed"), copy(3, "completed", "2026-11-25")]
    for order in itertools.permutations(copies):
        left = manager.ExpiredCopies(NOW.date())
        for snap, tags in order:
            left.see(snap, tags)
        assert left.count() == 2  # snap-5 (in error) and snap-1
