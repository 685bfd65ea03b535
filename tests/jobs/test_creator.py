from collections import Counter
from datetime import date

import pytest
from conftest import DEST, DEST2, NOW, REGION, ec2, launch, snapshot_details, snapshots
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends

import ebs_snapshot_creator as creator


def run(event=None, **kw):
    return creator.run(event or {}, None, now=NOW, **kw)


def by_volume(region=REGION):
    """{volume id: (tags, description)} of the region's snapshots."""
    return {
        s["VolumeId"]: (snapshots(region)[sid], s["Description"])
        for sid, s in snapshot_details(region).items()
    }


@pytest.mark.parametrize("value", ["Yes", "yes", "YES", "true", "True", "1", "on", "ON", " yes "])
def test_backup_words_that_enable(value):
    _, vols = launch({"Backup": value}, devices=("/dev/sda1", "/dev/sdb"))
    result = run()
    assert set(by_volume()) == set(vols.values())
    assert result["counts"]["created"] == 2


@pytest.mark.parametrize("value", ["No", "no", "false", "0", "off"])
def test_backup_words_that_disable(value):
    iid, _ = launch({"Backup": value})
    result = run()
    assert snapshots() == {}
    assert result["skipped"] == [{"id": iid, "reason": "Backup tag does not enable backups"}]
    assert result["warnings"] == []


def test_instance_without_backup_tag_is_ignored():
    launch({"Name": "web"})
    launch(None)
    result = run()
    assert snapshots() == {}
    assert result["counts"] == {}


def test_unrecognised_backup_value_warns_and_skips_but_run_goes_on():
    bad, _ = launch({"Backup": "Yse"})
    _, good = launch({"Backup": "Yes"})
    result = run()
    assert set(by_volume()) == set(good.values())
    assert [w["id"] for w in result["warnings"]] == [bad]
    assert "'Yse'" in result["warnings"][0]["reason"]
    assert bad in [s["id"] for s in result["skipped"]]


def test_tags_and_description_of_a_snapshot():
    iid, vols = launch(
        {"Backup": "Yes", "Name": "db-1", "Retention": "3", "Copy_Dest": f"{DEST}, {DEST2}"},
        devices=("/dev/sda1", "/dev/sdf"),
    )
    run()
    tags, description = by_volume()[vols["/dev/sdf"]]
    assert tags == {
        "Type": "Automated",
        "DeleteOn": "2026-11-29",
        "Retention_Tier": "daily",
        "Copy_Dest": f"{DEST},{DEST2}",
        "Copy_State": "pending",
        "Name": "db-1",
        "Consistency": "volume",
    }
    assert description == f"db-1 ({iid}) - {vols['/dev/sdf']} (/dev/sdf) - {REGION}"


def test_description_without_a_name():
    iid, vols = launch({"Backup": "Yes"})
    run()
    tags, description = by_volume()[vols["/dev/sda1"]]
    assert description == f"{iid} - {vols['/dev/sda1']} (/dev/sda1) - {REGION}"
    assert "Name" not in tags and "Copy_Dest" not in tags


def test_tags_are_applied_in_the_create_call_never_later(api):
    launch({"Backup": "Yes", "Copy_Dest": DEST}, devices=("/dev/sda1", "/dev/sdb"))
    api.calls.clear()
    run()
    mutating = [op for op in api.names() if not op.startswith("Describe")]
    assert mutating == ["CreateSnapshot", "CreateSnapshot"]
    for params in api.ops("CreateSnapshot"):
        (spec,) = params["TagSpecifications"]
        assert spec["ResourceType"] == "snapshot"
        assert {"Key": "Type", "Value": "Automated"} in spec["Tags"]
        assert {"Key": "DeleteOn", "Value": "2026-12-03"} in spec["Tags"]


@pytest.mark.parametrize(
    ("value", "delete_on", "warned"),
    [
        (None, "2026-12-03", False),
        ("1", "2026-11-27", False),
        ("30", "2026-12-26", False),
        (" 14 ", "2026-12-10", False),
        ("0", "2026-12-03", True),
        ("-3", "2026-12-03", True),
        ("1.5", "2026-12-03", True),
        ("abc", "2026-12-03", True),
        ("", "2026-12-03", True),
        ("٣", "2026-12-03", True),  # a digit, but not 0-9
        ("99999999999", "2126-11-02", True),  # capped at 36500 days
    ],
)
def test_retention(value, delete_on, warned):
    tags = {"Backup": "Yes"} | ({} if value is None else {"Retention": value})
    iid, vols = launch(tags)
    result = run()
    assert by_volume()[vols["/dev/sda1"]][0]["DeleteOn"] == delete_on
    assert [w["id"] for w in result["warnings"]] == ([iid] if warned else [])


def test_copy_dest_drops_unknown_and_own_region_with_warnings():
    iid, vols = launch(
        {"Backup": "Yes", "Copy_Dest": f"{DEST} mars-north-1,{REGION}  {DEST},,{DEST2}"}
    )
    result = run()
    assert by_volume()[vols["/dev/sda1"]][0]["Copy_Dest"] == f"{DEST},{DEST2}"
    reasons = [w["reason"] for w in result["warnings"]]
    assert [w["id"] for w in result["warnings"]] == [iid, iid]
    assert "'mars-north-1'" in reasons[0] and "not an enabled region" in reasons[0]
    assert f"'{REGION}'" in reasons[1] and "is this region" in reasons[1]


def test_copy_dest_with_nothing_valid_writes_no_copy_dest():
    _, vols = launch({"Backup": "Yes", "Copy_Dest": REGION})
    run()
    assert "Copy_Dest" not in by_volume()[vols["/dev/sda1"]][0]


def test_stopped_instance_is_snapshotted_terminated_is_not():
    stopped, svols = launch({"Backup": "Yes"})
    gone, _ = launch({"Backup": "Yes"})
    ec2().stop_instances(InstanceIds=[stopped])
    ec2().terminate_instances(InstanceIds=[gone])
    run()
    assert set(by_volume()) == set(svols.values())


@pytest.mark.parametrize("state", ["terminated", "shutting-down"])
def test_requested_instance_in_a_dying_state_is_skipped(state):
    iid, _ = launch({"Backup": "Yes"})
    ec2_backends[DEFAULT_ACCOUNT_ID][REGION].get_instance(iid)._state.name = state
    result = run({"instance_ids": [iid]})
    assert snapshots() == {}
    assert result["skipped"] == [{"id": iid, "reason": f"instance is {state}"}]


@pytest.mark.parametrize("value", ["No", "false", "0", "OFF"])
def test_volume_opted_out(value):
    _, vols = launch(
        {"Backup": "Yes"},
        devices=("/dev/sda1", "/dev/sdb"),
        volume_tags={"/dev/sdb": {"Backup": value}},
    )
    result = run()
    assert set(by_volume()) == {vols["/dev/sda1"]}
    assert result["skipped"][0]["id"] == vols["/dev/sdb"]


def test_volume_with_unreadable_backup_tag_is_still_backed_up_with_a_warning():
    _, vols = launch(
        {"Backup": "Yes"},
        devices=("/dev/sda1", "/dev/sdb"),
        volume_tags={"/dev/sdb": {"Backup": "maybe"}, "/dev/sda1": {"Backup": "Yes"}},
    )
    result = run()
    assert set(by_volume()) == set(vols.values())
    assert [w["id"] for w in result["warnings"]] == [vols["/dev/sdb"]]


def test_instance_store_mappings_are_ignored():
    instance = {
        "InstanceId": "i-1",
        "State": {"Name": "running"},
        "Tags": [{"Key": "Backup", "Value": "yes"}],
        "BlockDeviceMappings": [
            {"DeviceName": "/dev/sdb", "VirtualName": "ephemeral0"},
            {"DeviceName": "/dev/sda1", "Ebs": {"VolumeId": "vol-1"}},
        ],
    }
    where = creator.Where(frozenset({DEST}), REGION, date(2026, 1, 1))
    plans, notes = creator.plan_instance(instance, {}, where)
    assert [p["volume_id"] for p in plans] == ["vol-1"]
    assert notes == []


def test_instance_ids_event_snapshots_only_those_and_only_if_enabled():
    wanted, wvols = launch({"Backup": "Yes"})
    disabled, _ = launch({"Backup": "No"})
    untagged, _ = launch({"Name": "x"})
    launch({"Backup": "Yes"})  # enabled but not asked for
    result = run({"instance_ids": [wanted, disabled, untagged]})
    assert set(by_volume()) == set(wvols.values())
    assert {s["id"] for s in result["skipped"]} == {disabled, untagged}


def test_instance_ids_event_with_an_unknown_id_fails_after_doing_the_rest():
    wanted, wvols = launch({"Backup": "Yes"})
    with pytest.raises(creator.JobFailed) as err:
        run({"instance_ids": [wanted, "i-0123456789abcdef0"]})
    assert set(by_volume()) == set(wvols.values())
    assert "i-0123456789abcdef0" in str(err.value)
    assert err.value.summary["counts"]["created"] == 1


@pytest.mark.parametrize("ids", ["i-1", [1], [""], {"a": 1}])
def test_malformed_instance_ids_is_refused_before_any_change(ids):
    launch({"Backup": "Yes"})
    with pytest.raises(ValueError, match="instance_ids"):
        run({"instance_ids": ids})
    assert snapshots() == {}


def test_scheduled_event_is_accepted_and_its_id_reported():
    launch({"Backup": "Yes"})
    event = {
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "detail": {},
    }
    result = creator.lambda_handler(event, None)
    assert result["event_id"] == event["id"]
    assert result["counts"]["created"] == 1


def test_dry_run_changes_nothing_and_reports_what_it_would_do(api):
    iid, vols = launch({"Backup": "Yes", "Copy_Dest": DEST}, devices=("/dev/sda1", "/dev/sdb"))
    result = run({"dry_run": True})
    assert snapshots() == {}
    assert result["dry_run"] is True and "created" not in result
    assert sorted(result["would_create"], key=lambda c: c["volume_id"]) == [
        {
            "volume_id": v,
            "instance_id": iid,
            "delete_on": "2026-12-03",
            "tier": "daily",
            "copy_dest": [DEST],
            "consistency": "volume",
        }
        for v in sorted(vols.values())
    ]
    # One permission probe, with DryRun, and nothing else that writes.
    (probe,) = [p for op, p in ((op, p) for _, op, p in api.calls) if op == "CreateSnapshot"]
    assert probe["DryRun"] is True and probe["TagSpecifications"]
    assert result["permitted"] == [{"permission": "ec2:CreateSnapshot", "id": REGION}]


def test_dry_run_reports_a_missing_permission_as_a_failure(api):
    launch({"Backup": "Yes"})
    api.fail(
        "CreateSnapshot",
        "UnauthorizedOperation",
        message="You are not authorized to perform this operation.",
    )
    with pytest.raises(creator.JobFailed) as err:
        run({"dry_run": True})
    (failure,) = err.value.summary["failures"]
    assert failure["id"] == REGION
    assert "ec2:CreateSnapshot would be refused: UnauthorizedOperation" in failure["error"]
    assert snapshots() == {}


def test_one_volume_failing_does_not_stop_the_others(api):
    _, vols = launch({"Backup": "Yes"}, devices=("/dev/sda1", "/dev/sdb", "/dev/sdc"))
    api.fail(
        "CreateSnapshot",
        "InvalidVolume.NotFound",
        when=lambda p, r: p["VolumeId"] == vols["/dev/sdb"],
    )
    with pytest.raises(creator.JobFailed) as err:
        run()
    assert set(by_volume()) == {vols["/dev/sda1"], vols["/dev/sdc"]}
    (failure,) = err.value.summary["failures"]
    assert failure["id"] == vols["/dev/sdb"] and "InvalidVolume.NotFound" in failure["error"]
    assert vols["/dev/sdb"] in str(err.value)


def test_every_page_of_instances_is_processed(api):
    api.page_size = 2
    expected = set()
    for n in range(7):
        _, vols = launch({"Backup": "Yes", "Name": f"n{n}"})
        expected |= set(vols.values())
    # Opted-out volumes on a later page than the first must still be honoured.
    for _ in range(5):
        launch({"Backup": "Yes"}, volume_tags={"/dev/sda1": {"Backup": "No"}})
    api.calls.clear()
    run()
    assert set(by_volume()) == expected
    assert len(api.ops("DescribeInstances")) == 6
    # three pages of volumes tagged Backup, one of Multi-Attach volumes (none)
    assert len(api.ops("DescribeVolumes")) == 4
    assert all(p["MaxResults"] == 1000 for p in api.ops("DescribeInstances"))
    assert all(p["MaxResults"] == 1000 for p in api.ops("DescribeVolumes"))


def test_uses_server_side_filters_and_no_per_instance_calls(api):
    for _ in range(3):
        launch({"Backup": "Yes"}, devices=("/dev/sda1", "/dev/sdb"))
    api.calls.clear()
    run()
    assert sorted(api.names()) == sorted(
        ["DescribeRegions", "DescribeVolumes", "DescribeVolumes", "DescribeInstances"]
        + ["CreateSnapshot"] * 6
        + ["DescribeSnapshots"]  # the lock sweep: snapshots tagged Lock (none: no more calls)
    )
    filters = [p["Filters"] for p in api.ops("DescribeVolumes")]
    assert [{"Name": "multi-attach-enabled", "Values": ["true"]}] in filters
    (params,) = api.ops("DescribeInstances")
    assert {"Name": "tag-key", "Values": ["Backup"]} in params["Filters"]
    states = next(f for f in params["Filters"] if f["Name"] == "instance-state-name")["Values"]
    assert "terminated" not in states and "shutting-down" not in states and "stopped" in states


def test_region_comes_from_aws_region_then_aws_default_region(monkeypatch):
    launch({"Backup": "Yes"}, region=DEST)
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.setenv("AWS_DEFAULT_REGION", DEST)
    assert run()["region"] == DEST
    assert len(snapshots(DEST)) == 1
    monkeypatch.setenv("AWS_REGION", REGION)
    assert run()["region"] == REGION


def test_an_empty_instance_ids_list_snapshots_nothing(api):
    launch({"Backup": "Yes"})
    api.calls.clear()
    result = run({"instance_ids": []})
    assert snapshots() == {} and result["counts"] == {}
    assert "DescribeInstances" not in api.names()


# ---- a Multi-Attach volume belongs to several instances ----------------------------------


def shared_volume(*instances):
    """An io2 Multi-Attach volume attached to each instance as /dev/sdf."""
    client = ec2()
    vid = client.create_volume(
        AvailabilityZone=REGION + "a", Size=4, VolumeType="io2", Iops=100, MultiAttachEnabled=True
    )["VolumeId"]
    for iid in instances:
        client.attach_volume(VolumeId=vid, InstanceId=iid, Device="/dev/sdf")
    return vid


def test_a_multi_attach_volume_is_snapshotted_once_with_the_longest_retention():
    short, _ = launch({"Backup": "Yes", "Retention": "3", "Name": "a", "Copy_Dest": DEST})
    long, _ = launch({"Backup": "Yes", "Retention": "30", "Name": "b", "Copy_Dest": DEST2})
    vid = shared_volume(short, long)
    result = run()
    (snap,) = [s for s in snapshot_details().values() if s["VolumeId"] == vid]
    tags = snapshots()[snap["SnapshotId"]]
    assert tags["DeleteOn"] == "2026-12-26" and tags["Name"] == "b"  # 30 days, from b
    assert snap["Description"].startswith(f"b ({long}) - {vid}")
    assert tags["Copy_Dest"] == f"{DEST2},{DEST}"  # copied wherever either one asks
    (item,) = [c for c in result["created"] if c["volume_id"] == vid]
    assert item["instance_id"] == long and item["instance_ids"] == sorted([short, long])
    assert result["counts"]["created"] == 3 and result["failures"] == []


def test_a_multi_attach_volume_two_instances_ask_for_is_left_out_of_a_set_and_taken_alone(api):
    first, vols = launch({"Backup": "Yes", "Consistency": "instance"})
    other, other_vols = launch({"Backup": "Yes"})
    vid = shared_volume(first, other)
    result = run()
    (spec,) = [p["InstanceSpecification"] for p in api.ops("CreateSnapshots")]
    assert spec["InstanceId"] == first and spec["ExcludeDataVolumeIds"] == [vid]
    (alone,) = [p for p in api.ops("CreateSnapshot") if p["VolumeId"] == vid]
    assert {"Key": "Consistency", "Value": "volume"} in alone["TagSpecifications"][0]["Tags"]
    roots = [vols["/dev/sda1"], other_vols["/dev/sda1"]]
    assert Counter(s["VolumeId"] for s in snapshot_details().values()) == Counter([*roots, vid])
    (warning,) = result["warnings"]
    assert warning["id"] == vid and "left out of their sets" in warning["reason"]


def test_a_multi_attach_volume_only_one_instance_asks_for_stays_in_its_set(api):
    first, vols = launch({"Backup": "Yes", "Consistency": "instance"})
    other, _ = launch({"Backup": "No"})
    vid = shared_volume(first, other)
    result = run()
    (spec,) = [p["InstanceSpecification"] for p in api.ops("CreateSnapshots")]
    assert spec["InstanceId"] == first and "ExcludeDataVolumeIds" not in spec
    assert api.ops("CreateSnapshot") == [] and result["warnings"] == []
    assert Counter(s["VolumeId"] for s in snapshot_details().values()) == Counter(
        [vols["/dev/sda1"], vid]
    )


def test_a_multi_attach_volume_of_a_vss_instance_is_taken_by_its_vss_set_alone(api):
    """VSS cannot leave a volume out: its set takes the shared volume, and nothing else does."""
    windows, _ = launch({"Backup": "Yes", "Consistency": "vss"})
    other, _ = launch({"Backup": "Yes", "Consistency": "instance"})
    vid = shared_volume(windows, other)
    api.stub("DescribeInstanceInformation", {"InstanceInformationList": []})  # VSS falls back
    result = run()
    sets = {
        p["InstanceSpecification"]["InstanceId"]: p["InstanceSpecification"]
        for p in api.ops("CreateSnapshots")
    }
    assert "ExcludeDataVolumeIds" not in sets[windows]  # the VSS instance's set (here its fallback)
    assert sets[other]["ExcludeDataVolumeIds"] == [vid]
    assert [p for p in api.ops("CreateSnapshot") if p["VolumeId"] == vid] == []
    assert Counter(s["VolumeId"] for s in snapshot_details().values())[vid] == 1
    assert any(w["id"] == vid and "VSS set of" in w["reason"] for w in result["warnings"])


def test_a_multi_attach_volume_copies_with_the_settings_of_an_instance_that_asks_for_copies():
    longest, _ = launch({"Backup": "Yes", "Retention": "30"})  # no Copy_Dest
    copying, _ = launch(
        {"Backup": "Yes", "Retention": "3", "Copy_Dest": DEST, "Copy_KmsKeyId": "alias/dr"}
    )
    vid = shared_volume(longest, copying)
    run()
    (tags,) = [snapshots()[sid] for sid, s in snapshot_details().items() if s["VolumeId"] == vid]
    assert tags["DeleteOn"] == "2026-12-26" and tags["Copy_Dest"] == DEST
    assert tags["Copy_KmsKeyId"] == "alias/dr"  # the key it needs, not dropped
