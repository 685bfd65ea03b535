"""`make bench`: the three jobs on fleets of 100, 600 and 2,000 volumes, at EC2's limits.

Runs on moto behind scripts/ec2sim.py (EC2's token buckets, a per-call latency), so the
job code is the real one, unchanged. For each job and size it prints the API calls by
operation, the throttled ones, failures, wall time, the floor that EC2's bucket allows,
wall/floor, and the peak memory of the run (tracemalloc, measured in a separate untimed
run). Then the manager's memory over 20,000 snapshots. Not a test: nothing here asserts;
the tests assert call counts. Everything is also written as JSON (--json).

More sections (--sections), for ten thousand volumes a region:
  day         the creator and the manager each over a day's work, chained through their
              hand-offs, on a clock --scales times faster (EC2's refill, the jobs' pacer,
              their margins and Lambda's 900 s alike): invocations, wall/floor, throttled
              share, exactly one snapshot per volume, CPU an item (moto's excluded);
  memory100k  the manager's peak memory over ten snapshots a volume, a tenth due, against
              the same listing with nothing due;
  idle        each job's run in a region with nothing to do: calls, seconds, CPU, memory;
  copies      a day of copies through AWS's 20 slots (scripts/copysim.py).
"""

import argparse
import contextlib
import functools
import json
import os
import platform
import sys
import time
import tracemalloc
import types
from collections import Counter
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


def measure(job, run, volumes, latency, scale):
    """Run one job under the simulated EC2 and time it; returns a row of the table (wall
    in unscaled seconds)."""
    with scaled(scale), simulated_ec2(latency / scale, scale=scale) as sim:
        start = time.monotonic()
        try:
            summary, failures = run(), 0
        except job.JobFailed as exc:
            summary, failures = exc.summary, len(exc.summary["failures"])
        wall = (time.monotonic() - start) * scale
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


def bench_size(volumes, latency, jobs, scale=1):
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
                        rows.append(measure(job, run, volumes, latency, scale))
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
    dest_volume.cache_clear()  # of an earlier mock_aws
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


# ---- a day at scale: chained invocations on a scaled clock ----


@contextlib.contextmanager
def scaled(scale):
    """The jobs' clock `scale` times faster: their pacer's refill, their time margins and
    Lambda's 900 s (simulated_ec2(scale=...) does the same for EC2's buckets). Bucket sizes
    (bursts) stay, so wall/floor does not depend on the factor."""
    names = ("BUCKETS", "STOP_MARGIN_S", "ATTEMPT_S", "BACKOFF_CAP_S", "MIN_START_S")
    saved = {job: {n: getattr(job, n) for n in names} for job in (creator, copier, manager)}
    for job, old in saved.items():
        job.BUCKETS = {
            op: (b, size, rate * scale) for op, (b, size, rate) in old["BUCKETS"].items()
        }
        for name in names[1:]:
            setattr(job, name, old[name] / scale)
    try:
        yield
    finally:
        for job, old in saved.items():
            for name, value in old.items():
                setattr(job, name, value)


class Lambda:
    """One function's invocations, as Lambda runs them: each with `timeout` seconds, and
    each asynchronous self-invocation (a hand-off) run when the one before has ended."""

    def __init__(self, job, timeout):
        self.job, self.timeout, self.queue, self.results = job, timeout, [], []

    def invoke(self, **params):  # FunctionName, InvocationType, Payload
        self.queue.append(json.loads(params["Payload"]))
        return {"StatusCode": 202}

    def run(self, event, now):
        original = self.job.make_client

        def make_client(service, *args, **kwargs):
            return self if service == "lambda" else original(service, *args, **kwargs)

        self.job.make_client = make_client
        try:
            while event is not None:
                self.results.append(self._once(event, now))
                event = self.queue.pop(0) if self.queue else None
        finally:
            self.job.make_client = original
        return self.results

    def _once(self, event, now):
        deadline = time.monotonic() + self.timeout
        context = types.SimpleNamespace(
            get_remaining_time_in_millis=lambda: int((deadline - time.monotonic()) * 1000),
            invoked_function_arn=f"arn:aws:lambda:{REGION}:123456789012:function:{self.job.JOB}",
            aws_request_id=f"bench-{len(self.results)}",
        )
        try:
            return self.job.run(event, context, now=now)
        except self.job.JobFailed as exc:
            return exc.summary


SCHEDULED = {"version": "0", "detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}


def bench_day(job, volumes, scale, latency, now, prepare, timeout=900):
    """One scheduled run of `job` over a region of `volumes` volumes, chained through its
    hand-offs (each invocation `timeout` s of Lambda time), on a clock `scale` times
    faster; wall and floor are in real (unscaled) seconds."""
    with mock_aws():
        prepare(volumes)
        event = {**SCHEDULED, "id": f"bench-{job.JOB}", "time": now.strftime("%Y-%m-%dT%H:%M:%SZ")}
        lam = Lambda(job, timeout / scale)
        with scaled(scale), simulated_ec2(latency / scale, scale=scale) as sim, moto_clock(now):
            start, cpu = time.monotonic(), time.process_time()
            results = lam.run(event, now)
            wall, cpu = (time.monotonic() - start) * scale, time.process_time() - cpu
        done = sum(r["counts"].get(k, 0) for r in results for k in ("created", "deleted"))
        check = per_volume_snapshots() if job is creator else None
    calls = sum(sim.calls.values())
    return {
        "job": job.JOB,
        "volumes": volumes,
        "scale": scale,
        "invocations": len(results),
        "done": done,
        "failures": sum(len(r["failures"]) for r in results),
        "calls": dict(sorted(sim.calls.items())),
        "throttled": sum(sim.throttled.values()),
        "throttled_share": sum(sim.throttled.values()) / calls if calls else 0.0,
        "wall": wall,
        "floor": max(0.0, (done - 100) / 5),  # EC2's bucket: 100 at once, then 5 a second
        "ratio": wall / max(1e-9, (done - 100) / 5),
        "cpu_ms_per_item": 1000 * (cpu - sim.moto_cpu) / max(done, 1),
        "per_volume": check,
    }


def region_of_snapshots(volumes, per_volume=10, due=True):
    """`volumes` volumes of Backup=Yes instances, attached long ago, each with `per_volume`
    automated snapshots, one a day, the newest an hour old: the oldest of each is due
    (none with ``due`` false)."""
    backend = ec2_backends[DEFAULT_ACCOUNT_ID][REGION]
    now = DAY_AT_SCALE + timedelta(hours=1)
    long_ago = (now - timedelta(days=30)).replace(tzinfo=None)
    with patch("moto.ec2.models.elastic_block_store.utcnow", lambda: long_ago):
        ids = fleet_volumes(volumes)
    for volume_id in ids:
        for n in range(per_volume):
            snap = backend.create_snapshot(volume_id, "bench")
            snap.start_time = (now - timedelta(days=n, hours=1)).replace(tzinfo=None)
            expired = due and n == per_volume - 1
            tags = {"Type": "Automated", "DeleteOn": "2026-11-01" if expired else "2099-01-01"}
            backend.create_tags([snap.id], tags)


DAY_AT_SCALE = datetime(2026, 11, 26, 2, tzinfo=UTC)


def bench_scale(args):
    """The creator over `args.day_volumes` volumes and the manager over ten snapshots of
    each (a tenth due), each at every factor of `args.scales`."""
    rows = []
    for scale in args.scales:
        rows.append(
            bench_day(creator, args.day_volumes, scale, args.latency, DAY_AT_SCALE, build_fleet)
        )
        print_day(rows[-1])
        with drills_off():
            rows.append(
                bench_day(
                    manager,
                    args.day_volumes,
                    scale,
                    args.latency,
                    DAY_AT_SCALE + timedelta(hours=1),
                    region_of_snapshots,
                )
            )
        print_day(rows[-1])
    return rows


def bench_manager_memory(volumes):
    """The manager's peak memory over ten snapshots of each of `volumes` volumes, a tenth
    due; and over the same listing with nothing due. moto's stored snapshots are made
    before tracing starts; both runs count moto building and botocore parsing each page,
    so the difference is what judging and deleting add. No pacing: memory, not rate."""
    now = DAY_AT_SCALE + timedelta(hours=1)
    peaks = {}
    for due in (True, False):
        with mock_aws(), drills_off():
            region_of_snapshots(volumes, due=due)
            with moto_clock(now):
                start = time.monotonic()
                peaks[due] = peak_memory(lambda: manager.run({}, None, now=now))
                wall = time.monotonic() - start
            print(
                f"manager memory, {volumes * 10} snapshots, {'a tenth' if due else 'none'} due: "
                f"peak {peaks[due]:.1f} MB ({wall:.0f} s traced)"
            )
    return {
        "snapshots": volumes * 10,
        "due": volumes,
        "peak_mb": peaks[True],
        "listing_only_mb": peaks[False],
        "added_mb": peaks[True] - peaks[False],
    }


@contextlib.contextmanager
def drills_off():
    """The manager's restore drills measure AWS's restore time, not the jobs' rate."""
    with patch.dict(os.environ, {"RESTORE_DRILL": "off"}):
        yield


def print_day(r):
    check = r["per_volume"]
    once = (
        f", volumes without a snapshot {check['none']}, with two {check['twice']}" if check else ""
    )
    print(
        f"{r['job']:<8} {r['volumes']:>6} volumes, scale {r['scale']:g}: {r['done']} done in "
        f"{r['invocations']} invocations, {r['wall']:.0f} s (floor {r['floor']:.0f} s, "
        f"wall/floor {r['ratio']:.3f}), throttled {r['throttled']} of "
        f"{sum(r['calls'].values())} calls ({100 * r['throttled_share']:.2f}%), "
        f"{r['failures']} failures, CPU {r['cpu_ms_per_item']:.2f} ms an item{once}"
    )
    sys.stdout.flush()


# ---- a region with nothing to do: what each run costs ----


def bench_idle(volumes, latency):
    """Each job's run over a region of `volumes` volumes where everything is done: every
    volume snapshotted for today's event and copied, nothing due. Its calls, Lambda
    seconds (wall at `latency` a call), CPU (moto's excluded) and peak memory."""
    now = NOW + timedelta(hours=4)
    event = {**SCHEDULED, "id": "idle-day", "time": NOW.strftime("%Y-%m-%dT%H:%M:%SZ")}
    rows = []
    with mock_aws(), drills_off():
        build_fleet(volumes)
        with unpaced(), moto_clock(NOW), contextlib.suppress(creator.JobFailed):
            creator.run(event, None, now=NOW)
        primary = copy_everything()
        notified = {
            "detail-type": copier.NOTIFICATION,
            "source": "aws.ec2",
            "detail": {"event": "createSnapshot", "result": "succeeded", "snapshot_id": primary},
        }
        runs = [
            ("creator", "the day's event again: every volume done", creator, event),
            ("copier", "a sweep: every copy made", copier, {**event, "id": "idle-sweep"}),
            ("copier", "one snapshot's completion event", copier, notified),
            ("manager", "nothing due, coverage checked", manager, {**event, "id": "idle-m"}),
        ]
        for name, what, job, ev in runs:
            with simulated_ec2(latency) as sim, moto_clock(now):
                start, cpu = time.monotonic(), time.process_time()
                result = job.run(ev, None, now=now)
                wall, cpu = time.monotonic() - start, time.process_time() - cpu
            with moto_clock(now):
                peak = peak_memory(lambda job=job, ev=ev: job.run(ev, None, now=now))
            rows.append(
                {
                    "job": name,
                    "run": what,
                    "volumes": volumes,
                    "calls": dict(sorted(sim.calls.items())),
                    "lambda_s": wall,
                    "cpu_ms": 1000 * (cpu - sim.moto_cpu),
                    "peak_mb": peak,
                    "did": {k: v for k, v in result["counts"].items() if v},
                }
            )
            print_idle(rows[-1])
    return rows


def copy_everything():
    """A completed copy in DEST of every primary, as the copier would have made it; returns
    one primary's id."""
    dest_volume.cache_clear()  # of an earlier mock_aws
    backend = ec2_backends[DEFAULT_ACCOUNT_ID][REGION]
    dest = ec2_backends[DEFAULT_ACCOUNT_ID][DEST]
    for snap in list(backend.snapshots.values()):
        copy = dest.create_snapshot(dest_volume(dest).id, snap.description)
        tags = {"Type": "Automated", "DeleteOn": "2099-01-01", "Source_SnapshotId": snap.id}
        dest.create_tags([copy.id], tags | {"Source_Region": REGION})
    return snap.id


def print_idle(r):
    calls = ", ".join(f"{op} {n}" for op, n in r["calls"].items())
    print(
        f"{r['job']:<8} {r['run']:<42} {r['lambda_s']:>6.1f} s  CPU {r['cpu_ms']:>7.0f} ms  "
        f"peak {r['peak_mb']:>5.1f} MB  {sum(r['calls'].values())} calls: {calls}"
    )
    sys.stdout.flush()


def bench_copies(args):
    """A day of copies (scripts/copysim.py): today's half-hourly sweeps against sweeps
    every 15 minutes that stay while copies wait; its own table, and its JSON."""
    import copysim

    out = Path(args.json).with_name("copysim.json")
    copysim.main(["--primaries", str(args.copies), "--json", str(out)])
    return json.loads(out.read_text())


def per_volume_snapshots():
    """{"none": volumes without a snapshot, "twice": volumes with more than one}."""
    backend = ec2_backends[DEFAULT_ACCOUNT_ID][REGION]
    taken = Counter(s.volume.id for s in backend.snapshots.values())
    volumes = set(backend.volumes)
    return {"none": len(volumes - set(taken)), "twice": sum(1 for n in taken.values() if n > 1)}


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
    parser.add_argument(
        "--sections",
        default="table,memory",
        help=f"which to run, of {','.join(SECTIONS)}",
    )
    parser.add_argument(
        "--memory", type=int, default=20000, help="memory: snapshots for the manager's run"
    )
    parser.add_argument("--sizes", default="100,600,2000", help="table: fleet sizes, in volumes")
    parser.add_argument("--scale", type=float, default=1, help="table: the clock's factor")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per EC2 call")
    parser.add_argument("--jobs", default="creator,copier,manager", help="table: which jobs")
    parser.add_argument("--day-volumes", type=int, default=10000, help="day: volumes")
    parser.add_argument("--scales", default="10,20", help="day: clock factors to compare")
    parser.add_argument("--memory-volumes", type=int, default=10000, help="memory: volumes x 10")
    parser.add_argument("--idle-volumes", type=int, default=10000, help="idle: volumes")
    parser.add_argument("--copies", type=int, default=2000, help="copies: primaries a day")
    parser.add_argument(
        "--strategy",
        choices=["pacer", "adaptive", "none"],
        default="pacer",
        help="table: the jobs' own pacer (default); botocore's adaptive retry mode instead; "
        "or neither (standard retries only). Use --scale 1 with adaptive: its clock is real",
    )
    parser.add_argument("--out", default=str(ROOT / "build" / "bench.txt"), help="the tables")
    parser.add_argument("--json", default=str(ROOT / "build" / "bench.json"), help="the numbers")
    args = parser.parse_args(argv)
    args.scales = [float(f) for f in args.scales.split(",") if f]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as saved, contextlib.redirect_stdout(Tee(sys.stdout, saved)):
        results = run_benchmarks(args)
    Path(args.json).write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(f"\nsaved to {out} and {args.json}")
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


SECTIONS = ("table", "memory", "day", "memory100k", "idle", "copies")


def run_benchmarks(args):
    """Each section asked for, printed as it ends; returns their numbers, for the JSON."""
    sections = args.sections.split(",")
    if args.strategy != "pacer":
        for job in (creator, copier, manager):
            job.BUCKETS = {}
            if args.strategy == "adaptive":
                job.RETRIES = {"mode": "adaptive", "total_max_attempts": 10}
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; latency {args.latency * 1000:.0f} ms a call; "
        f"{creator.WORKERS} workers; strategy: {args.strategy}"
    )
    print(machine)
    results = {"machine": machine, "args": vars(args)}
    if "table" in sections:
        rows, jobs = [], args.jobs.split(",")
        print(f"\nthe jobs on fleets of {args.sizes} volumes (clock x{args.scale:g}):")
        for size in (int(s) for s in args.sizes.split(",") if s):
            rows += bench_size(size, args.latency, jobs, args.scale)
        print_rows(rows)
        results["table"] = rows
    if "day" in sections:
        print(f"\na day of {args.day_volumes} volumes, chained invocations:")
        results["day"] = bench_scale(args)
    if "memory" in sections:
        counts, wall, peak = bench_memory(args.memory)
        print(f"\nmanager over {args.memory} snapshots: {counts}, {wall:.1f} s, peak {peak:.1f} MB")
        results["memory"] = {
            "snapshots": args.memory,
            "counts": counts,
            "wall": wall,
            "peak_mb": peak,
        }
    if "memory100k" in sections:
        print()
        results["memory100k"] = bench_manager_memory(args.memory_volumes)
    if "idle" in sections:
        print(f"\na region of {args.idle_volumes} volumes with nothing to do:")
        results["idle"] = bench_idle(args.idle_volumes, args.latency)
    if "copies" in sections:
        results["copies"] = bench_copies(args)
    return results


if __name__ == "__main__":
    sys.exit(main())
