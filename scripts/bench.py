"""`make bench`: the three jobs on fleets of 100, 600 and 2,000 volumes, at EC2's limits.

Runs on moto behind scripts/ec2sim.py (EC2's token buckets, a per-call latency), so the
job code is the real one, unchanged. For each job and size it prints the API calls by
operation, the throttled ones, failures, wall time, the floor that EC2's bucket allows,
wall/floor, and the peak memory of the run (tracemalloc, measured in a separate untimed
run). Then the manager's memory over 20,000 snapshots. Not a test: nothing here asserts;
the tests assert call counts.
"""

import argparse
import contextlib
import functools
import os
import platform
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest.mock import patch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]
os.environ.update(
    AWS_ACCESS_KEY_ID="bench",
    AWS_SECRET_ACCESS_KEY="bench",
    AWS_EC2_METADATA_DISABLED="true",
    MOTO_EC2_LOAD_DEFAULT_AMIS="false",
    LOG_LEVEL="CRITICAL",
    AWS_REGION="us-east-1",
)
for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2", "AWS_SESSION_TOKEN"):
    os.environ.pop(var, None)

import boto3  # noqa: E402
from ec2sim import simulated_ec2  # noqa: E402
from moto import mock_aws  # noqa: E402
from moto.core import DEFAULT_ACCOUNT_ID  # noqa: E402
from moto.ec2.models import ec2_backends  # noqa: E402
from moto_gaps import install as fill_moto_gaps  # noqa: E402

import ebs_snapshot_copier as copier  # noqa: E402
import ebs_snapshot_creator as creator  # noqa: E402
import ebs_snapshot_manager as manager  # noqa: E402

fill_moto_gaps()  # moto's missing EC2 filters, as EC2 documents them

REGION, DEST = "us-east-1", "us-west-2"
NOW = datetime(2026, 11, 26, 2, tzinfo=UTC)
# What EC2 lets through at once, then per second, for each job's mutating call. The
# copier's real bound is AWS's 20 copies in flight per destination: one run starts at most
# 20 and defers the rest to the next (moto would complete copies at once; AWS does not).
FLOOR = {"creator": (100, 5), "copier": (50, 5), "manager": (100, 5)}


def build_fleet(volumes):
    """volumes/2 instances of two volumes, tagged Backup=Yes and copied to DEST."""
    ec2 = boto3.client("ec2", region_name=REGION)
    left = volumes // 2
    while left:
        count = min(left, 100)
        ec2.run_instances(
            ImageId="ami-12345678",
            MinCount=count,
            MaxCount=count,
            BlockDeviceMappings=[
                {"DeviceName": d, "Ebs": {"VolumeSize": 8}} for d in ("/dev/sda1", "/dev/sdb")
            ],
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [
                        {"Key": "Backup", "Value": "Yes"},
                        {"Key": "Copy_Dest", "Value": DEST},
                    ],
                }
            ],
        )
        left -= count


def measure(job, run, volumes, latency):
    """Run one job under the simulated EC2 and time it; returns a row of the table."""
    with simulated_ec2(latency) as sim:
        start = time.monotonic()
        try:
            summary, failures = run(), 0
        except job.JobFailed as exc:
            summary, failures = exc.summary, len(exc.summary["failures"])
        wall = time.monotonic() - start
    burst, rate = FLOOR[job.JOB]
    done = sum(summary["counts"].get(k, 0) for k in ("created", "copied", "deleted"))
    floor = max(0.0, (done - burst) / rate)  # EC2's bucket: burst at once, then rate/s
    return {
        "job": job.JOB,
        "volumes": volumes,
        "done": done,
        "deferred": sum(d["count"] for d in summary.get("deferred", [])),
        "calls": dict(sorted(sim.calls.items())),
        "throttled": sum(sim.throttled.values()),
        "failures": failures,
        "wall": wall,
        "floor": floor,
        "ratio": wall / floor if floor else None,
    }


def peak_memory(run):
    """Peak Python memory of one run (tracemalloc). Done apart from the timed run, since
    tracemalloc slows moto down, and without latency, limits or pacing, which memory does
    not depend on."""
    tracemalloc.start()
    with unpaced(), simulated_ec2(latency=0, limits=False), contextlib.suppress(Exception):
        run()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


@contextlib.contextmanager
def unpaced():
    saved = [job.BUCKETS for job in (creator, copier, manager)]
    for job in (creator, copier, manager):
        job.BUCKETS = {}
    try:
        yield
    finally:
        creator.BUCKETS, copier.BUCKETS, manager.BUCKETS = saved


def bench_size(volumes, latency, jobs):
    """Each job timed on one fleet, then its peak memory on an identical fleet. Before the
    manager, a second (untimed) creator run a week later gives every volume a newer
    snapshot, so that the first ones are due and none is its volume's last backup."""
    later = NOW + timedelta(days=8)  # every first snapshot's DeleteOn has come
    runs = {
        "creator": (creator, lambda: creator.run({}, None, now=NOW)),
        "copier": (copier, lambda: copier.run({}, None, now=NOW)),
        "manager": (manager, lambda: manager.run({}, None, now=later)),
    }
    rows, peaks = [], {}
    for timed in (True, False):
        with mock_aws():
            build_fleet(volumes)
            for name in ("creator", "copier", "manager"):
                job, run = runs[name]
                if name == "manager":
                    newer_snapshots(later - timedelta(days=1))
                if name not in jobs:
                    if name == "creator":
                        with moto_clock(NOW):
                            creator.run({}, None, now=NOW)  # the others need its snapshots
                elif timed:
                    with moto_clock(NOW if name == "creator" else later):
                        rows.append(measure(job, run, volumes, latency))
                else:
                    with moto_clock(NOW if name == "creator" else later):
                        peaks[name] = peak_memory(run)
    for row in rows:
        row["peak_mb"] = peaks[row["job"]]
    return rows


@contextlib.contextmanager
def moto_clock(now):
    """moto stamps snapshots with its own clock: the benchmark's, here."""
    naive = now.astimezone(UTC).replace(tzinfo=None)
    with patch("moto.ec2.models.elastic_block_store.utcnow", lambda: naive):
        yield


def newer_snapshots(now):
    """A snapshot of every volume, as the creator would make it on that day, untimed."""
    with unpaced(), moto_clock(now), contextlib.suppress(creator.JobFailed):
        creator.run({}, None, now=now)


def bench_memory(snapshots, per_volume=10):
    """The manager over `snapshots` automated snapshots, `per_volume` of each volume of a
    fleet of Backup=Yes instances (one a day), all to be copied to DEST: half are due, the
    others have their copy there. The coverage check keeps what it needs for every volume
    and snapshot, and reads every copy.
    Neither EC2's limits nor pacing: this measures memory, not the rate."""
    with mock_aws():
        backend = ec2_backends[DEFAULT_ACCOUNT_ID][REGION]
        dest = ec2_backends[DEFAULT_ACCOUNT_ID][DEST]
        now = datetime.now(UTC) + timedelta(hours=1)
        # Attached long ago (moto stamps attachments with its own clock): all expected.
        long_ago = (now - timedelta(days=30)).replace(tzinfo=None)
        with patch("moto.ec2.models.elastic_block_store.utcnow", lambda: long_ago):
            volumes = fleet_volumes(snapshots // per_volume)
        for volume_id in volumes:
            for n in range(per_volume):  # one a day: the newest is an hour old
                snap = backend.create_snapshot(volume_id, "bench")
                snap.start_time = (now - timedelta(days=n, hours=1)).replace(tzinfo=None)
                due = "2026-11-01" if n % 2 else "2099-01-01"
                tags = {"Type": "Automated", "DeleteOn": due, "Copy_Dest": DEST}
                backend.create_tags([snap.id], tags)
                if n % 2 == 0:  # a completed copy in DEST
                    copy = dest.create_snapshot(dest_volume(dest).id, "copy")
                    dest.create_tags(
                        [copy.id],
                        {
                            "Type": "Automated",
                            "Source_SnapshotId": snap.id,
                            "Source_Region": REGION,
                        },
                    )
        tracemalloc.start()
        with unpaced(), simulated_ec2(latency=0, limits=False):
            start = time.monotonic()
            summary = manager.run({}, None, now=now)
            wall = time.monotonic() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return summary["counts"], wall, peak / 2**20


def fleet_volumes(count):
    """The volume ids of `count` running instances tagged Backup=Yes, one volume each."""
    client = boto3.client("ec2", region_name=REGION)
    ids = []
    while len(ids) < count:
        n = min(500, count - len(ids))
        reservation = client.run_instances(
            ImageId="ami-12345678",
            MinCount=n,
            MaxCount=n,
            BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8}}],
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": [{"Key": "Backup", "Value": "Yes"}]}
            ],
        )
        ids += [i["BlockDeviceMappings"][0]["Ebs"]["VolumeId"] for i in reservation["Instances"]]
    return ids


@functools.cache
def dest_volume(dest):
    return dest.create_volume(size=1, zone_name=DEST + "a")


def print_rows(rows):
    print(
        f"{'job':<8} {'volumes':>7} {'done':>5} {'deferred':>8}  {'throttled':>9}  "
        f"{'failures':>8}  {'wall s':>7}  {'floor s':>7}  {'wall/floor':>10}  {'peak MB':>7}  "
        "calls by operation"
    )
    for r in rows:
        ratio = f"{r['ratio']:.2f}" if r["ratio"] else "-"
        calls = ", ".join(f"{op} {n}" for op, n in r["calls"].items())
        print(
            f"{r['job']:<8} {r['volumes']:>7} {r['done']:>5} {r['deferred']:>8}  "
            f"{r['throttled']:>9}  {r['failures']:>8}  {r['wall']:>7.1f}  {r['floor']:>7.1f}  "
            f"{ratio:>10}  {r['peak_mb']:>7.1f}  {calls}"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,600,2000", help="fleet sizes, in volumes")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per EC2 call")
    parser.add_argument("--jobs", default="creator,copier,manager")
    parser.add_argument(
        "--memory", type=int, default=20000, help="snapshots for the manager's memory run (0: skip)"
    )
    parser.add_argument(
        "--strategy",
        choices=["pacer", "adaptive", "none"],
        default="pacer",
        help="the jobs' own pacer (default); botocore's adaptive retry mode instead; "
        "or neither (standard retries only)",
    )
    parser.add_argument(
        "--out", default=str(ROOT / "build" / "bench.txt"), help="where the tables are saved too"
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as saved, contextlib.redirect_stdout(Tee(sys.stdout, saved)):
        run_benchmarks(args)
    print(f"\nsaved to {out}")
    return 0


class Tee:
    """Print to the terminal and to the saved file at once."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, text):
        for stream in self.streams:
            stream.write(text)

    def flush(self):
        for stream in self.streams:
            stream.flush()


def run_benchmarks(args):
    jobs = args.jobs.split(",")
    if args.strategy != "pacer":
        for job in (creator, copier, manager):
            job.BUCKETS = {}
            if args.strategy == "adaptive":
                job.RETRIES = {"mode": "adaptive", "total_max_attempts": 10}
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; latency {args.latency * 1000:.0f} ms a call; "
        f"{creator.WORKERS} workers; strategy: {args.strategy}"
    )
    rows = []
    for size in (int(s) for s in args.sizes.split(",") if s):
        rows += bench_size(size, args.latency, jobs)
        print_rows(rows[-len(jobs) :])
        sys.stdout.flush()
    if rows:
        print("\nall sizes:")
        print_rows(rows)
    if args.memory:
        counts, wall, peak = bench_memory(args.memory)
        print(f"\nmanager over {args.memory} snapshots: {counts}, {wall:.1f} s, peak {peak:.1f} MB")


if __name__ == "__main__":
    sys.exit(main())
