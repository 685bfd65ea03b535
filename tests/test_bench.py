"""A small smoke run of `make bench`: the same code path as the measured table, on a fleet
small enough for the suite. The numbers are in the README, from `make bench` itself."""

import bench


def test_each_job_does_all_its_work_on_a_small_fleet():
    rows = {r["job"]: r for r in bench.bench_size(20, 0.0, {"creator", "copier", "manager"})}
    assert rows["creator"]["done"] == 20 and rows["creator"]["failures"] == 0
    assert (rows["copier"]["done"], rows["copier"]["deferred"]) == (20, 0)
    assert rows["manager"]["done"] == 20  # the first snapshots, each with a newer one
    assert all(r["throttled"] == 0 and r["peak_mb"] > 0 for r in rows.values())


def test_the_memory_run_deletes_the_due_half_and_checks_every_volume():
    counts, _, peak = bench.bench_memory(200)
    assert (counts["deleted"], counts["protected"], counts["unprotected"]) == (100, 20, 0)
    assert peak > 0


def test_the_tables_are_printed_and_saved(tmp_path, capsys):
    out = tmp_path / "bench.txt"
    assert bench.main(["--sizes", "4", "--memory", "0", "--out", str(out)]) == 0
    saved = out.read_text()
    assert "wall/floor" in saved and saved in capsys.readouterr().out
