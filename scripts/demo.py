"""`make demo`: the three real jobs on moto's in-process AWS, ten days in two regions.

No AWS account, credentials or network: moto answers every call inside this process. The
jobs are the real modules, given each day's date through their ``now`` parameter. It ends
with a picture of the snapshots left, one bar per snapshot from creation to DeleteOn: in
the terminal, and as build/demo.png (the README shows a copy, docs/demo.png).
"""

import contextlib
import json
import os
import re
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from unittest.mock import patch

import boto3
from moto import mock_aws
from moto.ec2.models.elastic_block_store import EBSBackend

import ebs_snapshot_copier
import ebs_snapshot_creator
import ebs_snapshot_manager
from scripts.demo_vault import play_vault
from testkit.moto_gaps import force_volume_state
from testkit.moto_gaps import install as fill_moto_gaps

fill_moto_gaps()  # moto's missing EC2 filters, as EC2 documents them

EAST, WEST = "us-east-1", "eu-west-1"
REGIONS = (EAST, WEST)
START = date(2026, 12, 1)
DAYS = 10
KEEP_DAY = 2  # the day an operator marks one snapshot KeepForever
KEEP_INSTANCE, KEEP_RETENTION = "web-1", 3  # its primary lives in EAST, its copy in WEST
MISSED = (WEST, 3)  # the creator does not run there that day: the manager says so next day
DAMAGED = (EAST, 4)  # from that day, the next drill's volume goes to error (days 4-10: a week)

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
    (
        EAST,
        "files-1",
        {"Backup": "Yes", "Retention": "3", "Retention_Monthly": "4", "Archive": "monthly"},
        {"/dev/xvda": {}},
        False,
    ),  # the 1st's snapshot goes to the archive tier a day on; deleted 1 April (epilogue)
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
    (
        WEST,
        "vault-eu",
        {"Backup": "Yes", "Retention": "3", "Lock": "governance"},
        {"/dev/xvda": {}},
        False,
    ),  # each snapshot locked until its DeleteOn; deleted that morning, the lock expired
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


def day_header(n, today):
    """The day, its weekday, and why it makes longer-lived snapshots."""
    marks = ["Sunday, the weekly day"] if today.weekday() == 6 else []
    marks += ["the 1st: a monthly snapshot"] if today.day == 1 else []
    note = f"  ({'; '.join(marks)})" if marks else ""
    return f"\nDay {n}  {today:%a %Y-%m-%d}{note}"


def describe_run(hour, job, summary, seen_warnings, names, locks):
    """One short line per run, then any warning not shown before. ``locks`` gathers the
    locks the runs made, {snapshot id: until}."""
    counts = summary["counts"]
    done = []
    for item in summary.get("locked", []):
        locks[item["snapshot_id"]] = item["until"]
    if counts.get("created"):
        longer = sorted(
            {f"{c['tier']} for {names.get(c['instance_id'])}" for c in summary["created"]}
            - {f"daily for {names.get(c['instance_id'])}" for c in summary["created"]}
        )
        done.append(f"created {counts['created']}" + "".join(f", {t}" for t in longer))
    copied = {}
    for item in summary.get("copied", []):
        copied[item["dest_region"]] = copied.get(item["dest_region"], 0) + 1
    done += [f"copied {n} to {region}" for region, n in copied.items()]
    if counts.get("tagged"):
        done.append(f"carried KeepForever to {counts['tagged']} copy")
    if counts.get("locked"):
        modes = sorted({item["lock"] for item in summary["locked"]})
        done.append(f"locked {counts['locked']} until DeleteOn ({', '.join(modes)})")
    if counts.get("deleted"):
        done.append(f"deleted {counts['deleted']} expired")

    held = [s for s in summary.get("skipped", []) if "kept although due" in s["reason"]]
    if held:  # reported on the day it would have been deleted, not before
        done.append(f"kept {len(held)} past its DeleteOn (KeepForever)")
    if counts.get("protected"):
        done.append(f"{counts['protected']} volumes protected")
    if counts.get("unprotected"):
        done.append(f"{counts['unprotected']} UNPROTECTED")
    lines = [
        f"  {hour:02d}:00  {job:<8} {summary['region']:<10} {', '.join(done) or 'nothing to do'}"
    ]
    unlocked = [d for d in summary.get("deleted", []) if d["snapshot_id"] in locks]
    if unlocked:  # the lock ran until DeleteOn 00:00: the manager runs after it
        lines.append(f"{'':9}{len(unlocked)} of them locked until 00:00 today: the lock expired")
    for item in summary.get("sent_to_archive", []):
        lines.append(f"{'':9}to the archive tier: {item['snapshot_id']} ({item['reason']})")
    if summary.get("drilled"):  # moto makes volumes at once: 0 s each
        lines.append(f"{'':9}restore drills: {len(summary['drilled'])} ok")
    for failure in summary.get("failures", []):
        lines.append(f"{'':9}FAILED  {failure['id']}: {failure['error']}")
    if counts.get("drills_failed"):
        lines.append(
            f"{'':9}metric RestoreDrillsFailed={counts['drills_failed']}: "
            "RestoreDrillsFailedAlarm fires"
        )
    for item in summary.get("unprotected", []):
        lines.append(f"{'':9}unprotected  {item['name']}: {item['reason']}")
    failed = {failure["id"] for failure in summary.get("failures", [])}
    for warning in summary["warnings"]:
        key = (summary["region"], warning["id"], warning["reason"])
        if key not in seen_warnings and warning["id"] not in failed:  # shown as FAILED
            seen_warnings.add(key)
            who = names.get(warning["id"], warning["id"])
            lines.append(f"{'':9}warning  {who}: {warning['reason']}")
    return lines


broken = []  # the drill volume the demo sent to error, once it has


def run_job(module, region, now):
    """One run; a run with failures raises JobFailed after its summary: the demo shows it."""
    try:
        return module.run({}, None, region=region, now=now)
    except module.JobFailed as failed:
        return failed.summary


@contextlib.contextmanager
def first_drill_fails(damaged):
    """From the DAMAGED day, the next volume a restore drill makes goes to error, as a
    volume restored from a broken snapshot (or with a KMS key it cannot use) does."""
    if not damaged:
        yield
        return
    create = EBSBackend.create_volume

    def create_volume(self, *args, **kwargs):
        volume = create(self, *args, **kwargs)
        if not broken and kwargs.get("snapshot_id", args[2] if len(args) > 2 else None):
            force_volume_state(volume, "error")
            broken.append(volume.id)
        return volume

    with patch.object(EBSBackend, "create_volume", create_volume):
        yield


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
    """A region's snapshots as rows: id, volume, instance, device, created, DeleteOn, tier
    (for a copy with its own date, Copy_Retention), copy of, Keep."""
    rows = []
    for snap in ec2(region).describe_snapshots(OwnerIds=["self"])["Snapshots"]:
        tags = {t["Key"]: t["Value"] for t in snap.get("Tags", [])}
        source = tags.get("Source_SnapshotId")
        device = re.search(r"\((/dev/[^)]+)\)", snap.get("Description", ""))
        rows.append(
            {
                "snapshot": snap["SnapshotId"],
                # A copy's own VolumeId is arbitrary in AWS: its source volume instead.
                "volume": tags["Source_VolumeId"] if source else snap["VolumeId"],
                "instance": tags.get("Name", "-"),
                "device": device.group(1) if device else "-",
                "created": snap["StartTime"].date().isoformat(),
                "DeleteOn": tags.get("DeleteOn", "-"),
                "tier": tags.get("Retention_Tier") or ("Copy_Retention" if source else "-"),
                "copy of": source or "-",
                "Keep": tags.get("KeepForever", "-"),
                "Lock": tags.get("Lock", "-"),
            }
        )
    return sorted(rows, key=lambda r: (r["instance"], r["copy of"] != "-", r["DeleteOn"]))


# ---- the picture: one bar per snapshot, from creation to DeleteOn ----------------------

MARKS = {"daily": "d", "weekly": "W", "monthly": "M", "yearly": "Y", "Copy_Retention": "R"}
SPAN = 32  # days shown, from START: the monthly snapshot of 1 December reaches 1 January


def bars(final):
    """[(row label, lane, snapshot id, created, DeleteOn, mark, kept)]: the snapshots of
    each volume in each region, in as few lanes as their lifetimes allow."""
    groups = {}
    for region, rows in final.items():
        for r in rows:
            copy = r["copy of"] != "-"
            label = f"{r['instance']} {r['device']}" + (f" copy in {region}" if copy else "")
            label += f" (Lock={r['Lock']})" if r["Lock"] != "-" else ""
            groups.setdefault((r["instance"], r["device"], copy, label), []).append(r)
    out = []
    for (*_, label), rows in sorted(groups.items()):
        lanes = []  # the last day of each lane: DeleteOn, or never for KeepForever
        for r in sorted(rows, key=lambda r: (r["created"], r["DeleteOn"])):
            lane = next((i for i, end in enumerate(lanes) if end <= r["created"]), len(lanes))
            lanes[lane : lane + 1] = ["9999-12-31" if r["Keep"] != "-" else r["DeleteOn"]]
            mark = MARKS.get(r["tier"], "?")
            out.append(
                (label, lane, r["snapshot"], r["created"], r["DeleteOn"], mark, r["Keep"] != "-")
            )
    return out


def text_picture(drawn):
    """The bars in the terminal, one line per lane, a column per day."""
    first = START
    header = "".join(str((first + timedelta(days=i)).day % 10) for i in range(SPAN))
    width = max(len(label) for label, *_ in drawn) + 2
    lines = [f"{'':{width}}{first:%b %-d}, a column a day", f"{'':{width}}{header}"]
    rows = {}
    for label, lane, _, created, delete_on, mark, kept in drawn:
        cells = rows.setdefault((label, lane), [" "] * SPAN)
        start = (date.fromisoformat(created) - first).days
        end = SPAN if kept else min(SPAN, (date.fromisoformat(delete_on) - first).days)
        for day in range(start, end):
            cells[day] = "━"
        cells[start] = "K" if kept else mark
        if end == SPAN:
            cells[-1] = "▸"
    previous = None
    for (label, _), cells in rows.items():
        shown = label if label != previous else ""
        previous = label
        lines.append(f"{shown:<{width}}{''.join(cells).rstrip()}")
    lines.append(
        "d daily, W weekly, M monthly, R a copy kept by Copy_Retention, K KeepForever; "
        "━ until DeleteOn, ▸ beyond"
    )
    return lines


def png_picture(drawn, path):
    """The same bars as a PNG; its metadata lists them, so a test can compare with AWS."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lanes = list(dict.fromkeys((label, lane) for label, lane, *_ in drawn))
    colors = {"d": "#9aa5b1", "W": "#3b82f6", "M": "#8b5cf6", "Y": "#0f766e", "R": "#f59e0b"}
    fig, ax = plt.subplots(figsize=(12, 0.28 * len(lanes) + 1.4))
    for label, lane, _, created, delete_on, mark, kept in drawn:
        y = len(lanes) - 1 - lanes.index((label, lane))
        start = (date.fromisoformat(created) - START).days
        end = SPAN if kept else min(SPAN, (date.fromisoformat(delete_on) - START).days)
        copy = "copy in" in label
        ax.broken_barh(
            [(start, max(end - start, 0.3))],
            (y + 0.15, 0.7),
            facecolors=colors.get(mark, "#999999"),
            edgecolors="#dc2626" if kept else "none",
            linewidth=2 if kept else 0,
            hatch="///" if copy else None,
        )
        if kept:
            ax.text(start + 0.2, y + 0.5, "KeepForever", va="center", fontsize=7)
    ax.set_yticks([len(lanes) - 1 - i + 0.5 for i, (_, lane) in enumerate(lanes) if lane == 0])
    ax.set_yticklabels([label for label, lane in lanes if lane == 0], fontsize=8)
    ticks = range(0, SPAN + 1, 7)
    ax.set_xticks(list(ticks))
    ax.set_xticklabels([f"{START + timedelta(days=d):%b %-d}" for d in ticks])
    ax.axvline(DAYS, color="#111827", linewidth=1)
    ax.text(DAYS + 0.2, len(lanes) - 0.3, "end of the demo", fontsize=8)
    ax.set_xlim(0, SPAN)
    ax.set_ylim(0, len(lanes))
    ax.set_title(
        "Snapshots left after the demo: a bar from creation to DeleteOn (grey daily, blue "
        "weekly, purple monthly, orange Copy_Retention; hatched: a copy)",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Description": json.dumps(drawn)})
    plt.close(fig)


def play(out=print, picture=None):
    """Build the fleet, play the days, print as it goes, draw the snapshots left (and write
    them to ``picture``, a PNG path, if given); returns the final inventories."""
    names = build_fleet()
    out(f"Fleet: {len(FLEET)} instances in {EAST} and {WEST} (moto, in this process).")
    for region, name, tags, devices, stopped in FLEET:
        shown = ", ".join(f"{k}={v}" for k, v in tags.items()) or "no Backup tag"
        extra = [f"{d} Backup=No" for d, v in devices.items() if v.get("Backup") == "No"]
        extra += ["stopped"] if stopped else []
        out(f"  {region:<10} {name:<9} {shown}" + (f"  [{'; '.join(extra)}]" if extra else ""))
    seen_warnings, locks = set(), {}
    for n in range(DAYS):
        today = START + timedelta(days=n)
        out(day_header(n + 1, today))
        for hour, job, module in SCHEDULE:
            for region in REGIONS:
                if job == "creator" and (region, n + 1) == MISSED:
                    out(f"  {hour:02d}:00  {job:<8} {region:<10} did not run (an outage)")
                    continue
                now = datetime(today.year, today.month, today.day, hour, tzinfo=UTC)
                damaged = job == "manager" and region == DAMAGED[0] and n + 1 >= DAMAGED[1]
                with clock(now), first_drill_fails(damaged and not broken):
                    summary = run_job(module, region, now)
                for line in describe_run(hour, job, summary, seen_warnings, names, locks):
                    out(line)
        if n + 1 == KEEP_DAY:
            kept = keep_one_forever(today)
            out(f"  09:00  operator tags {kept} ({KEEP_INSTANCE}) KeepForever=audit")
    final = {region: inventory(region) for region in REGIONS}
    last = START + timedelta(days=DAYS - 1)
    total = sum(len(rows) for rows in final.values())
    out(f"\n{total} snapshots after {last}, one bar each from its creation to its DeleteOn:")
    drawn = bars(final)
    for line in text_picture(drawn):
        out(line)
    if picture:
        png_picture(drawn, Path(picture))
        out(f"(the same picture: {picture})")
    out(f"\nLocks in {WEST} now (DescribeLockedSnapshots), each until its snapshot's DeleteOn:")
    with clock(datetime(last.year, last.month, last.day, 23, tzinfo=UTC)):
        locked = ec2(WEST).describe_locked_snapshots()["Snapshots"]
    for lock in sorted(locked, key=lambda lock: lock["LockExpiresOn"]):
        until = f"{lock['LockExpiresOn']:%Y-%m-%d %H:%M} UTC"
        out(f"  {lock['SnapshotId']}  {lock['LockState']} until {until}")
    out(
        "\nEach volume keeps its last <Retention> days of snapshots; web-1 also keeps its "
        "Sunday (weekly)\nsnapshot two weeks and its 1 December (monthly) one a month. Copies "
        "expire with their\nprimaries, but api-eu's, kept 7 days (Copy_Retention). The "
        "KeepForever snapshot and its copy\nstay. vault-eu's are locked until their DeleteOn, "
        "and deleted the morning the lock has\nexpired. files-1's 1 December (monthly) one "
        "went to the archive tier on day 3."
    )
    return final


def epilogue(out=print):
    """Months on: the archived monthly is deleted on its DeleteOn, like any other."""
    archived = [
        s
        for s in ec2(EAST).describe_snapshots(OwnerIds=["self"])["Snapshots"]
        if s.get("StorageTier") == "archive"
    ]
    out("\nEpilogue: the archived monthly, months later")
    for snap in archived:
        sid, tags = snap["SnapshotId"], {t["Key"]: t["Value"] for t in snap["Tags"]}
        (status,) = ec2(EAST).describe_snapshot_tier_status(
            Filters=[{"Name": "snapshot-id", "Values": [sid]}]
        )["SnapshotTierStatuses"]
        since, day = status["ArchivalCompleteTime"].date(), date.fromisoformat(tags["DeleteOn"])
        out(f"  {sid}  {tags['Name']}  in the archive tier since {since}, DeleteOn {day}")
        now = datetime(day.year, day.month, day.day, 1, tzinfo=UTC)
        with clock(now):
            summary = run_job(ebs_snapshot_manager, EAST, now)
        if sid in {d["snapshot_id"] for d in summary.get("deleted", [])}:
            out(
                f"  {day:%a %Y-%m-%d} 01:00  manager  deleted it, {(day - since).days} days in "
                "the archive tier: over AWS's 90-day minimum,\n  so nothing more to pay. "
                "Nothing left this process."
            )


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
        play(picture=Path(__file__).resolve().parent.parent / "build" / "demo.png")
        epilogue()
    with mock_aws():  # a second act, in a fresh moto: a vault account (demo_vault.py)
        play_vault(clock, datetime(START.year, START.month, START.day, tzinfo=UTC))
    return 0


if __name__ == "__main__":
    sys.exit(main())
