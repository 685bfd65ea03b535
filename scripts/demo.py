"""`make demo`: the three real jobs on moto's in-process AWS, ten days in two regions.

No AWS account, credentials or network: moto answers every call inside this process. The
jobs are the real modules, given each day's date through their ``now`` parameter.
"""

import contextlib
import os
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from unittest.mock import patch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import boto3
from moto import mock_aws
from moto_gaps import install as fill_moto_gaps

import ebs_snapshot_copier
import ebs_snapshot_creator
import ebs_snapshot_manager

fill_moto_gaps()  # moto's missing EC2 filters, as EC2 documents them

EAST, WEST = "us-east-1", "eu-west-1"
REGIONS = (EAST, WEST)
START = date(2026, 12, 1)
DAYS = 10
KEEP_DAY = 2  # the day an operator marks one snapshot KeepForever
KEEP_INSTANCE, KEEP_RETENTION = "web-1", 3  # its primary lives in EAST, its copy in WEST
MISSED = (WEST, 3)  # the creator does not run there that day: the manager says so next day

# (region, Name, instance tags, {device: volume tags}, stopped?) — what each one shows:
FLEET = [
    (
        EAST,
        "web-1",
        {
            "Backup": "Yes",
            "Retention": "3",
            "Retention_Weekly": "2",
            "Retention_Monthly": "1",
            "Copy_Dest": WEST,
        },
        {"/dev/xvda": {}},
        False,
    ),  # 3 dailies, the Sunday one for 2 weeks, the 1st's for a month; copied west;
    # one snapshot kept forever on day 2
    (
        EAST,
        "db-1",
        {"Backup": "yes", "Retention": "5", "Copy_Dest": f"{WEST}, mars-east-1"},
        {"/dev/xvda": {}, "/dev/sdf": {}, "/dev/sdg": {"Backup": "No"}},
        False,
    ),  # opt-out, bad region
    (EAST, "batch-1", {"Backup": "true", "Retention": "2"}, {"/dev/xvda": {}}, True),  # stopped
    (EAST, "legacy-1", {"Backup": "Yse"}, {"/dev/xvda": {}}, False),  # typo: skipped, warned
    (EAST, "dev-1", {}, {"/dev/xvda": {}}, False),  # no Backup tag: ignored
    (
        WEST,
        "api-eu",
        {"Backup": "on", "Retention": "4", "Copy_Dest": EAST, "Copy_Retention": "7"},
        {"/dev/xvda": {}},
        False,
    ),  # copied east, where the copies are kept 7 days, longer than the primaries
    (
        WEST,
        "cache-eu",
        {"Backup": "Yes", "Retention": "two weeks"},
        {"/dev/xvda": {}},
        False,
    ),  # bad Retention: the default 7 days
]
# When each job runs on a day (UTC): manager first, creator, then the copier hours later.
SCHEDULE = [
    (1, "manager", ebs_snapshot_manager),
    (2, "creator", ebs_snapshot_creator),
    (6, "copier", ebs_snapshot_copier),
]


def ec2(region):
    return boto3.client("ec2", region_name=region)


@contextlib.contextmanager
def clock(now):
    """moto stamps snapshots and volume attachments with its own clock: the demo's, here."""
    naive = now.astimezone(UTC).replace(tzinfo=None)
    with patch("moto.ec2.models.elastic_block_store.utcnow", lambda: naive):
        yield


def build_fleet():
    """Launch the fleet (the day before the demo starts); returns {instance id: Name}."""
    with clock(datetime(START.year, START.month, START.day, tzinfo=UTC) - timedelta(hours=12)):
        return launch_fleet()


def launch_fleet():
    names = {}
    for region, name, tags, devices, stopped in FLEET:
        client = ec2(region)
        instance = client.run_instances(
            ImageId="ami-12345678",
            MinCount=1,
            MaxCount=1,
            BlockDeviceMappings=[{"DeviceName": d, "Ebs": {"VolumeSize": 8}} for d in devices],
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [{"Key": k, "Value": v} for k, v in {"Name": name, **tags}.items()],
                }
            ],
        )["Instances"][0]
        volumes = {m["DeviceName"]: m["Ebs"]["VolumeId"] for m in instance["BlockDeviceMappings"]}
        for device, vtags in devices.items():
            if vtags:
                client.create_tags(
                    Resources=[volumes[device]],
                    Tags=[{"Key": k, "Value": v} for k, v in vtags.items()],
                )
        if stopped:
            client.stop_instances(InstanceIds=[instance["InstanceId"]])
        names[instance["InstanceId"]] = name
    return names


def describe_run(hour, job, summary, seen_warnings, names):
    """One short line per run, then any warning not shown before."""
    counts = summary["counts"]
    done = []
    if counts.get("created"):
        done.append(f"created {counts['created']}")
    copied = {}
    for item in summary.get("copied", []):
        copied[item["dest_region"]] = copied.get(item["dest_region"], 0) + 1
    done += [f"copied {n} to {region}" for region, n in copied.items()]
    if counts.get("tagged"):
        done.append(f"carried KeepForever to {counts['tagged']} copy")
    if counts.get("deleted"):
        done.append(f"deleted {counts['deleted']} expired")
    if counts.get("kept_forever"):
        done.append(f"kept {counts['kept_forever']} (KeepForever)")
    if counts.get("protected"):
        done.append(f"{counts['protected']} volumes protected")
    if counts.get("unprotected"):
        done.append(f"{counts['unprotected']} UNPROTECTED")
    lines = [
        f"  {hour:02d}:00  {job:<8} {summary['region']:<10} {', '.join(done) or 'nothing to do'}"
    ]
    for item in summary.get("unprotected", []):
        lines.append(f"{'':9}unprotected  {item['name']}: {item['reason']}")
    for warning in summary["warnings"]:
        key = (summary["region"], warning["id"], warning["reason"])
        if key not in seen_warnings:
            seen_warnings.add(key)
            who = names.get(warning["id"], warning["id"])
            lines.append(f"{'':9}warning  {who}: {warning['reason']}")
    return lines


def keep_one_forever(today):
    """What an operator does by hand: mark today's snapshot of web-1 KeepForever."""
    delete_on = (today + timedelta(days=KEEP_RETENTION)).isoformat()
    (snap,) = ec2(EAST).describe_snapshots(
        OwnerIds=["self"],
        Filters=[
            {"Name": "tag:Name", "Values": [KEEP_INSTANCE]},
            {"Name": "tag:DeleteOn", "Values": [delete_on]},
        ],
    )["Snapshots"]
    ec2(EAST).create_tags(
        Resources=[snap["SnapshotId"]], Tags=[{"Key": "KeepForever", "Value": "audit"}]
    )
    return snap["SnapshotId"]


def inventory(region):
    """A region's snapshots as rows: id, volume, instance, DeleteOn, tier, copy of, Keep."""
    rows = []
    for snap in ec2(region).describe_snapshots(OwnerIds=["self"])["Snapshots"]:
        tags = {t["Key"]: t["Value"] for t in snap.get("Tags", [])}
        source = tags.get("Source_SnapshotId")
        rows.append(
            {
                "snapshot": snap["SnapshotId"],
                # A copy's VolumeId is arbitrary in AWS: show none.
                "volume": "-" if source else snap["VolumeId"],
                "instance": tags.get("Name", "-"),
                "DeleteOn": tags.get("DeleteOn", "-"),
                "tier": tags.get("Retention_Tier", "-"),
                "copy of": source or "-",
                "Keep": tags.get("KeepForever", "-"),
            }
        )
    return sorted(rows, key=lambda r: (r["instance"], r["copy of"] != "-", r["DeleteOn"]))


def table(rows):
    if not rows:
        return ["  (none)"]
    columns = list(rows[0])
    cells = [columns] + [[r[c] for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return [
        "  " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]


def play(out=print):
    """Build the fleet, play the days, print as it goes; returns the final inventories."""
    names = build_fleet()
    out(f"Fleet: {len(FLEET)} instances in {EAST} and {WEST} (moto, in this process).")
    for region, name, tags, devices, stopped in FLEET:
        shown = ", ".join(f"{k}={v}" for k, v in tags.items()) or "no Backup tag"
        extra = [f"{d} Backup=No" for d, v in devices.items() if v.get("Backup") == "No"]
        extra += ["stopped"] if stopped else []
        out(f"  {region:<10} {name:<9} {shown}" + (f"  [{'; '.join(extra)}]" if extra else ""))
    seen_warnings = set()
    for n in range(DAYS):
        today = START + timedelta(days=n)
        out(f"\nDay {n + 1}  {today}")
        for hour, job, module in SCHEDULE:
            for region in REGIONS:
                if job == "creator" and (region, n + 1) == MISSED:
                    out(f"  {hour:02d}:00  {job:<8} {region:<10} did not run (an outage)")
                    continue
                now = datetime(today.year, today.month, today.day, hour, tzinfo=UTC)
                with clock(now):
                    summary = module.run({}, None, region=region, now=now)
                for line in describe_run(hour, job, summary, seen_warnings, names):
                    out(line)
        if n + 1 == KEEP_DAY:
            kept = keep_one_forever(today)
            out(f"  09:00  operator tags {kept} ({KEEP_INSTANCE}) KeepForever=audit")
    final = {region: inventory(region) for region in REGIONS}
    last = START + timedelta(days=DAYS - 1)
    for region in REGIONS:
        others = ", ".join(r for r in REGIONS if r != region)
        out(f"\n{region}: {len(final[region])} snapshots after {last} (copies come from {others})")
        for line in table(final[region]):
            out(line)
    out(
        "\nEach volume keeps its last <Retention> days of snapshots; web-1 also keeps its "
        "Sunday (weekly)\nsnapshot two weeks and its 1 December (monthly) one a month. Copies "
        "expire with their\nprimaries, but api-eu's, kept 7 days (Copy_Retention). The "
        "KeepForever snapshot and its copy\nstay. Nothing left this process."
    )
    return final


def main():
    os.environ.update(
        AWS_ACCESS_KEY_ID="demo",
        AWS_SECRET_ACCESS_KEY="demo",
        AWS_EC2_METADATA_DISABLED="true",
        MOTO_EC2_LOAD_DEFAULT_AMIS="false",
        LOG_LEVEL="CRITICAL",  # the demo prints its own short lines instead of the JSON log
    )
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2", "AWS_SESSION_TOKEN"):
        os.environ.pop(var, None)
    with mock_aws():
        play()
    return 0


if __name__ == "__main__":
    sys.exit(main())
