"""The demo plays the real jobs; its final inventory must be what the tags say."""

import json
import os
import re
import subprocess
import sys
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]

from scripts import demo  # noqa: E402

ENABLE = {"yes", "true", "1", "on"}


def number(tags, key, default=0):
    return int(tags[key]) if tags.get(key, "").isdigit() else default


def delete_on_of(day, tags):
    """The latest of the tiers that apply to ``day`` (the demo's days are all in one month,
    and the monthly tier only counts whole months from a 1st)."""
    dates = [day + timedelta(days=number(tags, "Retention", 7))]
    if day.weekday() == 6 and number(tags, "Retention_Weekly"):
        dates.append(day + timedelta(weeks=number(tags, "Retention_Weekly")))
    if day.day == 1 and number(tags, "Retention_Monthly"):
        month = day.month - 1 + number(tags, "Retention_Monthly")
        dates.append(day.replace(year=day.year + month // 12, month=month % 12 + 1))
    return max(dates)


def hourly_delete_ons(day, tags):
    """The DeleteOn of each snapshot between dailies an every-N-hours instance takes on
    ``day``: its slot's start + Retention_Hourly hours, rounded up to a whole day."""
    every = number(tags, "Backup_Every", 24)
    hours = number(tags, "Retention_Hourly", 24 * number(tags, "Retention", 7))
    found = []
    for hour in range(demo.DAILY_HOUR + every, 24, every):
        expiry = datetime(day.year, day.month, day.day, hour, tzinfo=UTC) + timedelta(hours=hours)
        midnight = expiry.replace(hour=0, minute=0, second=0, microsecond=0)
        found.append((midnight + timedelta(days=0 if expiry == midnight else 1)).date())
    return found


def expected_inventory():
    """(region, instance, DeleteOn, is a copy, KeepForever) -> count, from the tags alone."""
    last = demo.START + timedelta(days=demo.DAYS - 1)
    rows = Counter()
    for region, name, tags, devices, _ in demo.FLEET:
        if tags.get("Backup", "").lower() not in ENABLE:
            continue
        volumes = [d for d, v in devices.items() if v.get("Backup") != "No"]
        dests = [
            r
            for r in re.split(r"[ ,]+", tags.get("Copy_Dest", ""))
            if r in demo.REGIONS and r != region
        ]
        for n in range(demo.DAYS):
            if (region, n + 1) == demo.MISSED:
                continue  # the creator did not run there that day
            day = demo.START + timedelta(days=n)
            delete_on = delete_on_of(day, tags)
            copy_delete_on = delete_on
            if "Copy_Retention" in tags:
                copy_delete_on = day + timedelta(days=number(tags, "Copy_Retention"))
            kept = name == demo.KEEP_INSTANCE and n + 1 == demo.KEEP_DAY
            for _ in volumes:
                if delete_on > last or kept:  # else the manager deleted it on its day
                    rows[(region, name, delete_on.isoformat(), False, kept)] += 1
                for hourly in hourly_delete_ons(day, tags):  # not copied: no Copy_Hourly
                    if hourly > last:
                        rows[(region, name, hourly.isoformat(), False, False)] += 1
                for dest in dests:
                    if copy_delete_on > last or kept:
                        rows[(dest, name, copy_delete_on.isoformat(), True, kept)] += 1
    return rows


@pytest.fixture(scope="module")
def played(tmp_path_factory):
    """One telling of the whole demo for the module's tests: its lines, final inventories,
    picture, and each region's snapshots and volumes as AWS holds them after the ten days."""
    lines, picture = [], tmp_path_factory.mktemp("demo") / "demo.png"

    def look():
        ec2 = {region: boto3.client("ec2", region_name=region) for region in demo.REGIONS}
        state = {r: c.describe_snapshots(OwnerIds=["self"])["Snapshots"] for r, c in ec2.items()}
        volumes = {r: c.describe_volumes()["Volumes"] for r, c in ec2.items()}
        return state, volumes

    final, (state, volumes) = demo.tell(out=lines.append, picture=picture, look=look)
    return lines, final, picture, state, volumes


def first_act(lines):
    """The ten days, the picture and the epilogue: the lines before the vault act."""
    return "\n".join(lines).split("\nVault copies:")[0]


def drawn(path):
    """The bars a PNG written by the demo shows, from its metadata."""
    return [tuple(bar) for bar in json.loads(Image.open(path).text["Description"])]


def test_final_inventory_is_what_the_tags_say(played):
    lines, final, *_ = played
    found = Counter(
        (region, r["instance"], r["DeleteOn"], r["copy of"] != "-", r["Keep"] != "-")
        for region, rows in final.items()
        for r in rows
    )
    assert found == expected_inventory()
    text = first_act(lines)
    for shown in (
        "warning  legacy-1: Backup 'Yse'",
        "warning  db-1: Copy_Dest entry 'mars-east-1'",
        "warning  cache-eu: Retention 'two weeks'",
        "KeepForever=audit",
        "carried KeepForever to 1 copy",
        "deleted",
        "volumes protected",
        "created 6, monthly for files-1, monthly for web-1",
        "created 6, weekly for web-1",
        # The day after the missed run, the manager names each volume it left unprotected.
        "unprotected  api-eu: no completed snapshot in the last 26 h",
        "unprotected  cache-eu: no completed snapshot in the last 26 h",
    ):
        assert shown in text
    assert max(len(line) for line in text.splitlines()) <= 110


def test_make_demo_prints_the_same_story_every_run(played):
    """`make demo` in a fresh process (another hash seed, other thread timings) prints what
    the run in this one printed, line for line: the same days, counts, names and drills."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    done = subprocess.run(
        [sys.executable, "-m", "scripts.demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert done.returncode == 0
    assert done.stderr == ""
    here = "".join(f"{line}\n" for line in played[0]).replace(str(played[2]), "build/demo.png")
    assert done.stdout.splitlines() == here.splitlines()
    assert "Day 10" in done.stdout and "Vault copies" in done.stdout


def test_the_story_names_instances_volumes_and_snapshots_never_ids(played):
    text = "\n".join(played[0])
    assert not re.findall(r"\b(?:i|vol|snap)-[0-9a-f]{8,17}\b", text)
    assert "FAILED  db-1 /dev/xvda Dec 4: restore drill failed" in text
    assert "operator tags web-1 /dev/xvda Dec 2 KeepForever=audit" in text


def test_each_word_a_newcomer_cannot_know_is_explained_once_where_it_first_appears(played):
    lines = first_act(played[0]).splitlines()
    notes = {term: f"{'':9}({note})" for term, note in demo.NOTES.items()}
    for term, note in notes.items():
        assert lines.count(note) == 1, term
        shown = lines.index(note)
        # The first line that shows the word is the one above the note, or its run's line.
        first = next(i for i, line in enumerate(lines) if term in line and line != note)
        assert first < shown and all(
            line.startswith(f"{'':9}") for line in lines[first + 1 : shown]
        )
    # Restore drills: introduced on the day they first appear, under their first line.
    days = first_act(played[0]).split("\nDay ")[1:]
    first_day = next(n for n, day in enumerate(days, 1) if "restore drill" in day)
    assert first_day == 2 and notes["restore drill"] in days[1]
    # New volumes, before their first backup: the manager's "not yet due", said in full.
    assert "6 new volumes, not yet due: a first backup by 14:00 UTC" in days[0]


def test_plurals(played):
    text = "\n".join(played[0])
    assert not re.findall(r"\b1 (?:copies|volumes|snapshots|restore drills|new volumes)\b", text)
    assert not re.findall(r"\b1 of the \d+ were\b|\bkept [2-9]\d* past its\b", text)
    assert "1 restore drill passed" in text and "2 restore drills passed" in text
    assert "kept 1 past its DeleteOn (KeepForever)" in text


def test_each_day_shows_its_weekday_and_why_it_is_weekly_or_monthly(played):
    lines = played[0]
    headers = [line for line in lines if line.startswith("\nDay ")]
    assert headers[0] == "\nDay 1  Tue 2026-12-01  (the 1st: a monthly snapshot)"
    assert headers[5] == "\nDay 6  Sun 2026-12-06  (Sunday, the weekly day)"
    assert headers[1] == "\nDay 2  Wed 2026-12-02"


def test_keep_forever_is_reported_on_the_day_it_would_have_been_deleted(played):
    lines = played[0]
    text = "\n".join(lines)
    days = text.split("\nDay ")[1:]
    # Kept on day 2 with Retention=3: its DeleteOn is 5 December, day 5.
    assert [n + 1 for n, day in enumerate(days) if "past its DeleteOn (KeepForever)" in day] == [
        5,
        6,
        7,
        8,
        9,
        10,
    ]


def test_copies_kept_by_copy_retention_say_so(played):
    final = played[1]
    tiers = {r["tier"] for rows in final.values() for r in rows if r["instance"] == "api-eu"}
    assert tiers == {"daily", "Copy_Retention"}  # the primaries' own, the copies' own date


def test_the_picture_is_written_and_shows_exactly_the_snapshots_left(played):
    lines, _, picture, state, _ = played
    bars = {bar[2]: bar for bar in drawn(picture)}
    snapshots = {s["SnapshotId"]: s for region in state.values() for s in region}
    assert set(bars) == set(snapshots)  # one bar per snapshot AWS holds, no other
    for sid, s in snapshots.items():
        tags = {t["Key"]: t["Value"] for t in s["Tags"]}
        _, _, _, created, delete_on, mark, kept, locked, archived = bars[sid]
        assert (created, delete_on) == (s["StartTime"].date().isoformat(), tags["DeleteOn"])
        assert kept == ("KeepForever" in tags)
        assert mark == demo.MARKS[tags.get("Retention_Tier", "Copy_Retention")]
        # A lock lasts until DeleteOn, and a snapshot goes that morning: what is left of
        # vault-eu's (Lock=governance) is locked, and nothing else.
        assert locked == (tags["Name"] == "vault-eu")
        assert (archived is not None) == (s.get("StorageTier") == "archive")
    assert [bar[8] for bar in bars.values() if bar[8]] == ["2026-12-03"]  # files-1's, day 3
    # The terminal shows the same bars: a line per lane; locked and archived days apart.
    lanes = [line for line in lines if {*"━═░"} & {*line} and "until DeleteOn" not in line]
    assert len(lanes) == len({(b[0], b[1]) for b in bars.values()})
    assert sum("═" in line for line in lanes) == sum(bar[7] for bar in bars.values()) == 3
    assert sum("░" in line for line in lanes) == 1


def test_the_pictures_legend_names_each_colour_and_mark_it_draws(played):
    bars = drawn(played[2])
    labels = [handle.get_label() for handle in demo.legend_handles(bars)]
    assert labels == [
        "hourly (Retention_Hourly, in hours)",
        "daily (Retention)",
        "weekly (Retention_Weekly)",
        "monthly (Retention_Monthly)",
        "a copy's own (Copy_Retention)",
        "a copy in another region",
        "KeepForever: no end",
        "locked until DeleteOn",
        "in the archive tier",
        "goes on past Jan 1",
    ]
    # Only what is drawn: without the archived monthly, no archive entry.
    assert "in the archive tier" not in [
        handle.get_label() for handle in demo.legend_handles([b for b in bars if not b[8]])
    ]
    text = "\n".join(played[0])
    assert "═ locked until DeleteOn, ░ in the archive tier" in text


def test_the_readmes_picture_is_the_demos(played):
    """docs/demo.png, which the README shows, must be what `make demo` draws now
    (snapshot ids aside): after a change, copy build/demo.png there."""
    fresh = sorted(bar[:2] + bar[3:] for bar in drawn(played[2]))
    shown = sorted(bar[:2] + bar[3:] for bar in drawn(ROOT / "docs" / "demo.png"))
    assert shown == fresh


def test_locked_snapshots_stay_locked_until_delete_on_and_go_that_morning(played):
    lines, final, *_ = played
    text = "\n".join(lines)
    assert "created 3, locked 1 until DeleteOn (governance)" in text
    # Retention=3: day 1's snapshot is due on day 4, its lock expired at 00:00 that day.
    day_4 = text.split("\nDay ")[4]
    assert "manager  eu-west-1  deleted 1 expired" in day_4
    assert "it was locked until 00:00 today: the lock expired" in day_4
    vault = {
        f"vault-eu /dev/xvda {date.fromisoformat(r['created']):%b %-d}": r["DeleteOn"]
        for r in final[demo.WEST]
        if r["instance"] == "vault-eu"
    }
    listed = dict(
        re.findall(
            r"^  (vault-eu /dev/xvda \w+ \d+) +governance until (\S+) 00:00 UTC$", text, re.M
        )
    )
    assert listed == vault and len(vault) == 3


def test_a_week_of_restore_drills_with_one_that_fails_and_its_alarm_metric(played):
    text = first_act(played[0])
    assert "restore drills passed" in text
    failed = [line for line in text.splitlines() if "FAILED" in line]
    assert len(failed) == 1
    assert failed[0].endswith("restore drill failed: the restored volume went to error")
    # db-1 /dev/xvda's drill day, from its volume id's hash: day 5, the day after DAMAGED.
    day_5 = text.split("\nDay ")[5]
    assert f"FAILED  {' '.join(demo.FAILING)} Dec 4: " in day_5
    assert "metric RestoreDrillsFailed=1: RestoreDrillsFailedAlarm fires" in text
    # Every drill volume was deleted, the failed one too: only the instances' own are left.
    volumes = [v for region in played[4].values() for v in region]
    assert volumes and all(v["Attachments"] for v in volumes)


def test_a_monthly_is_archived_a_day_on_and_deleted_on_its_date(played):
    lines, _, _, state, _ = played
    text = "\n".join(lines)
    day_3 = text.split("\nDay ")[3]
    (archived,) = [s for s in state[demo.EAST] if s.get("StorageTier") == "archive"]
    tags = {t["Key"]: t["Value"] for t in archived["Tags"]}
    assert (tags["Name"], tags["Retention_Tier"], tags["Archive"]) == ("files-1", "monthly", "Yes")
    assert archived["StartTime"].date() == demo.START
    name = "files-1 /dev/xvda Dec 1"
    assert f"to the archive tier: {name} (119 days to its DeleteOn 2027-04-01)" in day_3
    epilogue = text.split("\nEpilogue")[1]
    assert f"{name}  in the archive tier since 2026-12-03" in epilogue
    assert "Thu 2027-04-01 01:00  manager  deleted it, 119 days in the archive tier" in epilogue


def test_the_restore_act_goes_side_by_side_then_in_place_then_undoes_it(played):
    act = "\n".join(played[0]).split("\nRestores:")[1]
    commands = re.findall(r"^\$ ebs_snapshot_manager\.py (\S+).*\(exit (\d)\)$", act, re.M)
    assert commands == [("restore-points", "0")] + [("restore", "0")] * 3
    assert act.count("(side by side) available") == 3 and act.count("(in place) attached") == 3
    for device in ("/dev/xvda", "/dev/sdf", "/dev/sdg"):
        assert f"{device}: shop-1 {device} attached" in act  # the undo put each one back


def test_the_restore_page_shows_the_demos_lines(played):
    page = (ROOT / "docs" / "restore.md").read_text()
    block = page.split("In `make demo`")[1].split("```")[1]
    shown = [line for line in block.splitlines() if line]
    assert len(shown) == 4 and all(line in played[0] for line in shown)


def test_every_4_hours_six_snapshots_a_day_the_daily_with_its_tiers_the_others_hourly(played):
    lines, _, picture, state, _ = played
    days = first_act(lines).split("\nDay ")[1:]
    between = [f"{hour:02d}:00" for hour in range(6, 24, 4)]
    for day in days:  # one at 02:00 with the dailies, then one each 4 hours: six a day
        shown = re.findall(
            r"^  (\d\d:00)  creator  us-east-1  created 1, hourly for queue-1$", day, re.M
        )
        assert shown == between
        assert "02:00  creator  us-east-1  created 6" in day
    # Left after day 10: the dailies of the last 3 days (Retention=3), and the hourly ones of
    # the last two days, kept 24 h, to the next whole day.
    snaps = [s for s in state[demo.EAST] if {"Key": "Name", "Value": "queue-1"} in s["Tags"]]
    by_day = Counter(s["StartTime"].date().isoformat() for s in snaps)
    assert by_day == {"2026-12-08": 1, "2026-12-09": 6, "2026-12-10": 6}
    for snap in snaps:
        tags = {t["Key"]: t["Value"] for t in snap["Tags"]}
        start = snap["StartTime"].astimezone(UTC)
        assert tags["Backup_Slot"] == f"{start:%Y-%m-%dT%H:00Z}"
        daily = start.hour == demo.DAILY_HOUR
        assert tags["Retention_Tier"] == ("daily" if daily else "hourly")
        kept = timedelta(days=3) if daily else timedelta(days=2)  # 24 h, to a whole day
        assert tags["DeleteOn"] == (start.date() + kept).isoformat()
    # The picture draws them in their own colour, and says so.
    marks = Counter(bar[5] for bar in drawn(picture) if bar[0].startswith("queue-1"))
    assert marks == {"d": 3, "h": 10}
    assert "h hourly, d daily" in "\n".join(lines)
