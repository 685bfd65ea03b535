"""`make bench`: the three jobs at EC2's limits, from 100 volumes to 10,000 a region.

Runs the real job code, unchanged, on moto behind testkit/ec2sim.py (EC2's token buckets,
answering 503 RequestLimitExceeded when one is empty, and a latency a call). Sections
(--sections, all by default):
  table       each job on fleets of 100, 600 and 2,000 volumes: API calls by operation,
              throttled calls, failures, wall time, the floor EC2's bucket allows (the
              burst at once, then the refill), wall/floor, CPU an item, and peak memory
              (tracemalloc, in a separate untimed run);
  day         the creator over 10,000 volumes and the manager over ten snapshots of each
              (100,000, a tenth due), each one scheduled run chained through its hand-offs
              (900 s of Lambda time an invocation), at each factor of --scales:
              invocations, wall/floor, throttled share, exactly one snapshot per volume,
              CPU an item;
  memory100k  the manager's peak memory over those 100,000 snapshots (--memory-volumes:
              volumes, ten snapshots each; several sizes comma-separated), against the
              same listing with nothing due (the coverage check included): its own,
              replayed from answers recorded before tracing, and the whole process's,
              moto in;
  idle        each job's run in a region of 10,000 volumes with nothing to do, and the
              copier's run for one snapshot's completion event: calls, Lambda seconds, CPU,
              memory; then the creator every hour (BACKUP_DAILY_HOUR) over the same
              number of daily volumes: its daily run, a catch-up hour, an idle hour and
              the day's total, against today's once-a-day run;
  copies      a day of copies through AWS's 20 slots (testkit/copysim.py).
Everything is also written as JSON (--json); --markdown prints docs/performance.md's tables
from it.

What counts as time. The jobs run on a virtual clock (ec2sim.VirtualClock): their
time.monotonic, time.time and time.sleep, botocore's retry back-off, the Lambda context's
remaining time, and EC2's buckets all read it, and the jobs' threads take turns under it.
It moves by what a Lambda running the jobs would spend: the jobs' sleeps (their pacer's
waits, botocore's back-off), the latency of each AWS call (--latency, 50 ms: AWS's side of
the call), and the CPU of the jobs' own code (each thread's CPU time, botocore building
requests and parsing answers included, at one core). Not counted: moto's CPU, which stands
in for AWS's servers and whose time the latency already models, and anything else this
machine does, so the numbers do not depend on its load. The jobs' constants, EC2's refill
and the CPU can be scaled by a factor (--scales, --scale): on the virtual clock this changes
nothing but rounding, which the day section shows by running at two factors.
--clock real times the table with this machine's clock instead (botocore's adaptive mode,
--strategy adaptive, keeps real time and needs it); it counts moto's CPU and the machine's
load as time too, so its ratios are higher on a busy machine.
"""

import argparse
import contextlib
import functools
import gc
import hashlib
import importlib.metadata
import json
import os
import platform
import sys
import threading
import time
import tracemalloc
import types
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest.mock import patch

ROOT = Path(__file__).resolve().parent.parent
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
import botocore.endpoint  # noqa: E402
from moto import mock_aws  # noqa: E402
from moto.core import DEFAULT_ACCOUNT_ID  # noqa: E402
from moto.ec2.models import ec2_backends  # noqa: E402

import ebs_snapshot_copier as copier  # noqa: E402
import ebs_snapshot_creator as creator  # noqa: E402
import ebs_snapshot_manager as manager  # noqa: E402
from testkit import ec2sim  # noqa: E402
from testkit.copysim import fresh_regions  # noqa: E402
from testkit.ec2sim import Pool, Semaphore, VirtualClock, simulated_ec2  # noqa: E402
from testkit.moto_gaps import install as fill_moto_gaps  # noqa: E402

fill_moto_gaps()  # moto's missing EC2 filters, as EC2 documents them

REGION, DEST = "us-east-1", "us-west-2"
NOW = datetime(2026, 11, 26, 2, tzinfo=UTC)
# What EC2 lets through at once, then per second, for each job's mutating call. The
# copier's real bound is AWS's 20 copies in flight per destination: one run starts at most
# 20 and defers the rest to the next (moto would complete copies at once; AWS does not).
FLOOR = {"creator": (100, 5), "copier": (50, 5), "manager": (100, 5)}


@contextlib.contextmanager
def fresh_aws():
    """moto, with both regions empty (a mock_aws inside another, as in the tests, would
    start from the outer one's data)."""
    with mock_aws(), fresh_regions(REGION, DEST):
        yield


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


def measure(job, run, volumes, latency, scale, clock="virtual"):
    """Run one job under the simulated EC2 and time it; returns a row of the table (wall
    in unscaled seconds)."""
    with timed(clock, latency, scale, NOW.timestamp()) as timer:
        try:
            summary, failures = run(), 0
        except job.JobFailed as exc:
            summary, failures = exc.summary, len(exc.summary["failures"])
        wall = timer.wall()
    sim = timer.sim
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
        "cpu_ms_per_item": 1000 * timer.cpu() / max(done, 1),
    }


@contextlib.contextmanager
def timed(clock, latency, scale=1, epoch=0.0):
    """EC2 simulated (``latency`` a call) and the jobs timed on a ``clock`` ("virtual": a
    VirtualClock, see the module's docstring; "real": this machine's) `scale` times faster.
    Yields .sim (the SimulatedEC2), .wall() (unscaled seconds since entry) and .cpu() (the
    jobs' CPU seconds, moto's excluded)."""
    if clock == "virtual":
        vclock = VirtualClock(epoch=epoch, cpu_scale=scale)
        with (
            scaled(scale),
            simulated_ec2(latency / scale, scale=scale, clock=vclock) as sim,
            virtual(vclock, scale),
        ):
            yield types.SimpleNamespace(
                sim=sim,
                clock=vclock,
                wall=lambda: vclock.monotonic() * scale,
                cpu=lambda: vclock.cpu,
            )
        return
    with scaled(scale), simulated_ec2(latency / scale, scale=scale) as sim:
        start, cpu = time.monotonic(), time.process_time()
        yield types.SimpleNamespace(
            sim=sim,
            clock=None,
            wall=lambda: (time.monotonic() - start) * scale,
            cpu=lambda: time.process_time() - cpu - sim.moto_cpu,
        )


def peak_memory(run):
    """Peak Python memory of one run (tracemalloc). Done apart from the timed run, since
    tracemalloc slows moto down, and without latency, limits or pacing, which memory does
    not depend on."""
    return traced(run)[0]


def traced(run):
    """(peak MB, summary) of one run under tracemalloc, as peak_memory."""
    tracemalloc.start()
    summary = None
    with unpaced(), simulated_ec2(latency=0, limits=False):
        try:
            summary = run()
        except (creator.JobFailed, copier.JobFailed, manager.JobFailed) as exc:
            summary = exc.summary
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20, summary


@contextlib.contextmanager
def unpaced():
    saved = [job.BUCKETS for job in (creator, copier, manager)]
    for job in (creator, copier, manager):
        job.BUCKETS = {}
    try:
        yield
    finally:
        creator.BUCKETS, copier.BUCKETS, manager.BUCKETS = saved


def bench_size(volumes, latency, jobs, scale=1, clock="virtual"):
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
        with fresh_aws():
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
                        rows.append(measure(job, run, volumes, latency, scale, clock))
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


@contextlib.contextmanager
def virtual(clock, scale=1):
    """The three jobs, and botocore's retry back-off (`scale` times shorter), on ``clock``
    (a VirtualClock): their time module's monotonic, time and sleep, and their threads
    (in_parallel's semaphore and pool) taking turns under it. The job code is unchanged."""
    now = types.SimpleNamespace(monotonic=clock.monotonic, time=clock.time, sleep=clock.sleep)
    threads = types.SimpleNamespace(
        Lock=threading.Lock, Semaphore=functools.partial(Semaphore, clock)
    )
    with contextlib.ExitStack() as stack:
        for job in (creator, copier, manager):
            stack.enter_context(patch.object(job, "time", now))
            stack.enter_context(patch.object(job, "threading", threads))
            stack.enter_context(
                patch.object(job, "ThreadPoolExecutor", functools.partial(Pool, clock))
            )
        retry_sleep = types.SimpleNamespace(sleep=lambda seconds: clock.sleep(seconds / scale))
        stack.enter_context(patch.object(botocore.endpoint, "time", retry_sleep))
        clock.discard()  # the time counts from here
        yield clock
    if clock.errors:
        raise clock.errors[0]


class Lambda:
    """One function's invocations, as Lambda runs them: each with `timeout` seconds of
    `clock`'s time, and each asynchronous self-invocation (a hand-off) run when the one
    before has ended (Lambda's delivery of the event and the new invocation's start are not
    counted: well under a second each, against the 900 s of an invocation)."""

    def __init__(self, job, timeout, clock):
        self.job, self.timeout, self.clock = job, timeout, clock
        self.queue, self.results = [], []

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
        clock = self.clock
        deadline = clock.monotonic() + self.timeout
        context = types.SimpleNamespace(
            get_remaining_time_in_millis=lambda: int((deadline - clock.monotonic()) * 1000),
            invoked_function_arn=f"arn:aws:lambda:{REGION}:123456789012:function:{self.job.JOB}",
            aws_request_id=f"bench-{len(self.results)}",
        )
        started = clock.monotonic()
        try:
            summary = self.job.run(event, context, now=now)
        except self.job.JobFailed as exc:
            summary = exc.summary
        summary["lambda_s"] = clock.monotonic() - started
        return summary


# Lambda gives a function CPU in proportion to its memory, one vCPU at 1,769 MB
# (https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html); the template's
# functions have 512 MB.
LAMBDA_CPU = round(512 / 1769, 2)
SCHEDULED = {"version": "0", "detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}


def bench_day(
    job, volumes, scale, latency, now, prepare, cpu_share=1.0, timeout=900, invisible_s=0.0
):
    """One scheduled run of `job` over a region of `volumes` volumes, chained through its
    hand-offs (each invocation `timeout` s of Lambda time), on a virtual clock (see the
    module's docstring) with EC2's refill, the pacer, the margins, Lambda's time and the
    CPU all `scale` times faster, the CPU counted at `cpu_share` of a core of this machine;
    a new snapshot listed only `invisible_s` after it was made (EC2's eventual consistency);
    wall and floor are in unscaled seconds."""
    with fresh_aws():
        prepare(volumes)
        event = {**SCHEDULED, "id": f"bench-{job.JOB}", "time": now.strftime("%Y-%m-%dT%H:%M:%SZ")}
        real = time.monotonic()
        clock = VirtualClock(epoch=now.timestamp(), cpu_scale=scale * cpu_share)
        lam = Lambda(job, timeout / scale, clock)
        with (
            scaled(scale),
            simulated_ec2(
                latency / scale, scale=scale, clock=clock, invisible_s=invisible_s / scale
            ) as sim,
            moto_clock(now),
            virtual(clock, scale),
        ):
            results = lam.run(event, now)
            wall = clock.monotonic() * scale
        real = time.monotonic() - real
        done = sum(r["counts"].get(k, 0) for r in results for k in ("created", "deleted"))
        check = per_volume_snapshots() if job is creator else None
    calls = sum(sim.calls.values())
    floor = max(0.0, (done - 100) / 5)  # EC2's bucket: 100 at once, then 5 a second
    return {
        "job": job.JOB,
        "volumes": volumes,
        "scale": scale,
        "cpu_share": cpu_share,
        "invocations": len(results),
        "invocation_s": [round(r["lambda_s"] * scale, 1) for r in results],
        "done_each": [sum(r["counts"].get(k, 0) for k in ("created", "deleted")) for r in results],
        "done": done,
        "failures": sum(len(r["failures"]) for r in results),
        "calls": dict(sorted(sim.calls.items())),
        "throttled": sum(sim.throttled.values()),
        "throttled_share": sum(sim.throttled.values()) / calls if calls else 0.0,
        "wall": wall,
        "floor": floor,
        "ratio": wall / floor if floor else None,
        "cpu_ms_per_item": 1000 * clock.cpu / max(done, 1),
        "moto_cpu_s": sim.moto_cpu,
        "real_s": real,
        "per_volume": check,
        "counts": merged_counts(results),
    }


def merged_counts(results):
    total = Counter()
    for r in results:
        total.update(r["counts"])
    return dict(total)


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
    each (a tenth due), each at every factor of `args.scales` with the CPU at one core of
    this machine; then, with `args.lambda_cpu`, at factor 1 with the CPU counted at that
    share of a core (a Lambda's share at its memory size)."""
    runs = [(scale, 1.0) for scale in args.scales]
    runs += [(1.0, args.lambda_cpu)] if args.lambda_cpu else []
    rows = []
    for scale, share in runs:
        rows.append(
            bench_day(
                creator, args.day_volumes, scale, args.latency, DAY_AT_SCALE, build_fleet, share
            )
        )
        print_day(rows[-1])
        with drills_off():
            later = DAY_AT_SCALE + timedelta(hours=1)
            rows.append(
                bench_day(
                    manager,
                    args.day_volumes,
                    scale,
                    args.latency,
                    later,
                    region_of_snapshots,
                    share,
                )
            )
        print_day(rows[-1])
    return rows


def bench_manager_memory(sizes):
    """The manager's peak memory over ten snapshots of each of `volumes` volumes (for each
    of `sizes`), a tenth due; and over the same listing with nothing due. Each run without
    a Lambda context (no time limit), so it pages through every snapshot and ends with the
    coverage check; restore drills off. Measured twice over the same region:

    own: the manager alone. A first run against moto (through simulated_ec2, so answers
    page 1,000 items as EC2's do), untraced, records every read's answer as bytes
    (ec2sim.recorded) and answers its writes (DeleteSnapshot) canned, so moto's region is
    left as it was. Then tracemalloc starts, and a second run is answered from those bytes
    (ec2sim.replayed): moto and the simulator never run while it is traced, and the
    recorded bytes were allocated before tracing began, which tracemalloc does not count.
    What it counts is the manager's own state, botocore reading and parsing one page at a
    time, and its threads: what the manager allocates on Lambda. The two runs must judge
    alike (the same counts) and the second must ask only what the first did, or this
    raises. botocore's session and models are loaded already, as in a warm Lambda;
    ``models_mb`` is what a cold start adds (an EC2 client in a new session, traced).
    Also kept: the most memory held between two answers (``held_mb``, tracemalloc's
    current at each call) and, at that moment, where it is, by file (``held_by_file``).

    total: the whole process, as before: the run against moto, traced, moto building each
    answer, the simulator paging it and the deletes done in moto all counted (moto's
    stored snapshots are made before tracing starts). No pacing: memory, not rate.

    Returns (the JSON's memory100k): models_mb, and sizes: for each size volumes,
    snapshots, due, own_added_mb and total_added_mb (what the deletes add to the peak),
    and with_deletes and listing_only, each: own_peak_mb, held_mb, held_by_file ({file:
    MB}), total_peak_mb, counts (the summary's, non-zero), failures, calls (by operation),
    answers_mb (the recorded answers' bodies) and total_s (the whole-process run's real
    seconds)."""
    now = DAY_AT_SCALE + timedelta(hours=1)
    found = {"models_mb": cold_client_mb(), "sizes": []}
    for volumes in sizes:
        row = {"volumes": volumes, "snapshots": volumes * 10, "due": volumes}
        for due in (True, False):
            with fresh_aws(), drills_off():
                region_of_snapshots(volumes, due=due)
                with moto_clock(now):
                    run = manager_alone(now)
                    start = time.monotonic()
                    total, summary = traced_whole(lambda: manager.run({}, None, now=now))
                    run["total_peak_mb"], run["total_s"] = total, time.monotonic() - start
            if {k: v for k, v in summary["counts"].items() if v} != run["counts"]:
                raise RuntimeError(f"against moto {summary['counts']}, replayed {run['counts']}")
            row["with_deletes" if due else "listing_only"] = run
            print(
                f"manager memory, {volumes * 10} snapshots, {'a tenth' if due else 'none'} due: "
                f"own peak {run['own_peak_mb']:.1f} MB (held between answers at most "
                f"{run['held_mb']:.1f} MB), the whole process with moto {total:.1f} MB; "
                f"{run['counts']}, {run['failures']} failures; calls {run['calls']}"
            )
        for what in ("own_peak_mb", "total_peak_mb"):
            row[what.replace("peak", "added")] = (
                row["with_deletes"][what] - row["listing_only"][what]
            )
        found["sizes"].append(row)
    print(f"a cold start's EC2 client (session and models) adds {found['models_mb']:.1f} MB")
    return found


def manager_alone(now):
    """One manager run, recorded against moto untraced, then replayed traced (see
    bench_manager_memory): its peak, what it held between answers, its counts and calls."""
    recording = ec2sim.Recording()
    clock = VirtualClock()
    simulated = simulated_ec2(latency=0, limits=False, clock=clock)
    with unpaced(), simulated, virtual(clock), ec2sim.recorded(recording):
        recorded = settled(lambda: manager.run({}, None, now=now))
    held = HeldBetweenAnswers()
    gc.collect()
    with unpaced(), ec2sim.replayed(recording, held.look):
        tracemalloc.start()
        try:
            summary = settled(lambda: manager.run({}, None, now=now))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    if recording.missed or summary["counts"] != recorded["counts"]:
        raise RuntimeError(
            f"the replay asked unrecorded {dict(recording.missed)}, or judged otherwise: "
            f"{summary['counts']} replayed, {recorded['counts']} recorded"
        )
    return {
        "own_peak_mb": peak / 2**20,
        "held_mb": held.most / 2**20,
        "held_by_file": held.by_file(),
        "counts": {k: v for k, v in summary["counts"].items() if v},
        "failures": len(summary["failures"]),
        "calls": dict(recording.reads + recording.writes),
        "answers_mb": recording.size() / 2**20,
    }


def settled(run):
    try:
        return run()
    except manager.JobFailed as exc:
        return exc.summary


class HeldBetweenAnswers:
    """At each call the traced job makes: the most memory held then, and a tracemalloc
    snapshot of it each time it has grown by a tenth (a snapshot costs a pass over every
    traced block)."""

    def __init__(self):
        self.most, self.snapshot, self.lock = 0, None, threading.Lock()

    def look(self):
        with self.lock:
            current = tracemalloc.get_traced_memory()[0]
            if current > self.most * 1.1:
                self.snapshot = tracemalloc.take_snapshot()
            self.most = max(self.most, current)

    def by_file(self, top=6):
        """{file (under site-packages or the repository): MB} of the largest holders."""
        if self.snapshot is None:
            return {}
        stats = self.snapshot.statistics("filename")[:top]
        return {short_path(s.traceback[0].filename): s.size / 2**20 for s in stats}


def short_path(filename):
    for marker in ("site-packages/", str(ROOT) + "/", "lib/python"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def cold_client_mb():
    """What a cold start adds: an EC2 client from a new session (its models loaded and
    kept), traced; the memory it holds once made."""
    gc.collect()
    tracemalloc.start()
    try:
        client = boto3.session.Session().client("ec2", region_name=REGION)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del client
    return held / 2**20


def traced_whole(run):
    """(peak MB of the whole process, summary) of one run against moto, on a virtual clock
    without latency, limits or pacing."""
    clock = VirtualClock()
    with unpaced(), simulated_ec2(latency=0, limits=False, clock=clock), virtual(clock):
        gc.collect()
        tracemalloc.start()
        try:
            summary = settled(run)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    return peak / 2**20, summary


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
        f"{r['job']:<8} {r['volumes']:>6} volumes, scale {r['scale']:g}, CPU at "
        f"{r['cpu_share']:g} core: {r['done']} done in "
        f"{r['invocations']} invocations, {r['wall']:.0f} s (floor {r['floor']:.0f} s, "
        f"wall/floor {r['ratio']:.3f}), throttled {r['throttled']} of "
        f"{sum(r['calls'].values())} calls ({100 * r['throttled_share']:.2f}%), "
        f"{r['failures']} failures, CPU {r['cpu_ms_per_item']:.2f} ms an item{once}; "
        f"invocations {r['invocation_s']} s doing {r['done_each']}; {r['real_s']:.0f} s real"
    )
    sys.stdout.flush()


# ---- a region with nothing to do: what each run costs ----


def bench_idle(volumes, latency):
    """Each job's run over a region of `volumes` volumes where everything is done: every
    volume snapshotted for today's event and copied, nothing due. Its calls, Lambda
    seconds (on the virtual clock: `latency` a call, and the job's CPU, moto's excluded),
    CPU and peak memory."""
    now = NOW + timedelta(hours=4)
    event = {**SCHEDULED, "id": "idle-day", "time": NOW.strftime("%Y-%m-%dT%H:%M:%SZ")}
    rows = []
    with fresh_aws(), drills_off():
        build_fleet(volumes)
        with unpaced(), moto_clock(NOW), contextlib.suppress(creator.JobFailed):
            creator.run(event, None, now=NOW)
        primary = copy_everything()
        notified = {
            "detail-type": copier.NOTIFICATION,
            "source": "aws.ec2",
            "detail": {"event": "createSnapshot", "result": "succeeded", "snapshot_id": primary},
        }
        midnight = NOW.replace(hour=0).strftime("%Y-%m-%dT%H:%M:%SZ")
        runs = [
            ("creator", "the day's event again: every volume done", creator, event),
            ("copier", "a scheduled sweep: nothing pending", copier, {**event, "id": "idle-sweep"}),
            ("copier", "the 00:00 sweep: every primary read", copier, {**event, "time": midnight}),
            ("copier", "one snapshot's completion event", copier, notified),
            ("manager", "nothing due, coverage checked", manager, {**event, "id": "idle-m"}),
        ]
        for name, what, job, ev in runs:
            with timed("virtual", latency, epoch=now.timestamp()) as timer, moto_clock(now):
                result = job.run(ev, None, now=now)
                wall, cpu, sim = timer.wall(), timer.cpu(), timer.sim
            with moto_clock(now):
                peak = peak_memory(lambda job=job, ev=ev: job.run(ev, None, now=now))
            rows.append(
                {
                    "job": name,
                    "run": what,
                    "volumes": volumes,
                    "calls": dict(sorted(sim.calls.items())),
                    "lambda_s": wall,
                    "cpu_ms": 1000 * cpu,
                    "peak_mb": peak,
                    "did": {k: v for k, v in result["counts"].items() if v},
                }
            )
            print_idle(rows[-1])
    return rows


# ---- the creator every hour: what a day of scheduled runs costs ----


def bench_hourly(volumes, latency):
    """The creator scheduled every hour (BACKUP_DAILY_HOUR) over a region of `volumes`
    volumes, all daily (no Backup_Every), against today's once-a-day run (no
    BACKUP_DAILY_HOUR): each daily run chained through its hand-offs (900 s of Lambda time
    an invocation), then the hour after the daily's (a catch-up: every slot found done) and
    an hour with nothing due, and the day's total: the daily run, CATCH_UP_HOURS catch-up
    runs and the other hours idle. Calls, Lambda seconds (virtual clock) and CPU."""
    daily = NOW.hour
    rows = []
    with fresh_aws():
        build_fleet(volumes)
        once = "once a day (no BACKUP_DAILY_HOUR): every volume"
        rows.append(chained_run(once, volumes, latency, NOW) | {"hourly": "once"})
    with fresh_aws(), patch.dict(os.environ, {creator.DAILY_HOUR_ENV: str(daily)}):
        build_fleet(volumes)
        what = f"hourly, {NOW:%H}:00 (the daily hour): every volume"
        rows.append(chained_run(what, volumes, latency, NOW) | {"hourly": "daily"})
        runs = [
            (1, "catch_up", f"hourly, {NOW.hour + 1:02}:00: catch-up, every slot done"),
            (5, "idle", f"hourly, {NOW.hour + 5:02}:00: nothing due"),
        ]
        for hours, kind, what in runs:
            at = NOW + timedelta(hours=hours)
            event = {**SCHEDULED, "id": f"hourly-{hours}", "time": f"{at:%Y-%m-%dT%H:%M:%SZ}"}
            with timed("virtual", latency, epoch=at.timestamp()) as timer, moto_clock(at):
                result = creator.run(event, None, now=at)
                wall, cpu, sim = timer.wall(), timer.cpu(), timer.sim
            with moto_clock(at):
                peak = peak_memory(lambda event=event, at=at: creator.run(event, None, now=at))
            row = idle_row("creator", what, volumes, sim.calls, wall, cpu, peak, result)
            rows.append(row | {"hourly": kind})
            print_idle(rows[-1])
    catch_up = creator.CATCH_UP_HOURS
    rows.append(day_total(rows[1], rows[2], rows[3], catch_up, 24 - 1 - catch_up))
    print_idle(rows[-1])
    return rows


def chained_run(what, volumes, latency, now):
    """One scheduled creator run at `now` in the region as it is, chained through its
    hand-offs on a virtual clock: a row of the idle table (its peak memory not measured:
    a second run would find the work done)."""
    event = {**SCHEDULED, "id": f"daily-{len(what)}", "time": f"{now:%Y-%m-%dT%H:%M:%SZ}"}
    clock = VirtualClock(epoch=now.timestamp())
    lam = Lambda(creator, 900, clock)
    with (
        simulated_ec2(latency, clock=clock) as sim,
        moto_clock(now),
        virtual(clock),
    ):
        results = lam.run(event, now)
    lambda_s = sum(r["lambda_s"] for r in results)
    row = idle_row("creator", what, volumes, sim.calls, lambda_s, clock.cpu, None)
    row |= {"did": merged_counts(results), "invocations": len(results)}
    row["failures"] = sum(len(r["failures"]) for r in results)
    print_idle(row)
    return row


def idle_row(job, what, volumes, calls, lambda_s, cpu_s, peak, result=None):
    return {
        "job": job,
        "run": what,
        "volumes": volumes,
        "calls": dict(sorted(calls.items())),
        "lambda_s": lambda_s,
        "cpu_ms": 1000 * cpu_s,
        "peak_mb": peak,
        "did": {k: v for k, v in result["counts"].items() if v} if result else {},
    }


def day_total(daily, catch_up, idle, catch_ups, idles):
    """The day's total of the hourly schedule: one daily run, `catch_ups` catch-up runs and
    `idles` idle ones (computed from their rows, not run)."""
    calls = Counter(daily["calls"])
    for row, times in ((catch_up, catch_ups), (idle, idles)):
        for op, n in row["calls"].items():
            calls[op] += n * times
    runs = f"1 daily + {catch_ups} catch-up + {idles} idle"
    return {
        "job": "creator",
        "run": f"hourly, the day's total: {runs} runs",
        "volumes": daily["volumes"],
        "calls": dict(sorted(calls.items())),
        "lambda_s": daily["lambda_s"] + catch_ups * catch_up["lambda_s"] + idles * idle["lambda_s"],
        "cpu_ms": daily["cpu_ms"] + catch_ups * catch_up["cpu_ms"] + idles * idle["cpu_ms"],
        "peak_mb": None,
        "did": {},
        "hourly": "day",
    }


def copy_everything():
    """A completed copy in DEST of every primary, and the primary tagged Copy_State=done, as
    the copier would have left them; returns one primary's id."""
    dest_volume.cache_clear()  # of an earlier mock_aws
    backend = ec2_backends[DEFAULT_ACCOUNT_ID][REGION]
    dest = ec2_backends[DEFAULT_ACCOUNT_ID][DEST]
    for snap in list(backend.snapshots.values()):
        copy = dest.create_snapshot(dest_volume(dest).id, snap.description)
        tags = {"Type": "Automated", "DeleteOn": "2099-01-01", "Source_SnapshotId": snap.id}
        dest.create_tags([copy.id], tags | {"Source_Region": REGION})
        backend.create_tags([snap.id], {copier.TAG_COPY_STATE: copier.COPY_DONE})
    return snap.id


def print_idle(r):
    calls = ", ".join(f"{op} {n}" for op, n in r["calls"].items())
    peak = f"{r['peak_mb']:>5.1f}" if r["peak_mb"] is not None else "    -"
    print(
        f"{r['job']:<8} {r['run']:<42} {r['lambda_s']:>6.1f} s  CPU {r['cpu_ms']:>7.0f} ms  "
        f"peak {peak} MB  {sum(r['calls'].values())} calls: {calls}"
    )
    sys.stdout.flush()


def bench_copies(args):
    """A day of copies (testkit/copysim.py): today's half-hourly sweeps against sweeps
    every 15 minutes that stay while copies wait; its own table, and its JSON."""
    from testkit import copysim

    out = Path(args.json).with_name("copysim.json")
    copysim.main(["--primaries", str(args.copies), "--json", str(out)])
    found = json.loads(out.read_text())
    for scenario in found.values():
        scenario.pop("timeline", None)  # every primary's times: in copysim.json only
    return found


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


# ---- docs/performance.md's tables, from the JSON ----


def markdown(saved):
    """docs/performance.md's measured tables from bench.json files' numbers (``--markdown``): each
    section from the last file that has it."""
    results, sizes = {}, {}
    for found in saved:
        results |= {name: found[name] for name in SECTIONS if name in found}
        if isinstance(found.get("memory100k"), dict) and "sizes" in found["memory100k"]:
            sizes |= {row["volumes"]: row for row in found["memory100k"]["sizes"]}
    if sizes:  # the memory section's sizes from every file (a size measured again: the last)
        merged = [sizes[v] for v in sorted(sizes)]
        results["memory100k"] = {**results["memory100k"], "sizes": merged}
    parts = [machine_line(found) for found in saved]
    for name, render in (
        ("table", md_table),
        ("day", md_day),
        ("memory100k", md_memory),
        ("idle", md_idle),
        ("copies", md_copies),
    ):
        if name in results:
            parts.append(render(results[name]))
    return "\n\n".join(parts)


def machine_line(results):
    m, a = results["machine"], results["args"]
    line = (
        f"Sections {a['sections']}: measured {m['date']} on {m['cpu']}, {m['nproc']} cores "
        f"(`nproc`), Python {m['python']}, moto {m['moto']}, boto3 {m['boto3']}, "
        f"{a['latency'] * 1000:.0f} ms an EC2 call; job files "
        + ", ".join(f"{job} {digest}" for job, digest in m["jobs_sha256"].items())
        + " (sha256)"
    )
    for again in results.get("updated", []):
        line += f"; {again['args']['sections']} again {again['machine']['date']} (--update)"
    return line + "."


def md_rows(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def ratio_text(ratio):
    return f"{ratio:.3f}" if ratio else "-"


def md_table(rows):
    header = ["job", "volumes", "done", "deferred", "throttled calls", "failures", "wall s"]
    header += ["floor s", "wall/floor", "CPU ms an item", "peak MB"]
    return md_rows(header, [md_table_row(r) for r in rows])


def md_table_row(r):
    return [
        r["job"],
        r["volumes"],
        r["done"],
        r["deferred"],
        r["throttled"],
        r["failures"],
        f"{r['wall']:.1f}",
        f"{r['floor']:.0f}",
        ratio_text(r["ratio"]),
        f"{r.get('cpu_ms_per_item', 0):.2f}",
        f"{r['peak_mb']:.1f}",
    ]


def md_day(rows):
    header = ["job", "volumes", "factor", "CPU (cores)", "invocations (Lambda s each)", "done"]
    header += ["throttled / calls", "failures", "wall s", "floor s", "wall/floor"]
    header += ["volumes with no snapshot / two", "CPU ms an item"]
    table = md_rows(header, [md_day_row(r) for r in rows])
    notes = []
    for job in dict.fromkeys(r["job"] for r in rows):
        ratios = [
            r["ratio"] for r in rows if r["job"] == job and r["cpu_share"] == 1 and r["ratio"]
        ]
        if len(ratios) > 1:
            spread = (max(ratios) - min(ratios)) / min(ratios)
            notes.append(f"{job} {min(ratios):.3f} to {max(ratios):.3f}, {spread:.2%} apart")
    return table + ("\n\nwall/floor across the factors: " + "; ".join(notes) if notes else "")


def md_day_row(r):
    each = ", ".join(f"{s:.0f}" for s in r["invocation_s"])
    check = r["per_volume"]
    return [
        r["job"],
        f"{r['volumes']:,}",
        f"{r['scale']:g}",
        f"{r['cpu_share']:g}",
        f"{r['invocations']} ({each})",
        f"{r['done']:,}",
        f"{r['throttled']} / {sum(r['calls'].values()):,}",
        r["failures"],
        f"{r['wall']:.0f}",
        f"{r['floor']:.0f}",
        ratio_text(r["ratio"]),
        f"{check['none']} / {check['twice']}" if check else "-",
        f"{r['cpu_ms_per_item']:.2f}",
    ]


def md_memory(found):
    rows = []
    for size in found["sizes"]:
        for key, what in (("with_deletes", "a tenth due"), ("listing_only", "none due")):
            run = size[key]
            rows.append(
                [
                    f"{size['snapshots']:,}",
                    what,
                    f"{run['counts'].get('deleted', 0):,}",
                    f"{run['counts'].get('protected', 0):,}",
                    run["failures"],
                    ", ".join(f"`{op}` {n:,}" for op, n in sorted(run["calls"].items())),
                    f"{run['own_peak_mb']:.1f}",
                    f"{run['held_mb']:.1f}",
                    f"{run['total_peak_mb']:.1f}",
                ]
            )
    header = ["snapshots", "manager run", "deleted", "volumes protected", "failures", "calls"]
    header += ["the manager's own peak MB", "held between answers MB"]
    header += ["the whole process MB (moto in)"]
    notes = [
        "What judging and deleting add to the same listing, the manager's own peak: "
        + ", ".join(f"{s['own_added_mb']:+.1f} MB at {s['snapshots']:,}" for s in found["sizes"])
        + "."
    ]
    small, large = found["sizes"][0], found["sizes"][-1]
    if large["volumes"] > small["volumes"]:
        grown = large["with_deletes"]["held_mb"] - small["with_deletes"]["held_mb"]
        per = grown * 2**20 / (large["volumes"] - small["volumes"])
        notes.append(
            f"Held between answers, from {small['volumes']:,} to {large['volumes']:,} volumes: "
            f"{grown:+.1f} MB, {per / 1024:.2f} KB a volume."
        )
    notes.append(
        f"Held between answers at {large['snapshots']:,} snapshots (a tenth due), by file: "
        + ", ".join(f"`{f}` {mb:.1f} MB" for f, mb in large["with_deletes"]["held_by_file"].items())
        + "."
    )
    notes.append(
        f"A cold start adds an EC2 client's session and models: {found['models_mb']:.1f} MB."
    )
    return md_rows(header, rows) + "\n\n" + "\n".join(notes)


def md_idle(rows):
    header = ["job", "run", "volumes", "API calls", "Lambda s", "CPU ms", "peak MB"]
    table = md_rows([*header, "calls by operation"], [md_idle_row(r) for r in rows])
    hourly = {r["hourly"]: r for r in rows if "hourly" in r}
    if not {"once", "day"} <= set(hourly):
        return table
    once, day = hourly["once"], hourly["day"]
    calls = [sum(r["calls"].values()) for r in (day, once)]
    return table + (
        f"\n\nThe creator's day every hour against once a day: {calls[0]:,} calls against "
        f"{calls[1]:,} ({calls[0] - calls[1]:+,}), {day['lambda_s']:.1f} Lambda s against "
        f"{once['lambda_s']:.1f} ({day['lambda_s'] / once['lambda_s'] - 1:+.1%})."
    )


def md_idle_row(r):
    return [
        r["job"],
        r["run"],
        f"{r['volumes']:,}",
        sum(r["calls"].values()),
        f"{r['lambda_s']:.1f}",
        f"{r['cpu_ms']:.0f}",
        f"{r['peak_mb']:.1f}" if r["peak_mb"] is not None else "-",
        ", ".join(f"{op} {n}" for op, n in r["calls"].items()),
    ]


def md_copies(found):
    from testkit import copysim

    names = list(found)
    columns = [dict(copysim._rows(found[n])) for n in names]
    labels = [label for label, _ in copysim._rows(found[names[0]]) if label != "wall time (s)"]
    rows = [[label.strip(), *(c[label] for c in columns)] for label in labels]
    settings = found[names[0]]["settings"]
    scenarios = "; ".join(
        f"`{n}`: `{found[n]['settings']['schedule']}`, stay {found[n]['settings']['stay_minutes']}"
        " min"
        for n in names
    )
    return (
        md_rows(["", *names], rows)
        + f"\n\n{settings['primaries']:,} primaries over {settings['window_hours']:g} h, copy time "
        f"lognormal (median {settings['median_min']:g} min, sigma {settings['sigma']:g}), seed "
        f"{settings['seed']}; {scenarios}."
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"which to run, of {','.join(SECTIONS)} (default: all)",
    )
    parser.add_argument("--sizes", default="100,600,2000", help="table: fleet sizes, in volumes")
    parser.add_argument("--scale", type=float, default=1, help="table: the clock's factor")
    parser.add_argument(
        "--clock",
        choices=["virtual", "real"],
        default="virtual",
        help="table: the virtual clock (default), or this machine's (load-dependent)",
    )
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per EC2 call")
    parser.add_argument("--jobs", default="creator,copier,manager", help="table: which jobs")
    parser.add_argument("--day-volumes", type=int, default=10000, help="day: volumes")
    parser.add_argument("--scales", default="1,10", help="day: clock factors to compare")
    parser.add_argument(
        "--lambda-cpu",
        type=float,
        default=LAMBDA_CPU,
        help="day: also a run with the CPU at this share of a core (0: none; default: "
        "template.yaml's 512 MB over the 1,769 MB that have one vCPU)",
    )
    parser.add_argument(
        "--memory-volumes",
        default="10000",
        help="memory100k: volumes, each with 10 snapshots; several sizes comma-separated "
        "(1000,4000,10000: 10,000, 40,000 and 100,000 snapshots)",
    )
    parser.add_argument("--idle-volumes", type=int, default=10000, help="idle: volumes")
    parser.add_argument(
        "--idle-runs",
        choices=["all", "jobs", "hourly"],
        default="all",
        help="idle: each job's idle runs, the creator every hour, or both (default)",
    )
    parser.add_argument("--copies", type=int, default=2000, help="copies: primaries a day")
    parser.add_argument(
        "--strategy",
        choices=["pacer", "adaptive", "none"],
        default="pacer",
        help="table: the jobs' own pacer (default); botocore's adaptive retry mode instead "
        "(with --clock real: its limiter keeps real time); or neither (standard retries only)",
    )
    parser.add_argument("--out", default=str(ROOT / "build" / "bench.txt"), help="the tables")
    parser.add_argument("--json", default=str(ROOT / "build" / "bench.json"), help="the numbers")
    parser.add_argument(
        "--update",
        action="store_true",
        help="keep --json's other sections: replace only those run now",
    )
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="run nothing: print docs/performance.md's tables from --json (or the files named)",
    )
    parser.add_argument(
        "markdown_from",
        nargs="*",
        help="with --markdown: JSON files of `make bench` runs of some sections each",
    )
    args = parser.parse_args(argv)
    if args.markdown:
        files = args.markdown_from or [args.json]
        print(markdown([json.loads(Path(f).read_text()) for f in files]))
        return 0
    if args.strategy == "adaptive" and args.clock == "virtual":
        parser.error("--strategy adaptive needs --clock real (botocore's limiter keeps real time)")
    args.scales = [float(f) for f in args.scales.split(",") if f]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as saved, contextlib.redirect_stdout(Tee(sys.stdout, saved)):
        results = run_benchmarks(args)
    saved_json = Path(args.json)
    if args.update and saved_json.exists():
        earlier = json.loads(saved_json.read_text())
        ran = [name for name in SECTIONS if name in results]
        results = {**earlier, **results, "args": earlier["args"], "machine": earlier["machine"]}
        results.setdefault("updated", []).append({"sections": ran, "args": vars(args)})
        results["updated"][-1]["machine"] = machine()
    saved_json.write_text(json.dumps(results, indent=1, default=str) + "\n")
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


SECTIONS = ("table", "day", "memory100k", "idle", "copies")


def machine():
    """What the numbers were measured on, and when."""
    return {
        "cpu": platform.processor() or platform.machine(),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "moto": importlib.metadata.version("moto"),
        "boto3": importlib.metadata.version("boto3"),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        # the job files measured, so the numbers can be matched to a commit
        "jobs_sha256": {
            job.JOB: hashlib.sha256(Path(job.__file__).read_bytes()).hexdigest()[:12]
            for job in (creator, copier, manager)
        },
    }


def run_benchmarks(args):
    """Each section asked for, printed as it ends; returns their numbers, for the JSON."""
    sections = args.sections.split(",")
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections {sorted(unknown)}: of {','.join(SECTIONS)}")
    if args.strategy != "pacer":
        for job in (creator, copier, manager):
            job.BUCKETS = {}
            if args.strategy == "adaptive":
                job.RETRIES = {"mode": "adaptive", "total_max_attempts": 10}
    host = machine()
    print(
        f"{host['cpu']}, {host['nproc']} cores, Python {host['python']}, moto {host['moto']}, "
        f"{host['date']}; latency {args.latency * 1000:.0f} ms a call; {creator.WORKERS} "
        f"workers; strategy: {args.strategy}; clock: {args.clock}"
    )
    results = {"machine": host, "args": vars(args)}
    if "table" in sections:
        rows, jobs = [], args.jobs.split(",")
        print(f"\nthe jobs on fleets of {args.sizes} volumes ({args.clock} clock x{args.scale:g}):")
        for size in (int(s) for s in args.sizes.split(",") if s):
            rows += bench_size(size, args.latency, jobs, args.scale, args.clock)
        print_rows(rows)
        results["table"] = rows
    if "day" in sections:
        print(f"\na day of {args.day_volumes} volumes, chained invocations (virtual clock):")
        results["day"] = bench_scale(args)
    if "memory100k" in sections:
        print()
        sizes = [int(v) for v in args.memory_volumes.split(",") if v]
        results["memory100k"] = bench_manager_memory(sizes)
    if "idle" in sections:
        results["idle"] = []
        if args.idle_runs in ("all", "jobs"):
            print(f"\na region of {args.idle_volumes} volumes with nothing to do (virtual clock):")
            results["idle"] += bench_idle(args.idle_volumes, args.latency)
        if args.idle_runs in ("all", "hourly"):
            print(f"\nthe creator every hour, {args.idle_volumes} daily volumes (virtual clock):")
            results["idle"] += bench_hourly(args.idle_volumes, args.latency)
    if "copies" in sections:
        print(f"\na day of {args.copies} copies (testkit/copysim.py):")
        results["copies"] = bench_copies(args)
    return results


if __name__ == "__main__":
    sys.exit(main())
