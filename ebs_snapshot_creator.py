"""EBS snapshot creator: snapshot every EBS volume of each instance tagged Backup=Yes.

Runs as an AWS Lambda function (handler ``ebs_snapshot_creator.lambda_handler``), once a
day per region, or from the command line. Region: ``AWS_REGION``, else ``AWS_DEFAULT_REGION``.

Instance tags read
    Backup      Yes/true/1/on (any case) enables backups; No/false/0/off disables; any other
                value is reported as a warning and the instance is skipped.
    Retention   days to keep its snapshots: a whole number, 1 or more (default 7). Anything
                else warns and uses 7; more than 36500 warns and uses 36500.
    Retention_Weekly, Retention_Monthly, Retention_Yearly
                weeks / months / years to keep the snapshot taken on the weekly day, the
                1st of the month, 1 January. Each snapshot gets the latest DeleteOn among
                the tiers that apply to its day (months are calendar months). Unreadable:
                a warning, and no such tier.
    Weekly_Day  Mon ... Sun (or Monday ..., any case): the weekly day (default Sun).
    Copy_Retention, Copy_KmsKeyId
                passed on to the snapshot (when it has a Copy_Dest) for the copier: days
                to keep copies, and the KMS key to encrypt them with. Unreadable: a
                warning, and left out (copies keep the primary's date, the default key).
    Copy_Dest   regions that receive a copy, separated by commas or spaces. Entries that are
                not enabled regions of this account, or that name this region, warn and are
                dropped.
    Vault_Account, Vault_Region, Vault_Retention
                a 12-digit account id that receives a vault copy of each snapshot (the
                copier makes it, through a role there that cannot delete it); the regions
                of that account to copy into (as in Copy_Dest, this region allowed; default
                this region); days to keep vault copies, from the snapshot's creation
                (default its DeleteOn). Unreadable, or an account not in VAULT_ACCOUNT_IDS
                (template parameter VaultAccountIds): a warning, and no vault copy
                (account), the entry dropped (region), or left out (retention).
    Name        used in the snapshot description and copied to the snapshot's Name tag.
    Consistency how the instance's volumes are captured (any case; anything else warns and
                uses volume):
                volume    one crash-consistent CreateSnapshot per volume (the default)
                instance  one CreateSnapshots: every volume at the same instant, opted-out
                          volumes excluded (ExcludeBootVolume, ExcludeDataVolumeIds)
                fsfreeze  Linux, through SSM (the stack's document ebs-snapshot-fsfreeze,
                          template.yaml's CreatorFreezeDocument): flush and freeze the
                          mounted filesystems of the data volumes, take the set, thaw at
                          once. The freeze script starts its own thaw, 60 s later, before it
                          freezes anything. The root filesystem is never frozen.
                vss       Windows: AWS's AWSEC2-CreateVssSnapshot document snapshots from
                          the instance (with the instance's own role), tagged with this
                          contract. It cannot leave out a data volume (a warning says so).
                When the SSM step cannot be done (no agent online, wrong platform, command
                refused, failed, or not done within 30 s for fsfreeze, 300 s for vss; SSM
                unreachable), the crash-consistent set is taken anyway, tagged
                Consistency=crash-fallback, with a warning. Instances are handled four at a
                time, so one slow command holds up no other.
    Lock        governance or compliance (any case): each snapshot is locked (EBS Snapshot
                Lock) until its DeleteOn, 00:00 UTC, right after its CreateSnapshot (a
                pending snapshot can be locked). Absent or a no-word: no lock; anything
                else warns and means no lock.
    Lock_CoolOffHours
                compliance only: hours in which a person can still undo the lock, 1-72
                (default 24; unreadable warns and uses 24, above 72 uses 72).
    Archive     monthly, yearly or monthly,yearly (any case): the snapshots whose DeleteOn
                that tier chose (Retention_Tier) are tagged Archive=Yes, and the manager
                moves them to the cheaper archive tier. Absent or a no-word: none; anything
                else warns and means none; a tier without its Retention_ tag warns.
Volume tag read
    Backup      No/false/0/off leaves this one volume out of an enabled instance.

Snapshot tags written, in the CreateSnapshot call itself (TagSpecifications), never later:
    Type=Automated, DeleteOn=<YYYY-MM-DD, today (UTC) + the longest tier that applies>,
    Retention_Tier=<daily|weekly|monthly|yearly>, Consistency=<volume|instance|fsfreeze|
    vss|crash-fallback>, Copy_Dest=<clean list> with Copy_Retention and Copy_KmsKeyId (only
    when there is one), Vault_Account with Vault_Region=<clean list> and Vault_Retention
    (when valid), Copy_State=pending when there is either (the copier marks it done once
    every copy is made), Name=<instance Name> (only when there is one), Lock=<mode> and
    Lock_CoolOffHours (compliance) for a Lock instance, Archive=Yes (see Archive), and
    EventId=<the event's "id", else the Lambda request id>: a run that sees the same event
    again (Lambda's retry of a failed run keeps the request id; EventBridge may deliver an
    event twice) skips the volumes that already have a snapshot for it.
Snapshot description: "<Name> (<instance-id>) - <volume-id> (<device>) - <region>".

Locks: a lock that fails (throttled, refused, a state AWS cannot lock, the network) never
costs the snapshot: a warning. At the end of each run (not a hand-off's first part), the
region's primaries tagged Lock whose lock is not in force (DescribeLockedSnapshots) are
locked (a lock that ends before DeleteOn is extended): those of earlier runs, of this one,
and a VSS set's. Nothing is ever unlocked. To undo a wrong Lock, remove the tag from the
instance and the snapshots first: a snapshot that keeps it is locked again.

Instances in every state except terminated and shutting-down are snapshotted (a stopped
instance's volumes hold data too). Instance-store volumes have no EBS snapshot and are
ignored. A Multi-Attach volume that several enabled instances ask for is snapshotted once,
alone (Consistency=volume, left out of their sets, with a warning; a VSS set, which cannot
leave it out, takes it instead): the instance with the longest retention names it and
gives its tags, and it is copied wherever any of them asks, with the copy settings of the
first of them that asks for copies (and to the vault of the first that asks for one); the
summary names every instance.

Event
    {}  or an EventBridge scheduled event     every enabled instance in the region
    {"instance_ids": ["i-...", ...]}          only these (still only if Backup enables them);
                                              an id that does not exist is a failure
    {"dry_run": true}                         change nothing; report what would be created
                                              and locked
    {"handoff": {"from": key, "done": [keys]}} written by a hand-off: what is done

Returns a JSON-serialisable summary. If any item failed, every other item is still done,
then JobFailed is raised naming each failure, so the invocation counts as failed. Any
error on one volume or set (AWS's, a network failure, a bug of ours) fails that item only;
a run that cannot list the region's instances fails with its summary line; an event that
is not a JSON object, or a bad dry_run or instance_ids, is refused before anything is done.
A run that starts with less than MIN_START_S seconds fails at once, naming the timeout.

Pace: CreateSnapshot calls go at most at 90% of EC2's rate for them (a burst of 90, then
4.5 a second), four at a time, so a large run neither meets throttling nor starves the
account's other callers. Bad days: throttling is retried by botocore (standard mode, 10
attempts in all); a volume refused with SnapshotCreationPerVolumeRateExceeded is tried
again at least 15 s later while the others go on. A CreateSnapshot(s) whose answer was
lost after it may have reached EC2 (a read timeout, a dropped connection, a 5xx) is not
sent again by botocore: the snapshot it may have made is looked for by its EventId first.
Every instance is listed and planned before the first snapshot starts, and the work goes
in the order of instance and volume ids. With under 60 s of Lambda time left, no new
snapshot is started: the function invokes itself asynchronously with the same event id,
telling it in the event ("handoff": the key to go on from, and the keys done after it)
what is done, and that invocation does the rest (a listing by EventId may lag what was
just made). No call or retry is started that could outlive the Lambda.

Logs: one JSON line per item on stdout, and a last summary line that is also CloudWatch
Embedded Metric Format (namespace EBSSnapshots, dimensions job and region): SnapshotsCreated,
Warnings, Failures. LOG_LEVEL, else AWS_LAMBDA_LOG_LEVEL, sets the level.

IAM actions: ec2:DescribeInstances, ec2:DescribeVolumes, ec2:DescribeRegions,
ec2:DescribeSnapshots, ec2:CreateSnapshot, ec2:CreateSnapshots, ec2:CreateTags (only as
part of those), ec2:LockSnapshot (Type=Automated only), ec2:DescribeLockedSnapshots,
lambda:InvokeFunction (on itself, to hand over the rest of a long run);
for fsfreeze and vss: ssm:DescribeInstanceInformation, ssm:SendCommand (the two documents,
on instances tagged Consistency=fsfreeze or vss), ssm:GetCommandInvocation.
"""

from __future__ import annotations

import argparse
import calendar
import contextlib
import functools
import json
import math
import os
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple

import boto3
import botocore
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
)
from botocore.parsers import ResponseParserError
from botocore.retries import standard as botocore_retries

JOB = "creator"

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
TAG_SOURCE_VOLUME = "Source_VolumeId"  # on copies: the volume their primary was taken of
TAG_COPY_RETENTION = "Copy_Retention"  # days to keep copies, from the primary's creation
TAG_COPY_KMS_KEY = "Copy_KmsKeyId"  # the KMS key to encrypt copies with
TAG_RETENTION_TIER = "Retention_Tier"  # which tier chose a snapshot's DeleteOn
# Archive=Yes on a snapshot (the creator's monthly or yearly primaries, as the instance's
# Archive tag asks; the copier carries it to copies): the manager moves it to the archive tier.
TAG_ARCHIVE = "Archive"
# Vault copies (issue 17): one copy of each primary owned by another account, made through
# the role VAULT_ROLE_NAME there, which can create copies but never delete or retag them.
TAG_VAULT_ACCOUNT, TAG_VAULT_REGION = "Vault_Account", "Vault_Region"
TAG_VAULT_RETENTION = "Vault_Retention"  # days to keep vault copies, from the primary's creation
TAG_SOURCE_ACCOUNT = "Source_Account"  # on vault copies: the account of their primary
TAG_VAULT_STAGING = "Vault_StagingOf"  # on a staging copy: the primary it stands in for
VAULT_ROLE_ENV, VAULT_ROLE = "VAULT_ROLE_NAME", "ebs-snapshot-vault-writer"
# Copy_State on a primary that asks for copies: "pending" from its creation (the creator)
# until the copier has nothing left to do for it, then "done" (the copier). The copier's
# sweeps read only the pending ones: their cost follows the copies to make, not the fleet.
TAG_COPY_STATE, COPY_PENDING, COPY_DONE = "Copy_State", "pending", "done"
# The only accounts a Vault_Account tag may name (template parameter VaultAccountIds): anyone
# who can tag an instance could otherwise send its snapshots to an account of their own.
VAULT_ACCOUNTS_ENV = "VAULT_ACCOUNT_IDS"
# The accounts, besides this one, whose KMS keys a Copy_KmsKeyId may name (template parameter
# CopyKmsKeyAccountIds): an organisation's central key account.
KMS_ACCOUNTS_ENV = "COPY_KMS_ACCOUNT_IDS"
AUTOMATED = "Automated"
MAX_TAG_VALUE = 256  # EC2's limit on a tag value
MAX_RETENTION_DAYS = 36500  # beyond this, date arithmetic overflows long before it matters
# Snapshot Lock (EBS user guide, "Snapshot lock"): a snapshot tagged Lock=governance or
# compliance is locked until its DeleteOn, 00:00 UTC; compliance with a cooling-off period
# (Lock_CoolOffHours, 1-72) in which a person may still undo a wrong tag.
TAG_LOCK, TAG_LOCK_COOL_OFF = "Lock", "Lock_CoolOffHours"
LOCK_MODES = ("governance", "compliance")
COOL_OFF_HOURS, MAX_COOL_OFF_HOURS = 24, 72
LOCKS_IN_FORCE = ("governance", "compliance-cooloff", "compliance")  # not "expired"
RELOCK = "tagged Lock but not locked (an earlier lock failed, or was removed)"
# A copy may lag its primary this long (the copier's sweeps, 20 copies at a time
# into a region) before the copier and the manager's coverage check call it late.
COPY_LAG_ENV, COPY_LAG_HOURS = "COPY_MAX_LAG_HOURS", 24
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
# Snapshot ids in one filter or one call (CreateTags takes up to 1000 resource ids; the EC2
# API reference recommends smaller batches). The copier's lookups and Copy_State marks, the
# manager's lookups of due copies' primaries and of archives under way.
LOOKUP_BATCH = 200
# Set explicitly: the boto3 in Lambda's runtime may be older and default to "legacy" retries.
# Standard mode retries RequestLimitExceeded and 5xx with jittered backoff of at most 20 s.
RETRIES = {"mode": "standard", "total_max_attempts": 10}
CONNECT_TIMEOUT_S, READ_TIMEOUT_S = 5, 20  # so that one HTTP attempt has a known bound
ATTEMPT_S = CONNECT_TIMEOUT_S + READ_TIMEOUT_S + 2
BACKOFF_CAP_S = 20  # botocore's longest sleep between two attempts
STOP_MARGIN_S = 60  # with less Lambda time than this left, start no new item
# EC2 carries these out at each request it receives: they take no ClientToken (EC2 API
# reference), so a request sent again after its answer was lost would make a second snapshot
# or copy. made_once looks for what such a request made before sending it again.
NOT_IDEMPOTENT = ("CreateSnapshot", "CreateSnapshots", "CopySnapshot")
SEND_TRIES, FIND_TRIES, FIND_WAIT_S = 3, 3, 5
# A run that starts with less than this cannot list and start one item before its margin:
# it fails at once, naming the function's timeout, so that the Errors alarm fires.
MIN_START_S = STOP_MARGIN_S + 2 * ATTEMPT_S
# EC2 meters each account and region with token buckets (EC2 "Request throttling"):
# operation -> (bucket, its size, refill per second). A run spends PACE_SHARE of a bucket's
# size and refill, so that it neither meets RequestLimitExceeded nor empties a bucket the
# account's other callers share.
BUCKETS = {
    "CreateSnapshot": ("snapshots", 100, 5),
    "CreateSnapshots": ("snapshots", 100, 5),
    "DeleteSnapshot": ("snapshots", 100, 5),
    "CopySnapshot": ("mutating", 50, 5),
    "LockSnapshot": ("mutating", 50, 5),
    "CreateVolume": ("mutating", 50, 5),
    "DeleteVolume": ("mutating", 50, 5),
    "ModifySnapshotTier": ("mutating", 50, 5),
    "RestoreSnapshotTier": ("mutating", 50, 5),
    "CreateTags": ("tags", 100, 10),
    "DeleteTags": ("tags", 100, 10),
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
    # Instances and snapshots with a tag the jobs cannot honour (a typo in Copy_Dest, say):
    # each named in the summary's tag_errors with the tag and its value.
    "TagErrors": ("tag_errors", ("creator", "copier", "manager")),
    "Failures": ("failures", ("creator", "copier", "manager")),
    "UnprotectedVolumes": ("unprotected", ()),  # the manager's check; the copier's lag
    "StoppedEarly": ("stopped_early", ("manager",)),
    "LastBackupsKept": ("last_kept", ("manager",)),
    "ExpiredCopiesLeft": ("expired_copies_left", ()),  # only when the manager's check ran
    "SnapshotsLocked": ("locked", ()),  # the creator's and the copier's snapshot locks
    "LocksMissing": ("lock_missing", ("manager",)),  # Lock snapshots still unlocked after a day
    "RestoreDrillsPassed": ("drills_passed", ("manager",)),
    "RestoreDrillsFailed": ("drills_failed", ("manager",)),
    "RestoreSeconds": ("restore_seconds", ()),  # the slowest drill's time to "available"
    "SnapshotsArchived": ("archived", ("manager",)),  # in the archive tier now
    "SnapshotsRestoring": ("restoring", ("manager",)),  # on their way back from it
}
METRIC_UNITS = {"RestoreSeconds": "Seconds"}  # the others count things
DONE = {
    "create": "created",
    "copy": "copied",
    "delete": "deleted",
    "tag": "tagged",
    "lock": "locked",
    "drill": "drilled",
    "archive": "sent_to_archive",
    "restore": "restore_started",
    "share": "shared",
    "unshare": "unshared",
}
REPORT_ORDER = (
    "created",
    "would_create",
    "copied",
    "would_copy",
    "tagged",
    "would_tag",
    "locked",
    "would_lock",
    "drilled",
    "would_drill",
    "sent_to_archive",
    "would_archive",
    "restore_started",
    "would_restore",
    "restored",
    "shared",
    "would_share",
    "unshared",
    "would_unshare",
    "deleted",
    "would_delete",
    "deferred",
    "handed_off",
    "stopped_early",
    "permitted",
    "skipped",
    "unprotected",
    "not_yet_due",
    "tag_errors",
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


def count_or(value, what, cap, default):
    """(whole number, warning or None) for a setting of 1 or more, ``default`` when it is
    absent (None) or unreadable (with a warning); above ``cap``, ``cap`` (a warning)."""
    if value is None:
        return default, None
    number, problem = parse_count(value, what, cap)
    if number is None:
        return default, f"{problem}; using {default}"
    return number, problem


def env_hours(name, default):
    """(timedelta, warning or None) for a setting in hours from the environment: a positive
    number up to a year; anything else warns and uses the default."""
    value = os.environ.get(name)
    if value is None or not value.strip():
        return timedelta(hours=default), None
    try:
        hours = float(value)
    except ValueError:
        hours = -1.0
    if not (math.isfinite(hours) and 0 < hours <= 24 * 366):
        return timedelta(
            hours=default
        ), f"{name} {value!r} is not a number of hours; using {default}"
    return timedelta(hours=hours), None


def tag_map(resource):
    return {t["Key"]: t["Value"] for t in resource.get("Tags") or []}


def backup_enabled(tags):
    """An instance's Backup tag: True, False, or None when it cannot be read."""
    return parse_bool(tags.get(TAG_BACKUP, "no"))


def opted_out(value):
    """A volume's own Backup tag leaves it out only when it clearly says no. An unreadable
    value keeps it in: a backup too many costs little, one too few can cost the data."""
    return value is not None and parse_bool(value) is False


def keep_forever_key(tags):
    """The tag key that keeps a snapshot forever, or None. KeepForever, or a key that is
    KeepForever but for case or surrounding spaces (a typo must never cost a backup), keeps
    it unless its value is exactly a no-word, any case: as the IAM policy's Deny reads it."""
    wanted = TAG_KEEP_FOREVER.lower()
    for key in sorted(tags, key=lambda k: k != TAG_KEEP_FOREVER):  # the exact key first
        if key.strip().lower() == wanted and str(tags[key]).lower() not in FALSE_WORDS:
            return key
    return None


def is_kept_forever(tags):
    return keep_forever_key(tags) is not None


def lock_mode(value):
    """(governance, compliance or None; warning or None) for a Lock tag, any case: absent,
    empty or a no-word means no lock; anything else warns and means no lock."""
    word = str(value or "").strip().lower()
    if word in LOCK_MODES:
        return word, None
    if not word or word in FALSE_WORDS:
        return None, None
    return None, f"{TAG_LOCK} {value!r} is not governance or compliance; not locked"


def cool_off_hours(value):
    """(hours, warning or None) for Lock_CoolOffHours: 1 to 72, default 24."""
    return count_or(value, TAG_LOCK_COOL_OFF, MAX_COOL_OFF_HOURS, COOL_OFF_HOURS)


def lock_request(tags, delete_on, today):
    """LockSnapshot's parameters for a snapshot with these tags and this DeleteOn (a date),
    or None when it is not to be locked (no Lock tag, or its DeleteOn has come). The lock
    expires at DeleteOn 00:00 UTC, within LockSnapshot's 36500 days."""
    mode = lock_mode(tags.get(TAG_LOCK))[0]
    if mode is None or delete_on is None or delete_on <= today:
        return None
    until = min(delete_on, today + timedelta(days=MAX_RETENTION_DAYS))
    request = {
        "LockMode": mode,
        "ExpirationDate": datetime(until.year, until.month, until.day, tzinfo=UTC),
    }
    if mode == "compliance":
        request["CoolOffPeriod"] = cool_off_hours(tags.get(TAG_LOCK_COOL_OFF))[0]
    return request


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


def vault_target(tags, enabled, home):
    """(vault account or None, its regions, tag errors) from the Vault_Account and
    Vault_Region tags of an instance or a primary. The account is 12 digits; regions are
    read as in Copy_Dest, this region included (the default); none left: this region."""
    if TAG_VAULT_ACCOUNT not in tags:
        return None, [], []
    account, shown = tags[TAG_VAULT_ACCOUNT].strip(), tags[TAG_VAULT_ACCOUNT]
    if not re.fullmatch(r"[0-9]{12}", account):
        why = f"{TAG_VAULT_ACCOUNT} {shown!r} is not a 12-digit account id; no vault copy"
        return None, [], [(TAG_VAULT_ACCOUNT, why)]
    if account not in vault_accounts():
        why = f"is not one of {VAULT_ACCOUNTS_ENV} (template parameter VaultAccountIds)"
        return (
            None,
            [],
            [(TAG_VAULT_ACCOUNT, f"{TAG_VAULT_ACCOUNT} {shown!r} {why}; no vault copy")],
        )
    regions, problems = [], []
    for entry in re.split(r"[\s,]+", tags.get(TAG_VAULT_REGION, "").strip()):
        if entry and entry not in regions and (entry in enabled or entry == home):
            regions.append(entry)
        elif entry and entry not in regions:
            reason = "is not an enabled region of this account; dropped"
            problems.append((TAG_VAULT_REGION, f"{TAG_VAULT_REGION} entry {entry!r} {reason}"))
    return account, regions or [home], problems


def vault_retention(tags):
    """(Vault_Retention's days or None, tag errors): None, vault copies keep the DeleteOn."""
    if TAG_VAULT_RETENTION not in tags:
        return None, []
    value = tags[TAG_VAULT_RETENTION]
    days, problem = parse_count(value, TAG_VAULT_RETENTION, MAX_RETENTION_DAYS)
    if not problem:
        return days, []
    return days, [
        (TAG_VAULT_RETENTION, problem if days else f"{problem}; vault copies keep the DeleteOn")
    ]


def copy_delete_on(tags, created, retention_key):
    """(the copies' own DeleteOn, or None for their primary's; warning or None), from the
    primary's ``retention_key`` tag (Copy_Retention for regions, Vault_Retention for
    vaults): that many days from the primary's creation date."""
    if retention_key not in tags:
        return None, None
    days, problem = parse_count(tags[retention_key], retention_key, MAX_RETENTION_DAYS)
    if days is None:
        return None, f"{problem}; copies keep the primary's DeleteOn"
    return created + timedelta(days=days), problem


def copy_until(tags, created, retention_key):
    """The DeleteOn the copier gives a primary's copies: their own (copy_delete_on), else
    the primary's. None when that cannot be read: no copy is made. The copier makes no copy
    once this date has come; the manager's archive stops waiting for one."""
    delete_on = parse_date(tags.get(TAG_DELETE_ON))
    if delete_on is None:
        return None
    return copy_delete_on(tags, created, retention_key)[0] or delete_on


def env_accounts(name):
    """The 12-digit account ids in the environment variable ``name``, separated by commas
    or spaces (anything else in it is ignored)."""
    ids = re.split(r"[\s,]+", os.environ.get(name, "").strip())
    return {i for i in ids if re.fullmatch(r"[0-9]{12}", i)}


def vault_accounts():
    """The vault accounts this stack may copy into: VAULT_ACCOUNT_IDS (template parameter
    VaultAccountIds; none: no vault copies at all)."""
    return env_accounts(VAULT_ACCOUNTS_ENV)


def key_refusal(key, own):
    """Why copies may not be encrypted under the KMS key ``key`` (a Copy_KmsKeyId), or None.
    A key of another account could be disabled by whoever holds it, leaving the copies
    unreadable: a key ARN must name this account (``own()``, asked only then) or one of
    COPY_KMS_ACCOUNT_IDS (template parameter CopyKmsKeyAccountIds, for a central key
    account). A key id or alias without an ARN is this account's."""
    if not KMS_KEY.fullmatch(key):
        return f"{TAG_COPY_KMS_KEY} {key!r} is not a KMS key id, alias or ARN"
    named = re.match(r"arn:aws[a-z-]*:kms:[a-z0-9-]+:([0-9]{12}):", key)
    if named is None or named[1] in env_accounts(KMS_ACCOUNTS_ENV):
        return None
    own = own()
    if named[1] == own:
        return None
    allowed = f"{KMS_ACCOUNTS_ENV} (template parameter CopyKmsKeyAccountIds)"
    this = "this one" if own else "this one (whose id could not be read)"
    return f"{TAG_COPY_KMS_KEY} {key!r} is a key of account {named[1]}, not {this} nor {allowed}"


def own_account(context, region, budget=None):
    """This account's id: from the Lambda's own ARN (arn:aws:lambda:region:account:...),
    else sts:GetCallerIdentity (the command line); None when neither can tell, so that what
    needs it refuses (a key ARN) rather than fails (never the backup)."""
    arn = getattr(context, "invoked_function_arn", None) or ""
    if re.fullmatch(r"arn:aws[a-z-]*:lambda:[a-z0-9-]+:[0-9]{12}:.+", arn):
        return arn.split(":")[4]
    try:
        return caller_account(region, budget)
    except OutOfTime:
        raise
    except Exception:
        return None


def caller_account(region, budget=None):
    """This account's id (sts:GetCallerIdentity, which needs no permission)."""
    return make_client("sts", region, budget).get_caller_identity()["Account"]


def vault_client(account, region, budget=None, pacer=None):
    """An EC2 client of the vault account ``account`` in ``region``, through its writer role
    (sts:AssumeRole; the role's name is VAULT_ROLE_NAME, default ebs-snapshot-vault-writer).
    The session is tagged Source_Account=<this account> (sts:GetCallerIdentity, which needs
    no permission): the writer role's trust policy requires it to be the caller's own
    account, and its policy lets a copy be tagged with no other Source_Account, so that no
    source sharing the vault can pass its copy off as another's."""
    role = os.environ.get(VAULT_ROLE_ENV, "").strip() or VAULT_ROLE
    partition = boto3.session.Session().get_partition_for_region(region)
    arn = f"arn:{partition}:iam::{account}:role/{role}"
    creds = make_client("sts", region, budget).assume_role(
        RoleArn=arn,
        RoleSessionName="ebs-snapshot-lifecycle",
        Tags=[{"Key": TAG_SOURCE_ACCOUNT, "Value": caller_account(region, budget)}],
    )["Credentials"]
    keys = {
        "aws_access_key_id": creds["AccessKeyId"],
        "aws_secret_access_key": creds["SecretAccessKey"],
        "aws_session_token": creds["SessionToken"],
    }
    return make_client("ec2", region, budget, pacer, keys)


def read_event(event):
    """The event as a dict (None is {}); anything but a JSON object is refused."""
    if event is None:
        return {}
    if not isinstance(event, dict):
        shown = repr(event)[:80]
        raise ValueError(f"the event must be a JSON object, not {type(event).__name__} {shown}")
    return event


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


def clock_of(now, summary):
    """The time now, on the run's clock: ``now`` (its start, injectable) plus the time since
    the summary was started with it."""
    return now + timedelta(seconds=time.monotonic() - summary.started)


class Budget:
    """The Lambda's time left (unlimited without a context): when to stop starting work.

    Guarding a client makes every HTTP attempt, and every retry sleep, start only when it
    can finish in time, so the Lambda timeout never cuts a call in half.
    """

    def __init__(self, context):
        self._left_ms = getattr(context, "get_remaining_time_in_millis", None)
        # botocore's own rules for what standard mode retries (throttling, 5xx, network)
        self._retried = botocore_retries.StandardRetryConditions(RETRIES["total_max_attempts"])

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

    def _before_retry(self, **kwargs):
        """Stop only a retry that botocore would make: any other failed answer (404,
        AccessDenied ...) keeps its own code and message, whatever the time left."""
        if self.left() >= ATTEMPT_S + BACKOFF_CAP_S:
            return
        attempt = botocore_retries.RetryEventAdapter().create_retry_context(**kwargs)
        if self._retried.is_retryable(attempt):
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


def in_parallel(items, work, budget, failed):
    """work(item) for each item, WORKERS at a time, until Lambda time runs short.

    Any exception but OutOfTime from work(item), a bug of ours included, is that item's
    failure: failed(item, exception) records it and every other item is still done. Items
    may be a generator, read only as workers come free; if reading raises OutOfTime, no
    more work starts (the caller knows whether its generator finished), and any other
    exception from reading is raised once the started work is over, as is one from
    failed() itself (so that no failure goes unrecorded). Returns (started, stopped): items
    started, and how many of those OutOfTime stopped.
    """
    slots, lock = threading.Semaphore(WORKERS), threading.Lock()
    tally, unrecorded = {"started": 0, "stopped": 0}, []

    def task(item):
        try:
            work(item)
        except OutOfTime:
            with lock:
                tally["stopped"] += 1
        except Exception as exc:
            try:
                failed(item, exc)
            except Exception as lost:
                unrecorded.append(lost)
        finally:
            slots.release()

    items = iter(items)
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        while True:
            slots.acquire()
            try:
                if budget.low():
                    raise OutOfTime("stop starting")
                item = next(items)
            except (OutOfTime, StopIteration):
                slots.release()
                break
            except BaseException:
                slots.release()
                raise
            tally["started"] += 1
            pool.submit(task, item)
    if unrecorded:
        raise unrecorded[0]
    return tally["started"], tally["stopped"]


def make_client(service, region, budget=None, pacer=None, credentials=None):
    """Created per run, never at import, so moto and AWS_ENDPOINT_URL apply. ``credentials``:
    another account's (a vault's), as boto3.client takes them."""
    config = Config(
        retries=dict(RETRIES),
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        user_agent_extra="ebs-snapshot-lifecycle",
    )
    client = boto3.client(service, region_name=region, config=config, **(credentials or {}))
    for operation in NOT_IDEMPOTENT if service == "ec2" else ():
        client.meta.events.register_first(f"needs-retry.ec2.{operation}", answer_lost)
    if budget:
        budget.guard(client)
    if pacer:  # registered last, so it runs first: wait for a token, then check the time
        pacer.guard(client)
    return client


class AnswerLost(Exception):
    """A call that EC2 may have carried out lost its answer (a read timeout, a dropped
    connection, a server error): botocore does not send it again; made_once looks first."""

    def __init__(self, error):
        super().__init__(describe_error(error))
        self.error = error


def answer_lost(caught_exception=None, response=None, operation=None, request_dict=None, **kw):
    """needs-retry handler of the NOT_IDEMPOTENT calls: stop botocore's retry of an attempt
    that may have reached EC2. A connection that could not be made (EndpointConnectionError,
    ConnectTimeoutError) or throttling (503) made nothing, nor does a dry run (DryRun=true):
    botocore retries those."""
    body = (request_dict or {}).get("body")
    if str(body.get("DryRun") if isinstance(body, dict) else body).lower() in (
        "true",
        "dryrun=true",
    ):
        return
    if caught_exception is not None:
        if not isinstance(caught_exception, botocore.exceptions.ConnectionError):
            raise AnswerLost(caught_exception)
        return
    status = response[0].status_code if response is not None else 0
    if status >= 500 and status != 503:
        raise AnswerLost(ClientError(response[1], operation.name))


class Lookup:
    """What a NOT_IDEMPOTENT call may have made: ``find(final)`` gives the response the call
    would have given, from the tags it sets (None when nothing is found; ``final``, at the
    last look, may settle for a part). ``lost`` once an answer was lost (or a hand-off was
    in doubt): every later send of the call looks first, retries of a busy volume included."""

    def __init__(self, find, budget=None, lost=False):
        self.find, self.budget, self.lost = find, budget, lost

    def look(self):
        """Listings are eventually consistent: FIND_TRIES looks, FIND_WAIT_S apart."""
        for looks in range(1, FIND_TRIES + 1):
            found = self.find(looks == FIND_TRIES)
            if found is not None or looks == FIND_TRIES:
                return found
            if self.budget and self.budget.left() - FIND_WAIT_S < STOP_MARGIN_S:
                raise OutOfTime("no time left to look for what a lost answer made")
            time.sleep(FIND_WAIT_S)
        return None


def made_once(call, params, lookup):
    """call(**params), one of NOT_IDEMPOTENT. Once an answer was lost after EC2 may have
    carried the call out, what it made is looked for (lookup) before it is sent again, up to
    SEND_TRIES sends in all: a second snapshot or copy costs money and a copy slot."""
    error = None
    for _ in range(SEND_TRIES):
        found = lookup.look() if lookup.lost else None
        if found is not None:
            return found
        try:
            return call(**params)
        except AnswerLost as lost:
            lookup.lost, error = True, lost.error
    found = lookup.look()
    if found is None:
        raise error
    return found


def tagged(ec2, tags, *filters):
    """This account's snapshots carrying all of ``tags`` (and passing ``filters``)."""
    wanted = [{"Name": f"tag:{k}", "Values": [v]} for k, v in tags.items()]
    return list(
        paginate(
            ec2, "describe_snapshots", "Snapshots", OwnerIds=["self"], Filters=[*wanted, *filters]
        )
    )


def hand_off(context, event, summary, done_here, left=None, carry=None):
    """Out of time: invoke this same function again, asynchronously, on the same event id,
    so the rest (``left`` items, when known) is done there; ``carry``, added to the event,
    tells it what is done (Describe calls are eventually consistent: what this invocation
    just made may not be listed there yet). Without progress here, fail instead, so that a
    run that cannot move never chains invocations forever."""
    rest = f"{left} left" if left is not None else "the rest"
    if not done_here:
        summary.fail(summary.region, f"out of Lambda time before any progress; {rest} not done")
        return
    payload = json.dumps({**event, "id": summary.data["event_id"], **(carry or {})})
    arn = context.invoked_function_arn
    try:
        make_client("lambda", summary.region, Budget(context)).invoke(
            FunctionName=arn, InvocationType="Event", Payload=payload
        )
    except Exception as exc:  # the run fails: Lambda retries the event, which skips what is done
        summary.error(arn, exc, f"could not hand {rest} over to a new invocation")
        return
    counted = {} if left is None else {"count": left}
    summary.add(
        "handed_off",
        "WARN",
        id=arn,
        **counted,
        reason="Lambda time ran short; a new invocation on the same event does the rest",
    )


def run_job(job, body, event, context, region=None, now=None, check=None):
    """The frame of every run: read the event, then body(event, context, summary, budget, now).

    An event that cannot be read (not a JSON object, a dry_run that is not yes/no, what
    ``check`` refuses) raises ValueError before anything is done. Otherwise the summary
    line and its metrics are written whatever happens: a body that raises (it could not
    list the region's resources, or a bug of ours) is one failure saying why, and a run
    that starts with too little Lambda time does nothing and fails at once. Returns the
    summary, or raises JobFailed once it is written if anything failed.
    """
    region = resolve_region(region)
    now = now or datetime.now(UTC)
    try:
        event = read_event(event)
        dry_run = event_dry_run(event)
        if check:
            check(event)
    except ValueError as exc:
        refused = Summary(job, region, utc_today(now), False)
        refused.fail("event", f"event refused: {exc}")
        refused.finish()
        raise
    summary = Summary(job, region, utc_today(now), dry_run, event_key(event, context))
    budget = Budget(context)
    if budget.left() < MIN_START_S:
        who = getattr(context, "invoked_function_arn", None) or job
        summary.fail(who, too_short(budget.left()))
        return summary.result()
    try:
        body(event, context, summary, budget, now)
    except Exception as exc:  # listing the region failed, or a bug: the summary says which
        summary.error(region, exc, "the run stopped")
    return summary.result()


def too_short(left):
    return (
        f"the function's timeout is too short: the run started with {left:.0f} s of Lambda "
        f"time, and needs at least {MIN_START_S} s to do anything (900 s, Lambda's most, for "
        "a large region). Raise the function's Timeout"
    )


def locks_in_force(ec2, ids=None):
    """{snapshot id: its lock} for this region's snapshots locked now (DescribeLockedSnapshots,
    filtered on the lock state; botocore has no paginator for it, so NextToken by hand)."""
    params = {"Filters": [{"Name": "lock-state", "Values": list(LOCKS_IN_FORCE)}]}
    params |= {"SnapshotIds": ids} if ids else {"MaxResults": PAGE_SIZE}
    found = {}
    while True:
        page = ec2.describe_locked_snapshots(**params)
        found |= {lock["SnapshotId"]: lock for lock in page.get("Snapshots", [])}
        if not page.get("NextToken"):
            return found
        params["NextToken"] = page["NextToken"]


def lock_snapshot(ec2, snapshot_id, request, summary, **item):
    """Lock one snapshot. A lock that fails (throttled, refused, a state AWS cannot lock,
    the network) never costs the snapshot: a warning, and a later run's sweep locks it."""
    until = request["ExpirationDate"].date().isoformat()
    record = {"snapshot_id": snapshot_id} if snapshot_id else {}
    record |= {"lock": request["LockMode"], "until": until, **item}
    if summary.dry_run:
        summary.did("lock", **record)
        return
    try:
        ec2.lock_snapshot(SnapshotId=snapshot_id, **request)
    except Exception as exc:  # out of time too: a sweep (this run's, or the next) locks it
        where = {k: v for k, v in item.items() if k != "reason"}
        said = [w for w in summary.data["warnings"] if w["id"] == snapshot_id]
        if not any(w["reason"].startswith("not locked (") for w in said):  # once a run
            why = f"not locked ({describe_error(exc)}); a later sweep locks it"
            summary.warn(snapshot_id or "?", why, **where)
        return
    summary.did("lock", **record)


def unlocked(snapshots, locked, today):
    """[(snapshot id, LockSnapshot's parameters)] for the snapshots tagged for a lock, their
    DeleteOn ahead, whose lock is not in force (it failed, or was removed while the Lock tag
    stayed) or ends before DeleteOn (shortened): locking again extends it, in any state."""
    todo = []
    for snapshot in snapshots:
        tags, sid = tag_map(snapshot), snapshot["SnapshotId"]
        request = lock_request(tags, parse_date(tags.get(TAG_DELETE_ON)), today)
        if not request or snapshot.get("State") not in ("pending", "completed"):
            continue
        ends = (locked.get(sid) or {}).get("LockExpiresOn")
        if sid not in locked or (ends is not None and ends < request["ExpirationDate"]):
            todo.append((sid, request))
    return todo


def probe_lock(ec2, todo, summary):
    """Dry run: ask AWS whether LockSnapshot would be allowed here, with the lock a snapshot
    of ours needs (IAM allows it only on Type=Automated ones, so a made-up id cannot tell,
    and a snapshot already locked in compliance mode refuses any other lock); with none
    that needs a lock, say it could not be asked."""
    region = ec2.meta.region_name
    if not todo:
        summary.skip(region, "ec2:LockSnapshot not probed: no snapshot here needs a lock now")
        return
    sid, request = todo[0]
    summary.probe("ec2:LockSnapshot", region, ec2.lock_snapshot, SnapshotId=sid, **request)


def enabled_regions(ec2):
    """Regions enabled for this account (opt-in regions only once opted in)."""
    return {r["RegionName"] for r in ec2.describe_regions()["Regions"]}


def vault_copy_states(vault_ec2, region, account, ids=None):
    """({primary id: the state of its copy there (completed wins)}, the copies tagged Lock):
    what a vault holds of ``account``'s primaries of ``region`` (all, or ``ids``). Another
    source sharing the vault could tag a copy with one of our snapshot ids: only copies
    tagged Source_Account=``account`` count."""
    filters = [
        {"Name": "tag:" + TAG_SOURCE_REGION, "Values": [region]},
        {"Name": "tag:" + TAG_SOURCE_ACCOUNT, "Values": [account]},
    ]
    if ids:
        filters.append({"Name": "tag:" + TAG_SOURCE_SNAPSHOT, "Values": ids})
    states, lockable = {}, []
    for snap in paginate(
        vault_ec2, "describe_snapshots", "Snapshots", OwnerIds=["self"], Filters=filters
    ):
        source = tag_map(snap).get(TAG_SOURCE_SNAPSHOT)
        if source and states.get(source) != "completed":
            states[source] = snap["State"]
        if TAG_LOCK in tag_map(snap):
            lockable.append(snap)
    return states, lockable


def paginate(ec2, operation, key, **params):
    pages = ec2.get_paginator(operation).paginate(
        **params, PaginationConfig={"PageSize": PAGE_SIZE}
    )
    for page in pages:
        yield from page[key]


def batches(items):
    return [items[i : i + LOOKUP_BATCH] for i in range(0, len(items), LOOKUP_BATCH)]


def automated_snapshots(ec2, *filters):
    """This account's automated snapshots (and only those that pass ``filters``), streamed
    page by page."""
    return paginate(
        ec2,
        "describe_snapshots",
        "Snapshots",
        OwnerIds=["self"],
        Filters=[{"Name": "tag:" + TAG_TYPE, "Values": [AUTOMATED]}, *filters],
    )


def volume_backup_tags(ec2):
    """{volume id: its own Backup tag}, for the volumes that have one: the opt-outs."""
    volumes = paginate(
        ec2, "describe_volumes", "Volumes", Filters=[{"Name": "tag-key", "Values": [TAG_BACKUP]}]
    )
    return {v["VolumeId"]: tag_map(v)[TAG_BACKUP] for v in volumes}


def error_code(exc):
    return exc.response.get("Error", {}).get("Code", "Unknown")


def from_botocore(exc):
    """AWS's answer or botocore's own failure (network, parsing), as opposed to a bug of ours."""
    exc = exc.error if isinstance(exc, AnswerLost) else exc
    return type(exc).__module__.split(".")[0] == "botocore"


def describe_error(exc):
    """One line naming what failed: AWS's error code and message; botocore's failure, whose
    message names the endpoint (EndpointConnectionError, ReadTimeoutError ...); or a bug."""
    if isinstance(exc, AnswerLost):
        return describe_error(exc.error)
    if isinstance(exc, ClientError):
        return f"{error_code(exc)}: {exc}"
    if isinstance(exc, OutOfTime):
        return f"out of Lambda time: {exc}"
    kind = type(exc).__name__ if from_botocore(exc) else f"unexpected {type(exc).__name__}"
    return f"{kind}: {exc}"


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
        "Metrics": [{"Name": name, "Unit": METRIC_UNITS.get(name, "Count")} for name in values],
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

    def tag_error(self, id, tag, value, reason, **item):
        """A tag the jobs cannot honour (a typo in Copy_Dest, a key of another account): a
        warning that names the tag and its value, and the resource listed in tag_errors,
        whose count of distinct ids is the TagErrors metric (and its alarm)."""
        value = str(value)[:MAX_TAG_VALUE] if value is not None else None
        self.warn(id, reason, tag=tag, value=value, **item)
        with self._lock:
            errors = self.data.setdefault("tag_errors", [])
            errors.append({"id": id, "tag": tag, "value": value, **item})
            self.data["counts"]["tag_errors"] = len({error["id"] for error in errors})

    def fail(self, id, error, **item):
        self.add("failures", "ERROR", id=id, error=error, **item)

    def error(self, id, exc, what=None, **item):
        """A failure from an exception, in one line; for a bug of ours, its traceback is
        logged too (not in the summary), so that it can be fixed."""
        text = describe_error(exc)
        self.fail(id, f"{what}: {text}" if what else text, **item)
        if not from_botocore(exc) and not isinstance(exc, OutOfTime):
            where = "".join(traceback.format_exception(exc)[-4:])
            log("ERROR", self.job, self.region, "traceback", id=id, traceback=where)

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
    event = f", event {summary['event_id']}" if summary.get("event_id") else ""
    lines = [f"{summary['job']} in {summary['region']} on {summary['date']}{event}{dry}"]
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
        epilog="Exit codes: 0 all done; 1 the run failed: some items failed (each named), or "
        "the region could not be read at all; 2 bad usage, or no credentials, region or "
        "profile; 130 interrupted (Ctrl-C). Errors are one line on stderr, never a traceback.",
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
    event = {"dry_run": args.dry_run}
    if getattr(args, "instance_ids", None):
        event["instance_ids"] = args.instance_ids
    if getattr(args, "event_id", None):
        event["id"] = args.event_id
    try:
        if args.region is not None:  # given, even empty: never replaced by a default
            os.environ["AWS_REGION"] = region_name(args.region)
        check_setup()
        with contextlib.redirect_stdout(sys.stderr):  # the log; stdout is for the report
            summary, code = lambda_handler(event, None), 0
    except JobFailed as exc:
        summary, code = exc.summary, 1
        again = f"; run it again with --event-id {event['id']}" if "id" in event else ""
        print(f"{parser.prog}: {exc}{again}", file=sys.stderr)
    except SETUP_ERRORS as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # never a traceback: one line, naming what failed
        print(f"{parser.prog}: {describe_error(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: what was done is done; a run again continues
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
    print(json.dumps(summary, indent=2, default=str) if args.json else report(summary))
    return code


# What stops a command-line run before it starts: exit 2, one line.
SETUP_ERRORS = (
    ValueError,
    NoCredentialsError,
    PartialCredentialsError,
    NoRegionError,
    ProfileNotFound,
)


def check_setup():
    """Before a command-line run: a region EC2 has, a profile that exists, and credentials."""
    region_name(resolve_region())
    if boto3.session.Session().get_credentials() is None:
        raise NoCredentialsError()


def region_name(text):
    """A region botocore knows for EC2, in any partition (offline data): a typo is refused
    at once instead of retried against an endpoint that does not exist."""
    session = boto3.session.Session()
    known = {
        region
        for partition in session.get_available_partitions()
        for region in session.get_available_regions("ec2", partition_name=partition)
    }
    if text not in known:
        raise ValueError(
            f"{text!r} is not an EC2 region (none of the {len(known)} that botocore "
            f"{botocore.__version__} knows; a newer botocore may know a new one)"
        )
    return text


# ---- end of shared block ----

SKIPPED_STATES = ("terminated", "shutting-down")
TAG_WEEKLY_DAY = "Weekly_Day"
# Longer-lived tiers: (tier, instance tag, cap: about a hundred years, in its own unit).
TIERS = (
    ("weekly", "Retention_Weekly", 5200),
    ("monthly", "Retention_Monthly", 1200),
    ("yearly", "Retention_Yearly", 100),
)
ARCHIVE_TIERS = ("monthly", "yearly")  # the tiers an instance's Archive tag may name
TAG_CONSISTENCY = "Consistency"  # how to take an instance's snapshots; and how they were taken
MODES = ("volume", "instance", "fsfreeze", "vss")
FALLBACK = "crash-fallback"  # the consistency step failed: a crash-consistent set instead
SSM_PLATFORM = {"fsfreeze": "Linux", "vss": "Windows"}
# fsfreeze: the stack's own document (template.yaml's CreatorFreezeDocument), the only command the
# role may run; vss: AWS's document, which snapshots from the instance with our tags.
FREEZE_DOCUMENT, VSS_DOCUMENT = "ebs-snapshot-fsfreeze", "AWSEC2-CreateVssSnapshot"
THAW_AFTER_S = 60  # the freeze script thaws by itself this long after freezing, whatever happens
FREEZE_WAIT_S = 30  # the longest wait for the freeze: the set is taken well before the thaw
VSS_WAIT_S = 300  # AWS's document may first install its VSS components
POLL_S = 2
DONE_STATES = ("Success", "Failed", "TimedOut", "Cancelled", "Cancelling")  # SSM's last states
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DEFAULT_WEEKLY_DAY = 6  # Sunday
MAX_DESCRIPTION = 255  # EC2's limit on a snapshot description
TAG_EVENT_ID = "EventId"  # the event a snapshot was made for: a retried event skips it
HANDOFF = "handoff"  # in a handed-over event: what the invocations before it did (resumed)
# A volume that is already being snapshotted too often is refused with this code; AWS asks
# for at least 15 s before that volume is tried again. Other volumes go on meanwhile.
PER_VOLUME_RATE_CODE = "SnapshotCreationPerVolumeRateExceeded"
PER_VOLUME_WAIT_S = 15
PER_VOLUME_TRIES = 3
# Errors that a DescribeVolumes without the multi-attach-enabled filter would meet as well.
NOT_A_FILTER_PROBLEM = frozenset(
    {"UnauthorizedOperation", "AccessDenied", "AuthFailure", "RequestLimitExceeded", "Throttling"}
)
# What a snapshot call whose answer was lost may have made started since this long before
# the look (a run with no EventId: a command-line run without --event-id in the tests).
LOST_SINCE = timedelta(minutes=5)


# ---- decisions: pure functions of the resources and today's date ----


def parse_retention(value):
    """(days, warning or None) for a Retention tag value; None means the tag is absent."""
    return count_or(value, TAG_RETENTION, MAX_RETENTION_DAYS, DEFAULT_RETENTION_DAYS)


def parse_weekday(value):
    """(weekday, Monday being 0; warning or None) for Weekly_Day: Sun or Sunday, any case."""
    if value is None:
        return DEFAULT_WEEKLY_DAY, None
    word = value.strip().lower()
    for number, name in enumerate(WEEKDAYS):
        if word in (name, name[:3]):
            return number, None
    return (
        DEFAULT_WEEKLY_DAY,
        f"{TAG_WEEKLY_DAY} {value!r} is not a weekday (Mon ... Sun); using Sun",
    )


def add_months(day, months):
    """Calendar months: 31 January + 1 month is the last day of February."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def tier_expiry(tier, count, today):
    if tier == "weekly":
        return today + timedelta(weeks=count)
    return add_months(today, count * (12 if tier == "yearly" else 1))


def retention_plan(tags, today):
    """(DeleteOn, tier, tag errors as (tag, why)): the latest date among the tiers that apply
    to today (the weekly day, the 1st of the month, 1 January); on a tie, the longer tier
    names it."""
    days, problem = parse_retention(tags.get(TAG_RETENTION))
    warnings = [(TAG_RETENTION, problem)] if problem else []
    weekday, problem = parse_weekday(tags.get(TAG_WEEKLY_DAY))
    warnings += [(TAG_WEEKLY_DAY, problem)] if problem else []
    applies = {
        "weekly": today.weekday() == weekday,
        "monthly": today.day == 1,
        "yearly": (today.month, today.day) == (1, 1),
    }
    candidates = [(today + timedelta(days=days), 0, "daily")]
    for rank, (tier, tag, cap) in enumerate(TIERS, 1):
        if tag not in tags:
            continue
        count, problem = parse_count(tags[tag], tag, cap)
        if problem:
            warnings.append((tag, problem if count else f"{problem}; no {tier} tier"))
        if count and applies[tier]:
            candidates.append((tier_expiry(tier, count, today), rank, tier))
    delete_on, _, tier = max(candidates)
    return delete_on, tier, warnings


def copy_settings(tags, own):
    """({Copy_Retention, Copy_KmsKeyId} to pass on to the copier, tag errors): bad values are
    left out, so copies fall back to the primary's DeleteOn and the default key (a key of
    another account too: key_refusal; ``own()`` gives this account's id)."""
    settings, warnings = {}, []
    if TAG_COPY_RETENTION in tags:
        days, problem = parse_count(
            tags[TAG_COPY_RETENTION], TAG_COPY_RETENTION, MAX_RETENTION_DAYS
        )
        if days:
            settings[TAG_COPY_RETENTION] = str(days)
        if problem:
            why = problem if days else f"{problem}; copies keep the primary's DeleteOn"
            warnings.append((TAG_COPY_RETENTION, why))
    if TAG_COPY_KMS_KEY in tags:
        key = tags[TAG_COPY_KMS_KEY].strip()
        refused = key_refusal(key, own)
        if refused:
            why = f"{refused}; copies use each region's default EBS key"
            warnings.append((TAG_COPY_KMS_KEY, why))
        else:
            settings[TAG_COPY_KMS_KEY] = key
    return settings, warnings


def vault_settings(tags, enabled, region):
    """({Vault_Account, Vault_Region, Vault_Retention} to pass on to the copier, tag errors)."""
    account, regions, warnings = vault_target(tags, enabled, region)
    if account is None:
        return {}, warnings
    settings = {TAG_VAULT_ACCOUNT: account, TAG_VAULT_REGION: ",".join(regions)}
    days, problems = vault_retention(tags)
    settings |= {TAG_VAULT_RETENTION: str(days)} if days else {}
    return settings, warnings + problems


def parse_mode(value):
    """(mode, warning or None) for an instance's Consistency tag (any case)."""
    if value is None:
        return "volume", None
    mode = value.strip().lower()
    if mode in MODES:
        return mode, None
    return "volume", f"{TAG_CONSISTENCY} {value!r} is not one of {', '.join(MODES)}; using volume"


def snapshot_set(plans, ebs):
    """One multi-volume set of an instance: ``plans`` its volumes to snapshot, ``ebs`` all
    its EBS volumes as (volume id, device, is root). The others are excluded."""
    wanted = {p["volume_id"] for p in plans}
    first = plans[0]
    return {
        "set": first["mode"],
        "instance_id": first["instance_id"],
        "plans": plans,
        "tags": first["tags"],
        "copy_dest": first["copy_dest"],
        "lock": first["lock"],
        "description": first["set_description"],
        "exclude_boot": any(root and vid not in wanted for vid, _, root in ebs),
        "exclude_data": [vid for vid, _, root in ebs if not root and vid not in wanted],
        "data": [(vid, dev) for vid, dev, root in ebs if not root and vid in wanted],
    }


def volume_specs(volumes):
    """The freeze document's Volumes parameter: volume-id=device pairs, separated by spaces
    (template.yaml's CreatorFreezeDocument finds each one's mounted filesystems on the instance)."""
    return " ".join(f"{vid}={dev}" for vid, dev in volumes)


def vss_tags(tags, consistency):
    """Tags as AWS's VSS document takes them: Key=K,Value=V;... (no , or ; inside)."""
    clean = written_tags(tags, consistency)
    if TAG_COPY_DEST in clean:  # the copier reads regions separated by spaces too
        clean[TAG_COPY_DEST] = clean[TAG_COPY_DEST].replace(",", " ")
    return ";".join(f"Key={k},Value={re.sub(r'[,;]', ' ', v)}" for k, v in clean.items())


def describe(name, instance_id, volume_id, device, region):
    who = f"{name} ({instance_id})" if name else instance_id
    return f"{who} - {volume_id} ({device}) - {region}"[:MAX_DESCRIPTION]


def lock_tags(tags):
    """({Lock, Lock_CoolOffHours} to write on the snapshots, tag errors) from an instance's
    Lock and Lock_CoolOffHours tags."""
    mode, problem = lock_mode(tags.get(TAG_LOCK))
    warnings = [(TAG_LOCK, problem)] if problem else []
    if mode != "compliance":
        return ({TAG_LOCK: mode} if mode else {}), warnings
    hours, problem = cool_off_hours(tags.get(TAG_LOCK_COOL_OFF))
    warnings += [(TAG_LOCK_COOL_OFF, problem)] if problem else []
    return {TAG_LOCK: mode, TAG_LOCK_COOL_OFF: str(hours)}, warnings


def archive_tiers(tags):
    """(the tiers whose snapshots are tagged Archive=Yes, tag errors) from an instance's
    Archive tag: monthly, yearly or both (commas or spaces, any case). Absent, empty or a
    no-word: none; anything else warns and means none. A tier the instance does not keep
    (no Retention_Monthly, say) is named in a warning: nothing of it gets archived."""
    value = tags.get(TAG_ARCHIVE, "").strip().lower()
    if not value or value in FALSE_WORDS:
        return frozenset(), []
    words = {word for word in re.split(r"[\s,]+", value) if word}
    if not words <= set(ARCHIVE_TIERS):
        raw = tags[TAG_ARCHIVE]
        why = f"{TAG_ARCHIVE} {raw!r} is not monthly, yearly or both; not archived"
        return frozenset(), [(TAG_ARCHIVE, why)]
    kept = {tier: tag for tier, tag, _ in TIERS}
    warnings = [
        (
            TAG_ARCHIVE,
            f"{TAG_ARCHIVE} names {tier}, but there is no {kept[tier]} tag: nothing to archive",
        )
        for tier in sorted(words)
        if kept[tier] not in tags
    ]
    return frozenset(words), warnings


def snapshot_tags(name, delete_on, tier, copy_dest, copy_with, key, extra):
    tags = {TAG_TYPE: AUTOMATED, TAG_DELETE_ON: delete_on.isoformat(), TAG_RETENTION_TIER: tier}
    tags |= extra
    if key:
        tags[TAG_EVENT_ID] = key
    if copy_dest:
        tags[TAG_COPY_DEST] = ",".join(copy_dest)
        tags |= copy_with
    if name:
        tags[TAG_NAME] = name[:MAX_TAG_VALUE]
    return tags


def not_backed_up(iid, tags, state):
    """Notes saying why an instance gets no snapshot at all, or [] when it gets them."""
    backup = backup_enabled(tags)
    if backup is None:
        why = f"Backup {tags[TAG_BACKUP]!r} is not yes/no; instance skipped"
        return [tag_note(iid, tags, TAG_BACKUP, why), ("skip", iid, "Backup tag not recognised")]
    if not backup:
        return [("skip", iid, "Backup tag does not enable backups")]
    if state in SKIPPED_STATES:
        return [("skip", iid, f"instance is {state}")]
    return []


def tag_note(rid, tags, tag, why):
    """A note of a tag the creator cannot honour: summary.tag_error's arguments."""
    error = {"tag": tag, "value": tags.get(tag), "reason": why}
    return "tag", rid, error | ({"name": tags[TAG_NAME]} if tags.get(TAG_NAME) else {})


class Where(NamedTuple):
    """What each instance's plan reads of its run: the regions a Copy_Dest may name, this
    region, today, the event's key, and this account's id (a function: asked only when a
    Copy_KmsKeyId names an account)."""

    enabled: frozenset
    region: str
    today: date
    key: str | None = None
    own: Callable[[], str | None] = lambda: None


def instance_settings(tags, where):
    """(what each snapshot of the instance gets, tag errors as (tag, why)) from its tags."""
    delete_on, tier, problems = retention_plan(tags, where.today)
    dests, dropped = clean_regions(tags.get(TAG_COPY_DEST, ""), where.enabled, where.region)
    problems += [(TAG_COPY_DEST, f"Copy_Dest entry {r!r} {why}; dropped") for r, why in dropped]
    copy_with, more = copy_settings(tags, where.own) if dests else ({}, [])
    mode, problem = parse_mode(tags.get(TAG_CONSISTENCY))
    more += [(TAG_CONSISTENCY, problem)] if problem else []
    lock, lock_problems = lock_tags(tags)
    archive, archive_problems = archive_tiers(tags)
    vault, vault_problems = vault_settings(tags, where.enabled, where.region)
    name = tags.get(TAG_NAME, "")
    extra = lock | ({TAG_ARCHIVE: "Yes"} if tier in archive else {})
    snap_tags = snapshot_tags(name, delete_on, tier, dests, copy_with, where.key, extra) | vault
    settings = {"name": name, "tags": snap_tags, "copy_dest": dests, "mode": mode}
    settings["lock"] = lock_request(snap_tags, delete_on, where.today)
    return settings, problems + more + lock_problems + archive_problems + vault_problems


def plan_instance(instance, volume_backup, where):
    """(snapshots to create, notes) for one instance.

    ``volume_backup`` maps volume ids to their own Backup tag values. A snapshot is a
    dict(volume_id, instance_id, description, tags, copy_dest ...); a note is (kind, id,
    detail): "skip" or "warn" with a reason, "tag" with tag_error's arguments (tag_note).
    """
    iid, tags = instance["InstanceId"], tag_map(instance)
    refusal = not_backed_up(iid, tags, instance.get("State", {}).get("Name"))
    if refusal:
        return [], refusal
    settings, problems = instance_settings(tags, where)
    notes = [tag_note(iid, tags, tag, why) for tag, why in problems]
    name, region = settings["name"], where.region
    set_description = describe(name, iid, "all volumes", settings["mode"], region)
    plans = []
    for vid, device, _root in ebs_volumes(instance):
        opted_out, note = volume_opt_out(vid, iid, volume_backup)
        notes += [note] if note else []
        if not opted_out:
            plans.append(
                {
                    "volume_id": vid,
                    "instance_id": iid,
                    "device": device,
                    "description": describe(name, iid, vid, device, region),
                    "set_description": set_description,
                    **{k: settings[k] for k in ("tags", "copy_dest", "mode", "lock")},
                }
            )
    if not plans and not any(k == "skip" for k, _, _ in notes):
        notes.append(("skip", iid, "no EBS volumes"))
    return plans, notes


def ebs_volumes(instance):
    """(volume id, device, is root) of each EBS volume; instance-store has no snapshot."""
    root = instance.get("RootDeviceName")
    return [
        (m["Ebs"]["VolumeId"], m["DeviceName"], m["DeviceName"] == root)
        for m in instance.get("BlockDeviceMappings", [])
        if "Ebs" in m
    ]


def volume_opt_out(volume_id, instance_id, volume_backup):
    """(opted out?, note or None) from the volume's own Backup tag, if it has one."""
    value = volume_backup.get(volume_id)
    if opted_out(value):
        return True, ("skip", volume_id, f"volume of {instance_id} opted out with Backup={value}")
    if value is not None and parse_bool(value) is None:
        why = f"volume Backup {value!r} is not yes/no; backed up"
        return False, tag_note(volume_id, {TAG_BACKUP: value}, TAG_BACKUP, why)
    return False, None


def requested_ids(event):
    """The event's instance_ids (None: every instance); an event whose instance_ids or
    HANDOFF cannot be read is refused."""
    handoff = event.get(HANDOFF)

    def keys(name):
        return isinstance(handoff.get(name, []), list) and all(
            isinstance(k, str) for k in handoff.get(name, [])
        )

    if handoff is not None and not (
        isinstance(handoff, dict)
        and isinstance(handoff.get("from"), str)
        and isinstance(handoff.get("done"), list)
        and keys("done")
        and keys("maybe")
    ):
        shape = "{from: key, done: [keys], maybe: [keys]}"
        raise ValueError(f"event {HANDOFF} must be {shape}, not {handoff!r}")
    ids = event.get("instance_ids")
    if ids is None:
        return None
    if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
        raise ValueError(f"event instance_ids must be a list of instance ids, not {ids!r}")
    return sorted(set(ids))


# ---- AWS: reading and acting ----


def list_instances(ec2, ids):
    """Candidate instances. With explicit ids, filter by id (a missing id is not an error
    there, unlike InstanceIds=) so the plan can say which ones were not found."""
    if ids == []:  # asked for no instance: an empty filter must not mean "all"
        return
    if ids is not None:
        filters = [{"Name": "instance-id", "Values": ids}]
    else:
        filters = [
            {"Name": "tag-key", "Values": [TAG_BACKUP]},
            {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
        ]
    for reservation in paginate(ec2, "describe_instances", "Reservations", Filters=filters):
        yield from reservation["Instances"]


def multi_attach_volumes(ec2, summary):
    """Ids of this region's Multi-Attach volumes: one may belong to several instances. An
    endpoint that does not implement DescribeVolumes' multi-attach-enabled filter (moto
    server and LocalStack answer HTTP 500) is asked for every volume instead, and the flag
    read from each (MultiAttachEnabled), with one warning. Refusals that would refuse that
    too (permissions, throttling beyond botocore's retries) are the run's failure."""
    only = [{"Name": "multi-attach-enabled", "Values": ["true"]}]
    try:
        return {v["VolumeId"] for v in paginate(ec2, "describe_volumes", "Volumes", Filters=only)}
    except (ClientError, ResponseParserError) as exc:
        if isinstance(exc, ClientError) and error_code(exc) in NOT_A_FILTER_PROBLEM:
            raise
        refusal = describe_error(exc).splitlines()[0][:200]  # an HTML page, say
        why = f"this endpoint refused DescribeVolumes' multi-attach-enabled filter ({refusal})"
        summary.warn(summary.region, f"{why}; every volume read instead")
    volumes = paginate(ec2, "describe_volumes", "Volumes")
    return {v["VolumeId"] for v in volumes if v.get("MultiAttachEnabled")}


def done_for_event(ec2, key):
    """{volume id: snapshot id} of snapshots this event already made (a retried event)."""
    if not key:
        return {}
    snaps = paginate(
        ec2,
        "describe_snapshots",
        "Snapshots",
        OwnerIds=["self"],
        Filters=[{"Name": "tag:" + TAG_EVENT_ID, "Values": [key]}],
    )
    return {s["VolumeId"]: s["SnapshotId"] for s in snaps}


def written_tags(tags, consistency):
    """A snapshot's tags as written: with its Consistency, and Copy_State=pending when it is
    to be copied (into a region or a vault), so that the copier's sweeps find it."""
    tags = {**tags, TAG_CONSISTENCY: consistency}
    if TAG_COPY_DEST in tags or TAG_VAULT_ACCOUNT in tags:
        tags[TAG_COPY_STATE] = COPY_PENDING
    return tags


def tag_spec(tags, consistency):
    tags = written_tags(tags, consistency)
    return [{"ResourceType": "snapshot", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]


def create_snapshot(ec2, plan, summary, budget):
    """One CreateSnapshot (Consistency=volume)."""
    item = {
        "volume_id": plan["volume_id"],
        "instance_id": plan["instance_id"],
        "delete_on": plan["tags"][TAG_DELETE_ON],
        "tier": plan["tags"][TAG_RETENTION_TIER],
        "copy_dest": plan["copy_dest"],
        "consistency": "volume",
    }
    if "instance_ids" in plan:  # a Multi-Attach volume: taken once for all its instances
        item["instance_ids"] = plan["instance_ids"]
    params = {
        "VolumeId": plan["volume_id"],
        "Description": plan["description"],
        "TagSpecifications": tag_spec(plan["tags"], "volume"),
    }
    if summary.dry_run:
        summary.probe("ec2:CreateSnapshot", summary.region, ec2.create_snapshot, **params)
        summary.did("create", **item)
        lock_new(ec2, None, plan, summary)
        return
    lookup = lookup_of(ec2, plan, [plan["volume_id"]], budget)
    snap = call_busy(
        lambda **p: made_once(ec2.create_snapshot, p, lookup),
        params,
        plan["volume_id"],
        summary,
        budget,
        instance_id=plan["instance_id"],
    )
    if snap:
        summary.did("create", snapshot_id=snap["SnapshotId"], **item)
        lock_new(ec2, snap["SnapshotId"], plan, summary)


def lookup_of(ec2, item, volumes, budget):
    """The item's Lookup (made once, kept on it: a busy volume's retries share it): its
    snapshots of ``volumes``, one each, carrying the tags that identify this run's (its
    EventId, else its DeleteOn) and started at most LOST_SINCE before now. A set's whole,
    but at the last look what part is listed (a set is made whole or not at all)."""
    if "lookup" in item:
        return item["lookup"]
    since, tags = datetime.now(UTC) - LOST_SINCE, item["tags"]
    wanted = {TAG_TYPE: AUTOMATED}
    wanted |= {TAG_EVENT_ID: tags[TAG_EVENT_ID]} if TAG_EVENT_ID in tags else {}
    wanted |= {} if TAG_EVENT_ID in tags else {TAG_DELETE_ON: tags[TAG_DELETE_ON]}

    def find(final):
        volume = {"Name": "volume-id", "Values": volumes}
        made = [s for s in tagged(ec2, wanted, volume) if s["StartTime"] >= since]
        newest = {s["VolumeId"]: s for s in sorted(made, key=lambda s: s["StartTime"])}
        if not newest or (len(newest) < len(volumes) and not final):
            return None
        if "set" not in item:
            return newest[volumes[0]]
        return {
            "Snapshots": [{"SnapshotId": s["SnapshotId"], "VolumeId": v} for v, s in newest.items()]
        }

    item["lookup"] = Lookup(find, budget, lost=item.get("maybe", False))
    return item["lookup"]


def lock_new(ec2, snapshot_id, plan, summary):
    """Lock a snapshot right after its CreateSnapshot (a pending snapshot can be locked)."""
    if plan["lock"]:
        lock_snapshot(ec2, snapshot_id, plan["lock"], summary, volume_id=plan["volume_id"])


def call_busy(call, params, rid, summary, budget, **item):
    """call(**params); a volume refused with PER_VOLUME_RATE_CODE is tried again, at least
    PER_VOLUME_WAIT_S later, in this worker (the other workers go on meanwhile). Returns
    the response, or None once the failure is recorded against ``rid``."""
    for tries in range(PER_VOLUME_TRIES + 1):
        try:
            return call(**params)
        except ClientError as exc:
            if error_code(exc) != PER_VOLUME_RATE_CODE or tries == PER_VOLUME_TRIES:
                summary.error(rid, exc, **item)
                return None
        if budget.left() - PER_VOLUME_WAIT_S < STOP_MARGIN_S:
            raise OutOfTime("no time left to wait for a busy volume")
        time.sleep(PER_VOLUME_WAIT_S)
    return None


def create_set(ec2, item, consistency, summary, budget):
    """One CreateSnapshots: every volume of ``item`` at the same instant, the excluded ones
    left out, the tags (and Consistency) in the same call."""
    spec = {"InstanceId": item["instance_id"], "ExcludeBootVolume": item["exclude_boot"]}
    if item["exclude_data"]:
        spec["ExcludeDataVolumeIds"] = item["exclude_data"]
    params = {
        "InstanceSpecification": spec,
        "Description": item["description"],
        "TagSpecifications": tag_spec(item["tags"], consistency),
    }
    base = set_record(item, consistency)
    if summary.dry_run:
        summary.probe("ec2:CreateSnapshots", summary.region, ec2.create_snapshots, **params)
        for plan in item["plans"]:
            summary.did("create", volume_id=plan["volume_id"], **base)
            lock_new(ec2, None, plan, summary)
        return
    volumes = [plan["volume_id"] for plan in item["plans"]]
    lookup = lookup_of(ec2, item, volumes, budget)
    created = lambda **p: made_once(ec2.create_snapshots, p, lookup)  # noqa: E731
    made = call_busy(created, params, item["instance_id"], summary, budget)
    for snap in (made or {}).get("Snapshots", []):
        summary.did("create", snapshot_id=snap["SnapshotId"], volume_id=snap["VolumeId"], **base)
        lock_new(ec2, snap["SnapshotId"], {**item, "volume_id": snap["VolumeId"]}, summary)
    listed = {snap["VolumeId"] for snap in (made or {}).get("Snapshots", [])}
    for vid in volumes if made and lookup.lost else ():
        if vid not in listed:  # made with the set, but not listed yet
            why = "its set's answer was lost and its snapshot is not listed yet: not reported"
            summary.warn(vid, f"{why} here (a lock it needs: the run's lock sweep)")


def set_record(item, consistency):
    """What the summary says of each snapshot of a set (with its volume_id)."""
    return {
        "instance_id": item["instance_id"],
        "delete_on": item["tags"][TAG_DELETE_ON],
        "tier": item["tags"][TAG_RETENTION_TIER],
        "copy_dest": item["copy_dest"],
        "consistency": consistency,
    }


def ssm_refusal(ssm, iid, mode):
    """Why SSM cannot run the consistency step on this instance, or None."""
    found = ssm.describe_instance_information(Filters=[{"Key": "InstanceIds", "Values": [iid]}])[
        "InstanceInformationList"
    ]
    if not found:
        return "no SSM agent has registered from it"
    info = found[0]
    if info.get("PingStatus") != "Online":
        return f"its SSM agent is {info.get('PingStatus', 'not online')}"
    if info.get("PlatformType") != SSM_PLATFORM[mode]:
        return f"{mode} needs {SSM_PLATFORM[mode]}; it runs {info.get('PlatformType')}"
    return None


def run_command(ssm, iid, document, parameters, wait, budget):
    """Send one SSM command and wait, at most ``wait`` seconds, for its end. Returns None
    when it succeeded, else why not."""
    version = {"DocumentVersion": "$LATEST"} if document == FREEZE_DOCUMENT else {}
    command = ssm.send_command(
        InstanceIds=[iid],
        DocumentName=document,
        **version,
        Parameters=parameters,
        TimeoutSeconds=max(30, wait),
        Comment=f"ebs-snapshot-creator: {document}",
    )["Command"]["CommandId"]
    for _ in range(max(1, wait // POLL_S)):
        if budget.left() - POLL_S < STOP_MARGIN_S:
            break
        time.sleep(POLL_S)
        try:
            result = ssm.get_command_invocation(CommandId=command, InstanceId=iid)
        except ClientError as exc:
            if error_code(exc) == "InvocationDoesNotExist":  # not delivered yet
                continue
            raise
        if result["Status"] == "Success":
            return None
        if result["Status"] in DONE_STATES:
            output = result.get("StandardOutputContent", "").strip() or "no output"
            return f"{document} ended {result['Status']}: {output}"[:300]
    return f"{document} did not finish within {wait} s"


def take(ec2, ssm, item, summary, budget):
    """Snapshot one volume, or one instance's set in its Consistency mode; ``ssm()`` gives
    the SSM client, built only for the first fsfreeze or vss set."""
    if "set" not in item:
        create_snapshot(ec2, item, summary, budget)
    elif item["set"] == "instance":
        create_set(ec2, item, "instance", summary, budget)
    else:
        consistent_set(ec2, ssm(), item, summary, budget)


def built_once(build):
    """build() on the first call, from whichever worker asks first; that client after.
    boto3 builds clients from one shared session, which is not safe from two threads."""
    lock, built = threading.Lock(), []

    def client():
        with lock:
            if not built:
                built.append(build())
        return built[0]

    return client


def ssm_step(call, *args):
    """call(*args): why the SSM step could not be done, or None. An error from SSM, or a
    network failure on the way there, is such a reason: it never costs a backup."""
    try:
        return call(*args)
    except OutOfTime:
        raise
    except Exception as exc:
        return f"SSM failed: {describe_error(exc)}"


def consistent_set(ec2, ssm, item, summary, budget):
    """fsfreeze or vss through SSM; when that step cannot be done, the crash-consistent set
    (Consistency=crash-fallback) and a warning: a consistency step never costs a backup."""
    iid, mode = item["instance_id"], item["set"]
    reason = ssm_step(ssm_refusal, ssm, iid, mode)
    if reason is None and not summary.dry_run:
        step = vss_set if mode == "vss" else frozen_set
        reason = step(ec2, ssm, item, summary, budget)
        if reason is None:
            return
    if reason is None:  # a dry run that SSM could serve (SSM has no DryRun to ask more)
        create_set(ec2, item, mode, summary, budget)
        return
    summary.warn(iid, f"{mode} not done ({reason}); took a crash-consistent set instead")
    create_set(ec2, item, FALLBACK, summary, budget)


def frozen_set(ec2, ssm, item, summary, budget):
    """Freeze, take the set, thaw at once. Returns None when done, else why it could not
    freeze (nothing was snapshotted then)."""
    iid = item["instance_id"]
    if not item["data"]:
        return "no data volume to freeze: the root filesystem is never frozen"
    freeze = {
        "Action": ["freeze"],
        "Volumes": [volume_specs(item["data"])],
        "ThawAfterSeconds": [str(THAW_AFTER_S)],
    }
    sent = time.monotonic()  # the script's own thaw comes THAW_AFTER_S after this, or later
    try:
        reason = ssm_step(run_command, ssm, iid, FREEZE_DOCUMENT, freeze, FREEZE_WAIT_S, budget)
        if reason is None:
            create_set(ec2, item, "fsfreeze", summary, budget)
            if time.monotonic() - sent > THAW_AFTER_S:
                late = "the set may have been taken after the filesystems thawed by themselves"
                summary.warn(iid, f"fsfreeze took over {THAW_AFTER_S} s: {late}")
    finally:
        thaw(ssm, iid, item["data"], summary)
    return reason


def thaw(ssm, iid, data, summary):
    """Thaw now, without waiting: the freeze script's own timer is the safety net."""
    try:
        ssm.send_command(
            InstanceIds=[iid],
            DocumentName=FREEZE_DOCUMENT,
            DocumentVersion="$LATEST",
            Parameters={"Action": ["thaw"], "Volumes": [volume_specs(data)]},
            Comment="ebs-snapshot-creator: thaw",
        )
    except Exception as exc:  # out of time too: the script's own timer thaws
        summary.warn(
            iid, f"thaw not sent ({describe_error(exc)}); it thaws by itself in {THAW_AFTER_S} s"
        )


def vss_set(_ec2, ssm, item, summary, budget):
    """AWS's VSS document snapshots the instance's volumes from the instance itself (with
    the instance's own role), tagged with our contract. Returns None when done."""
    iid = item["instance_id"]
    for vid in item["exclude_data"]:
        summary.warn(vid, f"vss cannot leave out data volume {vid} of {iid}; it is included")
    parameters = {
        "ExcludeBootVolume": ["True" if item["exclude_boot"] else "False"],
        "description": [item["description"]],
        "tags": [vss_tags(item["tags"], "vss")],
    }
    reason = ssm_step(run_command, ssm, iid, VSS_DOCUMENT, parameters, VSS_WAIT_S, budget)
    if reason is None:  # made on the instance: their ids are not known here
        for plan in item["plans"]:
            summary.did("create", volume_id=plan["volume_id"], **set_record(item, "vss"))
    return reason


def plans_of_region(ec2, ids, where, summary):
    """Each snapshot to create, as the instance pages arrive; what is skipped, and why, goes
    to the summary. An instance with a Multi-Attach volume waits for the last page, so that
    a volume several instances ask for is taken once. ``where``: a Where without the
    enabled regions (read here)."""
    where = where._replace(enabled=enabled_regions(ec2))
    volume_backup = volume_backup_tags(ec2)
    multi = multi_attach_volumes(ec2, summary)
    done = done_for_event(ec2, where.key)
    seen, held = set(), []
    for instance in list_instances(ec2, ids):
        seen.add(instance.get("InstanceId"))
        try:  # an odd answer, or a bug of ours, costs this instance only
            todo = plan_one(instance, volume_backup, where, summary, done)
        except Exception as exc:
            summary.error(instance.get("InstanceId", "?"), exc, "instance not planned")
            continue
        if any(plan["volume_id"] in multi for plan in todo):
            held.append((todo, ebs_volumes(instance)))
        else:
            yield from work_of(todo, ebs_volumes(instance))
    yield from shared_work(held, summary, where.today)
    for missing in sorted(set(ids or ()) - seen):
        summary.fail(missing, "instance not found in this region")


def work_of(todo, ebs):
    """One instance's work: its set (Consistency other than volume), or each volume."""
    return [snapshot_set(todo, ebs)] if todo and todo[0]["mode"] != "volume" else todo


def plan_one(instance, volume_backup, where, summary, done):
    """The snapshots to create for one instance, its notes in the summary; volumes that
    already have a snapshot for this event are skipped."""
    found, notes = plan_instance(instance, volume_backup, where)
    for kind, rid, detail in notes:
        if kind == "tag":
            summary.tag_error(rid, **detail)
        else:
            (summary.warn if kind == "warn" else summary.skip)(rid, detail)
    todo = []
    for plan in found:
        if plan["volume_id"] in done:
            snapshot_id = done[plan["volume_id"]]
            why = f"already snapshotted for event {where.key}"
            summary.skip(plan["volume_id"], why, snapshot_id=snapshot_id)
        else:
            todo.append(plan)
    return todo


def shared_work(held, summary, today):
    """The work of the instances that have a Multi-Attach volume, once every page is read.
    A volume that several of them ask for is left out of their sets and taken once, alone;
    but a VSS set cannot leave a volume out, so where one of them is a VSS set, that set
    takes it. A volume only one instance asks for stays in its set."""
    askers = {}
    for todo, _ in held:
        for plan in todo:
            askers.setdefault(plan["volume_id"], []).append(plan)
    shared = {vid: plans for vid, plans in askers.items() if len(plans) > 1}
    by_vss = {
        vid: min(p["instance_id"] for p in plans if p["mode"] == "vss")
        for vid, plans in shared.items()
        if any(p["mode"] == "vss" for p in plans)
    }

    def own(plan):  # the volume is in its instance's own work
        vid = plan["volume_id"]
        return vid not in shared or by_vss.get(vid) == plan["instance_id"]

    for todo, ebs in held:
        yield from work_of([plan for plan in todo if own(plan)], ebs)
    for vid, plans in sorted(shared.items()):
        names = ", ".join(sorted(p["instance_id"] for p in plans))
        if vid in by_vss:
            reason = f"taken once, by the VSS set of {by_vss[vid]}, which cannot leave it out"
            summary.warn(vid, f"Multi-Attach volume of {names}: {reason}")
            continue
        if any(p["mode"] != "volume" for p in plans):
            reason = "left out of their sets and taken once, alone (crash-consistent)"
            summary.warn(vid, f"Multi-Attach volume of {names}: {reason}")
        yield merge_shared(plans, summary, today)


COPY_SETTINGS = (TAG_COPY_DEST, TAG_COPY_RETENTION, TAG_COPY_KMS_KEY)
VAULT_SETTINGS = (TAG_VAULT_ACCOUNT, TAG_VAULT_REGION, TAG_VAULT_RETENTION)


def merge_shared(plans, summary, today):
    """One snapshot of a Multi-Attach volume for all its instances: the longest retention
    (latest DeleteOn; on a tie, the first instance id) names it and gives its tags, and it
    is copied to every region any of them names, with the copy settings of the first of
    them (the longest first) that asks for copies: a backup kept too long, or copied once
    too often, costs little."""
    plans = sorted(plans, key=lambda p: p["instance_id"])
    winner = max(plans, key=lambda p: p["tags"][TAG_DELETE_ON])
    ordered = [winner, *(p for p in plans if p is not winner)]
    dests = list(dict.fromkeys(d for p in ordered for d in p["copy_dest"]))
    tags = {k: v for k, v in winner["tags"].items() if k not in COPY_SETTINGS}
    copying = [p for p in ordered if p["copy_dest"]]
    if copying:
        first = {k: copying[0]["tags"].get(k) for k in COPY_SETTINGS[1:]}
        tags |= {k: v for k, v in first.items() if v} | {TAG_COPY_DEST: ",".join(dests)}
        if any({k: p["tags"].get(k) for k in COPY_SETTINGS[1:]} != first for p in copying):
            who = copying[0]["instance_id"]
            summary.warn(
                winner["volume_id"],
                f"its instances ask for different copy settings; copies use those of {who}",
            )
    locking = next((p for p in ordered if p["lock"]), None)  # in the mode of the first that asks
    if locking and not winner["lock"]:
        tags |= {
            k: locking["tags"][k] for k in (TAG_LOCK, TAG_LOCK_COOL_OFF) if k in locking["tags"]
        }
    vaulting = next((p for p in ordered if TAG_VAULT_ACCOUNT in p["tags"]), None)
    if vaulting and TAG_VAULT_ACCOUNT not in winner["tags"]:  # to a vault if any of them asks
        tags |= {k: v for k, v in vaulting["tags"].items() if k in VAULT_SETTINGS}
    ids = [p["instance_id"] for p in plans]
    lock = lock_request(tags, parse_date(tags[TAG_DELETE_ON]), today)  # until its own DeleteOn
    merged = {"tags": tags, "copy_dest": dests, "mode": "volume", "instance_ids": ids}
    return {**winner, **merged, "lock": lock}


def run(event=None, context=None, *, region=None, now=None):
    """One creator run; ``now`` (a datetime) is injectable for tests and the demo."""
    return run_job(JOB, create_all, event, context, region, now, check=requested_ids)


def create_all(event, context, summary, budget, now):
    """Every instance is listed and planned first; the work then goes in the order of its
    keys (work_key), so that a hand-off can say in its event what is done (resume_point):
    the next invocation does not rest on a listing of what this one made."""
    ids, key, region = requested_ids(event), summary.data["event_id"], summary.region
    ec2 = make_client("ec2", region, budget, Pacer())
    ssm = built_once(lambda: make_client("ssm", region, budget))
    own = functools.cache(lambda: own_account(context, region, budget))
    where = Where(frozenset(), region, utc_today(now), key, own)
    try:
        items = sorted(plans_of_region(ec2, ids, where, summary), key=work_key)
    except OutOfTime:  # the listing alone took the time: nothing done, a failure
        hand_off(context, event, summary, done_here=0)
        return
    todo, done = resumed(items, event.get(HANDOFF), summary), set()

    def work(item):
        take(ec2, ssm, item, summary, budget)
        done.add(work_key(item))

    def failed(item, exc):
        item_failed(item, exc, summary)
        done.add(work_key(item))

    started, stopped = in_parallel(todo, work, budget, failed)
    if len(done) < len(todo):
        point = resume_point(todo, done, event.get(HANDOFF))
        point["maybe"] = sorted(work_key(i) for i in todo if i.get("lookup") and i["lookup"].lost)
        left = len(todo) - len(done)
        hand_off(context, event, summary, started - stopped, left, {HANDOFF: point})
    else:
        lock_sweep(ec2, summary, budget, utc_today(now))


def work_key(item):
    """The order the work goes in, and what a hand-off names as done: the instance, then
    the volume (a set: the instance alone)."""
    return f"{item['instance_id']} {item.get('volume_id', '')}"


def resumed(items, handoff, summary):
    """The items still to do after the invocations that handed this event over (its
    HANDOFF: the key to go on from, the keys after it already done, and "maybe" those whose
    answer was lost there: made_once looks for what they made before sending them)."""
    if not handoff:
        return items
    done, maybe = set(handoff["done"]), set(handoff.get("maybe", ()))
    todo = [i for i in items if work_key(i) >= handoff["from"] and work_key(i) not in done]
    for item in todo:  # its answer was lost there: look for what it made before sending
        item["maybe"] = work_key(item) in maybe
    if len(todo) < len(items):
        why = "done by the invocations that handed this event over"
        summary.skip(summary.region, f"{len(items) - len(todo)} snapshots or sets {why}")
    return todo


def resume_point(todo, done, handoff):
    """What the next invocation may skip: from the key of the first item not done on, all
    but the keys done after it (here, or by an earlier invocation of the event)."""
    first = min(work_key(i) for i in todo if work_key(i) not in done)
    earlier = set(handoff["done"]) if handoff else set()
    return {"from": first, "done": sorted(k for k in done | earlier if k > first)}


def lock_sweep(ec2, summary, budget, today):
    """Lock this region's primaries that are tagged for a lock but not locked: a lock that
    failed, on this run or an earlier one (a VSS set's snapshots, made on the instance, are
    locked here too). Copies are the copier's. Not being able to look is a warning: every
    snapshot is made, and the manager reports locks still missing after a day."""
    try:
        snaps = automated_snapshots(
            ec2,
            {"Name": "tag-key", "Values": [TAG_LOCK]},
            {"Name": "status", "Values": ["pending", "completed"]},
        )
        primaries = [s for s in snaps if TAG_SOURCE_SNAPSHOT not in tag_map(s)]
        locked = locks_in_force(ec2) if primaries else {}
    except Exception as exc:  # out of time too: the next run looks again
        summary.warn(summary.region, f"locks not checked: {describe_error(exc)}")
        return
    done = {item.get("snapshot_id") for item in summary.data.get("locked", [])}
    todo = [(sid, req) for sid, req in unlocked(primaries, locked, today) if sid not in done]
    if summary.dry_run:
        probe_lock(ec2, todo, summary)
    in_parallel(
        todo,
        lambda t: lock_snapshot(ec2, t[0], t[1], summary, reason=RELOCK),
        budget,
        lambda t, exc: summary.error(t[0], exc, "not locked"),
    )


def item_failed(item, exc, summary):
    """An exception while snapshotting one volume or one set fails that item alone."""
    if "set" in item:
        summary.error(item["instance_id"], exc)
    else:
        summary.error(item["volume_id"], exc, instance_id=item["instance_id"])


def lambda_handler(event, context):
    return run(event, context)


def main(argv=None):
    parser = cli_parser(JOB, "Snapshot every EBS volume of the instances tagged Backup=Yes.")
    parser.add_argument(
        "--instance-id",
        action="extend",
        type=instance_id_list,
        dest="instance_ids",
        metavar="ID[,ID...]",
        help="only these instances (repeatable, or separated by commas); still only if their "
        "Backup tag enables them",
    )
    parser.add_argument(
        "--event-id",
        default=f"cli-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{os.urandom(3).hex()}",
        help="the id the snapshots are tagged with (EventId): a run with the same id skips the "
        "volumes it already did, so a failed run can be finished without duplicates "
        "(default: a new id, printed in the report)",
    )
    return cli(parser, argv)


def instance_id_list(text):
    """--instance-id's value: one instance id or several, separated by commas or spaces."""
    ids = [i for i in re.split(r"[\s,]+", text.strip()) if i]
    bad = [i for i in ids if not re.fullmatch(r"i-[0-9a-f]{8}([0-9a-f]{9})?", i)] or (
        [text] if not ids else []
    )
    if bad:
        raise argparse.ArgumentTypeError(
            f"{bad[0]!r} is not an instance id (i- and 8 or 17 hex digits)"
        )
    return ids


if __name__ == "__main__":
    sys.exit(main())
