"""The manager's restore command on moto: points, side by side, in place, undo, copies."""

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from conftest import AMI, DEST, NOW, REGION, client_as, clock, ec2, moto_snapshot

import ebs_snapshot_copier as copier
import ebs_snapshot_creator as creator
import ebs_snapshot_manager as manager

ROOT = Path(__file__).resolve().parents[2]
ATTRIBUTES = ("VolumeType", "Size", "Iops", "Throughput", "Encrypted", "KmsKeyId")
LATER = (NOW + timedelta(hours=1)).isoformat()  # after today's backups, whenever they ran
MUTATING = {"CreateVolume", "CreateTags", "StopInstances", "DetachVolume", "AttachVolume"}
MUTATING |= {"StartInstances"}


def unreachable(url):
    return EndpointConnectionError(endpoint_url=url)


def key_arn(region=REGION):
    return boto3.client("kms", region_name=region).create_key()["KeyMetadata"]["Arn"]


def fleet(tags=None, days=2):
    """An instance with three volumes, root included, each of another kind; a point (a
    multi-volume set) each day: today's, and yesterday's. Returns (instance id, {device:
    volume})."""
    client, key = ec2(), key_arn()
    root = {"VolumeSize": 8, "VolumeType": "gp3", "Iops": 3000, "Throughput": 125}
    root |= {"Encrypted": True, "KmsKeyId": key}
    instance = client.run_instances(
        ImageId=AMI,
        MinCount=1,
        MaxCount=1,
        Placement={"AvailabilityZone": REGION + "b"},
        BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": root}],
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": [
                    {"Key": k, "Value": v}
                    for k, v in (
                        {"Backup": "Yes", "Name": "db", "Consistency": "instance"} | (tags or {})
                    ).items()
                ],
            }
        ],
    )["Instances"][0]
    iid = instance["InstanceId"]
    for device, spec in (
        ("/dev/sdf", {"VolumeType": "io2", "Size": 20, "Iops": 1000}),
        ("/dev/sdg", {"VolumeType": "gp3", "Size": 30, "Iops": 4000, "Throughput": 250}),
    ):
        vid = client.create_volume(AvailabilityZone=REGION + "b", **spec)["VolumeId"]
        client.attach_volume(VolumeId=vid, InstanceId=iid, Device=device)
    if days == 2:
        with clock(NOW - timedelta(days=1)):
            assert creator.run({"id": "yesterday"}, None, region=REGION)["counts"]["created"] == 3
    assert creator.run({"id": "today"}, None, region=REGION)["counts"]["created"] == 3
    return iid, devices_of(iid)


def devices_of(iid):
    instance = ec2().describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    return {m["DeviceName"]: m["Ebs"]["VolumeId"] for m in instance["BlockDeviceMappings"]}


def volumes(region=REGION, **tags):
    filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in tags.items()]
    return {v["VolumeId"]: v for v in ec2(region).describe_volumes(Filters=filters)["Volumes"]}


def tags_of(volume):
    return {t["Key"]: t["Value"] for t in volume.get("Tags", [])}


def state_of(iid):
    return ec2().describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"][
        "Name"
    ]


def yesterday_point(iid, capsys):
    assert manager.main(["restore-points", "--instance", iid]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  rp-")]
    assert len(lines) == 2  # newest first
    return lines[1].split()[0]


@pytest.fixture(autouse=True)
def quiet(monkeypatch, api):
    monkeypatch.setenv("AWS_REGION", REGION)


def test_restore_points_list_each_device_newest_first_and_what_changed_since(capsys):
    iid, devices = fleet()
    ec2().create_tags(Resources=[devices["/dev/sdf"]], Tags=[{"Key": "KeepForever", "Value": "x"}])
    extra = ec2().create_volume(AvailabilityZone=REGION + "b", Size=1)["VolumeId"]
    ec2().attach_volume(VolumeId=extra, InstanceId=iid, Device="/dev/sdh")
    assert manager.main(["restore-points", "--instance", iid]) == 0
    out = capsys.readouterr().out
    assert out.count("  rp-") == 2 and "multi-volume set (crash-consistent, one instant)" in out
    for device, vid in devices.items():
        assert f"{device}: {vid} -> snap-" in out
    assert f"/dev/sdh: {extra} added since: no snapshot in this point" in out


def test_side_by_side_then_in_place_then_undo_keep_every_attribute(capsys):
    iid, before = fleet()
    point = yesterday_point(iid, capsys)
    source = volumes()
    assert manager.main(["restore", "--instance", iid, "--at", point]) == 0
    out = capsys.readouterr().out
    side = volumes(Restore_Purpose="side-by-side")
    assert len(side) == 3 and out.count("aws ec2 attach-volume") == 3
    check_restored(side, source, iid, point)
    assert all(v["State"] == "available" for v in side.values())
    assert manager.main(["restore", "--instance", iid, "--at", point, "--in-place", "--yes"]) == 0
    placed = volumes(Restore_Purpose="in-place")
    check_restored(placed, source, iid, point)
    now = devices_of(iid)
    assert set(now.values()) == set(placed) and state_of(iid) == "running"
    for device, vid in before.items():
        old = volumes()[vid]
        assert old["State"] == "available" and tags_of(old)["Replaced_By"] == now[device]
    assert manager.main(["restore", "--instance", iid, "--undo", "--yes"]) == 0
    assert devices_of(iid) == before and state_of(iid) == "running"
    assert len(volumes()) == 9  # nothing deleted: 3 sources, 3 side by side, 3 in place


def check_restored(made, source, iid, point):
    by_device = {tags_of(v)["Restore_Device"]: v for v in made.values()}
    for device, volume in by_device.items():
        tags = tags_of(volume)
        assert tags["Restore_Instance"] == iid and tags["Restore_Point"] == point
        origin = source[tags["Restore_SourceVolume"]]
        assert origin["Attachments"][0]["Device"] == device
        assert {a: volume.get(a) for a in ATTRIBUTES} == {a: origin.get(a) for a in ATTRIBUTES}
        assert volume["AvailabilityZone"] == REGION + "b"
        snap = ec2().describe_snapshots(SnapshotIds=[tags["Restore_Snapshot"]])["Snapshots"][0]
        assert snap["VolumeId"] == origin["VolumeId"] and volume["SnapshotId"] == snap["SnapshotId"]


@pytest.mark.parametrize("step", range(1, 15))
def test_an_in_place_restore_interrupted_after_any_step_finishes_when_run_again(step, api, capsys):
    iid, before = fleet(days=1)
    point = LATER
    sent = []

    def interrupt(operation, region):
        if operation in MUTATING:
            sent.append(operation)
            if len(sent) == step:
                raise KeyboardInterrupt

    api.on_attempt = interrupt
    args = ["restore", "--instance", iid, "--at", point, "--in-place", "--yes"]
    assert manager.main(args) == 130
    assert "run the same command again" in capsys.readouterr().err
    api.on_attempt = None
    assert manager.main(args) == 0
    placed = volumes(Restore_Purpose="in-place")
    assert len(placed) == 3 and len(volumes()) == 6
    assert set(devices_of(iid).values()) == set(placed) and state_of(iid) == "running"
    assert all(tags_of(volumes()[vid])["Replaced_By"] in placed for vid in before.values())


def test_an_undo_interrupted_finishes_when_run_again(api, capsys):
    iid, before = fleet()
    point = yesterday_point(iid, capsys)
    assert manager.main(["restore", "--instance", iid, "--at", point, "--in-place", "--yes"]) == 0
    api.fail("AttachVolume", "InternalError", times=None, status=500)
    assert manager.main(["restore", "--instance", iid, "--undo", "--yes"]) == 1
    assert "InternalError" in capsys.readouterr().err
    api.faults.clear()
    assert manager.main(["restore", "--instance", iid, "--undo", "--yes"]) == 0
    assert devices_of(iid) == before and state_of(iid) == "running" and len(volumes()) == 6


def test_restore_from_a_copy_region_while_the_source_region_is_unreachable(api, capsys):
    iid, _ = fleet({"Copy_Dest": DEST})
    assert copier.main([]) == 0
    sizes = {vid: v["Size"] for vid, v in volumes().items()}
    point = yesterday_point(iid, capsys)  # the same id in the copy region
    api.network(unreachable, when=lambda params, region: region == REGION)
    assert manager.main(["restore-points", "--region", DEST, "--instance", iid]) == 0
    assert point in capsys.readouterr().out
    args = ["restore", "--region", DEST, "--instance", iid, "--az", DEST + "a", "--at", point]
    assert manager.main(args) == 0
    out = capsys.readouterr().out
    made = volumes(DEST, Restore_Instance=iid)
    assert len(made) == 3 and "not read (EndpointConnectionError" in out
    for volume in made.values():
        tags = tags_of(volume)
        assert volume["Size"] == sizes[tags["Restore_SourceVolume"]]
        assert volume["VolumeType"] == "gp3" and volume["AvailabilityZone"] == DEST + "a"
        assert tags["Restore_Point"] == point
    assert manager.main(args) == 0  # again: nothing new
    assert len(volumes(DEST, Restore_Instance=iid)) == 3


def test_an_archived_snapshot_stops_the_restore_before_anything_is_made(capsys):
    iid, devices = fleet()
    point = yesterday_point(iid, capsys)
    snaps = ec2().describe_snapshots(
        Filters=[{"Name": "volume-id", "Values": [devices["/dev/sdf"]]}]
    )["Snapshots"]
    oldest = min(snaps, key=lambda s: s["StartTime"])["SnapshotId"]
    moto_snapshot(oldest).storage_tier = "archive"
    args = ["restore", "--instance", iid, "--at", point]
    assert manager.main(args) == 1
    err = capsys.readouterr().err
    assert f"archived: {oldest}" in err and "72 hours" in err and len(volumes()) == 3
    assert manager.main([*args, "--start-archive-restore", "3"]) == 0
    tags = ec2().describe_snapshots(SnapshotIds=[oldest])["Snapshots"][0]["Tags"]
    assert {"Key": "Restore", "Value": "3"} in tags


def test_an_incomplete_point_needs_partial(capsys):
    iid, _ = fleet(days=1)
    extra = ec2().create_volume(AvailabilityZone=REGION + "b", Size=1)["VolumeId"]
    ec2().attach_volume(VolumeId=extra, InstanceId=iid, Device="/dev/sdh")
    args = ["restore", "--instance", iid, "--at", LATER]
    assert manager.main(args) == 1
    assert "incomplete point: no snapshot of /dev/sdh" in capsys.readouterr().err
    assert manager.main([*args, "--partial"]) == 0
    assert len(volumes(Restore_Instance=iid)) == 3


def test_dry_run_asks_aws_and_changes_nothing(api, capsys):
    iid, _ = fleet(days=1)
    api.fail("StopInstances", "UnauthorizedOperation")
    args = ["restore", "--instance", iid, "--at", LATER, "--in-place", "--dry-run"]
    assert manager.main(args) == 1
    out = capsys.readouterr().out
    assert "permitted: ec2:CreateVolume /dev/sda1" in out and "refused: ec2:StopInstances" in out
    assert len(volumes()) == 3 and state_of(iid) == "running"


def test_init_rate_is_checked_and_its_time_printed(api, capsys):
    iid, _ = fleet(days=1)
    args = ["restore", "--instance", iid, "--at", LATER]
    assert manager.main([*args, "--init-rate", "99"]) == 1
    assert "100 to 300 MiB/s" in capsys.readouterr().err
    assert manager.main([*args, "--init-rate", "200"]) == 0
    assert "fully readable after about 2.6 min" in capsys.readouterr().out  # 30 GiB at 200
    made = [p for p in api.ops("CreateVolume") if "SnapshotId" in p]
    assert {p.get("VolumeInitializationRate") for p in made} == {200}


@pytest.mark.parametrize(
    "args, code, words",
    [
        (["restore", "--instance", "i-0123456789abcdef0"], 2, "needs --at"),
        (["restore-points"], 2, "--instance"),
        (["restore", "--instance", "i-0123456789abcdef0", "--at", "x"], 1, "no restore point"),
    ],
)
def test_bad_usage_and_errors_are_one_line(args, code, words, capsys):
    with pytest.raises(SystemExit) if code == 2 else _nothing() as raised:
        assert manager.main(args) == code
    if code == 2:
        assert raised.value.code == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "Traceback" not in err
    assert code == 2 or err.count("\n") == 0


def test_a_stopped_instance_that_is_terminated_is_refused(capsys):
    iid, _ = fleet(days=1)
    ec2().terminate_instances(InstanceIds=[iid])
    args = ["restore", "--instance", iid, "--at", LATER, "--in-place", "--yes"]
    assert manager.main(args) == 1
    assert "is not in this region" in capsys.readouterr().err


def test_the_default_invocation_is_unchanged(capsys):
    assert manager.main(["--json"]) == 0
    assert '"region"' in capsys.readouterr().out


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_every_call_a_restore_makes_is_granted_by_the_restore_policy(api, capsys):
    iid, _ = fleet()
    point = yesterday_point(iid, capsys)
    api.calls.clear()
    for args in (
        ["restore-points", "--instance", iid],
        ["restore", "--instance", iid, "--at", point, "--dry-run", "--in-place"],
        ["restore", "--instance", iid, "--at", point, "--in-place", "--yes"],
        ["restore", "--instance", iid, "--undo", "--yes"],
    ):
        assert manager.main(args) == 0
    policy = json.loads((ROOT / "iam-policy-restore.json").read_text())["Statement"]
    actions = [[s["Action"]] if isinstance(s["Action"], str) else s["Action"] for s in policy]
    granted = {a for listed in actions for a in listed}
    made = {f"{'kms' if op == 'DescribeKey' else 'ec2'}:{op}" for _, op, _ in api.calls}
    assert {"ec2:CreateVolume", "ec2:AttachVolume", "kms:DescribeKey"} <= made
    assert made - granted == set()


def test_a_key_the_caller_cannot_use_stops_the_restore_before_anything_is_made(api, capsys):
    iid, _ = fleet(days=1)
    refused = {"Code": "AccessDeniedException", "Message": "not allowed to use the key"}
    api.stub("DescribeKey", ClientError({"Error": refused}, "DescribeKey"))
    assert manager.main(["restore", "--instance", iid, "--at", LATER]) == 1
    err = capsys.readouterr().err
    assert "cannot be used: AccessDeniedException" in err and err.count("\n") == 1
    assert len(volumes()) == 3


def test_a_restored_volume_in_use_elsewhere_is_refused(capsys):
    iid, _ = fleet(days=1)
    args = ["restore", "--instance", iid, "--at", LATER]
    assert manager.main(args) == 0
    other = ec2().run_instances(
        ImageId=AMI, MinCount=1, MaxCount=1, Placement={"AvailabilityZone": REGION + "b"}
    )["Instances"][0]["InstanceId"]
    (made, *_) = volumes(Restore_Instance=iid)
    ec2().attach_volume(VolumeId=made, InstanceId=other, Device="/dev/sdz")
    capsys.readouterr()
    assert manager.main(args) == 1
    assert f"{made} is in use by {other}" in capsys.readouterr().err


def script(*args, env):
    return subprocess.run(
        [sys.executable, str(ROOT / "ebs_snapshot_manager.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=ROOT,
    )


@pytest.mark.parametrize("command", ["restore-points", "restore"])
def test_the_subcommands_help_and_refuse_without_a_region_in_one_line(command, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {"HOME": str(tmp_path), "AWS_CONFIG_FILE": str(tmp_path / "none")}
    done = script(command, "--help", env=env)
    assert done.returncode == 0 and "--instance" in done.stdout
    at = ["--at", "rp-1"] if command == "restore" else []
    done = script(command, "--instance", "i-0123456789abcdef0", *at, env=env)
    assert done.returncode == 2 and "no region" in done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1


def test_a_lost_create_volume_answer_makes_no_second_volume(api, capsys):
    iid, _ = fleet(days=1)
    api.lose_answer("CreateVolume", when=lambda params, region: "SnapshotId" in params, times=3)
    assert manager.main(["restore", "--instance", iid, "--at", LATER]) == 0
    made = [p for p in api.ops("CreateVolume") if "SnapshotId" in p]
    assert len(volumes(Restore_Instance=iid)) == 3 and len(made) == 3  # botocore sent again
    assert sum(op == "CreateVolume" for op, _ in api.sent) >= 6


def test_an_instance_that_no_longer_exists_still_has_its_points(capsys):
    iid, _ = fleet(days=1)
    ec2().terminate_instances(InstanceIds=[iid])
    assert manager.main(["restore-points", "--instance", iid]) == 0
    out = capsys.readouterr().out
    assert out.count("  rp-") == 1 and "the instance no longer exists" in out
    args = ["restore", "--instance", iid, "--at", LATER, "--az", REGION + "c"]
    assert manager.main(args) == 0
    made = volumes(Restore_Instance=iid)
    assert len(made) == 3 and {v["AvailabilityZone"] for v in made.values()} == {REGION + "c"}


VAULT = "222233334444"


def vault_key():
    """A customer managed key of the vault in DEST (a copy under the vault's AWS managed
    key cannot be shared back: docs/restore.md, From the vault)."""
    kms = client_as(f"arn:aws:iam::{VAULT}:role/ebs-snapshot-vault-writer", "kms", DEST)
    return kms.create_key()["KeyMetadata"]["Arn"]


def test_restore_from_the_vault_while_the_source_region_is_unreachable(api, monkeypatch, capsys):
    """The vault's copies in DEST, shared back through its restorer role (moto's STS hands
    out the vault's credentials; testkit/moto_gaps.py lets CreateVolume use a snapshot
    another account shared, and DescribeKey read another account's key)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends

    monkeypatch.setenv(creator.VAULT_ACCOUNTS_ENV, VAULT)
    monkeypatch.setenv(copier.VAULT_KEY_ENV, vault_key())  # shareable: not aws/ebs
    tags = {"Vault_Account": VAULT, "Vault_Region": DEST, "Consistency": "volume"}
    iid, devices = fleet(tags, days=1)
    assert copier.main([]) == 0
    sizes = {vid: v["Size"] for vid, v in volumes().items()}
    vault = ec2_backends[VAULT][DEST].snapshots
    assert len(vault) == 3
    api.network(unreachable, when=lambda params, region: region == REGION)
    vault_args = ["--region", DEST, "--instance", iid, "--vault-account", VAULT]
    assert manager.main(["restore-points", *vault_args]) == 0
    out = capsys.readouterr().out
    assert out.count("  rp-") == 1 and f"the vault {VAULT}" in out
    args = ["restore", *vault_args, "--az", DEST + "a", "--at", LATER]
    assert manager.main(args) == 0
    made = volumes(DEST, Restore_Instance=iid)
    assert len(made) == 3 and "not read (EndpointConnectionError" in capsys.readouterr().out
    for volume in made.values():
        tags = tags_of(volume)
        copy = vault[tags["Restore_Snapshot"]]
        assert volume["SnapshotId"] == copy.id and tags["Restore_Device"] in devices
        assert volume["Size"] == sizes[tags["Restore_SourceVolume"]]
        assert volume["Encrypted"] and volume["KmsKeyId"] == copy.kms_key_id
        assert f":{VAULT}:key/" in copy.kms_key_id and volume["AvailabilityZone"] == DEST + "a"
        assert copy.create_volume_permission_userids == {DEFAULT_ACCOUNT_ID}
        assert not copy.create_volume_permission_groups
    api.calls.clear()
    assert manager.main(args) == 0  # again: nothing shared twice, nothing new
    assert "shared with" in capsys.readouterr().out
    done = {op for _, op, _ in api.calls}
    assert not done & {"ModifySnapshotAttribute", "CreateVolume"}
    assert len(volumes(DEST, Restore_Instance=iid)) == 3
