"""EBS snapshot copier: copy completed automated snapshots into the regions of their Copy_Dest.

Runs as an AWS Lambda function (handler ``ebs_snapshot_copier.lambda_handler``) in each
source region, a few hours after the creator, or from the command line. Region:
``AWS_REGION``, else ``AWS_DEFAULT_REGION``. It reads its own region and each destination;
it writes only into destinations, and only copies.

Snapshot tags read (on primaries, written by the creator)
    Type=Automated, Copy_Dest   only such snapshots, when completed, are copied; a snapshot
                                with Source_SnapshotId is a copy and is never copied again.
    DeleteOn                    a primary that is not YYYY-MM-DD warns and is not copied.
    Copy_Retention              days to keep copies, from the primary's creation date;
                                without it (or unreadable: a warning), the primary's
                                DeleteOn. No copy is made whose own DeleteOn has come.
    Copy_KmsKeyId               copies are made with Encrypted=True and this key (id, alias
                                or ARN); without it (or malformed: a warning), encrypted
                                primaries get the destination's default EBS key.
    KeepForever                 carried onto the copies, new and existing (a near-miss
                                key such as keepforever arrives as KeepForever).
    Lock, Lock_CoolOffHours     each copy is locked in the same mode (compliance: with the
                                same cooling-off) until the copy's own DeleteOn, 00:00 UTC,
                                right after its CopySnapshot; an unreadable Lock warns.
    Copy_State                  pending (the creator writes it at creation) until nothing is
                                left to do for the primary, then done (written by the copier;
                                see Sweeps).
Snapshot tags written on each copy, in the CopySnapshot call itself:
    Type=Automated, DeleteOn (see above), Name, KeepForever, Archive (the manager of the
    destination archives the copy by its own DeleteOn), Lock and Lock_CoolOffHours (as
    they drive the copy's lock) and, when the copy keeps the
    primary's date, Retention_Tier (as on the primary), Source_SnapshotId=<primary id>,
    Source_Region=<this region>, Source_VolumeId=<the primary's volume>: the manager of the
    destination keeps each source volume's newest copy by it. The copy keeps the primary's
    description.

Vault copies (primaries tagged Vault_Account, Vault_Region, Vault_Retention by the creator;
an account not in VAULT_ACCOUNT_IDS, the template's VaultAccountIds, is a warning and no copy):
each completed primary is shared with the vault account (ModifySnapshotAttribute,
createVolumePermission, that account only) and copied in each vault region by that account,
through its role VAULT_ROLE_NAME (default ebs-snapshot-vault-writer; sts:AssumeRole), with
Encrypted=True and VAULT_KMS_KEY (default the vault's default EBS key), tagged in the call
Type=Automated, DeleteOn (Vault_Retention days from the primary's creation, else its
DeleteOn), Source_SnapshotId, Source_Region, Source_Account, Source_VolumeId, and Lock and
Lock_CoolOffHours for a Lock primary (locked there at once). A primary encrypted with the
AWS managed key cannot be shared: it is first copied here with VAULT_SHARE_KMS_KEY (tagged
Type=Automated, Vault_StagingOf=<primary>, DeleteOn at most STAGING_DAYS on), and that
staging copy is shared once completed (a later sweep); without the key, a named failure.
A sweep unshares what is shared with a vault (DescribeSnapshots RestorableByUserIds) once
every vault region of its primary holds a completed copy, and deletes the staging copy. A
staging copy is known by more than its tag: the description its CopySnapshot call gave it
(no EC2 call changes one), encryption, and against its primary a VolumeId that is not the
primary's volume (a copy's is arbitrary), the same size, a later start; any other snapshot
tagged Vault_StagingOf is named in a warning and left as what it otherwise is.
As for regions: no second copy in a vault region, at most the free of its 20 slots, a copy
in error a failure each sweep; a vault that cannot be read fails alone.

A key a destination refuses fails that copy only. AWS may also accept a copy and fail it
later (an unusable key): a copy in state "error" is named as a failure on every sweep and
no other copy is made while it exists. A destination that cannot be read (refused,
unreachable, down) fails alone: copies into every other destination go on. Any error on
one copy, network failures and bugs of ours included, fails that copy only.

A lock that fails never costs the copy: a warning. Each sweep (not a notified snapshot's
run) also locks, in each destination, the copies of this region's primaries tagged Lock
whose lock is not in force (DescribeLockedSnapshots). Nothing is ever unlocked.

A destination that already holds a copy of a primary (any state, pending included) gets no
second one, so running twice copies nothing twice. AWS lets 20 copies run into a region at
once: the copier counts this account's copies still pending there (any source region) and
starts at most the free slots, oldest primary first. A scheduled sweep (an EventBridge
"Scheduled Event") with copies left waiting then stays until COPY_STAY_MINUTES (default
12; 0: no stay) after the time it was scheduled for: every 15 s it counts each waiting
destination's copies in flight and starts the next waiting copies, oldest first, as slots
free (after checking that no other run copied them meanwhile). A late or retried delivery
stays less, so that with sweeps every 15 minutes one ends before the next begins. What
still waits is reported as deferred, and the next sweep continues. Should AWS still refuse
one (ResourceLimitExceeded: someone else's copies), the copier stops copying into that
region until its next look; that is not a failure either. But a primary that still waits for a slot
more than COPY_MAX_LAG_HOURS (default 24) after it was taken means that destination never
catches up: a warning, and its volumes count in UnprotectedVolumes. Copies go four at a
time, at most at 90% of EC2's rate for CopySnapshot.

Sweeps: what a run reads. A scheduled sweep reads only the primaries tagged
Copy_State=pending (and in each destination and vault their copies, 200 ids a lookup, and
the copies in flight), so that its cost follows the copies still to make, not the snapshots
kept: with nothing pending it is one DescribeSnapshots. Once every destination and vault of
a pending primary holds a completed copy (locked if tagged Lock, KeepForever carried), its
share with the vault taken back and its staging copy deleted, the sweep tags it
Copy_State=done (CreateTags, 200 at a time; a refusal is a warning, and the next sweep tries
again). Anything left to do, or a place that could not be read, keeps it pending. The
sweep scheduled for 00:00-00:14 UTC, and any run not scheduled (by hand, the command line),
reads every primary instead, as before Copy_State: it copies and tags pending the primaries
without Copy_State (from before this version) or done ones that need something again (a
copy deleted, a region added, KeepForever set later), and takes back shares whose primary
no longer asks for a vault. Such changes wait for it, at most a day.

Event
    {}  (by hand)                             every eligible primary of the region
    an EventBridge scheduled event            the pending primaries; the 00:00 UTC one:
                                              every eligible primary
    an "EBS Snapshot Notification" event      just that snapshot, as soon as it completes
      (createSnapshot, succeeded)             (one DescribeSnapshots by id, and in each
                                              destination a lookup of its copies only);
                                              its copy starts only while at most 10 copies
                                              are in flight there (NOTIFIED_MAX_IN_FLIGHT):
                                              beyond, older ones may wait, and the sweeps
                                              start them first; without a snapshot id: a
                                              warning, no call
    {"dry_run": true}                         change nothing; report what would be copied

Returns a JSON-serialisable summary. If any item failed, every other item is still done,
then JobFailed is raised naming each failure.

Running it again, or on the same event again, copies nothing twice. A CopySnapshot whose
answer was lost after it may have reached EC2 is not sent again by botocore: the copy is
looked for by its Source_SnapshotId first. With under 60 s of Lambda time left it starts
no new copy and invokes itself asynchronously with the same event for the rest, naming in
it the copies started ("copies_started": {region: [primary ids]}), which the next one counts
as there though its listing may not show them yet. A run that cannot list its own region's
snapshots fails, with its summary line; one that starts with less than MIN_START_S seconds
fails at once.

Logs: one JSON line per item on stdout, and a last summary line that is also CloudWatch
Embedded Metric Format (namespace EBSSnapshots, dimensions job and region):
SnapshotsCopied, CopiesDeferred, Warnings, Failures, and UnprotectedVolumes when copies lag.
LOG_LEVEL, else AWS_LAMBDA_LOG_LEVEL, sets the level.

IAM actions: ec2:DescribeSnapshots, ec2:DescribeRegions, ec2:CopySnapshot, ec2:CreateTags
(with the copy, KeepForever on existing copies, Copy_State on primaries), ec2:LockSnapshot
(Type=Automated only), ec2:DescribeLockedSnapshots, KMS use through EC2 for encrypted
copies, lambda:InvokeFunction (on itself, to hand over the rest of a long run); for vaults:
ec2:ModifySnapshotAttribute (Type=Automated, never a group), ec2:DeleteSnapshot (its
staging copies), kms:DescribeKey, sts:AssumeRole and sts:TagSession (the writer role, its
session tagged Source_Account with this account), and in the vault, through that role:
ec2:DescribeSnapshots, ec2:CopySnapshot, ec2:CreateTags (in the copy),
ec2:LockSnapshot, ec2:DescribeLockedSnapshots (a sweep locks vault copies whose lock failed).
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
import traceback
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta

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
from botocore.retries import standard as botocore_retries

JOB = "copier"

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
COPY_LIMIT_CODE = "ResourceLimitExceeded"  # too many copies in flight into one region
COPIES_IN_FLIGHT = 20  # concurrent copies AWS allows into one destination region
# A notified snapshot's run starts its copy only while at most this many copies are in
# flight there: with more, older primaries may be waiting for a slot, and the sweeps start
# those first (oldest first); the notified one waits its turn in the next sweep.
NOTIFIED_MAX_IN_FLIGHT = COPIES_IN_FLIGHT // 2
NOTIFICATION = "EBS Snapshot Notification"  # EventBridge detail-type when a snapshot is done
SCHEDULED = "Scheduled Event"  # EventBridge detail-type of a scheduled sweep
# A scheduled sweep that had to defer copies stays until this long after the time it was
# scheduled for, starting the next copy as each slot frees: with sweeps every 15 minutes,
# slots stay busy while copies wait. It ends before the next sweep starts; 0: no stay.
STAY_ENV, STAY_MINUTES, MAX_STAY_MINUTES = "COPY_STAY_MINUTES", 12, 14
STAY_POLL_S = 15  # one look at each waiting destination's copies in flight, this often
# Which primaries a run reads. "notified": the one snapshot of a completion event. "pending":
# those tagged Copy_State=pending, in every scheduled sweep but the day's first, so that a
# sweep's cost follows the copies still to make, not the snapshots kept. "full": every
# primary, in the sweep scheduled for 00:00-00:14 UTC (FULL_SWEEP_HOUR) and in any run not
# scheduled (by hand, the command line): it catches primaries without Copy_State (older
# than this version), copies deleted or regions added since, and KeepForever set later.
FULL_SWEEP_HOUR, FULL_SWEEP_MINUTES = 0, 15
# Beyond MAX_LOOKUP primaries, one listing of a destination's copies costs fewer calls than
# lookups by id, LOOKUP_BATCH at a time.
MAX_LOOKUP = 1000
CARRIED = "copies_started"  # in a handed-over event: the copies started before it, by region
# The tags of a copy that say where it comes from: what finds one whose call lost its answer.
ORIGIN_TAGS = (TAG_SOURCE_SNAPSHOT, TAG_SOURCE_REGION, TAG_SOURCE_ACCOUNT, TAG_VAULT_STAGING)


# ---- decisions: pure functions of the snapshots and today's date ----


def primary_record(snapshot, enabled, region, today):
    """(primary or None, tag errors as (tag, why)) for one listed snapshot.

    A primary is dict(id, tags, description, dests, delete_on, copy_delete_on, own_date,
    kms_key, copy) where ``copy`` says whether missing copies may be made.
    """
    sid, tags = snapshot["SnapshotId"], tag_map(snapshot)
    if TAG_SOURCE_SNAPSHOT in tags:  # a copy: copying it again would loop between regions
        return None, []  # (written on a primary, it stops its copies: the coverage check says)
    dests, dropped = clean_regions(tags.get(TAG_COPY_DEST, ""), enabled, region)
    warnings = [(TAG_COPY_DEST, f"Copy_Dest entry {r!r} {why}; dropped") for r, why in dropped]
    delete_on = parse_date(tags.get(TAG_DELETE_ON))
    if delete_on is None:
        raw = tags.get(TAG_DELETE_ON)
        warnings.append((TAG_DELETE_ON, f"DeleteOn {raw!r} is not a YYYY-MM-DD date; not copied"))
    created = snapshot["StartTime"].astimezone(UTC).date()
    own_date, kms_key, more = copy_options(tags, created, lambda: snapshot.get("OwnerId"))
    until = copy_until(tags, created, TAG_COPY_RETENTION)
    more += [(TAG_LOCK, p) for p in [lock_mode(tags.get(TAG_LOCK))[1]] if p]
    record = {
        "id": sid,
        "tags": tags,
        "start": snapshot["StartTime"],
        "volume_id": snapshot.get("VolumeId"),
        "description": snapshot.get("Description", ""),
        "dests": dests,
        "copy": until is not None and until > today,
        "delete_on": delete_on,
        "copy_delete_on": until,
        "own_date": own_date is not None,
        "kms_key": kms_key,
        "lock": lock_request(tags, until, today),  # the copy's, until its own DeleteOn
    }
    return record, warnings + more


def copy_options(tags, created, own):
    """(the copies' own DeleteOn or None, KMS key or None, tag errors) from a primary's
    Copy_Retention and Copy_KmsKeyId; unreadable values fall back, with a warning, and so
    does a key of another account (key_refusal; ``own()``: this account's id)."""
    own_date, problem = copy_delete_on(tags, created, TAG_COPY_RETENTION)
    warnings = [(TAG_COPY_RETENTION, problem)] if problem else []
    kms_key = tags.get(TAG_COPY_KMS_KEY, "").strip() or None
    refused = key_refusal(kms_key, own) if kms_key else None
    if refused:
        warnings.append((TAG_COPY_KMS_KEY, f"{refused}; copied with the default EBS key"))
        kms_key = None
    return own_date, kms_key, warnings


def copy_tags(primary, region):
    """A copy's tags: where it came from (the source volume, so that the manager of its
    region keeps each volume's newest copy), its own DeleteOn, and what it inherits."""
    tags = {
        TAG_TYPE: AUTOMATED,
        TAG_DELETE_ON: primary["copy_delete_on"].isoformat(),
        TAG_SOURCE_SNAPSHOT: primary["id"],
        TAG_SOURCE_REGION: region,
    }
    if primary["volume_id"]:
        tags[TAG_SOURCE_VOLUME] = primary["volume_id"]
    carried = (TAG_NAME, TAG_ARCHIVE) + (() if primary["own_date"] else (TAG_RETENTION_TIER,))
    tags |= {key: primary["tags"][key] for key in carried if key in primary["tags"]}
    kept = keep_forever_key(primary["tags"])
    if kept:  # a near-miss key (keepforever) arrives as KeepForever
        tags[TAG_KEEP_FOREVER] = primary["tags"][kept]
    if primary["lock"]:  # locked as its primary is, in the same mode
        tags[TAG_LOCK] = primary["lock"]["LockMode"]
        if "CoolOffPeriod" in primary["lock"]:
            tags[TAG_LOCK_COOL_OFF] = str(primary["lock"]["CoolOffPeriod"])
    return tags


def stay_until(event, now):
    """(when a sweep stops waiting for copy slots, or None; warning or None). Only a
    scheduled sweep stays, until COPY_STAY_MINUTES after the time it was scheduled for: a
    late or retried delivery stays less, so that it never runs beside the next sweep."""
    if event.get("detail-type") != SCHEDULED:
        return None, None  # a notified snapshot, a command-line run: no stay
    raw = os.environ.get(STAY_ENV, "").strip()
    minutes, problem = (
        (0, None) if raw == "0" else count_or(raw or None, STAY_ENV, MAX_STAY_MINUTES, STAY_MINUTES)
    )
    scheduled = scheduled_time(event) or now
    return (min(scheduled, now) + timedelta(minutes=minutes) if minutes else None), problem


def scheduled_time(event):
    """The time a scheduled event was scheduled for, or None (absent, unreadable, or
    without a zone: not trusted)."""
    try:
        when = datetime.fromisoformat(str(event.get("time")).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else None


def sweep_scope(event):
    """ "pending" for a scheduled sweep, except the day's first; "full" for that one, and for
    any run not scheduled, or whose time cannot be read (a full sweep is always safe)."""
    when = scheduled_time(event) if event.get("detail-type") == SCHEDULED else None
    if when is None:
        return "full"
    when = when.astimezone(UTC)
    first = when.hour == FULL_SWEEP_HOUR and when.minute < FULL_SWEEP_MINUTES
    return "full" if first else "pending"


def copy_state_marks(tracked, unsettled, scope):
    """{Copy_State value: [primary ids to tag so]}. ``tracked`` maps the primaries a sweep
    read to their Copy_State now; ``unsettled``: those with something left to do (a copy to
    make, in flight or failed, a tag or a lock to carry, a vault share to take back, or a
    place that could not be read). A settled pending primary becomes done; a full sweep also
    marks pending any other unsettled one (older than Copy_State, or reopened)."""
    marks = {COPY_DONE: [], COPY_PENDING: []}
    for sid, state in sorted(tracked.items()):
        if sid not in unsettled and state == COPY_PENDING:
            marks[COPY_DONE].append(sid)
        elif sid in unsettled and state != COPY_PENDING and scope == "full":
            marks[COPY_PENDING].append(sid)
    return marks


def plan_destination(primaries, existing, free_slots):
    """Actions for one destination, oldest primary first.

    ``existing`` maps primary ids to the copies the destination already holds, as
    {copy id: already KeepForever?}; ``free_slots`` is how many more copies AWS will
    let run into it at once. Actions: ("copy", primary); ("defer", primary) when no slot is
    left; ("keep", primary, copy id) to carry KeepForever onto a copy; ("skip", primary,
    reason).
    """
    actions = []
    for primary in primaries:
        copies = existing.get(primary["id"], {})
        if not copies and primary["copy"]:
            actions.append(("copy" if free_slots > 0 else "defer", primary))
            free_slots -= 1
        elif not copies and primary["delete_on"] is not None:
            when = primary["copy_delete_on"]
            actions.append(("skip", primary, f"the copy's DeleteOn {when} has come; not copied"))
        elif is_kept_forever(primary["tags"]):
            actions += [("keep", primary, cid) for cid, kept in copies.items() if not kept]
    return actions


# ---- AWS: reading and acting ----


def notified_snapshot(event):
    """(snapshot id, None) for an EBS Snapshot Notification of a completed CreateSnapshot;
    (id or None, why nothing is copied) for one about something else, or without a snapshot
    id; (None, None) for any other event (a sweep)."""
    if event.get("detail-type") != NOTIFICATION:
        return None, None
    detail = event.get("detail")
    detail = detail if isinstance(detail, dict) else {}
    sid = str(detail.get("snapshot_id") or "").rsplit("/", 1)[-1] or None
    if (detail.get("event"), detail.get("result")) != ("createSnapshot", "succeeded"):
        return sid, f"notification of {detail.get('event')} {detail.get('result')}: nothing to copy"
    if sid is None:
        return None, f"an {NOTIFICATION} without a snapshot_id: nothing to copy"
    return sid, None


def list_primaries(ec2, scope, only, seen):
    """Completed automated snapshots of this account that ask for copies, oldest first: in
    a full sweep all of them; in a pending sweep those tagged Copy_State=pending; for a
    notified snapshot (``only``) just that one (one call by id). What those two read is
    added to ``seen`` (the vault primaries among it too); a full sweep keeps nothing more
    than the primary records, so that its memory stays what it was."""
    completed = {"Name": "status", "Values": ["completed"]}
    if scope == "notified":
        try:
            snaps = ec2.describe_snapshots(SnapshotIds=[only])["Snapshots"]
        except ClientError as exc:
            if error_code(exc) != "InvalidSnapshot.NotFound":  # deleted since: nothing to do
                raise
            snaps = []
        snaps = [s for s in snaps if tag_map(s).get(TAG_TYPE) == AUTOMATED]
    elif scope == "pending":
        pending = {"Name": "tag:" + TAG_COPY_STATE, "Values": [COPY_PENDING]}
        snaps = list(automated_snapshots(ec2, pending, completed))
    else:
        asking = {"Name": "tag-key", "Values": [TAG_COPY_DEST]}
        snaps = list(automated_snapshots(ec2, asking, completed))
    seen += snaps if scope != "full" else []
    wanted = (s for s in snaps if s["State"] == "completed" and TAG_COPY_DEST in tag_map(s))
    return sorted(wanted, key=lambda s: (s["StartTime"], s["SnapshotId"]))


def existing_copies(dest_ec2, region, only=None):
    """({primary id: {copy id: kept forever?}} for the copies of this region's snapshots,
    in any state; how many of this account's copies, from any region, are in flight; the
    copies of this region's snapshots that failed, as (copy id, primary id, message); those
    tagged Lock; and the primaries with a copy there not completed yet, or failed).

    A full sweep reads every copy in the destination once. For ``only`` (primary ids: a
    notified snapshot, a pending sweep's, a stay's next copies), small reads: their copies,
    LOOKUP_BATCH ids at a time, and the copies still pending."""
    copy_filter = {"Name": "tag-key", "Values": [TAG_SOURCE_SNAPSHOT]}
    if only:
        listings = [
            [{"Name": "tag:" + TAG_SOURCE_SNAPSHOT, "Values": ids}] for ids in batches(only)
        ]
        listings.append([copy_filter, {"Name": "status", "Values": ["pending"]}])
    else:
        listings = [[copy_filter]]
    found, in_flight, broken, lockable, unfinished = {}, set(), [], [], set()
    for filters in listings:
        for snap in paginate(
            dest_ec2, "describe_snapshots", "Snapshots", OwnerIds=["self"], Filters=filters
        ):
            tags = tag_map(snap)
            if snap["State"] == "pending":
                in_flight.add(snap["SnapshotId"])
            if tags.get(TAG_SOURCE_REGION) == region:
                if TAG_LOCK in tags:
                    lockable.append(snap)
                copies = found.setdefault(tags[TAG_SOURCE_SNAPSHOT], {})
                copies[snap["SnapshotId"]] = is_kept_forever(tags)
                if snap["State"] != "completed":
                    unfinished.add(tags[TAG_SOURCE_SNAPSHOT])
                # AWS checks a copy's KMS key only once the copy has started: an unusable
                # key shows as a copy in state "error".
                if snap["State"] == "error":
                    message = snap.get("StateMessage") or "no reason given"
                    broken.append((snap["SnapshotId"], tags[TAG_SOURCE_SNAPSHOT], message))
    return found, len(in_flight), broken, lockable, unfinished


def copy_snapshot(dest_ec2, dest, primary, summary):
    """Start one copy; returns False when the destination refuses more concurrent copies."""
    tags = copy_tags(primary, summary.region)
    item = {
        "source_snapshot_id": primary["id"],
        "dest_region": dest,
        "delete_on": tags[TAG_DELETE_ON],
    }
    params = {
        "SourceRegion": summary.region,
        "SourceSnapshotId": primary["id"],
        "TagSpecifications": [{"ResourceType": "snapshot", "Tags": tag_pairs(tags)}],
    }
    if primary["description"]:
        params["Description"] = primary["description"]
    if primary["kms_key"]:
        params |= {"Encrypted": True, "KmsKeyId": primary["kms_key"]}
        item["kms_key_id"] = primary["kms_key"]
    if summary.dry_run:
        summary.probe("ec2:CopySnapshot", dest, dest_ec2.copy_snapshot, **params)
        summary.did("copy", **item)
        copy = {"SnapshotId": None}
    else:
        try:  # its Lookup kept on the primary: a hand-off names a copy in doubt
            copy = copy_once(dest_ec2, params, primary.setdefault("lookups", {}))
        except ClientError as exc:
            if error_code(exc) == COPY_LIMIT_CODE:
                return False
            summary.error(primary["id"], exc, dest_region=dest)
            return True
        summary.did("copy", snapshot_id=copy["SnapshotId"], **item)
    if primary["lock"]:  # at once: a pending copy can be locked
        lock_snapshot(dest_ec2, copy["SnapshotId"], primary["lock"], summary, dest_region=dest)
    return True


def copy_once(ec2, params, lookups=None, check=None):
    """CopySnapshot through made_once: what a call whose answer was lost made is found by the
    tags in it that say where a copy comes from (ORIGIN_TAGS), in any state, and that
    ``check`` accepts. ``lookups`` keeps the Lookup, by region, for a later look."""
    tags = {t["Key"]: t["Value"] for t in params["TagSpecifications"][0]["Tags"]}
    origin = {k: v for k, v in tags.items() if k in ORIGIN_TAGS}

    def find(final):
        made = [s for s in tagged(ec2, origin) if check is None or check(s)]
        return {"SnapshotId": made[0]["SnapshotId"]} if made else None

    lookups = {} if lookups is None else lookups
    lookup = lookups.setdefault(ec2.meta.region_name, Lookup(find))
    return made_once(ec2.copy_snapshot, params, lookup)


def keep_forever(dest_ec2, dest, primary, copy_id, summary):
    value = primary["tags"][keep_forever_key(primary["tags"])]
    item = {
        "snapshot_id": copy_id,
        "dest_region": dest,
        "source_snapshot_id": primary["id"],
        "tag": f"{TAG_KEEP_FOREVER}={value}",
    }
    params = {"Resources": [copy_id], "Tags": [{"Key": TAG_KEEP_FOREVER, "Value": value}]}
    if summary.dry_run:
        summary.probe("ec2:CreateTags", dest, dest_ec2.create_tags, **params)
    else:
        try:
            dest_ec2.create_tags(**params)
        except ClientError as exc:
            summary.error(copy_id, exc, dest_region=dest)
            return
    summary.did("tag", **item)


def list_by_destination(region, today, summary, budget, scope, only, seen, unsettled):
    """{destination: [primaries to bring there]}, from one listing of this region (added to
    ``seen``); a primary that cannot be read is added to ``unsettled``."""
    ec2 = make_client("ec2", region, budget)
    primaries = list_primaries(ec2, scope, only, seen)
    enabled = enabled_regions(ec2) if primaries else set()
    by_dest = {}
    for snapshot in primaries:
        try:  # an odd snapshot, or a bug of ours, costs that snapshot only
            primary, warnings = primary_record(snapshot, enabled, region, today)
        except Exception as exc:
            summary.error(snapshot.get("SnapshotId", "?"), exc, "not copied")
            unsettled.add(snapshot.get("SnapshotId"))
            continue
        for tag, why in warnings:
            summary.tag_error(snapshot["SnapshotId"], tag, tag_map(snapshot).get(tag), why)
        for dest in primary["dests"] if primary else ():
            by_dest.setdefault(dest, []).append(primary)
    return by_dest


def plan_all(by_dest, summary, budget, pacer, when, unsettled):
    """([(dest, dest client, action)], {dest: [primaries deferred for want of a slot]}),
    adding to ``unsettled`` the primaries with something left to do in some destination.
    A destination that cannot be read (refused, unreachable) fails alone: the others go on.
    ``when``: (today, the run's scope, the copies the invocations before it started)."""
    today, scope, carried = when
    work, deferred = [], {}
    for dest in sorted(by_dest):
        dest_ec2 = make_client("ec2", dest, budget, pacer)
        found = read_destination(dest_ec2, by_dest[dest], summary, scope, unsettled)
        if found is None:
            continue
        existing, in_flight, lockable = found
        in_flight += carry_over(existing, carried.get(dest, []), unsettled)
        free = (NOTIFIED_MAX_IN_FLIGHT if scope == "notified" else COPIES_IN_FLIGHT) - in_flight
        for action in plan_destination(by_dest[dest], existing, free):
            if action[0] == "skip":
                summary.skip(action[1]["id"], action[2], dest_region=dest)
                continue
            unsettled.add(action[1]["id"])
            if action[0] == "defer":
                deferred.setdefault(dest, []).append(action[1])
            else:
                work.append((dest, dest_ec2, action))
        if scope != "notified":  # a sweep; a notified snapshot's run looks at that one only
            work += lock_work(dest_ec2, by_dest[dest], lockable, summary, today, unsettled)
    return work, deferred


def carry_over(existing, started, unsettled):
    """The copies the invocations that handed this event over started in a destination count
    as there (in flight) even when its listing does not show them yet (Describe calls are
    eventually consistent): no second copy. Returns how many the listing did not show."""
    unseen = [pid for pid in started if pid not in existing]
    for pid in unseen:
        existing[pid] = {f"copy of {pid}, handed over": True}  # True: nothing to tag on it
        unsettled.add(pid)
    return len(unseen)


def copies_started(summary, carried, work):
    """{destination: [primary ids]} of the copies this invocation started, those whose answer
    was lost without a copy found (they may exist), and those it was handed: what the next
    one is told (CARRIED). Only regional copies: the vault's are made by an invocation that
    hands nothing over."""
    started = {dest: list(ids) for dest, ids in carried.items()}
    for item in summary.data.get("copied", []):
        started.setdefault(item["dest_region"], []).append(item["source_snapshot_id"])
    for dest, _, (kind, primary, *_) in work:
        lookup = primary.get("lookups", {}).get(dest) if kind == "copy" else None  # copy_once
        if lookup is not None and lookup.lost:
            started.setdefault(dest, []).append(primary["id"])
    return {dest: sorted(set(ids)) for dest, ids in sorted(started.items())}


def carried_copies(event):
    """Refuse an event whose CARRIED cannot be read (run_job's check)."""
    carried = event.get(CARRIED)
    if carried is not None and not (
        isinstance(carried, dict)
        and all(
            isinstance(ids, list) and all(isinstance(i, str) for i in ids)
            for ids in carried.values()
        )
    ):
        raise ValueError(f"event {CARRIED} must be {{region: [snapshot ids]}}, not {carried!r}")


def read_destination(dest_ec2, primaries, summary, scope, unsettled):
    """(copies there by primary, copies in flight, copies tagged Lock) for one destination:
    a full sweep reads all its copies, other runs look up those of ``primaries``. Failed
    copies are reported; primaries with a copy not completed are unsettled. None when it
    cannot be read: a failure, and all of ``primaries`` unsettled."""
    dest, ids = dest_ec2.meta.region_name, [p["id"] for p in primaries]
    lookup = None if scope == "full" or len(ids) > MAX_LOOKUP else ids
    try:
        existing, in_flight, broken, lockable, unfinished = existing_copies(
            dest_ec2, summary.region, lookup
        )
    except OutOfTime:
        raise
    except Exception as exc:
        summary.error(dest, exc, "cannot list copies there")
        unsettled.update(ids)
        return None
    for copy_id, source, message in broken:
        reason = f"copy of {source} failed ({message}); not made again while it exists"
        summary.fail(copy_id, reason, dest_region=dest)
    unsettled.update(unfinished)
    return existing, in_flight, lockable


def lock_work(dest_ec2, primaries, lockable, summary, today, unsettled):
    """("lock", copy id, LockSnapshot's parameters) for each copy in this destination that is
    tagged for a lock but not locked (its lock failed when it was made); their primaries are
    unsettled. Not being able to look is a warning (and leaves them unsettled): the manager
    there reports locks still missing after a day."""
    dest = dest_ec2.meta.region_name
    sources = {s["SnapshotId"]: tag_map(s)[TAG_SOURCE_SNAPSHOT] for s in lockable}
    try:
        locked = locked_among(dest_ec2, list(sources))
    except OutOfTime:
        raise
    except Exception as exc:
        summary.warn(dest, f"locks of the copies there not checked: {describe_error(exc)}")
        unsettled.update(sources.values())
        return []
    todo = unlocked(lockable, locked, today)
    if summary.dry_run and any(p["lock"] for p in primaries):
        probe_lock(dest_ec2, todo, summary)
    unsettled.update(sources[sid] for sid, _ in todo)
    return [(dest, dest_ec2, ("lock", sid, req)) for sid, req in todo]


def locked_among(ec2, ids):
    """locks_in_force for these snapshots: by their ids, LOOKUP_BATCH at a time, or (more
    than MAX_LOOKUP) the region's whole list; {} and no call when there are none."""
    if not ids:
        return {}
    if len(ids) > MAX_LOOKUP:
        return locks_in_force(ec2)
    return {sid: lock for batch in batches(ids) for sid, lock in locks_in_force(ec2, batch).items()}


def execute(work, deferred, summary, budget):
    """Copy and tag, WORKERS at a time; returns (started, stopped by OutOfTime).

    Should a destination still refuse a copy (ResourceLimitExceeded: copies from elsewhere
    took the slots), its remaining copies wait for the next run; KeepForever tags go on.
    """
    lock, refused = threading.Lock(), set()

    def act(entry):
        dest, dest_ec2, (kind, primary, *rest) = entry
        if kind == "lock":  # primary: the id of a copy whose lock is missing
            lock_snapshot(dest_ec2, primary, rest[0], summary, dest_region=dest, reason=RELOCK)
        elif kind == "keep":
            keep_forever(dest_ec2, dest, primary, rest[0], summary)
        elif dest in refused or not copy_snapshot(dest_ec2, dest, primary, summary):
            with lock:
                refused.add(dest)
                deferred.setdefault(dest, []).append(primary)

    def failed(entry, exc):
        dest, _, (kind, primary, *rest) = entry
        rid = primary if kind == "lock" else rest[0] if rest else primary["id"]
        summary.error(rid, exc, dest_region=dest)

    return in_parallel(work, act, budget, failed)


def stay(deferred, summary, budget, now, until):
    """Wait for copy slots and fill each as it frees, oldest primary first, until ``until``
    (or Lambda time runs short): every STAY_POLL_S, one look at each waiting destination's
    copies in flight. What is still waiting at the end is the next sweep's."""
    pacer = Pacer()
    waiting = {dest: make_client("ec2", dest, budget, pacer) for dest in deferred}
    while waiting:
        clock = clock_of(now, summary) + timedelta(seconds=STAY_POLL_S)
        if clock > until or budget.left() < STOP_MARGIN_S + STAY_POLL_S:
            return
        time.sleep(STAY_POLL_S)
        for dest in sorted(waiting):
            readable = fill_slots(waiting[dest], deferred[dest], summary)
            if not deferred[dest]:
                del deferred[dest]
            if not (readable and dest in deferred):
                del waiting[dest]


def fill_slots(dest_ec2, queue, summary):
    """Start as many copies from the head of ``queue`` (removed from it once started or
    failed) as the destination has free slots. False: stop waiting for this destination
    (it cannot be read; a warning, and the next sweep tries again)."""
    dest = dest_ec2.meta.region_name
    heads = [p["id"] for p in queue[:COPIES_IN_FLIGHT]]  # no more can start at once
    try:
        # Another run (a notified snapshot's, with no reserved concurrency) may have copied
        # one of them since this sweep looked: a second copy would take a slot for nothing.
        made, in_flight, *_ = existing_copies(dest_ec2, summary.region, heads)
    except OutOfTime:
        raise
    except Exception as exc:
        summary.warn(dest, f"stopped waiting for copy slots there: {describe_error(exc)}")
        return False
    for primary in queue[: max(COPIES_IN_FLIGHT - in_flight, 0)]:
        try:
            if primary["id"] not in made and not copy_snapshot(dest_ec2, dest, primary, summary):
                break  # ResourceLimitExceeded: someone else's copy took the slot
        except OutOfTime:
            raise
        except Exception as exc:  # a network failure, a bug of ours: this copy only
            summary.error(primary["id"], exc, dest_region=dest)
        queue.remove(primary)
    return True


def report_deferred(deferred, summary, now):
    """One item per destination with copies left for the next sweep. Copies deferred for
    longer than the copy allowance (COPY_MAX_LAG_HOURS) mean the destination's 20 copy
    slots never free up in time: a warning, and their volumes count as unprotected."""
    lag, problem = env_hours(COPY_LAG_ENV, COPY_LAG_HOURS)
    if problem:
        summary.warn(COPY_LAG_ENV, problem)
    for dest, primaries in sorted(deferred.items()):
        summary.add(
            "deferred",
            "WARN",
            id=dest,
            count=len(primaries),
            reason=f"{COPIES_IN_FLIGHT} copies already in flight into this region "
            "(AWS's limit); the next run continues",
        )
        summary.count("deferred", len(primaries) - 1)  # one item per region; counts copies
        late = [p for p in primaries if now - p["start"] > lag]
        if late:
            volumes = {p["volume_id"] or p["id"] for p in late}
            hours = f"{lag.total_seconds() / 3600:g}"
            oldest = min(p["start"] for p in late)
            summary.warn(
                dest,
                f"copies into {dest} are more than {hours} h behind: {len(late)} snapshots of "
                f"{len(volumes)} volumes, the oldest from {oldest:%Y-%m-%d %H:%M} UTC, still "
                "wait for a copy slot; those volumes are unprotected there",
            )
            summary.count("unprotected", len(volumes))


# ---- vault copies: one copy of each primary in another account (issue 17) ----
#
# EBS user guide, "Share an Amazon EBS snapshot": "You can't share snapshots that are
# encrypted with the default AWS managed key"; the EC2 API reference, ModifySnapshotAttribute:
# "Snapshots encrypted with your default KMS key cannot be shared with other accounts". Such
# a primary is first copied here with VAULT_SHARE_KMS_KEY (a customer managed key whose key
# policy lets the vault account use it), and that staging copy is shared instead.
SHARE_KEY_ENV, VAULT_KEY_ENV = "VAULT_SHARE_KMS_KEY", "VAULT_KMS_KEY"
# A staging copy's DeleteOn (at most): the manager's backstop should the copier not delete it.
STAGING_DAYS = 7
NO_SHARE_KEY = (
    "encrypted with the AWS managed key (aws/ebs), which AWS does not let anyone share: set "
    f"{SHARE_KEY_ENV} (template parameter VaultShareKmsKey) to a customer managed key whose "
    "key policy lets the vault account use it (README, Vault copies); not copied to the vault"
)


def vault_record(snapshot, enabled, region, today):
    """(vault primary or None, tag errors) for one listed snapshot with Vault_Account. Its vault
    copies keep Vault_Retention days from its creation, else its DeleteOn; shaped like a
    primary_record, so that plan_destination plans each vault region."""
    tags = tag_map(snapshot)
    if TAG_SOURCE_SNAPSHOT in tags:  # a copy (a staging copy carries no Vault_Account)
        return None, []
    account, regions, warnings = vault_target(tags, enabled, region)
    delete_on = parse_date(tags.get(TAG_DELETE_ON))
    if account is None or delete_on is None:
        return None, warnings
    warnings += vault_retention(tags)[1]
    until = copy_until(tags, snapshot["StartTime"].astimezone(UTC).date(), TAG_VAULT_RETENTION)
    record = {
        "id": snapshot["SnapshotId"],
        "tags": {},  # nothing more is carried to a vault copy: KeepForever stays here
        "owner": snapshot.get("OwnerId"),
        "account": account,
        "regions": regions,
        "start": snapshot["StartTime"],
        "volume_id": snapshot.get("VolumeId"),
        "size": snapshot.get("VolumeSize"),
        "description": snapshot.get("Description", ""),
        "encrypted": bool(snapshot.get("Encrypted")),
        "key": snapshot.get("KmsKeyId"),
        "copy": until > today,
        "delete_on": delete_on,
        "copy_delete_on": until,
        "lock": lock_request(tags, until, today),
        "copy_state": tags.get(TAG_COPY_STATE),
    }
    return record, warnings


def staging_request(primary, region, key, today):
    """(CopySnapshot's parameters, the summary item) for a primary's staging copy: here,
    with the share key ``key``, kept STAGING_DAYS at most (never past its vault copies)."""
    delete_on = min(today + timedelta(days=STAGING_DAYS), primary["copy_delete_on"])
    tags = {
        TAG_TYPE: AUTOMATED,
        TAG_DELETE_ON: delete_on.isoformat(),
        TAG_VAULT_STAGING: primary["id"],
    }
    params = {
        "SourceRegion": region,
        "SourceSnapshotId": primary["id"],
        "Encrypted": True,
        "KmsKeyId": key,
        "Description": staging_description(primary["id"]),
        "TagSpecifications": [{"ResourceType": "snapshot", "Tags": tag_pairs(tags)}],
    }
    item = {"source_snapshot_id": primary["id"], "staging": True, "delete_on": tags[TAG_DELETE_ON]}
    return params, item


def vault_tags(primary, region):
    """A vault copy's tags, all in its CopySnapshot call (the writer role may tag nothing
    later): where it came from, its own DeleteOn, and its lock."""
    tags = {
        TAG_TYPE: AUTOMATED,
        TAG_DELETE_ON: primary["copy_delete_on"].isoformat(),
        TAG_SOURCE_SNAPSHOT: primary["id"],
        TAG_SOURCE_REGION: region,
        TAG_SOURCE_ACCOUNT: primary["owner"] or "unknown",
    }
    if primary["volume_id"]:
        tags[TAG_SOURCE_VOLUME] = primary["volume_id"]
    if primary["lock"]:
        tags[TAG_LOCK] = primary["lock"]["LockMode"]
        if "CoolOffPeriod" in primary["lock"]:
            tags[TAG_LOCK_COOL_OFF] = str(primary["lock"]["CoolOffPeriod"])
    return tags


def vault_done(primary, states):
    """True once nothing more will be copied from this primary: each of its vault regions
    holds a completed copy, or (its vault DeleteOn come) none is to be made. ``states``:
    {(account, region, primary id): copy state}; a vault not read has no states."""
    for vregion in primary["regions"]:
        state = states.get((primary["account"], vregion, primary["id"]))
        if state != "completed" and (state is not None or primary["copy"]):
            return False
    return True


def vault_primaries(ec2, summary, region, today, listed=None):
    """Completed primaries of this region with Vault_Account, oldest first (the regions
    are read only when there is one): all of them, or those among ``listed`` (snapshots a
    notified run or a pending sweep read already)."""
    if listed is not None:
        snaps = [s for s in listed if TAG_VAULT_ACCOUNT in tag_map(s)]
    else:
        snaps = automated_snapshots(ec2, {"Name": "tag-key", "Values": [TAG_VAULT_ACCOUNT]})
    records, enabled = [], None
    for snap in sorted(snaps, key=lambda s: (s["StartTime"], s["SnapshotId"])):
        if snap["State"] != "completed" or tag_map(snap).get(TAG_TYPE) != AUTOMATED:
            continue
        enabled = enabled_regions(ec2) if enabled is None else enabled
        record, warnings = vault_record(snap, enabled, region, today)
        for tag, why in warnings:
            summary.tag_error(snap["SnapshotId"], tag, tag_map(snap).get(tag), why)
        records += [record] if record else []
    return records


def staging_description(primary_id):
    """A staging copy's description, given in its CopySnapshot call."""
    return f"vault staging copy of {primary_id}"


def staging_of(snapshot):
    """The primary a snapshot is the copier's staging copy of, or None. A Vault_StagingOf tag
    alone proves nothing (anyone who can tag could write it on a backup, which the copier
    would then delete): the copy must also carry the description the copier gave it in its
    CopySnapshot call, which no EC2 call changes later, and be encrypted (it exists to be
    shared under the share key)."""
    primary = tag_map(snapshot).get(TAG_VAULT_STAGING)
    if not primary or not snapshot.get("Encrypted"):
        return None
    return primary if snapshot.get("Description") == staging_description(primary) else None


def not_staging(copy, primary):
    """Why ``copy``, tagged Vault_StagingOf=<primary>, is not the copier's staging copy of
    ``primary`` (a vault record, or None when that primary was not read), or None: it is the
    copier's (staging_of), a copy and not a snapshot of the primary's volume (a copy's
    VolumeId is arbitrary: EC2 API reference, Snapshot), of the primary's size, made after it."""
    named = tag_map(copy)[TAG_VAULT_STAGING]
    if staging_of(copy) != named:
        described = copy.get("Description", "")
        return f"its description {described!r} is not the copier's, or it is not encrypted"
    if primary is None:
        return None
    if copy.get("VolumeId") == primary["volume_id"]:
        return f"it is a snapshot of {primary['volume_id']}, not a copy"
    if primary["size"] is not None and copy.get("VolumeSize") != primary["size"]:
        return f"it is {copy.get('VolumeSize')} GiB, and {named} {primary['size']} GiB"
    if copy["StartTime"] < primary["start"]:
        return f"it is older than {named}"
    return None


def staging_copies(ec2, ids=None):
    """The snapshots tagged Vault_StagingOf of this region, oldest first: of all primaries,
    or of ``ids`` (LOOKUP_BATCH at a time). Candidates only: see not_staging."""
    if ids is None:
        filters = [[{"Name": "tag-key", "Values": [TAG_VAULT_STAGING]}]]
    else:
        filters = [
            [{"Name": "tag:" + TAG_VAULT_STAGING, "Values": batch}] for batch in batches(ids)
        ]
    snaps = [snap for wanted in filters for snap in automated_snapshots(ec2, *wanted)]
    return sorted(snaps, key=lambda s: (s["StartTime"], s["SnapshotId"]))


def vault_copies(vault_ec2, region, account, ids=None):
    """({primary id: the state of its copy there (completed wins)}, copies in flight there,
    those tagged Lock): what the vault holds of this account's (``account``) primaries of
    this region (all, or ``ids``, LOOKUP_BATCH at a time; vault_copy_states), and its pending
    copies, every source's (they share the region's 20 copy slots)."""
    states, lockable = {}, []
    for batch in [None] if ids is None else batches(ids):
        found, locks = vault_copy_states(vault_ec2, region, account, batch)
        states, lockable = states | found, lockable + locks
    pending = paginate(
        vault_ec2,
        "describe_snapshots",
        "Snapshots",
        OwnerIds=["self"],
        Filters=[
            {"Name": "tag-key", "Values": [TAG_SOURCE_SNAPSHOT]},
            {"Name": "status", "Values": ["pending"]},
        ],
    )
    return states, sum(1 for _ in pending), lockable


class Vaults:
    """One run's vault work: reads each vault (account, region) once through its writer
    role, then shares, stages, copies, unshares and cleans up. A vault that cannot be read
    (the role missing or refusing, the region down) fails alone; nothing is unshared for it."""

    def __init__(self, summary, budget, today, scope="full", listed=None):
        """``scope`` as sweep_scope; ``listed``: the snapshots a notified run or a pending
        sweep read already (a full sweep lists the vault primaries itself)."""
        self.summary, self.budget, self.today, self.scope = summary, budget, today, scope
        self.listed = None if scope == "full" else listed
        self.primaries, self.ids, self.unsettled = [], None, set()
        self.region = summary.region
        self.ec2 = make_client("ec2", self.region, budget)
        self.clients, self.states, self.free, self.lockable = {}, {}, {}, {}
        self.deferred, self.shared = {}, set()
        self.managers = {}  # kms key id: its KeyManager (AWS or CUSTOMER)

    def run(self):
        primaries = vault_primaries(self.ec2, self.summary, self.region, self.today, self.listed)
        self.primaries = primaries
        if not primaries:  # a full sweep still takes back shares and staging copies left
            if self.scope == "full" and vault_accounts():
                self.clean_up([], self.staging(staging_copies(self.ec2), []))
            return
        self.account = primaries[0]["owner"] or "unknown"  # as vault_tags writes it
        if self.listed is not None and len(primaries) <= MAX_LOOKUP:
            self.ids = [p["id"] for p in primaries]  # else: read all, fewer calls
        staging = self.staging(staging_copies(self.ec2, self.ids), primaries)
        for account, vregion in sorted(
            {(p["account"], r) for p in primaries for r in p["regions"]}
        ):
            self.read_vault(account, vregion)
        for primary in primaries:
            self.each(primary, staging)
        if self.scope != "notified":  # a sweep: what the vaults now hold completes the shares
            self.clean_up(primaries, staging)
            for vault, lockable in sorted(self.lockable.items()):
                self.relock(vault, lockable)
        self.unsettled |= {p["id"] for p in primaries if not self.finished(p)}

    def staging(self, candidates, primaries):
        """{primary id: its staging copy, the newest} among the snapshots tagged
        Vault_StagingOf; any other is named in a warning and left as what it otherwise is
        (never shared for, nor deleted as, a staging copy)."""
        by_id, found = {p["id"]: p for p in primaries}, {}
        for snap in candidates:
            named = tag_map(snap)[TAG_VAULT_STAGING]
            why = not_staging(snap, by_id.get(named))
            if why:
                what = f"tagged {TAG_VAULT_STAGING}={named}, but {why}: not a staging copy"
                sid = snap["SnapshotId"]
                self.summary.tag_error(sid, TAG_VAULT_STAGING, named, f"{what}, left alone")
            else:
                found[named] = snap
        return found

    def relock(self, vault, lockable):
        """Lock the vault's copies tagged Lock whose lock is not in force (it failed when
        they were made). Not being able to look is a warning."""
        if not lockable:
            return
        client, where = self.clients[vault], {"vault_account": vault[0], "dest_region": vault[1]}
        sources = {s["SnapshotId"]: tag_map(s).get(TAG_SOURCE_SNAPSHOT) for s in lockable}
        try:
            todo = unlocked(lockable, locked_among(client, list(sources)), self.today)
        except OutOfTime:
            raise
        except Exception as exc:
            self.summary.warn(f"{vault[0]}/{vault[1]}", f"locks not checked: {describe_error(exc)}")
            self.unsettled.update(sources.values())
            return
        self.unsettled.update(sources[sid] for sid, _ in todo)
        for sid, request in todo:
            lock_snapshot(client, sid, request, self.summary, reason=RELOCK, **where)

    def read_vault(self, account, vregion):
        try:
            if (account, vregion) not in self.clients:
                self.clients[(account, vregion)] = vault_client(account, vregion, self.budget)
            states, in_flight, lockable = vault_copies(
                self.clients[(account, vregion)], self.region, self.account, self.ids
            )
        except OutOfTime:
            raise
        except Exception as exc:
            self.summary.error(f"{account}/{vregion}", exc, "vault not read; no vault copy there")
            return
        self.states |= {(account, vregion, sid): state for sid, state in states.items()}
        cap = NOTIFIED_MAX_IN_FLIGHT if self.scope == "notified" else COPIES_IN_FLIGHT
        self.free[(account, vregion)] = cap - in_flight
        self.lockable[(account, vregion)] = lockable
        for sid, state in states.items():
            if state == "error":
                reason = (
                    "its vault copy failed (see it in the vault); not made again while it exists"
                )
                self.summary.fail(sid, reason, vault_account=account, dest_region=vregion)

    def each(self, primary, staging):
        """Plan the primary in each readable vault region; copy where a slot is free."""
        todo = []
        for vregion in primary["regions"]:
            vault = (primary["account"], vregion)
            if vault not in self.free:
                continue
            made = (*vault, primary["id"]) in self.states  # a copy there, in any state
            existing = {primary["id"]: {"in the vault": True}} if made else {}
            for action in plan_destination([primary], existing, self.free[vault]):
                if action[0] == "skip":
                    self.summary.skip(primary["id"], action[2], vault_account=vault[0])
                elif action[0] == "defer":
                    self.deferred.setdefault(f"{vault[0]}/{vregion}", []).append(primary)
                else:
                    self.free[vault] -= 1
                    todo.append(vregion)
        if todo:
            try:
                source = self.source(primary, staging)
                if source:
                    self.copy(primary, source, todo)
            except OutOfTime:
                raise
            except Exception as exc:
                self.summary.error(primary["id"], exc, "not copied to the vault")

    def source(self, primary, staging):
        """The snapshot to share for this primary: itself, or its staging copy once that is
        completed (made now if there is none). None: nothing to copy from yet."""
        if not self.needs_staging(primary):
            return primary["id"]
        copy = staging.get(primary["id"])
        if copy is None:
            self.make_staging(primary)
            return None
        if copy["State"] == "error":
            why = copy.get("StateMessage") or "no reason given"
            self.summary.fail(copy["SnapshotId"], f"staging copy of {primary['id']} failed ({why})")
            return None
        if copy["State"] != "completed":
            self.summary.skip(primary["id"], "its staging copy is not completed yet")
            return None
        return copy["SnapshotId"]

    def needs_staging(self, primary):
        """An encrypted primary whose key is AWS managed (kms:DescribeKey) cannot be shared."""
        if not primary["encrypted"]:
            return False
        key = primary["key"]
        if not key:
            return True
        if key not in self.managers:
            kms = make_client("kms", self.region, self.budget)
            self.managers[key] = kms.describe_key(KeyId=key)["KeyMetadata"]["KeyManager"]
        return self.managers[key] == "AWS"

    def make_staging(self, primary):
        key = os.environ.get(SHARE_KEY_ENV, "").strip()
        if not key:
            self.summary.fail(primary["id"], NO_SHARE_KEY, vault_account=primary["account"])
            return
        params, item = staging_request(primary, self.region, key, self.today)
        if self.summary.dry_run:
            self.summary.probe("ec2:CopySnapshot", self.region, self.ec2.copy_snapshot, **params)
            self.summary.did("copy", dest_region=self.region, **item)
            return
        if self.region in self.deferred:  # this region refused a copy this run: wait
            self.deferred[self.region].append(primary)
            return
        try:
            copy = copy_once(self.ec2, params, check=staging_of)
        except ClientError as exc:
            if error_code(exc) != COPY_LIMIT_CODE:
                raise
            self.deferred.setdefault(self.region, []).append(primary)
            return
        self.summary.did("copy", snapshot_id=copy["SnapshotId"], dest_region=self.region, **item)

    def share(self, snapshot_id, account, operation="add"):
        params = {
            "SnapshotId": snapshot_id,
            "Attribute": "createVolumePermission",
            "OperationType": operation,
            "UserIds": [account],
        }
        if self.summary.dry_run:
            call = self.ec2.modify_snapshot_attribute
            self.summary.probe("ec2:ModifySnapshotAttribute", self.region, call, **params)
        else:
            self.ec2.modify_snapshot_attribute(**params)
        action = "share" if operation == "add" else "unshare"
        self.summary.did(action, snapshot_id=snapshot_id, vault_account=account)

    def copy(self, primary, source, vregions):
        account = primary["account"]
        if (source, account) not in self.shared:
            self.share(source, account)
            self.shared.add((source, account))
        for vregion in vregions:
            if f"{account}/{vregion}" in self.deferred:  # refused a slot this run
                self.deferred[f"{account}/{vregion}"].append(primary)
                continue
            try:
                self.copy_into(primary, source, vregion)
            except OutOfTime:
                raise
            except Exception as exc:
                self.summary.error(primary["id"], exc, vault_account=account, dest_region=vregion)

    def copy_into(self, primary, source, vregion):
        account, tags = primary["account"], vault_tags(primary, self.region)
        vault_ec2 = self.clients[(account, vregion)]
        params = {
            "SourceRegion": self.region,
            "SourceSnapshotId": source,
            "Encrypted": True,
            "TagSpecifications": [{"ResourceType": "snapshot", "Tags": tag_pairs(tags)}],
        }
        key = os.environ.get(VAULT_KEY_ENV, "").strip()
        params |= {"KmsKeyId": key} if key else {}
        if primary["description"]:
            params["Description"] = primary["description"]
        item = {"source_snapshot_id": primary["id"], "vault_account": account}
        item |= {"dest_region": vregion, "delete_on": tags[TAG_DELETE_ON]}
        if self.summary.dry_run:
            scope = f"{account}/{vregion}"
            self.summary.probe("ec2:CopySnapshot", scope, vault_ec2.copy_snapshot, **params)
            self.summary.did("copy", **item)
            return
        try:
            copy = copy_once(vault_ec2, params)
        except ClientError as exc:
            if error_code(exc) != COPY_LIMIT_CODE:
                raise
            self.deferred.setdefault(f"{account}/{vregion}", []).append(primary)
            return
        self.summary.did("copy", snapshot_id=copy["SnapshotId"], **item)
        if primary["lock"]:  # locked in the vault too, until the vault copy's DeleteOn
            lock_snapshot(vault_ec2, copy["SnapshotId"], primary["lock"], self.summary, **item)

    def clean_up(self, primaries, staging):
        """Unshare what the vaults no longer need (every vault region of its primary holds a
        completed copy), and delete staging copies no longer needed. Snapshots shared with a
        vault are found by DescribeSnapshots' RestorableByUserIds, one listing per vault
        account (those the primaries name and VAULT_ACCOUNT_IDS: a primary that no longer
        asks leaves its share behind); a vault that could not be read keeps its shares. A
        pending sweep takes back only what its own primaries no longer need: the rest is the
        day's full sweep's."""
        by_id = {p["id"]: p for p in primaries}
        for account in sorted({p["account"] for p in primaries} | vault_accounts()):
            for snap in paginate(
                self.ec2,
                "describe_snapshots",
                "Snapshots",
                OwnerIds=["self"],
                RestorableByUserIds=[account],
            ):
                owner = staging_of(snap) or snap["SnapshotId"]
                if self.unneeded(by_id, owner):
                    sid = snap["SnapshotId"]
                    self.guarded(owner, sid, self.share, sid, account, "remove")
        for owner, copy in sorted(staging.items()):
            if not self.unneeded(by_id, owner):
                continue
            if copy["State"] == "pending":  # taken back once completed
                self.unsettled.add(owner)
            else:
                self.guarded(owner, copy["SnapshotId"], self.delete_staging, copy, owner)

    def unneeded(self, by_id, owner):
        """Whether what is shared or staged for the primary ``owner`` can go: it is done, or
        (a full sweep, which saw every vault primary) no longer asks for a vault copy."""
        primary = by_id.get(owner)
        return self.finished(primary) if primary else self.scope == "full"

    def finished(self, primary):
        readable = all((primary["account"], r) in self.free for r in primary["regions"])
        return readable and vault_done(primary, self.states)

    def guarded(self, owner, sid, call, *args):
        """call(*args) for the primary ``owner``: a failure is that snapshot's, and leaves
        the primary unsettled (the next sweep tries again)."""
        try:
            call(*args)
        except OutOfTime:
            raise
        except Exception as exc:
            self.summary.error(sid, exc)
            self.unsettled.add(owner)

    def delete_staging(self, copy, owner):
        if not self.summary.dry_run:
            try:
                self.ec2.delete_snapshot(SnapshotId=copy["SnapshotId"])
            except ClientError as exc:
                if error_code(exc) != "InvalidSnapshot.NotFound":  # gone already: done
                    raise
        reason = f"staging copy of {owner}, no longer needed"
        self.summary.did("delete", snapshot_id=copy["SnapshotId"], reason=reason)


def copy_to_vaults(vaults, summary):
    """The run's vault work; Lambda time running short leaves the rest for the next sweep
    (False)."""
    try:
        vaults.run()
    except OutOfTime as exc:
        summary.warn(summary.region, f"vault copies left for the next sweep: {exc}")
        return False
    return True


def mark_copy_states(ec2, marks, summary):
    """Tag primaries Copy_State as ``marks`` says, LOOKUP_BATCH at a time. A refusal or a
    network failure is a warning: a primary left pending is read again by the next sweep
    (a little cost, nothing lost), one left unmarked by the next full sweep."""
    for state, ids in marks.items():
        for batch in batches(ids):
            params = {"Resources": batch, "Tags": [{"Key": TAG_COPY_STATE, "Value": state}]}
            if summary.dry_run:
                summary.probe("ec2:CreateTags", summary.region, ec2.create_tags, **params)
            else:
                try:
                    ec2.create_tags(**params)
                except OutOfTime:
                    raise
                except Exception as exc:
                    summary.warn(
                        batch[0],
                        f"{len(batch)} primaries not marked {TAG_COPY_STATE}="
                        f"{state}: {describe_error(exc)}",
                        snapshot_ids=batch,
                    )
                    continue
            log(
                "INFO",
                JOB,
                summary.region,
                "copy_state",
                state=state,
                snapshot_ids=batch,
                dry_run=summary.dry_run,
            )


def tag_pairs(tags):
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def run(event=None, context=None, *, region=None, now=None):
    """One copier run; ``now`` (a datetime) is injectable for tests and the demo."""
    return run_job(JOB, copy_all, event, context, region, now, check=carried_copies)


def copy_all(event, context, summary, budget, now):
    only, why_not = notified_snapshot(event)
    if why_not:  # a notification it cannot use: said so, and no call made
        (summary.skip if only else summary.warn)(only or "event", why_not)
        return
    today, pacer, scope = utc_today(now), Pacer(), "notified" if only else sweep_scope(event)
    seen, unsettled = [], set()  # the snapshots read here; those with work left
    by_dest = list_by_destination(
        summary.region, today, summary, budget, scope, only, seen, unsettled
    )
    carried = event.get(CARRIED) or {}
    work, deferred = plan_all(by_dest, summary, budget, pacer, (today, scope, carried), unsettled)
    started, stopped = execute(work, deferred, summary, budget)
    left = len(work) - started + stopped
    until, problem = stay_until(event, now)
    if problem:
        summary.warn(STAY_ENV, problem)
    vaults = Vaults(summary, budget, today, scope, seen)
    vaulted = not left and copy_to_vaults(vaults, summary)  # out of time: the hand-off's
    if deferred and until and not (left or only or summary.dry_run):
        stay(deferred, summary, budget, now, until)
    report_deferred(deferred | vaults.deferred, summary, now)
    if left:
        carry = {CARRIED: copies_started(summary, carried, work)}
        hand_off(context, event, summary, started - stopped, left, carry)
    elif vaulted and scope != "notified":
        marks = copy_state_marks(
            tracked(by_dest, seen, vaults), unsettled | vaults.unsettled, scope
        )
        mark_copy_states(make_client("ec2", summary.region, budget, pacer), marks, summary)


def tracked(by_dest, seen, vaults):
    """{primary id: its Copy_State now} for every primary the sweep read: the regional
    primaries, what a pending sweep listed, and the vault primaries."""
    states = {p["id"]: p["tags"].get(TAG_COPY_STATE) for ps in by_dest.values() for p in ps}
    states |= {s["SnapshotId"]: tag_map(s).get(TAG_COPY_STATE) for s in seen}
    return states | {p["id"]: p["copy_state"] for p in vaults.primaries}


def lambda_handler(event, context):
    return run(event, context)


def main(argv=None):
    return cli(
        cli_parser(JOB, "Copy completed automated snapshots into their Copy_Dest regions."), argv
    )


if __name__ == "__main__":
    sys.exit(main())
