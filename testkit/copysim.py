"""A day of cross-region copies, simulated: the real copier on moto under a virtual clock.

Issue 16. Primaries complete at random over the creator's window; each copy takes a random
(lognormal) time; the copier is triggered as deployed: its schedule (scheduled sweeps, each
staying up to COPY_STAY_MINUTES to fill slots as they free) and one notified run per
completed primary, at most ``concurrency`` invocations at once (template.yaml's reserved
concurrency, 1: the others wait, FIFO, in Lambda's async queue). What is measured: how busy
AWS's 20 copy slots of the destination are while copies wait, how long copies wait, whether
they start oldest primary first, and what the copier costs in Lambda time and EC2 calls.

The copier (``ebs_snapshot_copier.run``) is the real one, unchanged. Around it:
- its ``time`` module is a virtual clock. Each invocation runs in a thread of its own, one
  thread at a time: a sleep of the copier's, or an AWS call (``latency`` virtual seconds
  each), pauses it while the clock moves on to what happens meanwhile (primaries and
  copies completing, sweeps falling due, other invocations starting or going on);
- moto's EBS backend: a copy starts ``pending`` and completes after its sampled duration;
  a 21st copy in flight is refused with ResourceLimitExceeded, as AWS does (and counted);
  moto's clock is the virtual one; DescribeSnapshots and DescribeRegions are answered from
  moto's backend without its HTTP round trip (``fast``; the tests check that the copier
  meets the same answers either way);
- a copier's hand-off (lambda:Invoke on itself) is queued as one more invocation.

Every primary's copy takes the same sampled time in every scenario (common random numbers):
scenarios differ only in how the copier is triggered.

Not modelled: Lambda's start-up and delivery delays, and its retry back-off for throttled
async events (FIFO here); EC2 throttling; other accounts' copies; incremental copies being
faster than full ones.

    python -m testkit.copysim --primaries 2000 --window-hours 2 --median-min 20 \\
        --sigma 0.8 --seed 1 --scenarios today,stay
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import itertools
import json
import math
import os
import random
import re
import statistics
import sys
import threading
import time as real_time
import types
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest.mock import patch

ROOT = Path(__file__).resolve().parent.parent
# Run as a script: never reach a real account. Imported (bench, tests): theirs stand.
for _var, _value in {
    "AWS_ACCESS_KEY_ID": "copysim",
    "AWS_SECRET_ACCESS_KEY": "copysim",
    "AWS_EC2_METADATA_DISABLED": "true",
    "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
}.items():
    os.environ.setdefault(_var, _value)
if __name__ == "__main__":
    for _var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2", "AWS_SESSION_TOKEN"):
        os.environ.pop(_var, None)

import moto.ec2.models.elastic_block_store as moto_ebs  # noqa: E402
from botocore.awsrequest import AWSResponse  # noqa: E402
from botocore.client import ClientCreator  # noqa: E402
from moto import mock_aws  # noqa: E402
from moto.core import DEFAULT_ACCOUNT_ID  # noqa: E402
from moto.core.botocore_stubber import MockRawResponse  # noqa: E402
from moto.ec2.exceptions import EC2ClientError  # noqa: E402
from moto.ec2.models import ec2_backends  # noqa: E402
from moto.ec2.utils import generic_filter  # noqa: E402

import ebs_snapshot_copier as copier  # noqa: E402
from testkit.ec2sim import simulated_ec2  # noqa: E402
from testkit.moto_gaps import install as fill_moto_gaps  # noqa: E402

REGION, DEST = "us-east-1", "us-west-2"
DAY0 = datetime(2026, 11, 26, tzinfo=UTC)  # the simulated day starts at 00:00 UTC
CREATOR_AT = timedelta(hours=2)  # template.yaml's CreatorSchedule, cron(0 2 * * ? *)
SLOTS = copier.COPIES_IN_FLIGHT  # AWS: 20 copies in flight into one destination region
LAMBDA_TIMEOUT_S = 900  # template.yaml, Globals: Timeout
MAX_EVENT_AGE_S = 21600  # template.yaml, the copier's EventInvokeConfig.MaximumEventAgeInSeconds
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{DEFAULT_ACCOUNT_ID}:function:ebs-snapshot-copier"
# AWS Lambda pricing, us-east-1 (https://aws.amazon.com/lambda/pricing/, first pricing tier):
# duration per GB-second by architecture, and $0.20 per million requests.
GB_SECOND_USD = {"x86_64": 0.0000166667, "arm64": 0.0000133334}
REQUEST_USD = 0.20 / 1_000_000
SCENARIOS = {
    # template.yaml's CopierSchedule until now, and no stay: the baseline
    "today": {"schedule": "cron(0/30 6-23 * * ? *)", "stay_minutes": 0},
    # the new default: a sweep every 15 minutes all day, each staying 12 minutes
    "stay": {"schedule": "cron(0/15 * * * ? *)", "stay_minutes": 12},
    # for comparison: the new schedule without the stay
    "quarter": {"schedule": "cron(0/15 * * * ? *)", "stay_minutes": 0},
}


# ---- the virtual clock ------------------------------------------------------------------


class Clock:
    """Virtual time in epoch seconds, and what happens at each time (primaries and copies
    completing, sweeps falling due, a paused invocation going on), in time order."""

    def __init__(self, start):
        self.t = start.timestamp()
        self._events, self._seq = [], itertools.count()

    def at(self, when, action):
        heapq.heappush(self._events, (when, next(self._seq), action))

    def next_event(self):
        return self._events[0][0] if self._events else math.inf

    def advance_to(self, when):
        while self._events and self._events[0][0] <= when:
            self.t, _, action = heapq.heappop(self._events)
            action()
        self.t = max(self.t, when)

    def step(self):
        """Apply the next event (and any others at the same time)."""
        self.advance_to(self.next_event())

    def monotonic(self):  # the copier's time.monotonic and time.time
        return self.t

    def now(self):
        return datetime.fromtimestamp(self.t, UTC)

    def naive(self):  # moto's clock: naive UTC
        return self.now().replace(tzinfo=None)


class Context:
    """Lambda's context for one invocation: its remaining time runs on the virtual clock."""

    def __init__(self, clock, request_id, timeout=LAMBDA_TIMEOUT_S):
        self.clock, self.deadline = clock, clock.t + timeout
        self.aws_request_id, self.invoked_function_arn = request_id, FUNCTION_ARN

    def get_remaining_time_in_millis(self):
        return max(0, int((self.deadline - self.clock.t) * 1000))


# ---- the copier's schedule --------------------------------------------------------------


def cron_field(text, low, high):
    """The values of one cron field: *, n, a-b, a/b, a-b/c, and lists of those."""
    values = set()
    for part in text.split(","):
        span, _, step = part.partition("/")
        if span in ("*", "?"):
            first, last = low, high
        elif "-" in span:
            first, last = (int(n) for n in span.split("-"))
        else:
            first = int(span)
            last = high if step else first
        values.update(range(first, last + 1, int(step or 1)))
    return sorted(v for v in values if low <= v <= high)


def cron_times(expression, start, end):
    """The times an EventBridge cron(min hour dom month dow year) fires in [start, end).
    Only minutes and hours may be restricted: the copier's schedules run every day."""
    match = re.fullmatch(r"cron\((.*)\)", expression.strip())
    fields = (match.group(1) if match else expression).split()
    if len(fields) != 6 or any(f not in ("*", "?") for f in fields[2:]):
        raise ValueError(f"{expression!r}: only minutes and hours may be restricted")
    minutes, hours = cron_field(fields[0], 0, 59), cron_field(fields[1], 0, 23)
    day = start.replace(hour=0, minute=0, second=0, microsecond=0)
    while day < end:
        for hour in hours:
            for minute in minutes:
                when = day.replace(hour=hour, minute=minute)
                if start <= when < end:
                    yield when
        day += timedelta(days=1)


def template_setting(name, default):
    """A plain value from template.yaml's Globals (MemorySize, Architectures)."""
    try:
        text = (ROOT / "template.yaml").read_text()
    except OSError:
        return default
    match = re.search(rf"^\s+{name}:\s*\[?\s*([\w.-]+)", text, re.MULTILINE)
    return match.group(1) if match else default


# ---- the simulation ---------------------------------------------------------------------


class Day:
    """One scenario's run: the world (moto, the clock) and what happened in it."""

    def __init__(self, *, primaries, window_hours, median_min, sigma, seed, **options):
        self.latency, self.fast = options["latency"], options["fast"]
        # 0: no reserved concurrency, no limit here
        self.limit = options["concurrency"] or math.inf
        horizon_days = options["horizon_days"]
        self.clock = Clock(DAY0)
        rng = random.Random(seed)
        window = window_hours * 3600
        first = (DAY0 + CREATOR_AT).timestamp()
        done_at = sorted(first + rng.uniform(0, window) for _ in range(primaries))
        # drawn after the completion times, so that the same seed gives the same day
        self.durations = [
            rng.lognormvariate(math.log(median_min * 60), sigma) for _ in range(primaries)
        ]
        self.completed_at = done_at  # primary n (oldest first) completes then
        self.ids = [None] * primaries  # its snapshot id, once it exists
        self.index = {}  # snapshot id -> n
        self.copy_start = [None] * primaries
        self.copy_end = [None] * primaries
        self.copy_run = [None] * primaries  # the kind of invocation that started it
        self.duplicates = self.refused = self.dropped = self.peak = 0
        self.end = DAY0 + timedelta(days=horizon_days)
        self.queue = []  # Lambda's async queue: (due, seq, kind, event)
        self._seq = itertools.count()
        self.runs = []  # one record per invocation, once it ended
        # Each invocation runs in a thread of its own, one thread at a time: it runs until
        # it pauses (a sleep, an AWS call's latency) or ends, and the main thread then moves
        # the clock on to whatever happens next (which may be another invocation going on).
        self.running, self.active = 0, None  # invocations started, not ended; whose turn
        self.yielded = threading.Event()  # the running thread paused or ended
        self.paused = {}  # wake-up Event -> the paused invocation
        self.aborting, self.errors = False, []
        self.api = Counter()
        self.primaries_left = primaries
        self.pending = {}  # region -> {snapshot id: snapshot}: the copies in flight
        self.copies_of = {}  # primary id -> [its copies]

    # -- the world

    def setup(self, schedule):
        self.source = ec2_backends[DEFAULT_ACCOUNT_ID][REGION]
        self.dest = ec2_backends[DEFAULT_ACCOUNT_ID][DEST]
        for n, when in enumerate(self.completed_at):
            self.clock.at(when, lambda n=n: self.primary_completes(n))
        for when in cron_times(schedule, DAY0, self.end):
            self.clock.at(when.timestamp(), lambda when=when: self.sweep_due(when))

    def primary_completes(self, n):
        """The creator's snapshot n completes now: it appears, tagged, and EventBridge
        sends its notification to the copier."""
        volume = self.source.create_volume(size=8, zone_name=REGION + "a")  # one each
        snapshot = self.source.create_snapshot(volume.id, f"primary {n}")
        snapshot.start_time = self.clock.naive()
        delete_on = (self.clock.now() + timedelta(days=7)).date().isoformat()
        tags = {
            "Type": "Automated",
            "DeleteOn": delete_on,
            "Copy_Dest": DEST,
            "Copy_State": "pending",
        }
        self.source.create_tags([snapshot.id], tags)
        self.ids[n], self.index[snapshot.id] = snapshot.id, n
        arn = f"arn:aws:ec2::{REGION}:snapshot/{snapshot.id}"
        event = {
            "version": "0",
            "id": f"notification-{n}",
            "detail-type": copier.NOTIFICATION,
            "source": "aws.ec2",
            "time": self.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": REGION,
            "resources": [arn],
            "detail": {
                "event": "createSnapshot",
                "result": "succeeded",
                "cause": "",
                "snapshot_id": arn,
                "source": REGION,
            },
        }
        self.enqueue("notification", event)

    def sweep_due(self, when):
        event = {
            "version": "0",
            "id": f"sweep-{when:%Y%m%dT%H%M}",
            "detail-type": copier.SCHEDULED,
            "source": "aws.events",
            "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": REGION,
            "resources": [f"arn:aws:events:{REGION}:{DEFAULT_ACCOUNT_ID}:rule/copier-schedule"],
            "detail": {},
        }
        self.enqueue("sweep", event)

    def enqueue(self, kind, event):
        heapq.heappush(self.queue, (self.clock.t, next(self._seq), kind, event))

    def copy_started(self, backend, snapshot, source_id):
        """moto's CopySnapshot, wrapped: the copy is pending until its sampled duration has
        passed. A 21st copy in flight is refused, as AWS refuses it."""
        n = self.index.get(source_id)
        if n is None:
            return snapshot
        snapshot.status = "pending"
        self.pending.setdefault(backend.region_name, {})[snapshot.id] = snapshot
        self.copies_of.setdefault(source_id, []).append(snapshot)
        end = self.clock.t + self.durations[n]
        if self.copy_start[n] is not None:  # a second copy: it takes a slot as long
            self.duplicates += 1
            self.clock.at(end, lambda: self.copy_completes(None, snapshot))
            return snapshot
        self.copy_start[n], self.copy_end[n] = self.clock.t, end
        self.copy_run[n] = self.active["kind"] if self.active else None
        self.peak = max(self.peak, self.in_flight(backend.region_name))
        self.clock.at(end, lambda: self.copy_completes(n, snapshot))
        return snapshot

    def copy_completes(self, n, snapshot):
        snapshot.status = "completed"
        self.pending[snapshot.ec2_backend.region_name].pop(snapshot.id, None)
        if n is not None:
            self.primaries_left -= 1

    def in_flight(self, region=DEST):
        return len(self.pending.get(region, ()))

    # -- the AWS API, as the copier's clients meet it

    def before_call(self, model, context, **kwargs):
        """Every AWS call: counted, and ``latency`` virtual seconds long. With ``fast``,
        DescribeSnapshots and DescribeRegions are answered here, from moto's backend, with
        botocore's parsed answer (what moto would serialise and botocore parse, without
        either: most of the simulation's time otherwise). The copier's hand-off
        (lambda:Invoke on itself) is queued as one more invocation."""
        service, operation = model.service_model.service_name, model.name
        self.api[f"{service}:{operation}"] += 1
        self.active["calls"] += 1
        self.pause(self.latency)
        params = context.get("copysim_params", {})
        if service == "lambda" and operation == "Invoke":
            payload = params.get("Payload") or b"{}"
            self.enqueue(self.active["kind"].split()[0] + " (handed off)", json.loads(payload))
            return answered(202, {"StatusCode": 202})
        if service != "ec2" or not self.fast:
            return None
        backend = ec2_backends[DEFAULT_ACCOUNT_ID][context["client_region"]]
        if operation == "DescribeRegions":
            regions = backend.describe_regions(params.get("RegionNames"))
            return answered(200, {"Regions": [region_dict(r) for r in regions]})
        if operation == "DescribeSnapshots":
            return self.describe_snapshots(backend, params)
        return None

    def describe_snapshots(self, backend, params):
        """moto's DescribeSnapshots (its filters), paged by id like EC2's; an index picks
        the candidates first (a superset of the matches)."""
        ids, found = params.get("SnapshotIds"), backend.snapshots
        filters = {f["Name"]: f["Values"] for f in params.get("Filters", [])}
        if ids:
            candidates = [found[i] for i in ids if i in found]
            if len(candidates) < len(set(ids)):
                return answered(400, {"Error": {"Code": "InvalidSnapshot.NotFound"}})
        elif filters.get("status") == ["pending"]:
            candidates = list(self.pending.get(backend.region_name, {}).values())
        elif "tag:" + copier.TAG_SOURCE_SNAPSHOT in filters:
            wanted = filters["tag:" + copier.TAG_SOURCE_SNAPSHOT]
            candidates = [c for w in wanted for c in self.copies_of.get(w, ())]
            candidates = [c for c in candidates if c.ec2_backend is backend]
        else:
            candidates = list(found.values())
        matches = sorted(generic_filter(filters, candidates), key=lambda s: s.id)
        token, limit = params.get("NextToken"), params.get("MaxResults") or 0
        if token:
            matches = [s for s in matches if s.id > token]
        page = matches[:limit] if limit else matches
        result = {"Snapshots": [snapshot_dict(s, backend) for s in page]}
        if limit and len(matches) > len(page):
            result["NextToken"] = page[-1].id
        return answered(200, result)

    # -- Lambda

    def run(self, scenario):
        """Invocations as Lambda runs them: FIFO from its async queue, at most ``limit`` at
        once, until every primary has a completed copy (then the runs going on end) or the
        horizon; the world moves on between and during them."""
        horizon = self.end.timestamp()
        while (self.primaries_left or self.running) and not self.errors:
            ready = self.primaries_left and self.queue and self.running < self.limit
            start = max(self.queue[0][0], self.clock.t) if ready else math.inf
            upcoming = self.clock.next_event()
            if upcoming <= start:  # completions first: a run at the same time sees them
                if upcoming >= horizon:
                    break
                self.clock.step()
                continue
            due, _, kind, event = heapq.heappop(self.queue)
            self.clock.advance_to(start)
            if start - due > MAX_EVENT_AGE_S:  # Lambda drops an event this old
                self.dropped += 1
                continue
            self.start(kind, event, due, scenario)
        self.abort()
        if self.errors:
            raise self.errors[0]

    def start(self, kind, event, due, scenario):
        record = {"kind": kind, "event_id": event["id"], "due": due, "start": self.clock.t}
        record |= {"calls": 0, "slept": 0.0}
        self.running, self.active = self.running + 1, record
        self.yielded.clear()
        thread = threading.Thread(target=self.invoke, args=(record, event, scenario), daemon=True)
        thread.start()
        self.yielded.wait()

    def invoke(self, record, event, scenario):
        """One invocation, in its own thread."""
        try:
            context = Context(self.clock, f"request-{len(self.runs)}")
            now = self.clock.now()
            try:
                summary, failures = copier.run(event, context, region=REGION, now=now), []
            except copier.JobFailed as exc:
                summary, failures = exc.summary, exc.summary["failures"]
            until, _ = copier.stay_until(event, now)
            record |= {
                "end": self.clock.t,
                "copied": summary["counts"].get("copied", 0),
                "deferred": summary["counts"].get("deferred", 0),
                "warnings": [w["reason"] for w in summary["warnings"]],
                "failures": [f"{f['id']}: {f['error']}" for f in failures],
                "until": until.timestamp() if until and scenario["stay_minutes"] else None,
            }
            self.runs.append(record)
        except Abort:  # the simulation ended while this run went on: not counted
            pass
        except BaseException as exc:  # a bug of the simulation's: stop, and say so
            self.errors.append(exc)
        finally:
            self.running -= 1
            self.yielded.set()

    def sleep(self, seconds):
        """The copier's time.sleep."""
        self.active["slept"] += max(seconds, 0)
        self.pause(seconds)

    def pause(self, seconds):
        """From a running invocation's thread (its own, or the copier's worker): let
        ``seconds`` of virtual time pass, in which the world and other invocations go on."""
        if self.aborting:
            raise Abort
        wake = threading.Event()
        self.paused[wake] = self.active
        self.clock.at(self.clock.t + max(seconds, 0), lambda: self.resume(wake))
        self.yielded.set()
        wake.wait()
        if self.aborting:
            raise Abort

    def resume(self, wake):
        """Main thread: a paused invocation goes on until it pauses again or ends."""
        invocation = self.paused.pop(wake, None)
        if invocation is None:
            return
        self.active = invocation
        self.yielded.clear()
        wake.set()
        self.yielded.wait()

    def abort(self):
        """Unwind every invocation still paused (the horizon came first)."""
        self.aborting = True
        while self.paused:
            self.resume(next(iter(self.paused)))


class Abort(BaseException):
    """Raised in a paused invocation's thread once the simulation is over: a BaseException,
    so that the copier's own handlers (``except Exception``) let it through."""


def keep_params(params, context, **kwargs):
    """The call's parameters, for before_call (which botocore gives the wire form only)."""
    context["copysim_params"] = dict(params)


def answered(status, parsed):
    """(HTTP response, parsed answer), as botocore's before-call handlers return them."""
    parsed["ResponseMetadata"] = {"RequestId": "copysim", "HTTPStatusCode": status}
    return AWSResponse("https://copysim", status, {}, MockRawResponse(b"")), parsed


def region_dict(region):
    return {
        "RegionName": region.name,
        "Endpoint": region.endpoint,
        "OptInStatus": region.opt_in_status,
    }


def snapshot_dict(snapshot, backend):
    """A moto snapshot as botocore parses EC2's answer."""
    item = {
        "SnapshotId": snapshot.id,
        "VolumeId": snapshot.volume.id,
        "State": snapshot.status,
        "StartTime": snapshot.start_time.replace(tzinfo=UTC),
        "Progress": snapshot.progress,
        "OwnerId": snapshot.owner_id,
        "Description": snapshot.description,
        "VolumeSize": snapshot.volume.size,
        "Encrypted": snapshot.encrypted,
        "StorageTier": snapshot.storage_tier,
    }
    if snapshot.kms_key_id:
        item["KmsKeyId"] = snapshot.kms_key_id
    tags = backend.tags.get(snapshot.id, {})
    if tags:
        item["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]
    return item


@contextlib.contextmanager
def simulated(day):
    """moto, and the copier, as the simulation needs them; everything restored after."""
    original_copy = moto_ebs.EBSBackend.copy_snapshot

    def copy_snapshot(backend, source_snapshot_id, *args, **kwargs):
        if day.in_flight(backend.region_name) >= SLOTS:
            day.refused += 1
            raise EC2ClientError(
                copier.COPY_LIMIT_CODE,
                f"Too many snapshot copies in progress (the limit is {SLOTS})",
            )
        snapshot = original_copy(backend, source_snapshot_id, *args, **kwargs)
        return day.copy_started(backend, snapshot, source_snapshot_id)

    original_client = copier.make_client

    def make_client(*args, **kwargs):
        client = original_client(*args, **kwargs)
        client.meta.events.register_first("before-parameter-build", keep_params)
        client.meta.events.register_first("before-call", day.before_call)
        return client

    # botocore builds each client's service model and class anew, which is most of the
    # time a client takes (and the copier makes two a run): the same ones, once built.
    models, classes = {}, {}
    original_model = ClientCreator._load_service_model
    original_class = ClientCreator._create_client_class

    def service_model(creator, service_name, api_version=None):
        key = (service_name, api_version)
        if key not in models:
            models[key] = original_model(creator, service_name, api_version)
        return models[key]

    def client_class(creator, service_name, model):
        if service_name not in classes:
            classes[service_name] = original_class(creator, service_name, model)
        return classes[service_name]

    clock = day.clock
    fake_time = types.SimpleNamespace(
        monotonic=clock.monotonic, sleep=day.sleep, time=clock.monotonic
    )
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock_aws())
        stack.enter_context(fresh_regions(REGION, DEST))
        stack.enter_context(simulated_ec2(latency=0, limits=False))
        stack.enter_context(patch.object(copier, "make_client", make_client))
        stack.enter_context(patch.object(ClientCreator, "_load_service_model", service_model))
        stack.enter_context(patch.object(ClientCreator, "_create_client_class", client_class))
        stack.enter_context(patch.object(moto_ebs.EBSBackend, "copy_snapshot", copy_snapshot))
        stack.enter_context(patch.object(moto_ebs, "utcnow", clock.naive))
        stack.enter_context(patch.object(copier, "time", fake_time))
        # one copier thread at a time on the clock: its worker pool of one
        stack.enter_context(patch.object(copier, "WORKERS", 1))
        yield


@contextlib.contextmanager
def fresh_regions(*regions):
    """Empty EC2 regions for the simulation, whatever moto held there before (mock_aws
    inside another one, as in the tests, starts from the outer one's data), and that data
    back afterwards."""
    backends = ec2_backends[DEFAULT_ACCOUNT_ID]
    made = [r for r in regions if dict.__contains__(backends, r)]  # its `in`: any known region
    saved = {region: backends.pop(region) for region in made}
    try:
        yield
    finally:
        for region in regions:
            backends.pop(region, None)
        backends.update(saved)


@contextlib.contextmanager
def environment(stay_minutes):
    saved = {k: os.environ.get(k) for k in ("LOG_LEVEL", copier.STAY_ENV, "AWS_REGION")}
    os.environ.update(
        {"LOG_LEVEL": "OFF", copier.STAY_ENV: str(stay_minutes), "AWS_REGION": REGION}
    )
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def simulate(
    primaries=2000,
    window_hours=2.0,
    median_min=20.0,
    sigma=0.8,
    seed=1,
    scenario="stay",
    schedule=None,
    stay_minutes=None,
    latency=0.05,
    horizon_days=7,
    concurrency=1,
    fast=True,
):
    """One scenario (a name of SCENARIOS; ``schedule`` and ``stay_minutes`` override it):
    its measures, as a JSON-serialisable dict (see ``measures``)."""
    settings = dict(SCENARIOS.get(scenario, {}))
    if schedule is not None:
        settings["schedule"] = schedule
    if stay_minutes is not None:
        settings["stay_minutes"] = stay_minutes
    if "schedule" not in settings:
        raise ValueError(f"unknown scenario {scenario!r}: give schedule and stay_minutes")
    settings.setdefault("stay_minutes", 0)
    fill_moto_gaps()
    day = Day(
        primaries=primaries,
        window_hours=window_hours,
        median_min=median_min,
        sigma=sigma,
        seed=seed,
        latency=latency,
        horizon_days=horizon_days,
        fast=fast,
        concurrency=concurrency,
    )
    started = real_time.monotonic()
    with environment(settings["stay_minutes"]), simulated(day):
        day.setup(settings["schedule"])
        day.run(settings)
        copies = Counter(
            day.dest.tags.get(sid, {}).get(copier.TAG_SOURCE_SNAPSHOT) for sid in day.dest.snapshots
        )
    result = measures(day, settings)
    result["settings"] = {
        "scenario": scenario,
        **settings,
        "primaries": primaries,
        "window_hours": window_hours,
        "median_min": median_min,
        "sigma": sigma,
        "seed": seed,
        "latency_s": latency,
        "horizon_days": horizon_days,
        "concurrency": concurrency,
    }
    result["copies_per_primary"] = dict(Counter(copies.get(i, 0) for i in day.ids if i))
    result["wall_s"] = round(real_time.monotonic() - started, 1)
    return result


# ---- what it measures -------------------------------------------------------------------


def utilisation(arrivals, starts, ends, slots=SLOTS):
    """(share of the slots busy while at least one primary waits for its copy, hours in
    which one waits, share busy over the whole time from the first arrival to the last
    copy's end)."""
    events = sorted(
        [(t, 1, 0) for t in arrivals]
        + [(t, -1, 1) for t in starts if t is not None]
        + [(t, 0, -1) for t in ends if t is not None]
    )
    waiting = busy = 0
    waited = busy_waiting = busy_all = 0.0
    last = events[0][0] if events else 0.0
    for t, dw, db in events:
        span = t - last
        if waiting > 0:
            waited += span
            busy_waiting += span * busy / slots
        busy_all += span * busy / slots
        waiting, busy, last = waiting + dw, busy + db, t
    total = (events[-1][0] - events[0][0]) if events else 0.0
    return (
        busy_waiting / waited if waited else 1.0,
        waited / 3600,
        busy_all / total if total else 0.0,
    )


def out_of_order(arrivals, starts):
    """The copies (primary numbers) started while an older primary (completed, its copy
    not started) still waited."""
    events = sorted(
        [(t, 0, n) for n, t in enumerate(arrivals)]
        + [(t, 1, n) for n, t in enumerate(starts) if t is not None]
    )
    waiting, started, jumps = [], set(), set()
    for _, kind, n in events:
        if kind == 0:
            heapq.heappush(waiting, (arrivals[n], n))
            continue
        started.add(n)
        while waiting and waiting[0][1] in started:
            heapq.heappop(waiting)
        if waiting and waiting[0][0] < arrivals[n]:
            jumps.add(n)
    return jumps


def ideal(arrivals, durations, slots=SLOTS):
    """The same copies, each started oldest first the moment a slot frees: the bound any
    trigger can reach. (last start, last end) in epoch seconds, and the waits."""
    free = [arrivals[0]] * slots if arrivals else []
    starts = []
    for arrival, duration in zip(arrivals, durations, strict=True):
        slot = heapq.heappop(free)
        start = max(slot, arrival)
        starts.append(start)
        heapq.heappush(free, start + duration)
    return starts, [s + d for s, d in zip(starts, durations, strict=True)]


def percentile(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def wait_stats(arrivals, starts):
    waits = [(s - a) / 60 for a, s in zip(arrivals, starts, strict=True) if s is not None]
    if not waits:
        return {"median_min": None, "p95_min": None, "max_min": None}
    return {
        "median_min": round(statistics.median(waits), 1),
        "p95_min": round(percentile(waits, 0.95), 1),
        "max_min": round(max(waits), 1),
    }


def clock_text(epoch):
    """Day and time since the simulated day's 00:00 UTC: 'd1 05:30' (d1: the next day)."""
    if epoch is None:
        return None
    offset = timedelta(seconds=epoch - DAY0.timestamp())
    return f"d{offset.days} {datetime.fromtimestamp(epoch, UTC):%H:%M}"


def lambda_cost(runs, memory_mb, architecture):
    seconds = sum(max(0.001, math.ceil((r["end"] - r["start"]) * 1000) / 1000) for r in runs)
    gb_seconds = seconds * memory_mb / 1024
    price = GB_SECOND_USD.get(architecture, GB_SECOND_USD["x86_64"])
    return seconds, gb_seconds, gb_seconds * price + len(runs) * REQUEST_USD


def measures(day, settings):
    arrivals, starts, ends = day.completed_at, day.copy_start, day.copy_end
    done = [e for e in ends if e is not None and e <= day.clock.t]
    busy_waiting, waited_h, busy_all = utilisation(arrivals, starts, ends)
    jumped = out_of_order(arrivals, starts)
    ideal_starts, ideal_ends = ideal(arrivals, day.durations)
    ideal_busy, ideal_waited_h, _ = utilisation(arrivals, ideal_starts, ideal_ends)
    last = max(
        (n for n, s in enumerate(starts) if s is not None), key=lambda n: starts[n], default=None
    )
    first_day_end = (DAY0 + timedelta(days=1)).timestamp()
    memory_mb = int(template_setting("MemorySize", "512"))
    architecture = template_setting("Architectures", "x86_64")
    by_kind = Counter(r["kind"] for r in day.runs)
    day_one = [r for r in day.runs if r["start"] < first_day_end]
    seconds, gb_s, cost = lambda_cost(day.runs, memory_mb, architecture)
    seconds_1, gb_s_1, cost_1 = lambda_cost(day_one, memory_mb, architecture)
    x86_1 = lambda_cost(day_one, memory_mb, "x86_64")[2]
    stays = [r for r in day.runs if r["until"] and r["slept"] >= copier.STAY_POLL_S]
    overrun = max((r["end"] - r["until"] for r in stays), default=None)
    mean_copy = statistics.fmean(day.durations) if day.durations else 0.0
    warnings = Counter(re.sub(r"[0-9]+", "N", w) for r in day.runs for w in r["warnings"])
    late = sum(n for w, n in warnings.items() if "behind" in w)
    return {
        "copies_started": sum(1 for s in starts if s is not None),
        "copies_completed": len(done),
        "duplicates": day.duplicates,
        "refused_21st_slot": day.refused,
        "peak_in_flight": day.peak,
        "failures": sum(len(r["failures"]) for r in day.runs),
        "failure_messages": sorted({f for r in day.runs for f in r["failures"]})[:10],
        "warnings": sum(warnings.values()),
        "warning_kinds": dict(warnings.most_common(5)),
        "lag_warnings": late,
        "events_dropped_too_old": day.dropped,
        "slot_utilisation_while_waiting": round(busy_waiting, 4),
        "hours_with_copies_waiting": round(waited_h, 2),
        "slot_utilisation_overall": round(busy_all, 4),
        "wait": wait_stats(arrivals, starts),
        "last_copy": {
            "primary_completed": clock_text(arrivals[last]) if last is not None else None,
            "started": clock_text(starts[last]) if last is not None else None,
            "wait_h": round((starts[last] - arrivals[last]) / 3600, 2)
            if last is not None
            else None,
        },
        "all_copied_at": clock_text(max(done)) if len(done) == len(arrivals) and done else None,
        "out_of_order_starts": len(jumped),
        "out_of_order_by_run": dict(Counter(day.copy_run[n] for n in jumped)),
        "out_of_order_between": [
            clock_text(min((starts[n] for n in jumped), default=None)),
            clock_text(max((starts[n] for n in jumped), default=None)),
        ],
        "copies_started_by_run": dict(Counter(k for k in day.copy_run if k)),
        "invocations": dict(by_kind),
        "lambda_seconds": round(seconds, 1),
        "lambda_gb_seconds": round(gb_s, 1),
        "lambda_usd_total": round(cost, 4),
        "day_one": {
            "invocations": dict(Counter(r["kind"] for r in day_one)),
            "lambda_seconds": round(seconds_1, 1),
            "lambda_gb_seconds": round(gb_s_1, 1),
            "lambda_usd": round(cost_1, 4),
            "lambda_usd_x86": round(x86_1, 4),
            "ec2_calls": sum(r["calls"] for r in day_one),
        },
        "lambda": {"memory_mb": memory_mb, "architecture": architecture},
        "longest_run_s": round(max((r["end"] - r["start"] for r in day.runs), default=0), 1),
        "stays": len(stays),
        "stay_overrun_max_s": round(overrun, 1) if overrun is not None else None,
        "queue_delay_max_s": round(max((r["start"] - r["due"] for r in day.runs), default=0), 1),
        "api_calls": dict(sorted(day.api.items())),
        "copy_time": {
            "mean_min": round(mean_copy / 60, 1),
            "median_min": round(statistics.median(day.durations) / 60, 1) if day.durations else 0,
            "over_2h": sum(1 for d in day.durations if d > 7200),
        },
        "physical_bound_copies_per_day": round(SLOTS * 86400 / mean_copy) if mean_copy else None,
        "ideal": {
            "slot_utilisation_while_waiting": round(ideal_busy, 4),
            "hours_with_copies_waiting": round(ideal_waited_h, 2),
            "wait": wait_stats(arrivals, ideal_starts),
            "last_copy_started": clock_text(max(ideal_starts, default=None)),
            "all_copied_at": clock_text(max(ideal_ends, default=None)),
        },
        "sim_end": clock_text(day.clock.t),
        # per primary, oldest first: completed, copy started, copy completed (epoch s), by
        "timeline": [
            [round(a, 3), s and round(s, 3), e and round(e, 3), k]
            for a, s, e, k in zip(arrivals, starts, ends, day.copy_run, strict=True)
        ],
    }


# ---- the command line -------------------------------------------------------------------


def _rows(r):
    """(label, value) for one scenario's column of the table."""
    wait, last, d0 = r["wait"], r["last_copy"], r["day_one"]
    api = {k.split(":")[-1]: v for k, v in r["api_calls"].items()}
    return [
        ("slot utilisation while copies wait", f"{r['slot_utilisation_while_waiting']:.1%}"),
        ("hours with copies waiting", f"{r['hours_with_copies_waiting']:.1f}"),
        ("slot utilisation, first primary to last copy", f"{r['slot_utilisation_overall']:.1%}"),
        ("wait median / p95 / max (min)", "{median_min} / {p95_min} / {max_min}".format(**wait)),
        ("last copy: primary done / started", f"{last['primary_completed']} / {last['started']}"),
        ("last copy: wait (h)", str(last["wait_h"])),
        ("all copies completed at", str(r["all_copied_at"])),
        ("copies started / completed", f"{r['copies_started']} / {r['copies_completed']}"),
        (
            "peak in flight / 21st refused / duplicates / failures",
            f"{r['peak_in_flight']} / {r['refused_21st_slot']} / {r['duplicates']} / "
            f"{r['failures']}",
        ),
        ("warnings (copies-behind warnings)", f"{r['warnings']} ({r['lag_warnings']})"),
        ("starts ahead of an older waiting primary", str(r["out_of_order_starts"])),
        ("  by", _kinds(r["out_of_order_by_run"])),
        ("  first / last", " / ".join(str(t) for t in r["out_of_order_between"])),
        ("copies started by", _kinds(r["copies_started_by_run"])),
        ("invocations, all days", _kinds(r["invocations"])),
        (
            "longest run / longest queue delay (s)",
            f"{r['longest_run_s']} / {r['queue_delay_max_s']}",
        ),
        ("stays / longest past its end (s)", f"{r['stays']} / {r['stay_overrun_max_s']}"),
        ("d0: invocations", _kinds(d0["invocations"])),
        ("d0: Lambda s / GB-s", f"{d0['lambda_seconds']} / {d0['lambda_gb_seconds']}"),
        ("d0: Lambda $, as deployed / x86", f"{d0['lambda_usd']:.4f} / {d0['lambda_usd_x86']:.4f}"),
        ("d0: EC2 calls", str(d0["ec2_calls"])),
        ("all days: Lambda $", f"{r['lambda_usd_total']:.4f}"),
        ("API calls, all days", _kinds(api)),
        ("wall time (s)", str(r["wall_s"])),
    ]


def _kinds(counts):
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "-"


def table(results):
    names = list(results)
    first = results[names[0]]
    ideal_row = first["ideal"]
    columns = [_rows(results[n]) for n in names]
    labels = [label for label, _ in columns[0]]
    widths = [max(len(label) for label in labels)]
    widths += [max(len(n), *(len(v) for _, v in c)) for n, c in zip(names, columns, strict=True)]
    rows = [["", *names]] + [[label, *(c[i][1] for c in columns)] for i, label in enumerate(labels)]
    lines = [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    copy = first["copy_time"]
    lines += [
        "",
        f"copy time: mean {copy['mean_min']} min, median {copy['median_min']} min, "
        f"{copy['over_2h']} over two hours; 20 slots carry at most "
        f"{first['physical_bound_copies_per_day']} copies a day at that mean",
        "ideal (each copy started, oldest first, the moment a slot frees): utilisation "
        f"while waiting {ideal_row['slot_utilisation_while_waiting']:.1%}, wait median / p95 / "
        "max {median_min} / {p95_min} / {max_min} min, ".format(**ideal_row["wait"])
        + f"last copy started {ideal_row['last_copy_started']}, "
        f"all completed {ideal_row['all_copied_at']}",
        f"(d0 is {DAY0:%Y-%m-%d}; Lambda {first['lambda']['memory_mb']} MB "
        f"{first['lambda']['architecture']}, template.yaml)",
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--primaries", type=int, default=2000)
    parser.add_argument("--window-hours", type=float, default=2.0)
    parser.add_argument("--median-min", type=float, default=20.0, help="median copy time")
    parser.add_argument(
        "--sigma", type=float, default=0.8, help="lognormal sigma (0.8: 1.3%% over two hours)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scenarios", default="today,stay", help=", ".join(SCENARIOS))
    parser.add_argument("--latency", type=float, default=0.05, help="virtual s per AWS call")
    parser.add_argument("--horizon-days", type=float, default=7)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="the copier's reserved concurrency (template.yaml's default 1; 0: none)",
    )
    parser.add_argument("--json", default=str(ROOT / "build" / "copysim.json"))
    args = parser.parse_args(argv)
    results = {}
    for name in args.scenarios.split(","):
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {name!r}: {', '.join(SCENARIOS)}")
        results[name] = simulate(
            primaries=args.primaries,
            window_hours=args.window_hours,
            median_min=args.median_min,
            sigma=args.sigma,
            seed=args.seed,
            scenario=name,
            latency=args.latency,
            horizon_days=args.horizon_days,
            concurrency=args.concurrency,
        )
    print(table(results))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nsaved to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
