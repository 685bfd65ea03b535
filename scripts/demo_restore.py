"""The restore act of `make demo`: an instance's three volumes back to yesterday.

One instance, shop-1, with a root volume and two data volumes of other kinds, is backed up
as a multi-volume set on two days. Then the manager's restore command lists its restore
points, restores yesterday's side by side, then in place, then undoes that. The command is
the real one (ebs_snapshot_manager.main); its output is shown with names for moto's ids
(demo.Names), so the act prints the same lines every run.
"""

import contextlib
import io
from datetime import timedelta

import boto3
from moto.moto_api._internal import mock_random

import ebs_snapshot_creator
import ebs_snapshot_manager

REGION, SEED, NAME = "us-east-1", 7, "shop-1"
TAGS = {"Name": NAME, "Backup": "Yes", "Consistency": "instance"}
DATA = {
    "/dev/sdf": {"VolumeType": "io2", "Size": 20, "Iops": 1000},
    "/dev/sdg": {"VolumeType": "gp3", "Size": 30, "Iops": 4000, "Throughput": 250},
}


def setup(clock, start, names):
    """shop-1 and its three volumes, named "shop-1 <device>"; moto's ids from SEED."""
    mock_random.seed(SEED)
    ec2 = boto3.client("ec2", region_name=REGION)
    with clock(start - timedelta(hours=12)):
        (instance,) = ec2.run_instances(
            ImageId="ami-12345678",
            MinCount=1,
            MaxCount=1,
            Placement={"AvailabilityZone": REGION + "a"},
            BlockDeviceMappings=[
                {"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8, "VolumeType": "gp3"}}
            ],
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [{"Key": k, "Value": v} for k, v in TAGS.items()],
                }
            ],
        )["Instances"]
        iid = instance["InstanceId"]
        names.of[iid] = NAME
        names.of[instance["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]] = f"{NAME} /dev/xvda"
        for device, spec in DATA.items():
            vid = ec2.create_volume(AvailabilityZone=REGION + "a", **spec)["VolumeId"]
            ec2.attach_volume(VolumeId=vid, InstanceId=iid, Device=device)
            names.of[vid] = f"{NAME} {device}"
    return iid


def command(args, names, out):
    """One run of the manager's command line, its output with names for ids."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        code = ebs_snapshot_manager.main([*args, "--region", REGION])
    learn_volumes(names)
    shown = " ".join(a for a in args if not a.startswith(("i-", "--instance")))
    out(f"\n$ ebs_snapshot_manager.py {shown}   (exit {code})")
    for line in printed.getvalue().splitlines():
        out(names(line))


def learn_volumes(names):
    """Name each restored volume after the one it stands for."""
    ec2 = boto3.client("ec2", region_name=REGION)
    found = ec2.describe_volumes(Filters=[{"Name": "tag-key", "Values": ["Restore_Purpose"]}])
    for volume in found["Volumes"]:
        tags = {t["Key"]: t["Value"] for t in volume.get("Tags", [])}
        how = tags["Restore_Purpose"].replace("-", " ")
        names.of[volume["VolumeId"]] = f"{NAME} {tags['Restore_Device']} ({how})"


def backups(clock, start, names, out):
    """Two days of the creator, each a multi-volume set: events day-1 and day-2."""
    for n in (1, 2):
        now = start + timedelta(days=n - 1, hours=2)
        with clock(now):
            summary = ebs_snapshot_creator.run({"id": f"day-{n}"}, None, region=REGION, now=now)
        names.learn(summary)
        out(f"  Day {n}: the creator takes a set of {len(summary.get('created', []))} snapshots")


def play_restore(clock, start, names, out=print):
    """The act: points, side by side, in place, undo, shop-1 back to day 1."""
    out(f"\nRestores: {NAME} in {REGION}, a root volume and two data volumes (io2, gp3).")
    iid = setup(clock, start, names)
    backups(clock, start, names, out)
    with clock(start + timedelta(days=1, hours=9)):
        command(["restore-points", "--instance", iid], names, out)
        at = ["--instance", iid, "--at", (start + timedelta(hours=3)).isoformat()]
        command(["restore", *at], names, out)
        command(["restore", *at, "--in-place", "--yes"], names, out)
        command(["restore", "--instance", iid, "--undo", "--yes"], names, out)
    out(
        "\nNothing was deleted: the side-by-side volumes wait to be attached or deleted by"
        "\nyou, and the in-place ones, taken off again by the undo, stay tagged Restore_UndoneOn."
    )
