"""EBS snapshot manager: delete automated snapshots whose DeleteOn has come, and check
that every volume that should be backed up is.

Runs as an AWS Lambda function (handler ``ebs_snapshot_manager.lambda_handler``) once a
day in each region, or from the command line. Region: ``AWS_REGION``, else
``AWS_DEFAULT_REGION``. It reads and deletes in its own region only: copies are deleted by
the manager running in the region that holds them.

Snapshot tags read
    Type=Automated   only snapshots of this account with this tag are ever considered
    DeleteOn         YYYY-MM-DD; deleted when it is today or earlier, so days when the
                     manager did not run are caught up. Any other value: kept, with a warning.
    KeepForever      any value except No/false/0/off keeps the snapshot forever.
Nothing is written.

A snapshot that AWS will not delete because an AMI uses it (InvalidSnapshot.InUse) is kept
with a warning; one already gone (InvalidSnapshot.NotFound) counts as done.

Coverage check (read-only, in the same run): every EBS volume that the creator must
snapshot (instance Backup=Yes, not terminated, volume not opted out with Backup=No) needs
a completed automated snapshot younger than COVERAGE_MAX_AGE_HOURS (environment; default
26), and each of its snapshots older than that, not yet due, needs a completed copy in each
region of its Copy_Dest tag (listed there by Source_Region). A volume attached more
recently than that is not expected yet. Each unprotected volume is named in the summary
(``unprotected``, with the reasons) and counted in the UnprotectedVolumes metric. Cost: a
few paginated reads (DescribeRegions, DescribeInstances, DescribeVolumes, one listing per
destination region), whatever the fleet size. The check reads the snapshots as listed at
the start of the run: with Retention=1, the snapshot deleted this run still counts.

Event
    {}  or an EventBridge scheduled event     every automated snapshot of the region
    {"dry_run": true}                         change nothing; report what would be deleted

Returns a JSON-serialisable summary. If any item failed, every other item is still done,
then JobFailed is raised naming each failure. With under 60 s of Lambda time left it stops
(summary: stopped_early) and leaves the rest to its next run; running twice is harmless.

Pace: it reads one page (1000 snapshots) at a time and deletes while it reads, four calls
at a time, at most at 90% of EC2's rate for DeleteSnapshot (a burst of 90, then 4.5 a
second), so memory stays flat and the account's other callers keep their share.

Logs: one JSON line per item on stdout, and a last summary line that is also CloudWatch
Embedded Metric Format (namespace EBSSnapshots, dimensions job and region): SnapshotsDeleted,
UnprotectedVolumes, Warnings, Failures. LOG_LEVEL, else AWS_LAMBDA_LOG_LEVEL, sets the level.

IAM actions: ec2:DescribeSnapshots, ec2:DeleteSnapshot (only on Type=Automated snapshots),
ec2:DescribeInstances, ec2:DescribeVolumes, ec2:DescribeRegions (the coverage check).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)

JOB = "manager"

# ---- shared block: identical in the three job files (tests/test_shared.py) ----
TAG_BACKUP = "Backup"
TAG_RETENTION = "Retention"
TAG_COPY_DEST = "Copy_Dest"
TAG_NAME = "Name"
TAG_TYPE = "Type"
TAG_DELETE_ON = "DeleteOn"
TAG_KEEP_FOREVER = "KeepForever"
TAG_SOURCE_SNAPSHOT = "Source_SnapshotId"
TAG_SOURCE_REGION = "Source_Region"
TAG_COPY_RETENTION = "Copy_Retention"  # days to keep copies, from the primary's creation
TAG_COPY_KMS_KEY = "Copy_KmsKeyId"  # the KMS key to encrypt copies with
TAG_RETENTION_TIER = "Retention_Tier"  # which tier chose a snapshot's DeleteOn
AUTOMATED = "Automated"
MAX_RETENTION_DAYS = 36500  # beyond this, date arithmetic overflows long before it matters
# A KMS key as CopySnapshot takes it: key id, multi-Region key id, alias, key or alias ARN.
KMS_KEY = re.compile(
    r"(arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:)?"
    r"(key/)?([0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}|mrk-[0-9a-f]{32})"
    r"|(arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:)?alias/[A-Za-z0-9/_-]{1,250}"
)
DEFAULT_RETENTION_DAYS = 7
TRUE_WORDS = frozenset({"yes", "true", "1", "on"})
FALSE_WORDS = frozenset({"no", "false", "0", "off"})
PAGE_SIZE = 1000  # the most EC2 returns per page; fewer calls against the Describe bucket
# Set explicitly: the boto3 in Lambda's runtime may be older and default to "legacy" retries.
# Standard mode retries RequestLimitExceeded and 5xx with jittered backoff of at most 20 s.
RETRIES = {"mode": "standard", "total_max_attempts": 10}
CONNECT_TIMEOUT_S, READ_TIMEOUT_S = 5, 20  # so that one HTTP attempt has a known bound
ATTEMPT_S = CONNECT_TIMEOUT_S + READ_TIMEOUT_S + 2
BACKOFF_CAP_S = 20  # botocore's longest sleep between two attempts
STOP_MARGIN_S = 60  # with less Lambda time than this left, start no new item
# EC2 meters each account and region with token buckets (EC2 "Request throttling"):
# operation -> (bucket, its size, refill per second). A run spends PACE_SHARE of a bucket's
# size and refill, so that it neither meets RequestLimitExceeded nor empties a bucket the
# account's other callers share.
BUCKETS = {
    "CreateSnapshot": ("snapshots", 100, 5),
    "CreateSnapshots": ("snapshots", 100, 5),
    "DeleteSnapshot": ("snapshots", 100, 5),
    "CopySnapshot": ("mutating", 50, 5),
    "CreateTags": ("tags", 100, 10),
}
PACE_SHARE = 0.9
WORKERS = 4  # calls in flight at once: enough to reach EC2's rates when latency is high
# Lambda's level names (AWS_LAMBDA_LOG_LEVEL), and Python's as aliases; OFF: nothing at all.
LOG_LEVELS = {"TRACE": 5, "DEBUG": 10, "INFO": 20, "WARN": 30, "WARNING": 30, "ERROR": 40}
LOG_LEVELS |= {"FATAL": 50, "CRITICAL": 50, "OFF": 100}
_log_lock = threading.Lock()
# Instance states whose volumes are backed up (a stopped instance's volumes hold data too).
LIVE_STATES = ("pending", "running", "stopping", "stopped")
# The run's last log line counts these (0 when none), then any other count it made.
SUMMARY_COUNTS = ("created", "copied", "deferred", "deleted", "kept", "skipped")
SUMMARY_COUNTS += ("warnings", "failures")
# CloudWatch Embedded Metric Format: the summary line is also these metrics, dimensions job
# and region, at no API cost. Metric: (the count it reports, jobs that always report it;
# other jobs report it only when they counted it).
METRIC_NAMESPACE = "EBSSnapshots"
METRICS = {
    "SnapshotsCreated": ("created", ("creator",)),
    "SnapshotsCopied": ("copied", ("copier",)),
    "CopiesDeferred": ("deferred", ("copier",)),
    "SnapshotsDeleted": ("deleted", ("manager",)),
    "Warnings": ("warnings", ("creator", "copier", "manager")),
    "Failures": ("failures", ("creator", "copier", "manager")),
    "UnprotectedVolumes": ("unprotected", ()),  # only when the manager's check ran
}
DONE = {"create": "created", "copy": "copied", "delete": "deleted", "tag": "tagged"}
REPORT_ORDER = (
    "created",
    "would_create",
    "copied",
    "would_copy",
    "tagged",
    "would_tag",
    "deleted",
    "would_delete",
    "deferred",
    "handed_off",
    "stopped_early",
    "permitted",
    "skipped",
    "unprotected",
    "warnings",
    "failures",
)


class OutOfTime(Exception):
    """Too little Lambda time is left to start (or retry) a call without being cut off."""


class JobFailed(Exception):
    """Some items failed; all others were done. ``summary`` is the full result. The message
    names every failed item, those with the same error together."""

    def __init__(self, summary):
        self.summary = summary
        by_error = {}
        for failure in summary["failures"]:
            by_error.setdefault(failure["error"], []).append(failure["id"])
        names = "; ".join(f"{', '.join(ids)}: {error}" for error, ids in by_error.items())
        super().__init__(
            f"{summary['job']} in {summary['region']}: {len(summary['failures'])} failed: {names}"
        )


def parse_bool(value):
    """True or False for a recognised word (any case, or a JSON bool); None for anything else."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    return True if word in TRUE_WORDS else False if word in FALSE_WORDS else None


def parse_date(value):
    """A strict YYYY-MM-DD date, or None: never guess at other formats."""
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def parse_count(value, what, cap):
    """(whole number, None) for a tag value of 1 or more; (None, warning) for anything
    else; (cap, warning) above ``cap``."""
    text = value.strip()
    if not re.fullmatch(r"[0-9]+", text) or int(text) < 1:
        return None, f"{what} {value!r} is not a whole number, 1 or more"
    if int(text) > cap:
        return cap, f"{what} {value!r} is too large; using {cap}"
    return int(text), None


def copy_delete_on(tags, created):
    """(a copy's own DeleteOn, or None for its primary's; warning or None), from the
    primary's Copy_Retention tag, counted from the primary's creation date."""
    if TAG_COPY_RETENTION not in tags:
        return None, None
    days, problem = parse_count(tags[TAG_COPY_RETENTION], TAG_COPY_RETENTION, MAX_RETENTION_DAYS)
    if days is None:
        return None, f"{problem}; copies keep the primary's DeleteOn"
    return created + timedelta(days=days), problem


def tag_map(resource):
    return {t["Key"]: t["Value"] for t in resource.get("Tags") or []}


def backup_enabled(tags):
    """An instance's Backup tag: True, False, or None when it cannot be read."""
    return parse_bool(tags.get(TAG_BACKUP, "no"))


def opted_out(value):
    """A volume's own Backup tag leaves it out only when it clearly says no. An unreadable
    value keeps it in: a backup too many costs little, one too few can cost the data."""
    return value is not None and parse_bool(value) is False


def is_kept_forever(tags):
    """KeepForever with any value except a no-word (No/false/0/off) keeps a snapshot."""
    return TAG_KEEP_FOREVER in tags and parse_bool(tags[TAG_KEEP_FOREVER]) is not False


def clean_regions(value, enabled, home):
    """Split a Copy_Dest value; return (regions to copy to, [(entry, why dropped)])."""
    keep, dropped = [], []
    for entry in re.split(r"[\s,]+", value.strip()):
        if not entry or entry in keep:
            continue
        if entry == home:
            dropped.append((entry, "is this region"))
        elif entry not in enabled:
            dropped.append((entry, "is not an enabled region of this account"))
        else:
            keep.append(entry)
    return keep, dropped


def event_dry_run(event):
    """Strict: a dry_run the job cannot read stops it before it changes anything."""
    flag = parse_bool(event.get("dry_run", False))
    if flag is None:
        raise ValueError(f"event dry_run must be true or false, not {event['dry_run']!r}")
    return flag


def event_key(event, context):
    """What identifies this piece of work across deliveries: the event's id (EventBridge
    may deliver an event twice), else the Lambda request id (kept when Lambda retries a
    failed run), else nothing (a command-line run). Cut to fit a tag value."""
    key = event.get("id") or getattr(context, "aws_request_id", None)
    return str(key)[:256] if key else None


def resolve_region(region=None):
    """Explicit, else AWS_REGION (Lambda sets it), else AWS_DEFAULT_REGION or the profile."""
    region = region or os.environ.get("AWS_REGION") or boto3.session.Session().region_name
    if not region:
        raise ValueError("no region: set AWS_REGION (or AWS_DEFAULT_REGION, or --region)")
    return region


def utc_today(now=None):
    return (now or datetime.now(UTC)).astimezone(UTC).date()


class Budget:
    """The Lambda's time left (unlimited without a context): when to stop starting work.

    Guarding a client makes every HTTP attempt, and every retry sleep, start only when it
    can finish in time, so the Lambda timeout never cuts a call in half.
    """

    def __init__(self, context):
        self._left_ms = getattr(context, "get_remaining_time_in_millis", None)

    def left(self):
        return self._left_ms() / 1000 if self._left_ms else float("inf")

    def low(self):
        return self.left() < STOP_MARGIN_S

    def guard(self, client):
        if self._left_ms:
            client.meta.events.register_first("before-send", self._before_send)
            client.meta.events.register_first("needs-retry", self._before_retry)
        return client

    def _before_send(self, **kwargs):
        if self.left() < ATTEMPT_S:
            raise OutOfTime(f"{self.left():.0f} s of Lambda time left: call not started")

    def _before_retry(self, response=None, caught_exception=None, **kwargs):
        if isinstance(caught_exception, OutOfTime):
            raise caught_exception
        failed = caught_exception is not None or response[0].status_code >= 300
        if failed and self.left() < ATTEMPT_S + BACKOFF_CAP_S:
            raise OutOfTime(f"{self.left():.0f} s of Lambda time left: call not retried")


class Pacer:
    """Client-side token buckets, one per region and EC2 bucket, shared by a run's threads.

    A call takes a token before each attempt, waiting for it if need be; a throttled answer
    means the account's bucket is emptier than ours thinks (other callers), so ours empties.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._buckets = {}  # (region, bucket) -> [tokens, time of last refill]

    def guard(self, client):
        region = client.meta.region_name
        for operation in BUCKETS:
            client.meta.events.register_first(
                f"before-send.ec2.{operation}", functools.partial(self._take, region, operation)
            )
        client.meta.events.register("needs-retry.ec2", functools.partial(self._throttled, region))
        return client

    def _bucket(self, region, operation):
        name, size, rate = BUCKETS[operation]
        size, rate = size * PACE_SHARE, rate * PACE_SHARE
        bucket = self._buckets.setdefault((region, name), [size, time.monotonic()])
        now = time.monotonic()
        bucket[0] = min(size, bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now
        return bucket, rate

    def _take(self, region, operation, **kwargs):
        with self._lock:
            bucket, rate = self._bucket(region, operation)
            bucket[0] -= 1  # a reservation: whoever drives the bucket below zero waits its turn
            wait = -bucket[0] / rate
        if wait > 0:
            time.sleep(wait)

    def _throttled(self, region, response=None, operation=None, **kwargs):
        code = (response or (None, {}))[1].get("Error", {}).get("Code")
        if code == "RequestLimitExceeded" and operation.name in BUCKETS:
            with self._lock:
                bucket, _ = self._bucket(region, operation.name)
                bucket[0] = min(bucket[0], 0)


def in_parallel(items, work, budget):
    """work(item) for each item, WORKERS at a time, until Lambda time runs short.

    Items may be a generator, read only as workers come free; if reading raises OutOfTime,
    no more work starts (the caller knows whether its generator finished). Returns
    (started, stopped): items started, and how many of those OutOfTime stopped. Any other
    exception is raised once the started work is over. Nothing is kept per item.
    """
    slots, lock = threading.Semaphore(WORKERS), threading.Lock()
    tally, errors = {"started": 0, "stopped": 0}, []

    def task(item):
        try:
            work(item)
        except OutOfTime:
            with lock:
                tally["stopped"] += 1
        except Exception as exc:  # re-raised below, in the caller's thread
            errors.append(exc)
        finally:
            slots.release()

    items = iter(items)
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        while True:
            slots.acquire()
            try:
                if budget.low() or errors:
                    raise OutOfTime("stop starting")
                item = next(items)
            except (OutOfTime, StopIteration):
                slots.release()
                break
            tally["started"] += 1
            pool.submit(task, item)
    if errors:
        raise errors[0]
    return tally["started"], tally["stopped"]


def make_client(service, region, budget=None, pacer=None):
    """Created per run, never at import, so moto and AWS_ENDPOINT_URL apply."""
    config = Config(
        retries=dict(RETRIES),
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        user_agent_extra="ebs-snapshot-lifecycle",
    )
    client = boto3.client(service, region_name=region, config=config)
    if budget:
        budget.guard(client)
    if pacer:  # registered last, so it runs first: wait for a token, then check the time
        pacer.guard(client)
    return client


def hand_off(context, event, summary, done_here, left=None):
    """Out of time: invoke this same function again, asynchronously, on the same event id,
    so the rest (``left`` items, when known) is done there. Without progress here, fail
    instead, so that a run that cannot move never chains invocations forever."""
    rest = f"{left} left" if left is not None else "the rest"
    if not done_here:
        summary.fail(summary.region, f"out of Lambda time before any progress; {rest} not done")
        return
    payload = json.dumps({**event, "id": summary.data["event_id"]})
    arn = context.invoked_function_arn
    try:
        make_client("lambda", summary.region, Budget(context)).invoke(
            FunctionName=arn, InvocationType="Event", Payload=payload
        )
    except (ClientError, BotoCoreError, OutOfTime) as exc:
        summary.fail(arn, f"could not hand {rest} over to a new invocation: {exc}")
        return
    counted = {} if left is None else {"count": left}
    summary.add(
        "handed_off",
        "WARN",
        id=arn,
        **counted,
        reason="Lambda time ran short; a new invocation on the same event does the rest",
    )


def enabled_regions(ec2):
    """Regions enabled for this account (opt-in regions only once opted in)."""
    return {r["RegionName"] for r in ec2.describe_regions()["Regions"]}


def paginate(ec2, operation, key, **params):
    pages = ec2.get_paginator(operation).paginate(
        **params, PaginationConfig={"PageSize": PAGE_SIZE}
    )
    for page in pages:
        yield from page[key]


def volume_backup_tags(ec2):
    """{volume id: its own Backup tag}, for the volumes that have one: the opt-outs."""
    volumes = paginate(
        ec2, "describe_volumes", "Volumes", Filters=[{"Name": "tag-key", "Values": [TAG_BACKUP]}]
    )
    return {v["VolumeId"]: tag_map(v)[TAG_BACKUP] for v in volumes}


def error_code(exc):
    return exc.response.get("Error", {}).get("Code", "Unknown")


def log(level, job, region, action, /, **fields):
    """One JSON object per line on stdout, where Lambda and CloudWatch's metric extraction
    read it. LOG_LEVEL, else AWS_LAMBDA_LOG_LEVEL, sets the threshold (default INFO)."""
    wanted = os.environ.get("LOG_LEVEL") or os.environ.get("AWS_LAMBDA_LOG_LEVEL") or "INFO"
    if LOG_LEVELS.get(level, 20) < LOG_LEVELS.get(wanted.strip().upper(), 20):
        return
    line = {"level": level, "job": job, "region": region, "action": action, **fields}
    text = json.dumps(line, default=str) + "\n"
    with _log_lock:  # workers log at once; print() would write text and newline apart
        sys.stdout.write(text)
        sys.stdout.flush()


def metrics(job, counts):
    """The summary line's Embedded Metric Format fields: CloudWatch makes them metrics."""
    values = {
        name: counts.get(count, 0)
        for name, (count, jobs) in METRICS.items()
        if job in jobs or count in counts
    }
    directive = {
        "Namespace": METRIC_NAMESPACE,
        "Dimensions": [["job", "region"]],
        "Metrics": [{"Name": name, "Unit": "Count"} for name in values],
    }
    return {
        "_aws": {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": [directive]}
    } | values


class Summary:
    """What a run did, item by item: created/copied/deleted/tagged, or in a dry run
    would_create/would_copy/would_delete/would_tag; skipped, warnings and failures."""

    def __init__(self, job, region, today, dry_run, event_id=None):
        self.job, self.region, self.dry_run = job, region, dry_run
        self.started = time.monotonic()
        self.probed = set()
        self._lock = threading.Lock()  # items arrive from several threads
        self.data = {
            "job": job,
            "region": region,
            "date": today.isoformat(),
            "dry_run": dry_run,
            "event_id": event_id,
            "counts": {},
            "skipped": [],
            "warnings": [],
            "failures": [],
        }

    def add(self, kind, level="INFO", /, **item):
        with self._lock:
            self.data.setdefault(kind, []).append(item)
            self.data["counts"][kind] = self.data["counts"].get(kind, 0) + 1
        log(level, self.job, self.region, kind, **item)

    def did(self, action, **item):
        self.add(f"would_{action}" if self.dry_run else DONE[action], **item)

    def count(self, kind, n=1):
        with self._lock:
            self.data["counts"][kind] = self.data["counts"].get(kind, 0) + n

    def skip(self, id, reason, **item):
        self.add("skipped", id=id, reason=reason, **item)

    def warn(self, id, reason, **item):
        self.add("warnings", "WARN", id=id, reason=reason, **item)

    def fail(self, id, error, **item):
        self.add("failures", "ERROR", id=id, error=error, **item)

    def probe(self, action, scope, call, **params):
        """Dry run: ask AWS once per action and scope whether the real call would be allowed."""
        with self._lock:
            if (action, scope) in self.probed:
                return
            self.probed.add((action, scope))
        try:
            call(DryRun=True, **params)
        except ClientError as exc:
            if error_code(exc) != "DryRunOperation":
                self.fail(scope, f"{action} would be refused: {error_code(exc)}: {exc}")
                return
        self.add("permitted", permission=action, id=scope)

    def finish(self):
        """The run's last log line: its counts and duration and, unless it was a dry run,
        the same counts as metrics. Its level is the run's worst."""
        counts = self.data["counts"]
        line = {kind: counts.get(kind, 0) for kind in SUMMARY_COUNTS} | counts
        line |= {"event_id": self.data["event_id"], "dry_run": self.dry_run}
        line["duration_s"] = round(time.monotonic() - self.started, 3)
        if not self.dry_run:
            line |= metrics(self.job, counts)
        level = "WARN" if counts.get("warnings") or counts.get("unprotected") else "INFO"
        level = "ERROR" if counts.get("failures") else level
        log(level, self.job, self.region, "summary", **line)

    def result(self):
        """The summary, once the summary line is written; raises JobFailed after the fact
        if any item failed."""
        self.finish()
        if self.data["failures"]:
            raise JobFailed(self.data)
        return self.data


def report(summary):
    """The summary as short aligned lines for a person: one small table per kind of item."""
    dry = " (dry run: nothing was changed)" if summary["dry_run"] else ""
    lines = [f"{summary['job']} in {summary['region']} on {summary['date']}{dry}"]
    for kind in REPORT_ORDER:
        items = summary.get(kind) or []
        if not items:
            continue
        columns = list(dict.fromkeys(key for item in items for key in item))
        rows = [[c.replace("_", " ") for c in columns]]
        rows += [[cell(item.get(c, "")) for c in columns] for item in items]
        widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
        lines.append(f"{kind.replace('_', ' ')} ({len(items)}):")
        lines += [
            "  " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
            for row in rows
        ]
    counts = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in summary["counts"].items())
    lines.append(f"totals: {counts or 'nothing to do'}")
    return "\n".join(lines)


def cell(value):
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def cli_parser(job, description):
    parser = argparse.ArgumentParser(
        prog=f"ebs_snapshot_{job}.py",
        description=description,
        epilog="Exit codes: 0 all done; 1 some items failed (each named); "
        "2 bad usage, or no credentials or region.",
    )
    parser.add_argument(
        "--region",
        help="AWS region (default: AWS_REGION, AWS_DEFAULT_REGION or the profile's region)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="change nothing; list what would be done, and ask AWS (DryRun) "
        "whether each kind of action would be permitted",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "--verbose", action="store_true", help="also write the JSON log lines to stderr"
    )
    return parser


def cli(parser, argv=None):
    """Command line: a thin layer over lambda_handler. Returns the exit code."""
    args = parser.parse_args(argv)  # bad usage exits 2
    os.environ["LOG_LEVEL"] = "DEBUG" if args.verbose else "OFF"
    if args.region:
        os.environ["AWS_REGION"] = args.region
    event = {"dry_run": args.dry_run}
    if getattr(args, "instance_ids", None):
        event["instance_ids"] = args.instance_ids
    try:
        with contextlib.redirect_stdout(sys.stderr):  # the log; stdout is for the report
            summary, code = lambda_handler(event, None), 0
    except JobFailed as exc:
        summary, code = exc.summary, 1
    except (ValueError, NoCredentialsError, PartialCredentialsError, NoRegionError) as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 2
    except (ClientError, BotoCoreError) as exc:  # the run could not even list its resources
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2, default=str) if args.json else report(summary))
    return code


# ---- end of shared block ----
# A volume is protected when it has a completed snapshot younger than this, and each of its
# snapshots older than this has a completed copy in each Copy_Dest region: the creator runs
# daily, so 26 hours leaves it two hours of slack.
COVERAGE_MAX_AGE_HOURS = 26
COVERAGE_ENV = "COVERAGE_MAX_AGE_HOURS"
MAX_REASONS = 3  # per unprotected volume, in the summary

# ---- decisions: pure functions of the snapshots, the instances and the date ----


def verdict(snapshot, today):
    """(action, reason) for one snapshot. Actions: "delete"; "keep" (not due yet, or not
    ours); "forever" (KeepForever, not due); "hold" (due, but KeepForever); "warn" (kept:
    its DeleteOn cannot be read)."""
    tags = tag_map(snapshot)
    if tags.get(TAG_TYPE) != AUTOMATED:  # the listing filters on it; never trust one filter
        return "keep", "not Type=Automated"
    raw = tags.get(TAG_DELETE_ON)
    delete_on = parse_date(raw)
    due = delete_on is not None and delete_on <= today
    if is_kept_forever(tags):
        return ("hold" if due else "forever"), f"KeepForever={tags[TAG_KEEP_FOREVER]}"
    if delete_on is None:
        return "warn", f"DeleteOn {raw!r} is not a YYYY-MM-DD date; kept"
    return ("delete" if due else "keep"), f"DeleteOn {raw}"


def coverage_max_age(value):
    """(timedelta, warning or None) for the COVERAGE_MAX_AGE_HOURS setting."""
    default = timedelta(hours=COVERAGE_MAX_AGE_HOURS)
    if value is None or not value.strip():
        return default, None
    try:
        hours = float(value)
    except ValueError:
        hours = -1.0
    if not (math.isfinite(hours) and 0 < hours <= 24 * 366):
        return default, f"{COVERAGE_ENV} {value!r} is not a number of hours; using 26"
    return timedelta(hours=hours), None


def protected_volumes(instances, volume_backup, cutoff):
    """{volume id: {instance_id, name}}: every EBS volume the tags say the creator must
    snapshot, as the creator reads them, but for volumes attached after ``cutoff``, which
    the creator cannot have reached yet."""
    wanted = {}
    for instance in instances:
        tags = tag_map(instance)
        state = instance.get("State", {}).get("Name")
        if state not in LIVE_STATES or backup_enabled(tags) is not True:
            continue
        for mapping in instance.get("BlockDeviceMappings", []):
            ebs = mapping.get("Ebs")
            if not ebs or opted_out(volume_backup.get(ebs["VolumeId"])):
                continue
            attached = ebs.get("AttachTime")
            if attached is None or attached <= cutoff:
                who = {"instance_id": instance["InstanceId"], "name": tags.get(TAG_NAME, "")}
                wanted[ebs["VolumeId"]] = who
    return wanted


class Coverage:
    """What the coverage check keeps while the sweep lists the region's snapshots: each
    protected volume's newest completed snapshot, and the snapshots old enough to need
    their copies. Nothing is kept for other snapshots."""

    def __init__(self, protected, cutoff, max_age, enabled, region, today):
        self.protected, self.cutoff, self.max_age, self.today = protected, cutoff, max_age, today
        self.enabled, self.region = enabled, region
        self.newest = {}  # volume id: start time of its newest completed snapshot
        self.need_copies = {}  # snapshot id: (volume id, start time, destination regions)

    def see(self, snapshot):
        tags, vid = tag_map(snapshot), snapshot.get("VolumeId")
        # A copy's VolumeId is arbitrary; copies are checked from their primaries.
        if TAG_SOURCE_SNAPSHOT in tags or vid not in self.protected:
            return
        if snapshot.get("State") != "completed":
            return
        start = snapshot["StartTime"]
        self.newest[vid] = max(start, self.newest.get(vid, start))
        dests = clean_regions(tags.get(TAG_COPY_DEST, ""), self.enabled, self.region)[0]
        delete_on = parse_date(tags.get(TAG_DELETE_ON))
        copy_until = copy_delete_on(tags, start.astimezone(UTC).date())[0] or delete_on
        # Only what the copier copies: never once the copy's own DeleteOn has come.
        if start <= self.cutoff and dests and delete_on is not None and copy_until > self.today:
            self.need_copies[snapshot["SnapshotId"]] = (vid, start, dests)

    def destinations(self):
        return sorted({d for _, _, dests in self.need_copies.values() for d in dests})

    def unprotected(self, copies):
        """{volume id: [reasons]} given ``copies``, {(region, primary id): copy state}."""
        found = {}
        hours = f"{self.max_age.total_seconds() / 3600:g}"
        for vid in self.protected:
            last = self.newest.get(vid)
            if last is None or last <= self.cutoff:
                newest = f"newest {last:%Y-%m-%d %H:%M} UTC" if last else "none at all"
                reason = f"no completed snapshot in the last {hours} h; {newest}"
                found.setdefault(vid, []).append(reason)
        for sid, (vid, start, dests) in sorted(self.need_copies.items(), key=lambda i: i[1][1]):
            for dest in dests:
                state = copies.get((dest, sid))
                if state != "completed":
                    missing = {None: "no copy", "error": "copy failed"}.get(
                        state, f"copy still {state}"
                    )
                    reason = f"{sid} ({start:%Y-%m-%d}): {missing} in {dest}"
                    found.setdefault(vid, []).append(reason)
        return found


# ---- AWS: reading and acting ----


def automated_snapshots(ec2):
    """This account's automated snapshots, streamed page by page."""
    return paginate(
        ec2,
        "describe_snapshots",
        "Snapshots",
        OwnerIds=["self"],
        Filters=[{"Name": "tag:" + TAG_TYPE, "Values": [AUTOMATED]}],
    )


def delete_snapshot(ec2, snapshot, reason, summary):
    sid = snapshot["SnapshotId"]
    if summary.dry_run:
        summary.probe("ec2:DeleteSnapshot", summary.region, ec2.delete_snapshot, SnapshotId=sid)
    else:
        try:
            ec2.delete_snapshot(SnapshotId=sid)
        except ClientError as exc:
            code = error_code(exc)
            if code == "InvalidSnapshot.NotFound":  # someone deleted it first: done
                summary.skip(sid, "already deleted")
            elif code == "InvalidSnapshot.InUse":  # an AMI is registered from it
                summary.warn(sid, f"not deleted: {exc.response['Error'].get('Message', code)}")
                summary.skip(sid, "in use by an AMI")
            else:
                summary.fail(sid, f"{code}: {exc}")
            return
    summary.did("delete", snapshot_id=sid, reason=reason, volume_id=snapshot.get("VolumeId"))


def sweep(ec2, today, summary, budget, see=None):
    """Judge each automated snapshot as its page arrives (showing it to ``see``) and delete
    the due ones, WORKERS at a time. Returns False, having said so, when it stopped early
    because Lambda time ran short."""
    listed = []  # set once the last page has been judged

    def due():
        for snapshot in automated_snapshots(ec2):
            if see:
                see(snapshot)
            action, reason = verdict(snapshot, today)
            sid = snapshot["SnapshotId"]
            if action == "delete":
                yield snapshot, reason
            elif action == "warn":
                summary.warn(sid, reason)
            elif action == "hold":
                summary.skip(sid, f"{reason}: kept although due")
                summary.count("kept_forever")
            else:
                summary.count("kept_forever" if action == "forever" else "kept")
        listed.append(True)

    try:
        _, stopped = in_parallel(due(), lambda item: delete_snapshot(ec2, *item, summary), budget)
        why = None if listed and not stopped else f"{budget.left():.0f} s of Lambda time left"
    except OutOfTime as exc:
        why = str(exc)
    if why:
        summary.add(
            "stopped_early",
            "WARN",
            id=summary.region,
            reason=f"{why}; the next run deletes the rest",
        )
    return not why


def start_coverage(ec2, now, today, summary):
    """The coverage check's reads before the sweep (regions, Backup instances, volume
    opt-outs); None, with the reason recorded, when they cannot be made."""
    max_age, problem = coverage_max_age(os.environ.get(COVERAGE_ENV))
    if problem:
        summary.warn(COVERAGE_ENV, problem)
    filters = [
        {"Name": "tag-key", "Values": [TAG_BACKUP]},
        {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
    ]
    try:
        pages = paginate(ec2, "describe_instances", "Reservations", Filters=filters)
        instances = (i for reservation in pages for i in reservation["Instances"])
        cutoff = now - max_age
        protected = protected_volumes(instances, volume_backup_tags(ec2), cutoff)
        enabled = enabled_regions(ec2)
        return Coverage(protected, cutoff, max_age, enabled, summary.region, today)
    except (ClientError, BotoCoreError) as exc:
        summary.fail(summary.region, f"coverage not checked: {exc}")
    except OutOfTime as exc:
        summary.warn(summary.region, f"coverage not checked: {exc}")
    return None


def copies_of(coverage, dest_ec2):
    """{(destination, primary id): state} of the copies the coverage check looks for; a
    completed copy wins over another one of the same primary still pending."""
    dest = dest_ec2.meta.region_name
    found = {}
    copies = paginate(
        dest_ec2,
        "describe_snapshots",
        "Snapshots",
        OwnerIds=["self"],
        Filters=[
            {"Name": "tag:" + TAG_TYPE, "Values": [AUTOMATED]},
            {"Name": "tag:" + TAG_SOURCE_REGION, "Values": [coverage.region]},
        ],
    )
    for copy in copies:
        source = tag_map(copy).get(TAG_SOURCE_SNAPSHOT)
        if source in coverage.need_copies and found.get((dest, source)) != "completed":
            found[(dest, source)] = copy["State"]
    return found


def finish_coverage(coverage, summary, budget):
    """One listing per destination region, then each unprotected volume into the summary
    (``unprotected``, and the count that becomes the UnprotectedVolumes metric)."""
    copies = {}
    try:
        for dest in coverage.destinations():
            copies |= copies_of(coverage, make_client("ec2", dest, budget))
    except (ClientError, BotoCoreError) as exc:
        summary.fail(summary.region, f"coverage not checked: {exc}")
        return
    except OutOfTime as exc:
        summary.warn(summary.region, f"coverage not checked: {exc}")
        return
    for vid, reasons in sorted(coverage.unprotected(copies).items()):
        more = f"; and {len(reasons) - MAX_REASONS} more" if len(reasons) > MAX_REASONS else ""
        summary.add(
            "unprotected",
            "WARN",
            volume_id=vid,
            **coverage.protected[vid],
            reason="; ".join(reasons[:MAX_REASONS]) + more,
        )
    summary.count("unprotected", 0)
    summary.count("protected", len(coverage.protected) - summary.data["counts"]["unprotected"])


def run(event=None, context=None, *, region=None, now=None):
    """One manager run; ``now`` (a datetime) is injectable for tests and the demo."""
    event = event or {}
    region = resolve_region(region)
    now = now or datetime.now(UTC)
    today = utc_today(now)
    summary = Summary(JOB, region, today, event_dry_run(event), event_key(event, context))
    budget = Budget(context)
    ec2 = make_client("ec2", region, budget, Pacer())
    coverage = start_coverage(ec2, now, today, summary)
    finished = sweep(ec2, today, summary, budget, coverage.see if coverage else None)
    if coverage and finished:
        finish_coverage(coverage, summary, budget)
    elif coverage:
        summary.warn(region, "coverage not checked: the sweep stopped early")
    return summary.result()


def lambda_handler(event, context):
    return run(event, context)


def main(argv=None):
    return cli(cli_parser(JOB, "Delete automated snapshots whose DeleteOn has come."), argv)


if __name__ == "__main__":
    sys.exit(main())
