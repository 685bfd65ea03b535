"""`make demo`: the three real jobs on moto's in-process AWS, ten days in two regions.

No AWS account, credentials or network: moto answers every call inside this process. The
jobs are the real modules, given each day's date through their ``now`` parameter. It ends
with a picture of the snapshots left, one bar per snapshot from creation to DeleteOn: in
the terminal, and as build/demo.png (the README shows a copy, docs/demo.png).

Every run prints the same story: moto's ids come from a fixed seed (a volume's restore
drill day is a hash of its id), and the demo prints names, never ids (Names).
"""

import contextlib
import functools
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
from moto.moto_api._internal import mock_random

import ebs_snapshot_copier
import ebs_snapshot_creator
import ebs_snapshot_manager
from scripts.demo_restore import play_restore
from scripts.demo_vault import play_vault
from testkit.moto_gaps import force_volume_state
from testkit.moto_gaps import install as fill_moto_gaps

fill_moto_gaps()  # moto's missing EC2 filters, as EC2 documents them

ROOT = Path(__file__).resolve().parent.parent
EAST, WEST = "us-east-1", "eu-west-1"
REGIONS = (EAST, WEST)
START = date(2026, 12, 1)
DAYS = 10
KEEP_DAY = 2  # the day an operator marks one snapshot KeepForever
KEEP_INSTANCE, KEEP_RETENTION = "web-1", 3  # its primary lives in EAST, its copy in WEST
MISSED = (WEST, 3)  # the creator does not run there that day: the manager says so next day
# From day 4, this volume's snapshots in EAST do not restore: its next restore drill fails.
# Each volume is drilled once a week, so once in days 4-10 (day 5, from SEED's ids).
DAMAGED, FAILING = (EAST, 4), ("db-1", "/dev/xvda")
SEED = 2  # moto's ids, so each volume's drill day: 2 puts the first drills on day 2

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
    (
        EAST,
        "queue-1",
        {"Backup": "Yes", "Retention": "3", "Backup_Every": "4", "Retention_Hourly": "24"},
        {"/dev/xvda": {}},
        False,
    ),  # every 4 hours: the 02:00 one is its daily, the other five of the day are kept 24 h
    # (to the next whole day); last, so that the others' moto ids stay as they were
]
# When each job runs on a day (UTC): manager first, creator, then the copier hours later.
SCHEDULE = [
    (1, "manager", ebs_snapshot_manager),
    (2, "creator", ebs_snapshot_creator),
    (6, "copier", ebs_snapshot_copier),
]
# The creator runs every hour, scheduled (BACKUP_DAILY_HOUR: its daily hour). The demo plays
# the hours where a slot starts (queue-1's, every 4 hours from the daily one); in the others,
# it would find nothing due, or every slot done. Between the daily runs, only in the regions
# with such an instance: elsewhere nothing is due (a listing of the instances, then nothing).
DAILY_HOUR = 2
EVERY_HOURS = 4
CREATOR_HOURS = range(DAILY_HOUR, 24, EVERY_HOURS)
SUB_DAILY = {region for region, _, tags, *_ in FLEET if "Backup_Every" in tags}
# The words of the story a newcomer cannot know: each said once, under its first line.
NOTES = {
    "created": "each snapshot is tagged DeleteOn: its day + Retention days; longer if weekly or "
    "monthly",
    "locked": "locked: EC2 refuses to delete it before DeleteOn; in governance mode an allowed "
    "admin may unlock",
    "copied": "copied: to the Copy_Dest region; a copy keeps its primary's DeleteOn, or "
    "Copy_Retention's",
    "protected": "protected: a volume with a completed snapshot, and copy if Copy_Dest, from the "
    "last 26 h",
    "expired": "expired: past its DeleteOn; but a volume's last snapshot is never deleted",
    "KeepForever": "KeepForever: the manager never deletes a snapshot so tagged; the copier tags "
    "its copies",
    "UNPROTECTED": "UNPROTECTED: no completed snapshot in 26 h: the UnprotectedVolumesAlarm fires",
    "lock expired": "a lock ends at its snapshot's DeleteOn, 00:00; the manager runs at 01:00",
    "archive": "archive tier: a quarter of the price; 90 days billed at least; 72 h to restore",
    "hourly": "hourly: between two dailies (Backup_Every); kept Retention_Hourly hours, to "
    "the next whole day",
    "restore drill": "restore drill: weekly, a new volume from the newest backup, timed, then "
    "deleted: proof it restores",
    "RestoreDrillsFailed": "the alarm asks a person to look: this backup would not have restored",
}


def plural(n, one, many=None):
    """'1 copy', '2 copies': ``many`` when the plural is not ``one`` + s."""
    return f"{n} {one if n == 1 else many or one + 's'}"


@functools.cache
def ec2(region):
    """The demo's own client in ``region`` (each job run makes its own)."""
    return boto3.client("ec2", region_name=region)


@contextlib.contextmanager
def clock(now):
    """moto stamps snapshots and volume attachments with its own clock: the demo's, here."""
    naive = now.astimezone(UTC).replace(tzinfo=None)
    with patch("moto.ec2.models.elastic_block_store.utcnow", lambda: naive):
        yield


class Names:
    """Readable names for moto's ids: an instance's Name, a volume's "Name device", a
    snapshot's "Name device Dec 2" (its volume's name and day), a copy's "copy of" its
    primary's name. ``names(text)`` puts them in place of the ids in ``text``."""

    ID = re.compile(r"\b(?:i|vol|snap)-[0-9a-f]{8,17}\b")

    def __init__(self):
        self.of = {}

    def get(self, key, default=None):
        return self.of.get(key, default)

    def learn(self, summary, hour=None):
        """Name the snapshots a run made, from its summary (a name stays once the snapshot
        is deleted, so that its deletion can be told); one between dailies (hourly), taken
        at ``hour``, has its hour too."""
        day = date.fromisoformat(summary["date"])
        for item in summary.get("created", []):
            if item.get("snapshot_id"):
                volume = self.of.get(item["volume_id"], item["volume_id"])
                at = f" {hour:02d}:00" if item.get("tier") == "hourly" and hour is not None else ""
                self.of[item["snapshot_id"]] = f"{volume} {day:%b %-d}{at}"
        for item in summary.get("copied", []):
            if item.get("snapshot_id"):
                kind = (
                    "staging copy"
                    if item.get("staging")
                    else "vault copy"
                    if item.get("vault_account")
                    else "copy"
                )
                source = self.of.get(item["source_snapshot_id"], item["source_snapshot_id"])
                self.of[item["snapshot_id"]] = f"{kind} of {source.split(' of ')[-1]}"

    def __call__(self, text):
        return self.ID.sub(lambda m: self.of.get(m.group(0), m.group(0)), text)


def build_fleet(names):
    """Launch the fleet (the day before the demo starts), its instances and volumes named
    in ``names``; moto's ids are drawn from SEED, the same on every run."""
    mock_random.seed(SEED)
    with clock(datetime(START.year, START.month, START.day, tzinfo=UTC) - timedelta(hours=12)):
        launch_fleet(names)


def launch_fleet(names):
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
            names.of[volumes[device]] = f"{name} {device}"
            if vtags:
                client.create_tags(
                    Resources=[volumes[device]],
                    Tags=[{"Key": k, "Value": v} for k, v in vtags.items()],
                )
        if stopped:
            client.stop_instances(InstanceIds=[instance["InstanceId"]])
        names.of[instance["InstanceId"]] = name


def day_header(n, today):
    """The day, its weekday, and why it makes longer-lived snapshots."""
    marks = ["Sunday, the weekly day"] if today.weekday() == 6 else []
    marks += ["the 1st: a monthly snapshot"] if today.day == 1 else []
    note = f"  ({'; '.join(marks)})" if marks else ""
    return f"\nDay {n}  {today:%a %Y-%m-%d}{note}"


class Story:
    """What the days remember: the warnings shown, the locks made ({snapshot id: until}),
    the words explained, the names, and the drill volume the demo broke."""

    def __init__(self):
        self.names, self.warnings, self.locks = Names(), set(), {}
        self.told, self.broken = set(), []

    def note(self, lines, *terms):
        """Explain each of ``terms`` not explained yet, a line each, under ``lines``."""
        for term in terms:
            if term not in self.told:
                self.told.add(term)
                lines.append(f"{'':9}({NOTES[term]})")


def what_was_done(summary, story):
    """[(words, terms to explain)] for one run's counts, in the order of the line."""
    counts, names = summary["counts"], story.names
    done = []
    if counts.get("created"):
        longer = sorted(
            {f"{c['tier']} for {names.get(c['instance_id'])}" for c in summary["created"]}
            - {f"daily for {names.get(c['instance_id'])}" for c in summary["created"]}
        )
        done.append((f"created {counts['created']}" + "".join(f", {t}" for t in longer), "created"))
        if any(c["tier"] == "hourly" for c in summary["created"]):
            done.append(("", "hourly"))
    copied = {}
    for item in summary.get("copied", []):
        copied[item["dest_region"]] = copied.get(item["dest_region"], 0) + 1
    done += [(f"copied {n} to {region}", "copied") for region, n in sorted(copied.items())]
    if counts.get("tagged"):
        done.append((f"carried KeepForever to {plural(counts['tagged'], 'copy', 'copies')}", None))
    if counts.get("locked"):
        modes = sorted({item["lock"] for item in summary["locked"]})
        done.append((f"locked {counts['locked']} until DeleteOn ({', '.join(modes)})", "locked"))
    if counts.get("deleted"):
        done.append((f"deleted {counts['deleted']} expired", "expired"))
    held = [s for s in summary.get("skipped", []) if "kept although due" in s["reason"]]
    if held:  # reported on the day it would have been deleted, not before
        its = "its" if len(held) == 1 else "their"
        done.append((f"kept {len(held)} past {its} DeleteOn (KeepForever)", "KeepForever"))
    if counts.get("protected"):
        done.append((f"{plural(counts['protected'], 'volume')} protected", "protected"))
    if counts.get("unprotected"):
        done.append((f"{counts['unprotected']} UNPROTECTED", "UNPROTECTED"))
    new = summary.get("not_yet_due", [])
    if new:
        by = max(item["expected_by"] for item in new)[11:]
        done.append(
            (f"{plural(len(new), 'new volume')}, not yet due: a first backup by {by}", None)
        )
    return done


def describe_run(hour, job, summary, story):
    """One short line per run, then its details and any warning not shown before; the
    first time a word appears, a line under it says what it means. Names, not ids."""
    for item in summary.get("locked", []):
        story.locks[item["snapshot_id"]] = item["until"]
    done = what_was_done(summary, story)
    head = f"  {hour:02d}:00  {job:<8} {summary['region']:<10} "
    lines = [head + (", ".join(words for words, _ in done if words) or "nothing to do")]
    story.note(lines, *(term for _, term in done if term))
    unlocked = [d for d in summary.get("deleted", []) if d["snapshot_id"] in story.locks]
    if unlocked:  # the lock ran until DeleteOn 00:00: the manager runs after it
        deleted, n = summary["counts"]["deleted"], len(unlocked)
        who = "it" if deleted == 1 else f"{n} of the {deleted}"
        was = "was" if n == 1 else "were"
        lines.append(f"{'':9}{who} {was} locked until 00:00 today: the lock expired")
        story.note(lines, "lock expired")
    for item in summary.get("sent_to_archive", []):
        lines.append(f"{'':9}to the archive tier: {item['snapshot_id']} ({item['reason']})")
        story.note(lines, "archive")
    if summary.get("drilled"):  # moto makes volumes at once: 0 s each
        drills = plural(len(summary["drilled"]), "restore drill")
        lines.append(f"{'':9}{drills} passed")
        story.note(lines, "restore drill")
    for failure in sorted(summary.get("failures", []), key=lambda f: story.names(f["id"])):
        lines.append(f"{'':9}FAILED  {failure['id']}: {failure['error']}")
    if counts_failed := summary["counts"].get("drills_failed"):
        lines.append(
            f"{'':9}metric RestoreDrillsFailed={counts_failed}: RestoreDrillsFailedAlarm fires"
        )
        story.note(lines, "RestoreDrillsFailed")
    for item in sorted(summary.get("unprotected", []), key=lambda u: u["name"]):
        lines.append(f"{'':9}unprotected  {item['name']}: {item['reason']}")
    failed = {failure["id"] for failure in summary.get("failures", [])}
    shown = []
    for warning in summary["warnings"]:
        key = (summary["region"], warning["id"], warning["reason"])
        if key not in story.warnings and warning["id"] not in failed:  # shown as FAILED
            story.warnings.add(key)
            shown.append(f"{'':9}warning  {warning['id']}: {warning['reason']}")
    lines += sorted(story.names(line) for line in shown)
    return [story.names(line) for line in lines]


def run_job(module, region, now, event=None):
    """One run; a run with failures raises JobFailed after its summary: the demo shows it."""
    try:
        return module.run(event or {}, None, region=region, now=now)
    except module.JobFailed as failed:
        return failed.summary


@contextlib.contextmanager
def failing_drill(story):
    """The next restore drill of FAILING's snapshots in DAMAGED's region makes a volume that
    goes to error, as a volume restored from a broken snapshot (or with a KMS key it cannot
    use) does; once, then no more (``story.broken``)."""
    if story.broken:
        yield
        return
    create = EBSBackend.create_volume
    failing = next(v for v, name in story.names.of.items() if name == " ".join(FAILING))

    def create_volume(self, *args, **kwargs):
        volume = create(self, *args, **kwargs)
        sid = kwargs.get("snapshot_id", args[2] if len(args) > 2 else None)
        if sid and not story.broken and self.get_snapshot(sid).volume.id == failing:
            force_volume_state(volume, "error")
            story.broken.append(volume.id)
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


def locked_now(day):
    """{snapshot id: the lock} of the snapshots locked at the end of ``day``, in all regions
    (DescribeLockedSnapshots)."""
    with clock(datetime(day.year, day.month, day.day, 23, tzinfo=UTC)):
        return {
            lock["SnapshotId"]: lock
            for region in REGIONS
            for lock in ec2(region).describe_locked_snapshots()["Snapshots"]
        }


def archived_since(region, snap):
    """The day a snapshot went to the archive tier (DescribeSnapshotTierStatus), or None."""
    if snap.get("StorageTier") != "archive":
        return None
    (status,) = ec2(region).describe_snapshot_tier_status(
        Filters=[{"Name": "snapshot-id", "Values": [snap["SnapshotId"]]}]
    )["SnapshotTierStatuses"]
    return status["ArchivalCompleteTime"].date().isoformat()


def inventory(region, locked=()):
    """A region's snapshots as rows: id, volume, instance, device, created, DeleteOn, tier
    (for a copy with its own date, Copy_Retention), copy of, Keep, Lock (the tag), locked
    (among ``locked``, the snapshots locked now), archived (the day it was, or None)."""
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
                "locked": snap["SnapshotId"] in locked,
                "archived": archived_since(region, snap),
            }
        )
    return sorted(rows, key=lambda r: (r["instance"], r["copy of"] != "-", r["DeleteOn"]))


# ---- the picture: one bar per snapshot, from creation to DeleteOn ----------------------

MARKS = {"hourly": "h", "daily": "d", "weekly": "W", "monthly": "M", "yearly": "Y"}
MARKS["Copy_Retention"] = "R"
SPAN = 32  # days shown, from START: the monthly snapshot of 1 December reaches 1 January
COLORS = {"h": "#84cc16", "d": "#9aa5b1", "W": "#3b82f6", "M": "#8b5cf6", "Y": "#0f766e"}
COLORS["R"] = "#f59e0b"
TIERS = {  # the legend's words for each colour: the tier, and the tag that sets its days
    "h": "hourly (Retention_Hourly, in hours)",
    "d": "daily (Retention)",
    "W": "weekly (Retention_Weekly)",
    "M": "monthly (Retention_Monthly)",
    "Y": "yearly (Retention_Yearly)",
    "R": "a copy's own (Copy_Retention)",
}
ARCHIVE_COLOR = "#bae6fd"


def bars(final):
    """[(row label, lane, snapshot id, created, DeleteOn, mark, kept, locked, archived)]:
    the snapshots of each volume in each region, in as few lanes as their lifetimes allow;
    archived is the day a snapshot went to the archive tier, or None."""
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
            kept, dates = r["Keep"] != "-", (r["created"], r["DeleteOn"])
            out.append((label, lane, r["snapshot"], *dates, mark, kept, r["locked"], r["archived"]))
    return out


def days_of(created, delete_on, kept, archived):
    """(first day, first archived day, end) of a bar, as columns from START, within SPAN."""
    start = (date.fromisoformat(created) - START).days
    end = SPAN if kept else min(SPAN, (date.fromisoformat(delete_on) - START).days)
    cold = (date.fromisoformat(archived) - START).days if archived else end
    return start, min(cold, end), end


def text_picture(drawn):
    """The bars in the terminal, one line per lane, a column per day."""
    header = "".join(str((START + timedelta(days=i)).day % 10) for i in range(SPAN))
    width = max(len(label) for label, *_ in drawn) + 2
    lines = [f"{'':{width}}{START:%b %-d}, a column a day", f"{'':{width}}{header}"]
    rows = {}
    for label, lane, _, created, delete_on, mark, kept, locked, archived in drawn:
        cells = rows.setdefault((label, lane), [" "] * SPAN)
        start, cold, end = days_of(created, delete_on, kept, archived)
        for day in range(start, end):
            cells[day] = "░" if day >= cold else "═" if locked else "━"
        cells[start] = "K" if kept else mark
        if end == SPAN:
            cells[-1] = "▸"
    previous = None
    for (label, _), cells in rows.items():
        shown = label if label != previous else ""
        previous = label
        lines.append(f"{shown:<{width}}{''.join(cells).rstrip()}")
    lines += [
        "h hourly, d daily, W weekly, M monthly, R a copy kept by Copy_Retention, K KeepForever "
        "(never deleted);",
        "━ until DeleteOn, ═ locked until DeleteOn, ░ in the archive tier, ▸ on past the picture",
    ]
    return lines


LEGEND = {  # each kind of mark a bar may have: (its style, whether a bar has it)
    "a copy in another region": (
        {"edgecolor": "#6b7280", "hatch": "///"},
        lambda b: "copy in" in b[0],
    ),
    "KeepForever: no end": ({"edgecolor": "#dc2626", "linewidth": 2}, lambda b: b[6]),
    "locked until DeleteOn": ({"edgecolor": "#111827", "linewidth": 2}, lambda b: b[7]),
    "in the archive tier": (
        {"facecolor": ARCHIVE_COLOR, "edgecolor": "#0369a1", "hatch": ".."},
        lambda b: b[8],
    ),
}


def legend_handles(drawn):
    """What the picture's legend names: the tiers drawn, then each kind of mark drawn."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    marks = {bar[5] for bar in drawn}
    handles = [Patch(facecolor=COLORS[m], label=TIERS[m]) for m in COLORS if m in marks]
    handles += [
        Patch(**({"facecolor": "white"} | style), label=label)
        for label, (style, has) in LEGEND.items()
        if any(has(bar) for bar in drawn)
    ]
    if any(days_of(*bar[3:5], bar[6], bar[8])[2] == SPAN for bar in drawn):
        past = f"goes on past {START + timedelta(days=SPAN - 1):%b %-d}"
        handles.append(Line2D([], [], color="#111827", marker=">", linestyle="none", label=past))
    return handles


def png_picture(drawn, path):
    """The same bars as a PNG; its metadata lists them, so a test can compare with AWS."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lanes = list(dict.fromkeys((label, lane) for label, lane, *_ in drawn))
    height = 0.28 * len(lanes) + 2.2  # inches: a lane each, then the title and legend on top
    fig, ax = plt.subplots(figsize=(12, height))
    for label, lane, _, created, delete_on, mark, kept, locked, archived in drawn:
        y = len(lanes) - 1 - lanes.index((label, lane))
        start, cold, end = days_of(created, delete_on, kept, archived)
        hatch = "///" if "copy in" in label else None
        edge = "#dc2626" if kept else "#111827" if locked else "none"
        ax.broken_barh(
            [(start, max(cold - start, 0.3))],
            (y + 0.15, 0.7),
            facecolors=COLORS.get(mark, "#999999"),
            edgecolors=edge,
            linewidth=2 if kept or locked else 0,
            hatch=hatch,
        )
        if cold < end:  # from the day it moved: in the archive tier
            ax.broken_barh(
                [(cold, end - cold)],
                (y + 0.15, 0.7),
                facecolors=ARCHIVE_COLOR,
                edgecolors="#0369a1",
                linewidth=1,
                hatch="..",
            )
        if end == SPAN:  # it goes on past the picture
            ax.plot([SPAN - 0.35], [y + 0.5], marker=">", color="#111827", markersize=6)
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
    fig.suptitle(
        f"The {len(drawn)} snapshots left after the demo's {DAYS} days: "
        "a bar each, from its creation to its DeleteOn",
        fontsize=11,
        y=1 - 0.12 / height,
    )
    fig.legend(
        handles=legend_handles(drawn),
        loc="upper center",
        bbox_to_anchor=(0.5, 1 - 0.4 / height),
        ncol=5,
        fontsize=8,
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.6 / height))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Description": json.dumps(drawn)})
    plt.close(fig)


def show_fleet(out):
    out(f"Fleet: {len(FLEET)} instances in {EAST} and {WEST} (moto, in this process).")
    for region, name, tags, devices, stopped in FLEET:
        shown = ", ".join(f"{k}={v}" for k, v in tags.items()) or "no Backup tag"
        extra = [f"{d} Backup=No" for d, v in devices.items() if v.get("Backup") == "No"]
        extra += ["stopped"] if stopped else []
        out(f"  {region:<10} {name:<9} {shown}" + (f"  [{'; '.join(extra)}]" if extra else ""))
    out(
        "Each day: the manager deletes what is due and checks every volume, the creator takes "
        "a snapshot\nof each volume tagged Backup, the copier copies them to Copy_Dest. The "
        f"creator runs every hour,\nits daily run at {DAILY_HOUR:02d}:00 (BACKUP_DAILY_HOUR); "
        "shown: its daily runs, and the others that do something."
    )


def runs_of_day():
    """[(hour, job, module)] of a day, in order: SCHEDULE's, the creator at CREATOR_HOURS."""
    runs = [(hour, job, module) for hour, job, module in SCHEDULE if job != "creator"]
    runs += [(hour, "creator", ebs_snapshot_creator) for hour in CREATOR_HOURS]
    return sorted(runs, key=lambda run: run[0])  # at 06:00 the copier, then the creator


def scheduled(region, now):
    """The creator's hourly event from EventBridge Scheduler, for ``now``'s hour."""
    return {
        "id": f"demo-{region}-{now:%Y%m%dT%H}",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "time": f"{now:%Y-%m-%dT%H:%M:%SZ}",
        "detail": {},
    }


def play_day(n, story, out):
    """Day ``n`` (from 1): each job at its hour in each region, and what an operator does.
    The creator's runs between its daily ones are shown only when they do something."""
    today = START + timedelta(days=n - 1)
    out(day_header(n, today))
    for hour, job, module in runs_of_day():
        between = job == "creator" and hour != DAILY_HOUR
        for region in REGIONS:
            if between and region not in SUB_DAILY:
                continue
            if job == "creator" and (region, n) == MISSED:
                if not between:
                    out(f"  {hour:02d}:00  {job:<8} {region:<10} did not run (an outage)")
                continue
            now = datetime(today.year, today.month, today.day, hour, tzinfo=UTC)
            event = scheduled(region, now) if job == "creator" else None
            damaged = job == "manager" and region == DAMAGED[0] and n >= DAMAGED[1]
            with clock(now), failing_drill(story) if damaged else contextlib.nullcontext():
                summary = run_job(module, region, now, event)
            story.names.learn(summary, hour)
            lines = describe_run(hour, job, summary, story)
            if between and lines == [lines[0]] and lines[0].endswith("nothing to do"):
                continue
            for line in lines:
                out(line)
    if n == KEEP_DAY:
        kept = story.names(keep_one_forever(today))
        lines = [f"  09:00  operator tags {kept} KeepForever=audit, by hand"]
        story.note(lines, "KeepForever")
        for line in lines:
            out(line)


def play(out=print, picture=None):
    """Build the fleet, play the days, print as it goes, draw the snapshots left (and write
    them to ``picture``, a PNG path, if given); returns the final inventories."""
    story = Story()
    build_fleet(story.names)
    show_fleet(out)
    for n in range(1, DAYS + 1):
        play_day(n, story, out)
    last = START + timedelta(days=DAYS - 1)
    locked = locked_now(last)
    final = {region: inventory(region, locked) for region in REGIONS}
    total = sum(len(rows) for rows in final.values())
    out(f"\n{total} snapshots after {last}, one bar each from its creation to its DeleteOn:")
    drawn = bars(final)
    for line in text_picture(drawn):
        out(line)
    if picture:
        png_picture(drawn, Path(picture))
        shown = Path(os.path.relpath(picture, ROOT))
        out(f"(the same picture: {picture if shown.parts[0] == '..' else shown})")
    out("\nLocks now (DescribeLockedSnapshots), each until its snapshot's DeleteOn:")
    for sid, lock in sorted(locked.items(), key=lambda item: item[1]["LockExpiresOn"]):
        until = f"{lock['LockExpiresOn']:%Y-%m-%d %H:%M} UTC"
        out(f"  {story.names(sid):<26} {lock['LockState']} until {until}")
    out(
        "\nEach volume keeps its last <Retention> days of snapshots; web-1 also keeps its "
        "Sunday (weekly)\nsnapshot two weeks and its 1 December (monthly) one a month. Copies "
        "expire with their\nprimaries, but api-eu's, kept 7 days (Copy_Retention). The "
        "KeepForever snapshot and its copy\nstay. vault-eu's are locked until their DeleteOn, "
        "and deleted the morning the lock has\nexpired. files-1's 1 December (monthly) one "
        "went to the archive tier on day 3.\nqueue-1, every 4 hours, keeps its dailies 3 days "
        "and the five snapshots a day between\nthem 24 hours, to the next whole day (DeleteOn "
        "is a date): the last two days' ten."
    )
    return final, story.names


def epilogue(names, out=print):
    """Months on: the archived monthly is deleted on its DeleteOn, like any other."""
    archived = [
        s
        for s in ec2(EAST).describe_snapshots(OwnerIds=["self"])["Snapshots"]
        if s.get("StorageTier") == "archive"
    ]
    out("\nEpilogue: the archived monthly, months later")
    for snap in archived:
        sid, tags = snap["SnapshotId"], {t["Key"]: t["Value"] for t in snap["Tags"]}
        since = date.fromisoformat(archived_since(EAST, snap))
        day = date.fromisoformat(tags["DeleteOn"])
        out(f"  {names(sid)}  in the archive tier since {since}, DeleteOn {day}")
        now = datetime(day.year, day.month, day.day, 1, tzinfo=UTC)
        with clock(now):
            summary = run_job(ebs_snapshot_manager, EAST, now)
        if sid in {d["snapshot_id"] for d in summary.get("deleted", [])}:
            out(
                f"  {day:%a %Y-%m-%d} 01:00  manager  deleted it, {(day - since).days} days in "
                "the archive tier: over AWS's 90-day minimum,\n  so nothing more to pay. "
                "Nothing left this process."
            )


def tell(out=print, picture=None, look=None):
    """The whole story, each act in a fresh moto: the ten days (their picture written to
    ``picture``), the epilogue, the vault act. ``look()``, if given, is called at the end of
    the ten days, in their moto; returns (the final inventories, what look returned)."""
    with mock_aws(), patch.dict(os.environ, {ebs_snapshot_creator.DAILY_HOUR_ENV: f"{DAILY_HOUR}"}):
        final, names = play(out, picture)
        seen = look() if look else None
        epilogue(names, out)
    with mock_aws():  # a second act, in a fresh moto: a vault account (demo_vault.py)
        start = datetime(START.year, START.month, START.day, tzinfo=UTC)
        play_vault(clock, start, Names(), out)
    with mock_aws():  # a third act: a restore (demo_restore.py)
        play_restore(clock, start, Names(), out)
    return final, seen


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
    tell(picture=ROOT / "build" / "demo.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
