"""Small smoke runs of `make bench`: the same code paths as the measured tables, on fleets
small enough for the suite. The numbers are in docs/performance.md, from `make bench` itself."""

import functools
import json
import time

import botocore.loaders
import botocore.session
import pytest

import ebs_snapshot_creator as creator
import ebs_snapshot_manager as manager
from scripts import bench
from testkit import (
    copysim,  # noqa: F401 (make bench imports it: it must stay importable)
    ec2sim,
)


def test_each_job_does_all_its_work_on_a_small_fleet():
    rows = {r["job"]: r for r in bench.bench_size(20, 0.0, {"creator", "copier", "manager"})}
    assert rows["creator"]["done"] == 20 and rows["creator"]["failures"] == 0
    assert (rows["copier"]["done"], rows["copier"]["deferred"]) == (20, 0)
    assert rows["manager"]["done"] == 20  # the first snapshots, each with a newer one
    assert all(r["throttled"] == 0 and r["peak_mb"] > 0 for r in rows.values())


def test_the_virtual_clock_counts_sleeps_and_cpu_but_not_what_is_discarded():
    clock = ec2sim.VirtualClock(cpu_scale=1e6)  # CPU all but free: the sleeps are exact
    slots, woke = ec2sim.Semaphore(clock, 2), []

    def sleeper(seconds):
        with slots:
            clock.sleep(seconds)
            woke.append((seconds, clock.monotonic()))

    with ec2sim.Pool(clock) as pool:
        for seconds in (3, 1, 2):
            pool.submit(sleeper, seconds)
    # two at a time: 3 and 1 together, then 2 once 1 has ended
    assert [s for s, _ in woke] == [1, 3, 2]
    assert [round(t, 3) for _, t in woke] == [1, 3, 3]
    busy = ec2sim.VirtualClock()
    busy.charge()
    sum(range(500_000))  # CPU counted as time ...
    counted = busy.monotonic()
    busy.charge()
    spent = time.thread_time()
    sum(range(500_000))  # ... unless discarded (moto's, in simulated_ec2)
    spent = time.thread_time() - spent
    busy.discard()
    assert counted > 0 and busy.monotonic() - counted < spent / 2


def test_listings_page_as_ec2s_do_over_moto_gaps():
    with bench.fresh_aws():
        bench.region_of_snapshots(1, per_volume=7)
        with ec2sim.simulated_ec2(latency=0, limits=False) as sim:
            pages = bench.boto3.client("ec2", region_name=bench.REGION).get_paginator(
                "describe_snapshots"
            )
            sizes = [len(p["Snapshots"]) for p in pages.paginate(OwnerIds=["self"], MaxResults=5)]
    assert sizes == [5, 2] and sim.calls["DescribeSnapshots"] == 2


def test_a_day_is_the_same_at_two_factors():
    rows = [
        bench.bench_day(creator, 300, scale, 0.05, bench.DAY_AT_SCALE, bench.build_fleet)
        for scale in (1, 10)
    ]
    assert [r["done"] for r in rows] == [300, 300]
    # The issue's bound. The jobs' own CPU time counts (at one core), so two runs differ a
    # little with the machine's load: 1% failed now and then under two busy pytest workers.
    assert abs(rows[0]["wall"] - rows[1]["wall"]) < 0.05 * rows[0]["wall"]


def test_a_day_chained_through_hand_offs_takes_each_volume_once():
    # 120 s of Lambda time an invocation: some 360 snapshots, so it hands off; a new
    # snapshot is not listed for 2 s (EC2's eventual consistency), so the invocation after
    # a hand-off learns what is done from its event, not from the listing.
    row = bench.bench_day(
        creator, 450, 10, 0.0, bench.DAY_AT_SCALE, bench.build_fleet, timeout=120, invisible_s=2
    )
    assert row["invocations"] >= 2 and row["failures"] == 0
    assert row["per_volume"] == {"none": 0, "twice": 0} and row["done"] == 450
    assert row["calls"]["CreateSnapshot"] == 450 + row["throttled"]
    assert row["cpu_ms_per_item"] > 0


def test_the_managers_day_deletes_every_due_snapshot_across_invocations():
    two_each = functools.partial(bench.region_of_snapshots, per_volume=2)
    with bench.drills_off():
        row = bench.bench_day(manager, 400, 10, 0.0, bench.DAY_AT_SCALE, two_each, timeout=120)
    assert row["invocations"] >= 2 and row["done"] == 400 and row["failures"] == 0
    assert row["calls"]["DeleteSnapshot"] == 400 + row["throttled"]
    assert row["counts"]["protected"] == 400  # the last invocation checked coverage


def test_the_memory_run_measures_the_manager_alone_against_the_same_listing(monkeypatch):
    # The suite shares one loader between Sessions (conftest); a real run loads its own.
    monkeypatch.setattr(botocore.session, "create_loader", botocore.loaders.create_loader)
    found = bench.bench_manager_memory([20])
    (size,) = found["sizes"]
    assert size["snapshots"] == 200 and found["models_mb"] > 5  # EC2's model, at least
    deletes, listing = size["with_deletes"], size["listing_only"]
    assert deletes["counts"]["deleted"] == 20 and "deleted" not in listing["counts"]
    assert deletes["calls"]["DeleteSnapshot"] == 20 and "DeleteSnapshot" not in listing["calls"]
    coverage = {
        "DescribeInstances",
        "DescribeVolumes",
        "DescribeRegions",
        "DescribeLockedSnapshots",
    }
    for run in (deletes, listing):  # the coverage check ran, and found every volume backed up
        assert run["counts"]["protected"] == 20 and "unprotected" not in run["counts"]
        assert coverage <= set(run["calls"]) and run["failures"] == 0
        assert 0 < run["held_mb"] <= run["own_peak_mb"] and run["total_peak_mb"] > 0
        assert run["held_by_file"] and run["answers_mb"] > 0
    assert bench.md_memory(found).count("| 200 |") == 2


def test_a_replay_answers_from_the_recording_and_refuses_what_was_not_recorded():
    recording = ec2sim.Recording()
    with bench.fresh_aws():
        bench.region_of_snapshots(1, per_volume=3)
        ec2 = bench.boto3.client("ec2", region_name=bench.REGION)
        with ec2sim.simulated_ec2(latency=0, limits=False), ec2sim.recorded(recording):
            listed = ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
            ec2.delete_snapshot(SnapshotId=listed[0]["SnapshotId"])  # canned: moto keeps it
        assert len(ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]) == 3
    with bench.mock_aws(), ec2sim.replayed(recording):  # an empty region: the recording answers
        assert ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"] == listed
        ec2.delete_snapshot(SnapshotId="snap-0123456789abcdef0")
        with pytest.raises(ec2sim.Unrecorded):
            ec2.describe_snapshots(OwnerIds=["self"], MaxResults=5)
    assert recording.missed == {"DescribeSnapshots": 1}


def test_instances_page_by_instance_as_ec2s_do():
    with bench.fresh_aws():
        bench.fleet_volumes(12)  # one reservation of 12 instances
        with ec2sim.simulated_ec2(latency=0, limits=False):
            pages = bench.boto3.client("ec2", region_name=bench.REGION).get_paginator(
                "describe_instances"
            )
            sizes = [
                sum(len(r["Instances"]) for r in page["Reservations"])
                for page in pages.paginate(MaxResults=5)
            ]
    assert sizes == [5, 5, 2]


def test_a_region_with_nothing_to_do_costs_listings_only():
    rows = bench.bench_idle(20, 0.0)
    assert [r["job"] for r in rows] == ["creator", "copier", "copier", "copier", "manager"]
    writes = {"CreateSnapshot", "CopySnapshot", "DeleteSnapshot", "CreateTags", "CreateVolume"}
    assert all(not writes & set(r["calls"]) for r in rows)
    assert rows[1]["calls"] == {"DescribeSnapshots": 1}  # nothing pending: one listing
    assert sum(rows[2]["calls"].values()) > 2  # the 00:00 sweep reads every primary and copy
    assert sum(rows[3]["calls"].values()) <= 4  # one event: its snapshot, not a sweep


def test_the_creator_every_hour_costs_a_listing_in_an_hour_with_nothing_due():
    rows = bench.bench_hourly(20, 0.0)
    assert [r["hourly"] for r in rows] == ["once", "daily", "catch_up", "idle", "day"]
    once, daily, catch_up, idle, day = rows
    for run in (once, daily):  # chained runs: every volume, once
        assert run["did"]["created"] == 20 and run["failures"] == 0
        assert run["calls"]["CreateSnapshot"] == 20 and run["peak_mb"] is None
    # Only the scheduled run checks the fleet against EC2's limits (from its listing).
    assert "peak_hour_calls" not in once["did"] and daily["did"]["peak_hour_calls"] == 20
    writes = {"CreateSnapshot", "CreateSnapshots", "CreateTags"}
    assert not writes & set(catch_up["calls"]) and catch_up["calls"]["DescribeSnapshots"] >= 1
    assert catch_up["did"].get("skipped") == 1  # the day's slots, found done: said once
    assert idle["calls"] == {"DescribeInstances": 1} and idle["did"].get("created") is None
    # The day: the daily run, 2 catch-up hours, 21 idle ones.
    ops = set(daily["calls"]) | set(catch_up["calls"]) | set(idle["calls"])
    for op in ops:
        counts = [r["calls"].get(op, 0) for r in (daily, catch_up, idle)]
        assert day["calls"][op] == counts[0] + 2 * counts[1] + 21 * counts[2]
    expected = daily["lambda_s"] + 2 * catch_up["lambda_s"] + 21 * idle["lambda_s"]
    assert abs(day["lambda_s"] - expected) < 1e-9 and day["run"].endswith("21 idle runs")
    page = bench.md_idle(rows)
    assert "| creator | hourly, the day's total: 1 daily + 2 catch-up + 21 idle runs | 20 |" in page
    assert "The creator's day every hour against once a day:" in page
    assert page.splitlines()[:2] == bench.md_idle([]).splitlines()[:2]  # the same header


def test_the_tables_are_printed_and_saved(tmp_path, capsys):
    out, numbers = tmp_path / "bench.txt", tmp_path / "bench.json"
    argv = ["--sections", "table", "--sizes", "4", "--out", str(out), "--json", str(numbers)]
    assert bench.main(argv) == 0
    saved = out.read_text()
    assert "wall/floor" in saved and saved in capsys.readouterr().out
    assert json.loads(numbers.read_text())["table"][0]["volumes"] == 4
    assert bench.main(["--markdown", "--json", str(numbers)]) == 0
    page = capsys.readouterr().out  # what docs/performance.md shows
    assert "| creator | 4 | 4 | 0 | 0 | 0 |" in page and "moto" in page
    assert bench.main(["--markdown", str(numbers), str(numbers)]) == 0  # sections from several
    assert capsys.readouterr().out.count("| creator | 4 | 4 | 0 | 0 | 0 |") == 1
