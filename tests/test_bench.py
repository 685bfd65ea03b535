"""Small smoke runs of `make bench`: the same code paths as the measured tables, on fleets
small enough for the suite. The numbers are in the README, from `make bench` itself."""

import functools
import json

import bench
import copysim  # noqa: F401 (make bench imports it: it must stay importable)

import ebs_snapshot_creator as creator
import ebs_snapshot_manager as manager


def test_each_job_does_all_its_work_on_a_small_fleet():
    rows = {r["job"]: r for r in bench.bench_size(20, 0.0, {"creator", "copier", "manager"})}
    assert rows["creator"]["done"] == 20 and rows["creator"]["failures"] == 0
    assert (rows["copier"]["done"], rows["copier"]["deferred"]) == (20, 0)
    assert rows["manager"]["done"] == 20  # the first snapshots, each with a newer one
    assert all(r["throttled"] == 0 and r["peak_mb"] > 0 for r in rows.values())


def test_a_day_chained_through_hand_offs_takes_each_volume_once():
    # 130 s of Lambda time an invocation: some 400 snapshots, so it hands off.
    row = bench.bench_day(creator, 600, 10, 0.0, bench.DAY_AT_SCALE, bench.build_fleet, timeout=130)
    assert row["invocations"] >= 2 and row["failures"] == 0
    assert row["per_volume"] == {"none": 0, "twice": 0} and row["done"] == 600
    assert row["calls"]["CreateSnapshot"] == 600 + row["throttled"]
    assert row["cpu_ms_per_item"] > 0


def test_the_managers_day_deletes_every_due_snapshot_across_invocations():
    two_each = functools.partial(bench.region_of_snapshots, per_volume=2)
    with bench.drills_off():
        row = bench.bench_day(manager, 600, 10, 0.0, bench.DAY_AT_SCALE, two_each, timeout=130)
    assert row["invocations"] >= 2 and row["done"] == 600 and row["failures"] == 0
    assert row["calls"]["DeleteSnapshot"] == 600 + row["throttled"]


def test_the_memory_run_deletes_the_due_half_and_checks_every_volume():
    counts, _, peak = bench.bench_memory(200)
    assert (counts["deleted"], counts["protected"], counts["unprotected"]) == (100, 20, 0)
    assert peak > 0


def test_the_memory_run_compares_with_the_same_listing_without_deletes():
    found = bench.bench_manager_memory(20)
    assert found["snapshots"] == 200 and found["peak_mb"] > 0 and found["listing_only_mb"] > 0


def test_a_region_with_nothing_to_do_costs_listings_only():
    rows = bench.bench_idle(20, 0.0)
    assert [r["job"] for r in rows] == ["creator", "copier", "copier", "manager"]
    writes = {"CreateSnapshot", "CopySnapshot", "DeleteSnapshot", "CreateTags", "CreateVolume"}
    assert all(not writes & set(r["calls"]) for r in rows)
    assert sum(rows[2]["calls"].values()) <= 4  # one event: its snapshot, not a sweep


def test_the_tables_are_printed_and_saved(tmp_path, capsys):
    out, numbers = tmp_path / "bench.txt", tmp_path / "bench.json"
    argv = ["--sections", "table", "--sizes", "4", "--out", str(out), "--json", str(numbers)]
    assert bench.main(argv) == 0
    saved = out.read_text()
    assert "wall/floor" in saved and saved in capsys.readouterr().out
    assert json.loads(numbers.read_text())["table"][0]["volumes"] == 4
