import boto3
import pytest
from conftest import (
    DEST,
    DEST2,
    NOW,
    REGION,
    make_snapshot,
    moto_snapshot,
    set_snapshot_state,
    snapshot_details,
    snapshots,
)

import ebs_snapshot_copier as copier

LATER = "2026-12-03"


def primary(dests=DEST, delete_on=LATER, **extra):
    tags = {"Type": "Automated", "DeleteOn": delete_on, "Copy_Dest": dests, "Copy_State": "pending"}
    tags |= extra
    return make_snapshot(tags, description=f"web (i-1) - vol-1 (/dev/sda1) - {REGION}")


def run(event=None, region=REGION):
    return copier.run(event or {}, None, region=region, now=NOW)


def copies_of(source, region=DEST):
    return {
        sid: tags
        for sid, tags in snapshots(region).items()
        if tags.get("Source_SnapshotId") == source
    }


def test_copies_into_each_destination_with_the_contract_tags():
    src = primary(f"{DEST} {DEST2}", Name="web")
    result = run()
    for region in (DEST, DEST2):
        ((cid, tags),) = copies_of(src, region).items()
        assert tags == {
            "Type": "Automated",
            "DeleteOn": LATER,
            "Name": "web",
            "Source_SnapshotId": src,
            "Source_Region": REGION,
            "Source_VolumeId": snapshot_details()[src]["VolumeId"],
        }
        assert (
            snapshot_details(region)[cid]["Description"] == snapshot_details()[src]["Description"]
        )
    assert result["counts"]["copied"] == 2
    assert {c["dest_region"] for c in result["copied"]} == {DEST, DEST2}


def test_tags_travel_in_the_copy_call_itself(api):
    src = primary(KeepForever="yes")
    api.calls.clear()
    run()
    assert "CreateTags" not in api.names()
    (params,) = api.ops("CopySnapshot", region=DEST)
    tags = {t["Key"]: t["Value"] for t in params["TagSpecifications"][0]["Tags"]}
    assert tags["KeepForever"] == "yes" and tags["Source_SnapshotId"] == src
    assert params["SourceRegion"] == REGION


def test_pending_primary_waits_for_a_later_run():
    src = primary()
    set_snapshot_state(src, "pending")
    run()
    assert copies_of(src) == {}
    set_snapshot_state(src, "completed")
    run()
    assert len(copies_of(src)) == 1


def test_untagged_or_manual_snapshots_are_not_copied():
    make_snapshot({"Copy_Dest": DEST, "DeleteOn": LATER})  # no Type=Automated
    make_snapshot({"Type": "Automated", "DeleteOn": LATER})  # no Copy_Dest
    make_snapshot({"Type": "Manual", "Copy_Dest": DEST, "DeleteOn": LATER})
    assert run()["counts"] == {}
    assert snapshots(DEST) == {}


def test_never_copies_a_copy_however_scheduled():
    src = primary()
    run()
    (cid,) = copies_of(src)
    # Someone (or a bug) puts Copy_Dest on the copy pointing back: still no loop.
    boto3.client("ec2", region_name=DEST).create_tags(
        Resources=[cid], Tags=[{"Key": "Copy_Dest", "Value": REGION}]
    )
    run(region=DEST)
    run()
    assert set(snapshots(REGION)) == {src}
    assert set(snapshots(DEST)) == {cid}


def test_running_twice_copies_nothing_twice(api):
    src = primary(f"{DEST},{DEST2}")
    run()
    api.calls.clear()
    second = run()
    assert "CopySnapshot" not in api.names()
    assert second["counts"] == {}
    assert len(copies_of(src)) == 1 and len(copies_of(src, DEST2)) == 1


def test_a_pending_copy_counts_as_existing():
    src = primary()
    run()
    (cid,) = copies_of(src)
    set_snapshot_state(cid, "pending", region=DEST)
    run()
    assert list(copies_of(src)) == [cid]


@pytest.mark.parametrize("delete_on", ["2026-11-26", "2026-11-20"])
def test_never_copies_a_snapshot_whose_delete_on_has_come(delete_on):
    src = primary(delete_on=delete_on)
    result = run()
    assert copies_of(src) == {}
    assert result["skipped"][0]["id"] == src and "has come" in result["skipped"][0]["reason"]


def test_copies_the_day_before_delete_on():
    src = primary(delete_on="2026-11-27")
    run()
    assert len(copies_of(src)) == 1


@pytest.mark.parametrize("value", ["", "27/11/2026", "2026-13-01", "tomorrow", "2026-11-27 "])
def test_unreadable_delete_on_warns_and_is_not_copied(value):
    src = primary(delete_on=value)
    result = run()
    assert copies_of(src) == {}
    assert [w["id"] for w in result["warnings"]] == [src]


def test_unknown_or_own_region_in_copy_dest_is_dropped_with_a_warning():
    src = primary(f"{REGION},nowhere-1 {DEST}")
    result = run()
    assert len(copies_of(src)) == 1
    assert snapshots(REGION).keys() == {src}
    assert len(result["warnings"]) == 2


def test_keep_forever_is_carried_onto_existing_copies():
    src = primary(f"{DEST},{DEST2}")
    run()
    boto3.client("ec2", region_name=REGION).create_tags(
        Resources=[src], Tags=[{"Key": "KeepForever", "Value": "legal hold"}]
    )
    result = run()
    for region in (DEST, DEST2):
        ((_, tags),) = copies_of(src, region).items()
        assert tags["KeepForever"] == "legal hold"
    assert result["counts"] == {"tagged": 2}
    assert run()["counts"] == {}  # already carried: nothing more to do


def test_keep_forever_is_carried_even_after_the_primary_expired():
    src = primary(delete_on="2026-11-27")
    run()
    boto3.client("ec2", region_name=REGION).create_tags(
        Resources=[src], Tags=[{"Key": "KeepForever", "Value": "yes"}]
    )
    copier.run({}, None, region=REGION, now=NOW.replace(day=28))
    ((_, tags),) = copies_of(src).items()
    assert tags["KeepForever"] == "yes"


def test_keep_forever_no_is_not_carried(api):
    src = primary()
    run()
    boto3.client("ec2", region_name=REGION).create_tags(
        Resources=[src], Tags=[{"Key": "KeepForever", "Value": "No"}]
    )
    api.calls.clear()
    run()
    assert api.ops("CreateTags", region=DEST) == []


def test_encrypted_snapshot_copies_with_the_destination_default_key(api):
    tags = {"Type": "Automated", "DeleteOn": LATER, "Copy_Dest": DEST}
    src = make_snapshot(tags, encrypted=True)
    run()
    (params,) = api.ops("CopySnapshot")
    assert "KmsKeyId" not in params
    assert params.get("Encrypted") in (None, True)
    ((cid, _),) = copies_of(src).items()
    assert snapshot_details(DEST)[cid]["Encrypted"] is True


def test_copy_limit_defers_that_region_only_and_is_not_a_failure(api, monkeypatch):
    monkeypatch.setattr(copier, "WORKERS", 1)  # one call at a time: "stops asking" is exact
    sources = [primary(f"{DEST},{DEST2}") for _ in range(4)]
    asked = []

    def third_and_later_into_dest(params, region):
        asked.append(region)
        return region == DEST and asked.count(DEST) > 2

    api.fail("CopySnapshot", "ResourceLimitExceeded", when=third_and_later_into_dest)
    result = run()
    assert len(snapshots(DEST)) == 2
    assert len(snapshots(DEST2)) == 4
    assert [(d["id"], d["count"]) for d in result["deferred"]] == [(DEST, 2)]
    assert result["counts"]["deferred"] == 2  # copies, not regions
    assert result["failures"] == []
    assert asked.count(DEST) == 3  # after the refusal it stops asking that region
    api.faults.clear()
    run()
    assert all(len(copies_of(s)) == 1 for s in sources)


def test_copies_oldest_primary_first(api, monkeypatch):
    monkeypatch.setattr(copier, "WORKERS", 1)  # calls start in order; with more, they overlap
    third, first, second = primary(), primary(), primary()
    for n, sid in enumerate((first, second, third)):
        moto_snapshot(sid).start_time = NOW.replace(hour=n)
    api.calls.clear()
    run()
    order = [p["SourceSnapshotId"] for p in api.ops("CopySnapshot")]
    assert order == [first, second, third]


def test_one_copy_failing_does_not_stop_the_others(api):
    a, b, c = primary(), primary(), primary()
    api.fail(
        "CopySnapshot", "InvalidSnapshot.NotFound", when=lambda p, r: p["SourceSnapshotId"] == b
    )
    with pytest.raises(copier.JobFailed) as err:
        run()
    assert len(copies_of(a)) == 1 and len(copies_of(c)) == 1 and copies_of(b) == {}
    assert b in str(err.value)


def test_a_destination_that_cannot_be_read_fails_alone(api):
    src = primary(f"{DEST},{DEST2}")
    api.fail("DescribeSnapshots", "AuthFailure", when=lambda p, region: region == DEST2)
    with pytest.raises(copier.JobFailed) as err:
        run()
    assert len(copies_of(src)) == 1
    assert err.value.summary["failures"][0]["id"] == DEST2


def test_dry_run_copies_and_tags_nothing(api):
    src = primary(f"{DEST},{DEST2}", KeepForever="yes")
    old = primary(DEST, KeepForever="yes")
    run()
    boto3.client("ec2", region_name=DEST).delete_snapshot(SnapshotId=next(iter(copies_of(src))))
    boto3.client("ec2", region_name=DEST2).delete_snapshot(
        SnapshotId=next(iter(copies_of(src, DEST2)))
    )
    (old_copy,) = copies_of(old)
    boto3.client("ec2", region_name=DEST).delete_tags(
        Resources=[old_copy], Tags=[{"Key": "KeepForever"}]
    )
    before = {r: snapshots(r) for r in (DEST, DEST2)}
    api.calls.clear()
    result = run({"dry_run": True})
    assert {r: snapshots(r) for r in (DEST, DEST2)} == before
    writes = [(r, op, p) for r, op, p in api.calls if not op.startswith("Describe")]
    assert all(p["DryRun"] is True for _, _, p in writes)
    assert sorted((r, op) for r, op, _ in writes) == [
        (DEST2, "CopySnapshot"),
        (DEST, "CopySnapshot"),
        (DEST, "CreateTags"),
    ]
    assert [c["source_snapshot_id"] for c in result["would_copy"]] == [src, src]
    assert [t["snapshot_id"] for t in result["would_tag"]] == [old_copy]
    assert {(p["permission"], p["id"]) for p in result["permitted"]} == {
        ("ec2:CopySnapshot", DEST),
        ("ec2:CopySnapshot", DEST2),
        ("ec2:CreateTags", DEST),
    }


def test_dry_run_reports_a_refused_copy_permission_per_region(api):
    primary(f"{DEST},{DEST2}")
    primary(f"{DEST},{DEST2}")
    api.fail("CopySnapshot", "UnauthorizedOperation", when=lambda p, region: region == DEST2)
    with pytest.raises(copier.JobFailed) as err:
        run({"dry_run": True})
    (failure,) = err.value.summary["failures"]  # asked once per region, not per snapshot
    assert failure["id"] == DEST2 and "ec2:CopySnapshot would be refused" in failure["error"]
    assert len(api.ops("CopySnapshot", region=DEST2)) == 1


def test_every_page_of_primaries_and_copies_is_read(api):
    api.page_size = 2
    sources = [primary() for _ in range(5)]
    run()
    api.calls.clear()
    result = run()  # every copy exists; found across pages in the destination too
    assert len(api.ops("DescribeSnapshots", region=REGION)) == 3 + 1  # + the vault primaries
    assert len(api.ops("DescribeSnapshots", region=DEST)) == 3
    assert all(p["MaxResults"] == 1000 for p in api.ops("DescribeSnapshots"))
    assert result["counts"] == {}
    assert {s: len(copies_of(s)) for s in sources} == {s: 1 for s in sources}


def test_calls_are_one_listing_per_region_and_one_copy_per_missing_copy(api):
    for _ in range(3):
        primary(f"{DEST},{DEST2}")
    api.calls.clear()
    run()
    assert sorted((r, op) for r, op, _ in api.calls) == sorted(
        [
            (REGION, "DescribeRegions"),
            (REGION, "DescribeSnapshots"),
            (REGION, "DescribeSnapshots"),  # primaries with Vault_Account: none
            (DEST, "DescribeSnapshots"),
            (DEST2, "DescribeSnapshots"),
        ]
        + [(DEST, "CopySnapshot")] * 3
        + [(DEST2, "CopySnapshot")] * 3
    )


def notification(snapshot_id, event="createSnapshot", result="succeeded"):
    """An EventBridge 'EBS Snapshot Notification', as AWS sends it."""
    arn = f"arn:aws:ec2:{REGION}::snapshot/{snapshot_id}"
    return {
        "version": "0",
        "id": "01234567-0123-0123-0123-012345678901",
        "detail-type": "EBS Snapshot Notification",
        "source": "aws.ec2",
        "account": "123456789012",
        "time": "2026-11-26T02:10:00Z",
        "region": REGION,
        "resources": [arn],
        "detail": {
            "event": event,
            "result": result,
            "cause": "",
            "request-id": "",
            "snapshot_id": arn,
            "source": f"arn:aws:ec2:{REGION}::volume/vol-01234567",
            "startTime": "2026-11-26T02:00:00Z",
            "endTime": "2026-11-26T02:10:00Z",
        },
    }


def test_a_notification_copies_that_snapshot_only_with_one_lookup_by_id(api):
    others = [primary() for _ in range(3)]
    target = primary(f"{DEST},{DEST2}")
    api.calls.clear()
    result = run(notification(target))
    assert api.ops("DescribeSnapshots", region=REGION) == [{"SnapshotIds": [target]}]
    for dest in (DEST, DEST2):  # two small lookups: its copies, and the copies in flight
        mine, in_flight = (p["Filters"] for p in api.ops("DescribeSnapshots", region=dest))
        assert mine == [{"Name": "tag:Source_SnapshotId", "Values": [target]}]
        assert {"Name": "status", "Values": ["pending"]} in in_flight
        assert len(copies_of(target, dest)) == 1
    assert all(copies_of(o) == {} for o in others)
    assert result["counts"]["copied"] == 2


def test_a_notification_for_an_already_copied_snapshot_copies_nothing(api):
    target = primary()
    run(notification(target))
    api.calls.clear()
    assert run(notification(target))["counts"] == {}
    assert "CopySnapshot" not in api.names()


@pytest.mark.parametrize(
    "tags",
    [
        {"DeleteOn": LATER, "Copy_Dest": DEST},
        {"Type": "Automated", "DeleteOn": LATER},
        {"Type": "Automated", "DeleteOn": LATER, "Copy_Dest": DEST, "Source_SnapshotId": "snap-1"},
    ],
)
def test_a_notification_for_a_snapshot_that_is_not_a_primary_copies_nothing(tags, api):
    sid = make_snapshot(tags)
    run(notification(sid))
    assert "CopySnapshot" not in api.names() and snapshots(DEST) == {}


def test_a_notification_for_a_pending_or_deleted_snapshot_is_not_a_failure(api):
    pending, gone = primary(), primary()
    set_snapshot_state(pending, "pending")
    boto3.client("ec2", region_name=REGION).delete_snapshot(SnapshotId=gone)
    assert run(notification(pending))["failures"] == []
    assert run(notification(gone))["failures"] == []
    assert snapshots(DEST) == {}


def test_a_notification_of_a_failed_snapshot_does_nothing_at_all(api):
    target = primary()
    api.calls.clear()
    result = run(notification(target, result="failed"))
    assert api.calls == []
    assert result["skipped"][0]["id"] == target


def test_a_near_miss_keep_forever_key_reaches_the_copies_as_keep_forever():
    src = primary(DEST, keepforever="legal hold")
    run()
    ((_, tags),) = copies_of(src, DEST).items()
    assert tags["KeepForever"] == "legal hold"


@pytest.mark.parametrize("detail", [{}, {"event": "createSnapshot", "result": "succeeded"}, None])
def test_a_notification_without_a_snapshot_id_is_a_warning_and_no_call(api, detail):
    event = {"detail-type": "EBS Snapshot Notification", "source": "aws.ec2", "detail": detail}
    result = copier.run(event, None, now=NOW)
    assert api.calls == []
    (warning,) = result["warnings"]
    assert "nothing to copy" in warning["reason"]
