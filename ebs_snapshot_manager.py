"""EBS snapshot manager: delete automated snapshots whose DeleteOn has come, and check
that every volume that should be backed up is.

Runs as an AWS Lambda function (handler ``ebs_snapshot_manager.lambda_handler``) once a
day in each region that has instances or receives copies, or from the command line.
Region: ``AWS_REGION``, else ``AWS_DEFAULT_REGION``. It deletes in its own region only:
copies are deleted by the manager running in the region that holds them.

Snapshot tags read
    Type=Automated   only snapshots of this account with this tag are ever considered
    DeleteOn         YYYY-MM-DD; deleted when it is today or earlier, so days when the
                     manager did not run are caught up. Any other value: kept, with a warning.
    KeepForever      keeps the snapshot forever unless its value is exactly No/false/0/off
                     (any case), as the IAM policy reads it. A key that is KeepForever but
                     for case or surrounding spaces (keepforever) keeps it too, with a
                     warning naming the key: a typo must never cost a backup.
    Lock             governance or compliance: the creator and the copier lock such a
                     snapshot until its DeleteOn. One still not locked LOCK_WITHIN (24 h)
                     after it was taken, its DeleteOn ahead, is a warning, counted in
                     LocksMissing.
    Archive=Yes      the creator's monthly/yearly primaries (instance tag Archive) and their
                     copies: moved to the archive tier, see below.
    Restore          on an archived snapshot, put there by a person: a number of days (a
                     temporary restore) or permanent; see below.
Written: KeepForever on a due copy whose primary is KeepForever (see below); the archive
tier's Archive_Note, Restore_Requested (and removed: Restore, Restore_Requested, and
Archive after a permanent restore); nothing else.
The manager never unlocks a snapshot: a due one whose lock is in force (someone extended
it) is left, with a warning naming the lock's expiry, not a failure; a delete refused
because a lock came after the listing is found by asking DescribeLockedSnapshots (AWS
documents no error code of its own for it).

The last backup is never deleted. A volume's newest completed snapshot stays past its
DeleteOn while the volume is attached to an instance whose Backup tag enables it, until a
newer one completes: should the creator stop (an IAM change, a broken deploy, an outage),
the manager does not delete the last backups. Once the newest is older than
COVERAGE_MAX_AGE_HOURS, this is a warning each run, naming the volume and since when no
newer one exists, counted in LastBackupsKept. A copy cannot see its source volume: the
newest copy of each source volume (its Source_VolumeId tag) is kept past its DeleteOn for
LAST_COPY_GRACE_DAYS (default 14) at most, the same way. A volume that is gone or no longer
backed up expires normally: nothing is kept forever by this rule. When the instances
cannot be read, every volume's newest snapshot is kept that run; so are the last backups
of an instance whose Backup tag cannot be read (the creator skips it with a warning). The
instances are read once the listing is over (an invocation that hands the rest over, see
below, never reads them): until then every volume's newest snapshot is held as if its
volume were backed up, and that of a volume that is not goes then.

A due copy is first checked against its primary, in its source region (one filtered
DescribeSnapshots per 200 copies and source region): if someone has just tagged the
primary KeepForever, the copy is tagged so and kept. A source region that cannot be read
(down, or a Source_Region that names no region) keeps its copies, with a warning, until
they are LAST_COPY_GRACE_DAYS past their DeleteOn; then they are deleted.

A snapshot that AWS will not delete because an AMI uses it (InvalidSnapshot.InUse) is kept
with a warning; one already gone (InvalidSnapshot.NotFound) counts as done; one the IAM
policy refuses because someone tagged it KeepForever after the listing is kept, not
failed. Any other error, or a network failure, fails that snapshot only; the rest are
still done. A destination whose copies cannot be listed fails alone: the rest of the
coverage check is still reported.

Coverage check (read-only, in the same run): every EBS volume that the creator must
snapshot (instance Backup=Yes, not terminated, volume not opted out with Backup=No) needs
a completed automated snapshot younger than COVERAGE_MAX_AGE_HOURS (environment; default
26); and in each region its snapshots ask copies for (Copy_Dest), once one of them has had
COPY_MAX_LAG_HOURS (default 24) to get there, a completed copy of one of its snapshots of
the last COVERAGE_MAX_AGE_HOURS + COPY_MAX_LAG_HOURS, whatever the retention; the same in
each vault region its snapshots ask vault copies for (Vault_Account, one of
VAULT_ACCOUNT_IDS; Vault_Region), among the copies tagged Source_Account=<this account>
(another source of a shared vault cannot stand in), read through the vault's writer role
(sts:AssumeRole, then its read-only DescribeSnapshots; a vault that cannot be read is a
failure, its copies not judged). A snapshot counts for the volume EC2 says it was taken of
(its VolumeId), here and as a volume's last backup, whatever its tags: a copy's VolumeId is
arbitrary, so copies and the copier's staging copies count for no volume (they expire on
their DeleteOn), and no tag written on a backup (Source_SnapshotId, Vault_StagingOf) stops it
counting as its volume's. A volume attached more recently than the threshold is not expected
yet. Each unprotected volume is named in the summary (``unprotected``, with the reasons)
and counted in the UnprotectedVolumes metric. Reading each destination's copies, it also
counts the copies of this region's snapshots more than two days past their DeleteOn there
(not KeepForever, not a source volume's newest): no manager deletes them in that region (a
warning, and the ExpiredCopiesLeft metric). Cost: a few paginated reads (DescribeRegions,
DescribeInstances, DescribeVolumes, one listing per destination region), whatever the
fleet size.

Restore drills (after the sweep and the coverage check; RESTORE_DRILL=off turns them off):
once a week, on a weekday chosen by a stable hash of the volume id, each protected volume's
newest completed snapshot, and each source volume's newest completed copy, is restored:
CreateVolume (gp3, in the zone of the volume's instance, else the region's first; tagged at
creation Type=RestoreDrill, Source_SnapshotId, DeleteAfter two hours on), all of the day's
side by side, watched together until available, in error or vanished (at most
DRILL_WAIT_S, never into the Lambda's last minute), then deleted whatever the result (one
still creating, which EC2 cannot delete, by a later run); never attached. The snapshot's
RestoreDrill tag says "<date> ok <seconds>s" or "<date> failed: <why>"; a failed drill is a
failure and a warning; throttling, capacity or the network is only a warning. At most
RESTORE_DRILL_PER_RUN (50) drills a run, the least recently drilled first; when a seventh
of the volumes is more, a warning says the weekly round cannot complete. Each run first
deletes drill volumes whose DeleteAfter has passed (left by a run that died), if they are
recognisably its own (made from the snapshot their Source_SnapshotId names, not attached,
gp3, created DRILL_LIFE before their DeleteAfter); any other volume tagged
Type=RestoreDrill is left, with a warning.

Archive tier (EBS user guide, "Archive Amazon EBS snapshots"): an archived snapshot is a
full copy at about a quarter of the standard price a GB-month, billed for 90 days at least,
and must be restored (up to 72 hours) before a volume can be made from it. A completed
Archive=Yes snapshot a day old (ARCHIVE_AFTER) goes to the archive tier (ModifySnapshotTier)
when at least 90 days remain to its DeleteOn, or it is KeepForever; a primary only once each
region of its Copy_Dest, and its vault, holds a completed copy (an archived snapshot can be
neither copied nor shared; a vault is read through its writer role); a copy the copier will
never make (its own DeleteOn has come, or its region is not enabled) is not waited for; never
a backed-up volume's newest snapshot (its quick restore: it waits for a newer one). With
fewer days left it stays standard: said once, and written on it as Archive_Note. An archive
under way (DescribeSnapshotTierStatus) is not asked for twice. Archived snapshots expire
on their DeleteOn like any other. A person's Restore tag (also on a due snapshot kept as its
volume's last backup, not on one deleted that run): RestoreSnapshotTier once, then
Restore becomes Restore_Requested=<date> (a permanent restore also removes Archive=Yes, or
it would be archived again); each run reports it while it restores (``restoring``) and,
once, that it is ready (``restored``, Restore_Requested removed) or failed (a failure). An
unreadable Restore warns and is left. The coverage check does not count an archived
snapshot, or an archived copy, as a recent backup; drills skip them. Cost: one
DescribeSnapshotTierStatus per 200 snapshots to archive or restoring, and one
DescribeSnapshots per 200 primaries to archive and Copy_Dest region.

Event
    {}  or an EventBridge scheduled event     every automated snapshot of the region
    {"dry_run": true}                         change nothing; report what would be deleted

Returns a JSON-serialisable summary. If any item failed, every other item is still done,
then JobFailed is raised naming each failure. A run that cannot list the region's
snapshots fails, with its summary line. With under 60 s of Lambda time left it starts no
new delete and invokes itself asynchronously with the same event for the rest (ten thousand
deletes take about 37 minutes at EC2's rate); the coverage check and the drills are done by
the invocation that ends the sweep. Should that hand-off fail (or without a Lambda context)
it stops (summary: stopped_early, metric StoppedEarly) and its next run continues; running
twice is harmless. A run that starts with less than MIN_START_S seconds fails at once,
naming the function's timeout.

Pace: it reads one page (1000 snapshots) at a time and deletes while it reads, four calls
at a time, at most at 90% of EC2's rate for DeleteSnapshot (a burst of 90, then 4.5 a
second); memory grows with the volumes, not the snapshots.

Logs: one JSON line per item on stdout, and a last summary line that is also CloudWatch
Embedded Metric Format (namespace EBSSnapshots, dimensions job and region): SnapshotsDeleted,
UnprotectedVolumes, StoppedEarly, LastBackupsKept, ExpiredCopiesLeft, LocksMissing,
RestoreDrillsPassed, RestoreDrillsFailed, RestoreSeconds, SnapshotsArchived (in the archive
tier), SnapshotsRestoring, Warnings, Failures.
LOG_LEVEL, else AWS_LAMBDA_LOG_LEVEL, sets the level.

IAM actions: ec2:DescribeSnapshots (here and in the copies' source regions),
ec2:DeleteSnapshot (only on Type=Automated snapshots, never on KeepForever ones),
ec2:CreateTags (KeepForever only, on Type=Automated copies), ec2:DescribeInstances,
ec2:DescribeVolumes, ec2:DescribeRegions (the coverage check), ec2:DescribeLockedSnapshots;
for drills: ec2:CreateVolume (tagged Type=RestoreDrill, from Type=Automated snapshots),
ec2:CreateTags (in that call, and RestoreDrill on Type=Automated snapshots),
ec2:DeleteVolume (Type=RestoreDrill only), ec2:DescribeAvailabilityZones;
for the archive tier: ec2:ModifySnapshotTier and ec2:RestoreSnapshotTier (Type=Automated
only), ec2:DescribeSnapshotTierStatus, ec2:CreateTags (Archive_Note, Restore_Requested) and
ec2:DeleteTags (Restore, Restore_Requested, Archive) on Type=Automated snapshots;
lambda:InvokeFunction (on itself, to hand over the rest of a long sweep); sts:AssumeRole
and sts:TagSession (the vault writer role, its session tagged Source_Account, for the
coverage check's read).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
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
# A volume is protected when it has a completed snapshot younger than this: the creator
# runs daily, so 26 hours leaves it two hours of slack.
COVERAGE_ENV, COVERAGE_MAX_AGE_HOURS = "COVERAGE_MAX_AGE_HOURS", 26
# A copy cannot see its source volume, so the newest copy of each source volume is kept
# past its DeleteOn for this many days at most: enough to outlast a source region's outage,
# and nothing is kept forever by this rule.
GRACE_ENV, LAST_COPY_GRACE_DAYS = "LAST_COPY_GRACE_DAYS", 14
# Copies of this region's snapshots this many days past DeleteOn, in a region where they
# should have been deleted, mean that no manager runs there.
EXPIRED_COPY_DAYS = 2
MAX_REASONS = 3  # per unprotected volume, in the summary
# The creator and the copier lock a Lock snapshot as they make it, and retry a failed lock
# on their next run: one still unlocked this long after it was taken is reported.
LOCK_WITHIN = timedelta(hours=24)
# Restore drills: once a week each protected volume's newest completed snapshot, and each
# source volume's newest completed copy, is restored to a new volume, which is deleted as
# soon as it is available (or not). The snapshot's RestoreDrill tag keeps the result.
DRILL_ENV, DRILL_CAP_ENV, DRILLS_PER_RUN = "RESTORE_DRILL", "RESTORE_DRILL_PER_RUN", 50
TAG_DRILL, DRILL_TYPE, TAG_DELETE_AFTER = "RestoreDrill", "RestoreDrill", "DeleteAfter"
DRILL_LIFE = timedelta(hours=2)  # a drill volume left by a run that died goes after this
# A volume tagged Type=RestoreDrill is deleted only if it is recognisably a drill: made from
# the snapshot its Source_SnapshotId names, not attached, a gp3 volume, and created within
# this of DRILL_LIFE before its DeleteAfter (clock skew, the CreateVolume call's retries).
DRILL_TAG_SLACK = timedelta(minutes=15)  # a Lambda's longest run, retries and pacing in it
DRILL_WAIT_S = 300  # the longest wait for a drill volume to become available
DRILL_POLL_S = 5
DRILL_MIN_S = 60  # with less time for the wait than this, no drill starts this run
DRILL_FINISH_S = 0.5  # a drill's DeleteVolume and CreateTags, at EC2's pace
DRILL_GONE_POLLS = 3  # a drill volume absent from this many polls in a row has vanished
MAX_DRILLS_PER_RUN = 200  # the most one run can create, watch and delete in its time
# Not the snapshot's fault: the drill is not run (a warning), and it is not a failed restore.
DRILL_NOT_TRIED = frozenset(
    {"RequestLimitExceeded", "VolumeLimitExceeded", "InsufficientVolumeCapacity", "Unavailable"}
)
# The archive tier (EBS user guide, "Archive Amazon EBS snapshots" and "Pricing and billing
# for archiving"): a full copy of the snapshot at a quarter of the standard price a GB-month,
# billed for 90 days at least (deleted sooner: the rest is billed), usable again only after a
# restore of up to 72 hours; copying or sharing it is not possible once archived.
ARCHIVE_AFTER = timedelta(days=1)  # the copier has had a day to start its copies
ARCHIVE_MIN_DAYS = 90
TAG_ARCHIVE_NOTE = "Archive_Note"  # why an Archive=Yes snapshot stays standard: said once
TAG_RESTORE, TAG_RESTORE_REQUESTED = "Restore", "Restore_Requested"
PERMANENT = "permanent"
# DescribeSnapshotTierStatus's LastTieringOperationStatus (EC2 API reference,
# "SnapshotTierStatus"): how a restore someone asked for has gone.
RESTORE_STATES = {
    "temporary-restore-in-progress": "restoring",
    "permanent-restore-in-progress": "restoring",
    "temporary-restore-completed": "ready",
    "permanent-restore-completed": "ready",
    "temporary-restore-failed": "failed",
    "permanent-restore-failed": "failed",
}

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
    key = keep_forever_key(tags)
    if key:
        return ("hold" if due else "forever"), f"{key}={tags[key]}"
    if delete_on is None:
        return "warn", f"DeleteOn {raw!r} is not a YYYY-MM-DD date; kept"
    return ("delete" if due else "keep"), f"DeleteOn {raw}"


def missing_lock(snapshot, locks, now):
    """Why a snapshot tagged Lock should be locked and is not, a day after it was taken;
    None when it is locked, not tagged, too young, or its DeleteOn has come."""
    tags = tag_map(snapshot)
    mode = lock_mode(tags.get(TAG_LOCK))[0]
    delete_on = parse_date(tags.get(TAG_DELETE_ON))
    if mode is None or snapshot["SnapshotId"] in locks or snapshot.get("State") == "error":
        return None
    if (
        delete_on is None
        or delete_on <= utc_today(now)
        or snapshot["StartTime"] > now - LOCK_WITHIN
    ):
        return None
    hours = f"{LOCK_WITHIN.total_seconds() / 3600:g}"
    maker = "copier of " + tags[TAG_SOURCE_REGION] if TAG_SOURCE_REGION in tags else "creator"
    return (
        f"{TAG_LOCK}={tags[TAG_LOCK]} but not locked {hours} h after it was taken: anyone "
        f"with DeleteSnapshot can delete it; see the {maker}'s warnings"
    )


def lock_note(lock):
    """What a lock in force says of a due snapshot that the manager therefore leaves."""
    until = lock.get("LockExpiresOn")
    until = f"until {until:%Y-%m-%d %H:%M} UTC" if until else "until its lock expires"
    return (
        f"due, but locked ({lock.get('LockState', 'locked')}) {until}: not deleted; the "
        "manager never unlocks, it deletes it once the lock has expired"
    )


def near_miss(tags):
    """A warning when a snapshot is kept by a key that is not exactly KeepForever, or by a
    value that is a no-word but for spaces (it keeps: only exactly a no-word releases)."""
    key = keep_forever_key(tags)
    if key is None:
        return None
    if key != TAG_KEEP_FOREVER:
        return f"tag key {key!r} is not {TAG_KEEP_FOREVER}; kept as if it were: rename the key"
    value = tags[key]
    if value.strip().lower() in FALSE_WORDS:
        return (
            f"{key}={value!r} is not exactly a no-word; kept: write {value.strip()!r} to release it"
        )
    return None


def grace_days(value):
    """(days, warning or None) for LAST_COPY_GRACE_DAYS."""
    value = value if value and value.strip() else None  # empty: as if unset
    return count_or(value, GRACE_ENV, MAX_RETENTION_DAYS, LAST_COPY_GRACE_DAYS)


def past_grace(snapshot, today, grace):
    """Whether a snapshot is ``grace`` days or more past its DeleteOn."""
    delete_on = parse_date(tag_map(snapshot).get(TAG_DELETE_ON))
    return delete_on is not None and delete_on + timedelta(days=grace) <= today


def backed_up_volumes(instances, volume_backup):
    """{volume id: {instance_id, name, attached, enabled}}: every EBS volume the tags say the
    creator must snapshot, as the creator reads them (enabled True), and those of an
    instance whose Backup tag cannot be read (enabled None: the creator skips them, with a
    warning, but their last backup is kept: a typo must never cost one)."""
    wanted = {}
    for instance in instances:
        tags = tag_map(instance)
        state = instance.get("State", {}).get("Name")
        enabled = backup_enabled(tags)
        if state not in LIVE_STATES or enabled is False:
            continue
        for mapping in instance.get("BlockDeviceMappings", []):
            ebs = mapping.get("Ebs")
            if ebs and not opted_out(volume_backup.get(ebs["VolumeId"])):
                wanted[ebs["VolumeId"]] = {
                    "instance_id": instance["InstanceId"],
                    "name": tags.get(TAG_NAME, ""),
                    "attached": ebs.get("AttachTime"),
                    "enabled": enabled,
                    "zone": instance.get("Placement", {}).get("AvailabilityZone"),
                }
    return wanted


class LastBackups:
    """The newest completed snapshot of a volume is never deleted while the volume is still
    backed up (an outage of the creator must not leave it with none); a copy, which cannot
    see its source volume, is kept as the newest copy of that volume (Source_VolumeId) for
    LAST_COPY_GRACE_DAYS past its DeleteOn. Once a newer one completes, it expires.

    A snapshot is its volume's by the VolumeId EC2 gives it, whatever its tags say: a copy's
    VolumeId is arbitrary (EC2 API reference, Snapshot), never a volume backed up here, so a
    tag (Source_SnapshotId, Vault_StagingOf) written on a backup cannot release it.

    ``offer`` is shown every listed snapshot, with the reason when it is due, and returns
    the due ones that may go now. ``held`` keeps, per key (a volume, a source volume's
    copies), at most the one it holds. The run learns which volumes are backed up once the
    listing is over (``watch``): until then every volume counts as backed up, so that its
    newest snapshot is held."""

    def __init__(self, backed_up, today, grace):
        self.backed_up, self.today, self.grace = backed_up, today, grace  # backed_up: None=all
        self.newest = {}  # key: (start time, snapshot id) of the newest completed one
        self.held = {}  # key: (snapshot, reason)
        self.holders = {}  # snapshot id: how many keys hold it

    def keys(self, snapshot):
        """What a completed snapshot may be the newest of: its volume, and for a copy its
        source volume's copies (until LAST_COPY_GRACE_DAYS past its DeleteOn). In a vault
        shared by several sources, a source volume is its account's (Source_Account, which
        the writer role binds to the caller): another source's copy, whatever volume it
        names, cannot become the newest of this one's and release it."""
        found, vid = [], snapshot.get("VolumeId")
        if vid and (self.backed_up is None or vid in self.backed_up):
            found.append(("volume", vid))
        tags = tag_map(snapshot)
        source = tags.get(TAG_SOURCE_VOLUME)
        if (
            TAG_SOURCE_SNAPSHOT in tags
            and source
            and not past_grace(snapshot, self.today, self.grace)
        ):
            where = tags.get(TAG_SOURCE_REGION)
            found.append(("copy", where, source, tags.get(TAG_SOURCE_ACCOUNT)))
        return found

    def offer(self, snapshot, due):
        keys = self.keys(snapshot) if snapshot.get("State") == "completed" else []
        mark = (snapshot["StartTime"], snapshot["SnapshotId"])
        if any(self.newest.get(key) == mark for key in keys):
            return []  # listed again (pages shift while they are read): seen already
        newest = [key for key in keys if key not in self.newest or mark > self.newest[key]]
        released = []
        for key in newest:
            self.newest[key] = mark
            released += self.release(key)
            if due:
                self.held[key] = (snapshot, due)
                self.holders[snapshot["SnapshotId"]] = (
                    self.holders.get(snapshot["SnapshotId"], 0) + 1
                )
        return released if newest or not due else [(snapshot, due)]

    def release(self, key):
        """The held snapshot of ``key`` lets go of it: [(snapshot, reason)] once no other key
        holds it, else []."""
        if key not in self.held:
            return []
        snapshot, reason = self.held.pop(key)
        sid = snapshot["SnapshotId"]
        self.holders[sid] -= 1
        if self.holders[sid]:
            return []
        del self.holders[sid]
        return [(snapshot, reason)]

    def watch(self, backed_up):
        """The volumes backed up, once known: returns the held snapshots of every other
        volume (gone, or no longer backed up), which may go now."""
        self.backed_up = backed_up
        gone = sorted(k for k in self.newest if k[0] == "volume" and k[1] not in backed_up)
        released = []
        for key in gone:
            del self.newest[key]
            released += self.release(key)
        return released

    def holds(self, snapshot_id):
        return snapshot_id in self.holders

    def is_newest(self, snapshot):
        """Whether it is the newest completed snapshot of its volume, a volume backed up (or,
        the volumes unknown, any volume)."""
        mark = (snapshot["StartTime"], snapshot["SnapshotId"])
        return self.newest.get(("volume", snapshot.get("VolumeId"))) == mark

    def kept(self):
        """[(key, snapshot, reason)]: each held snapshot once, named by the key it is held
        for: its volume once the volumes are known, else its copy key if it has one (while
        they are not, a copy is also held as the newest of its arbitrary VolumeId)."""
        keys, held = {}, {}
        for key, (snapshot, reason) in self.held.items():
            keys.setdefault(snapshot["SnapshotId"], []).append(key)
            held[snapshot["SnapshotId"]] = (snapshot, reason)
        prefer = "volume" if self.backed_up is not None else "copy"
        named = [
            (min(found, key=lambda k: (k[0] != prefer, str(k))), *held[sid])
            for sid, found in keys.items()
        ]
        return sorted(named, key=lambda k: str(k[0]))


class Coverage:
    """What the coverage check keeps while the sweep lists the region's snapshots: each
    volume's newest completed snapshot, and its snapshots of the copy window (the last
    COVERAGE_MAX_AGE_HOURS + COPY_MAX_LAG_HOURS), which a destination must hold a completed
    copy of. Nothing is kept for other snapshots. The volumes are read once the listing is
    over (``know``); then only the protected ones' are kept."""

    def __init__(self, now, max_age, lag, enabled, region):
        self.now, self.max_age, self.lag = now, max_age, lag
        self.enabled, self.region = enabled, region
        self.cutoff = now - max_age  # attached since: not expected yet
        self.volumes = self.protected = None  # known once the listing is over
        self.newest = {}  # volume id: start time of its newest completed snapshot
        self.recent = {}  # snapshot id: (volume id, start time, its Copy_Dest regions)
        self.dests = set()  # every region this region's primaries ask copies for
        self.vaults = set()  # (vault account, region) that this region's primaries ask for
        self.account = None  # this account: its vault copies are tagged Source_Account=it

    def see(self, snapshot):
        """A snapshot counts for the volume EC2 says it was taken of, whatever its tags say (a
        copy's VolumeId is arbitrary, no volume of this region; a copy asks for no copies)."""
        tags, vid = tag_map(snapshot), snapshot.get("VolumeId")
        dests = clean_regions(tags.get(TAG_COPY_DEST, ""), self.enabled, self.region)[0]
        self.dests.update(dests)
        account, vregions, _ = vault_target(tags, self.enabled, self.region)
        self.vaults.update((account, r) for r in vregions)
        self.account = self.account or snapshot.get("OwnerId")
        dests = dests + [f"{account}/{r}" for r in vregions]  # a vault: "account/region"
        if not vid or snapshot.get("State") != "completed":
            return
        if in_archive(snapshot):  # it cannot be restored quickly: not a recent backup
            return
        start = snapshot["StartTime"]
        self.newest[vid] = max(start, self.newest.get(vid, start))
        if dests and start >= self.now - self.max_age - self.lag:
            self.recent[snapshot["SnapshotId"]] = (vid, start, dests)

    def know(self, volumes):
        """The volumes the creator must snapshot (backed_up_volumes): the protected ones are
        those attached before the threshold; what was kept for any other volume goes."""
        self.volumes = volumes
        self.protected = {
            vid: who
            for vid, who in volumes.items()
            if who["enabled"] and (who["attached"] is None or who["attached"] <= self.cutoff)
        }
        self.newest = {v: start for v, start in self.newest.items() if v in self.protected}
        self.recent = {sid: r for sid, r in self.recent.items() if r[0] in self.protected}

    def unprotected(self, copies, unread=()):
        """{volume id: [reasons]} given ``copies``, {(region, primary id): copy state}; the
        regions in ``unread`` could not be listed: their copies are not judged."""
        found, recent = {}, {}
        for sid, (vid, start, dests) in self.recent.items():
            recent.setdefault(vid, []).append((sid, start, dests))
        hours = f"{self.max_age.total_seconds() / 3600:g}"
        for vid in self.protected:
            last = self.newest.get(vid)
            if last is None or last <= self.cutoff:
                newest = f"newest {last:%Y-%m-%d %H:%M} UTC" if last else "none at all"
                found.setdefault(vid, []).append(
                    f"no completed snapshot in the last {hours} h; {newest}"
                )
            mine = [r for r in recent.get(vid, []) if set(r[2]) - set(unread)]
            mine = [(sid, start, [d for d in ds if d not in unread]) for sid, start, ds in mine]
            gaps = self.copy_gaps(sorted(mine, key=lambda r: r[1]), copies)
            if gaps:
                found.setdefault(vid, []).extend(gaps)
        return found

    def copy_gaps(self, recent, copies):
        """Why a volume lacks a recent copy: for each region that its snapshots of the copy
        window ask for, once one of them has had the copy allowance to get there, no
        completed copy there of any of them. Whatever the retention."""
        window = f"{(self.max_age + self.lag).total_seconds() / 3600:g}"
        due_by = self.now - self.lag
        gaps = []
        for dest in sorted({d for _, start, ds in recent if start <= due_by for d in ds}):
            asked = [sid for sid, _, ds in recent if dest in ds]
            if any(copies.get((dest, sid)) == "completed" for sid in asked):
                continue
            states = {copies.get((dest, sid)) for sid in asked}
            detail = "a copy failed" if "error" in states else "no copy at all"
            detail = "a copy still pending" if "pending" in states else detail
            gaps.append(
                f"no completed copy in {dest} of a snapshot of the last {window} h ({detail})"
            )
        return gaps


class ExpiredCopies:
    """Copies of this region's snapshots in a destination more than EXPIRED_COPY_DAYS past
    their DeleteOn, not KeepForever, and not the newest copy of their source volume (which
    that region's manager keeps for a while): they show that no manager runs there."""

    def __init__(self, today):
        self.today = today
        self.per_volume = {}  # source volume: [newest mark, is it late?, late copies]
        self.unknown = 0  # late copies without Source_VolumeId (no newest-copy rule for them)

    def see(self, copy, tags):
        delete_on = parse_date(tags.get(TAG_DELETE_ON))
        late = bool(delete_on) and (self.today - delete_on).days > EXPIRED_COPY_DAYS
        late = late and not is_kept_forever(tags)
        volume = tags.get(TAG_SOURCE_VOLUME)
        if not volume:
            self.unknown += late
            return
        mark = (copy["StartTime"], copy["SnapshotId"])
        entry = self.per_volume.setdefault(volume, [None, False, 0])
        entry[2] += late
        if copy.get("State") == "completed" and (entry[0] is None or mark > entry[0]):
            entry[0], entry[1] = mark, late

    def count(self):
        return self.unknown + sum(n - newest_late for _, newest_late, n in self.per_volume.values())


def drill_settings(summary):
    """(drills on?, drills a run may start) from RESTORE_DRILL (off/no/false/0 turns them
    off; anything unreadable warns and leaves them on) and RESTORE_DRILL_PER_RUN."""
    raw, on = os.environ.get(DRILL_ENV), True
    if raw is not None and raw.strip():
        on = parse_bool(raw)
        if on is None:
            summary.warn(DRILL_ENV, f"{DRILL_ENV} {raw!r} is not on/off; drills stay on")
            on = True
    per_run = os.environ.get(DRILL_CAP_ENV)
    per_run = per_run if per_run and per_run.strip() else None  # empty: as if unset
    cap, problem = count_or(per_run, DRILL_CAP_ENV, MAX_DRILLS_PER_RUN, DRILLS_PER_RUN)
    if problem:
        summary.warn(DRILL_CAP_ENV, problem)
    return on, cap


def drill_day(key):
    """The day of the week (0-6, by the date's ordinal) a volume is drilled: a stable hash
    of its id spreads the region's volumes over the seven days, each once a week."""
    return int(hashlib.sha256(key.encode()).hexdigest(), 16) % 7


class DrillTargets:
    """While the sweep lists the region: each volume's newest completed snapshot (primaries)
    and each source volume's newest completed copy, the snapshots drills restore. An
    archived snapshot cannot be restored quickly: it is not one."""

    def __init__(self):
        self.primaries, self.copies = {}, {}  # volume id (a copy's source volume): snapshot
        self.last = {}  # volume id: the date of its last drill (RestoreDrill tags)

    def see(self, snapshot):
        tags = tag_map(snapshot)
        if TAG_SOURCE_SNAPSHOT in tags:
            found, key = self.copies, tags.get(TAG_SOURCE_VOLUME)
        else:
            found, key = self.primaries, snapshot.get("VolumeId")
        drilled = parse_date(tags.get(TAG_DRILL, "")[:10])
        if key and drilled:
            self.last[key] = max(drilled, self.last.get(key, drilled))
        if snapshot.get("State") != "completed" or snapshot.get("StorageTier") == "archive":
            return
        newest = found.get(key)
        mark = (snapshot["StartTime"], snapshot["SnapshotId"])
        if key and (newest is None or mark > (newest["StartTime"], newest["SnapshotId"])):
            found[key] = snapshot

    def today(self, protected, today, gone):
        """[(volume id, snapshot, zone or None)] due today, the least recently drilled first:
        the protected volumes' newest snapshots (in their instance's zone) and the newest
        copies, none the sweep deleted."""
        due = [
            (vid, self.primaries[vid], who.get("zone"))
            for vid, who in sorted(protected.items())
            if vid in self.primaries
        ]
        due += [(vid, snap, None) for vid, snap in sorted(self.copies.items())]
        weekday = today.toordinal() % 7
        due = [
            (vid, snap, zone)
            for vid, snap, zone in due
            if drill_day(vid) == weekday and snap["SnapshotId"] not in gone
        ]
        return sorted(due, key=lambda d: (self.last.get(d[0], date.min), d[0]))


def in_archive(snapshot):
    """Whether a snapshot is archived: in the archive tier, or temporarily restored from it
    (AWS shows that one as standard until RestoreExpiryTime, then archives it again)."""
    return snapshot.get("StorageTier") == "archive" or bool(snapshot.get("RestoreExpiryTime"))


def archive_verdict(snapshot, now):
    """(action, reason) for a snapshot tagged Archive=Yes and not archived; None for any
    other. Actions: "archive"; "wait" (not completed, or under a day old); "standard" (it
    stays in the standard tier: archiving it would cost more than keeping it there)."""
    tags = tag_map(snapshot)
    if parse_bool(tags.get(TAG_ARCHIVE, "")) is not True or in_archive(snapshot):
        return None
    if snapshot.get("State") != "completed" or snapshot["StartTime"] > now - ARCHIVE_AFTER:
        return "wait", "not yet completed and a day old"
    key = keep_forever_key(tags)
    if key:
        return "archive", f"{key}={tags[key]}"
    delete_on = parse_date(tags.get(TAG_DELETE_ON))
    if delete_on is None:
        return "standard", f"its DeleteOn {tags.get(TAG_DELETE_ON)!r} cannot be read"
    left = (delete_on - utc_today(now)).days
    if left < ARCHIVE_MIN_DAYS:
        return "standard", (
            f"{left} days to its DeleteOn {delete_on}, under the archive's {ARCHIVE_MIN_DAYS}-day "
            "minimum: AWS would bill the rest of the 90 days"
        )
    return "archive", f"{left} days to its DeleteOn {delete_on}"


def restore_request(value):
    """(RestoreSnapshotTier's parameters, or None; warning or None) for a Restore tag: a
    whole number of days (a temporary restore; AWS checks the range) or permanent."""
    if value.strip().lower() == PERMANENT:
        return {"PermanentRestore": True}, None
    days, problem = parse_count(value, TAG_RESTORE, MAX_RETENTION_DAYS)
    if days is None:
        return None, f"{problem} nor {PERMANENT}; not restored"
    return {"TemporaryRestoreDays": days}, problem


def drill_result(day, seconds=None, reason=None):
    """The RestoreDrill tag a drill leaves on its snapshot."""
    text = f"{day} ok {seconds}s" if reason is None else f"{day} failed: {reason}"
    return text[:256]


# ---- AWS: reading and acting ----


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
            elif code == "UnauthorizedOperation" and kept_since(ec2, sid):
                # The policy refuses to delete a KeepForever snapshot: someone tagged it
                # after the listing. Kept, as it should be; not a failure.
                summary.skip(sid, f"{TAG_KEEP_FOREVER} added since it was listed: kept")
                summary.count("kept_forever")
            else:
                refused_unless_locked(ec2, sid, exc, summary)
            return
    summary.did("delete", snapshot_id=sid, reason=reason, volume_id=snapshot.get("VolumeId"))


def refused_unless_locked(ec2, sid, exc, summary):
    """A refused delete is a failure, unless the snapshot is locked (since the listing, or
    its locks could not be read): AWS documents no error code of its own for that, so ask
    DescribeLockedSnapshots. Locked: a warning naming its expiry, and it is left."""
    try:
        lock = locks_in_force(ec2, [sid]).get(sid)
    except OutOfTime:
        raise
    except Exception as unread:  # its lock cannot be read either: the refusal stands
        summary.error(sid, exc, f"refused; its lock could not be read ({describe_error(unread)})")
        return
    if lock is None:
        summary.error(sid, exc)
        return
    summary.warn(sid, lock_note(lock))
    summary.skip(sid, "locked")


def read_locks(ec2, summary):
    """{snapshot id: lock} of the region's snapshots locked now, or None (a warning) when
    they cannot be read: then a locked due snapshot is found by DeleteSnapshot's refusal,
    and missing locks are not checked this run."""
    try:
        return locks_in_force(ec2)
    except OutOfTime:
        raise
    except Exception as exc:
        summary.warn(summary.region, f"snapshot locks not read: {describe_error(exc)}")
        return None


def kept_since(ec2, sid):
    """Whether the snapshot is KeepForever now (one DescribeSnapshots by id)."""
    try:
        (snap,) = ec2.describe_snapshots(SnapshotIds=[sid])["Snapshots"]
    except (ClientError, ValueError):
        return False
    return is_kept_forever(tag_map(snap))


def write_tag(ec2, sid, key, value, summary):
    """One tag on a snapshot (in a dry run, only whether it would be allowed); the
    ClientError when AWS refuses it, else None."""
    params = {"Resources": [sid], "Tags": [{"Key": key, "Value": value}]}
    if summary.dry_run:
        summary.probe("ec2:CreateTags", summary.region, ec2.create_tags, **params)
        return None
    try:
        ec2.create_tags(**params)
    except ClientError as exc:
        return exc
    return None


def keep_copy(ec2, snapshot, why, summary):
    """A due copy whose primary someone kept: tag it KeepForever too, and keep it."""
    sid, value = snapshot["SnapshotId"], why[0]
    refused = write_tag(ec2, sid, TAG_KEEP_FOREVER, value, summary)
    if refused:  # not deleted either way: it is kept this run
        summary.error(sid, refused, "kept, but not tagged KeepForever")
        return
    summary.did("tag", snapshot_id=sid, tag=f"{TAG_KEEP_FOREVER}={value}", reason=why[1])
    summary.count("kept_forever")


def act(ec2, item, summary):
    kind, snapshot, detail = item
    ACTIONS[kind](ec2, snapshot, detail, summary)


class SourceLookup:
    """Due copies wait here until their primaries are looked up in the source region, one
    call per LOOKUP_BATCH copies and source region: a copy whose primary someone has just
    kept (KeepForever) is kept and tagged, not deleted. A source region that cannot be read
    (down, or a Source_Region that is no region) keeps its copies, with a warning, until
    LAST_COPY_GRACE_DAYS past their DeleteOn: nothing is kept forever for want of a look."""

    def __init__(self, summary, budget, pacer, today, grace):
        self.summary, self.budget, self.pacer = summary, budget, pacer
        self.today, self.grace = today, grace
        self.waiting, self.clients = {}, {}

    def add(self, snapshot, reason):
        tags = tag_map(snapshot)
        source, region = tags.get(TAG_SOURCE_SNAPSHOT), tags.get(TAG_SOURCE_REGION)
        if not source or not region:
            return [("delete", snapshot, reason)]
        batch = self.waiting.setdefault(region, [])
        batch.append((snapshot, reason))
        return self.resolve(region) if len(batch) >= LOOKUP_BATCH else []

    def flush(self):
        return [item for region in list(self.waiting) for item in self.resolve(region)]

    def client(self, region):
        """The run's EC2 client for a region, made once (it may raise, as for an unknown
        region: the caller's failure)."""
        if region not in self.clients:
            self.clients[region] = make_client("ec2", region, self.budget, self.pacer)
        return self.clients[region]

    def resolve(self, region):
        batch = self.waiting.pop(region)
        ids = sorted({tag_map(s)[TAG_SOURCE_SNAPSHOT] for s, _ in batch})
        try:
            kept = kept_primaries(self.client(region), ids)
        except OutOfTime:
            raise
        except Exception as exc:
            return self.unchecked(region, batch, exc)
        items = []
        for snapshot, reason in batch:
            source = tag_map(snapshot)[TAG_SOURCE_SNAPSHOT]
            if source in kept:
                why = f"its primary {source} in {region} is {kept[source]}"
                items.append(("keep", snapshot, (kept[source].split("=", 1)[1], why)))
            else:
                items.append(("delete", snapshot, reason))
        return items

    def unchecked(self, region, batch, exc):
        """Copies whose primaries could not be looked up: kept within their grace period,
        deleted after it."""
        late = [(s, r) for s, r in batch if past_grace(s, self.today, self.grace)]
        kept = len(batch) - len(late)
        self.summary.warn(
            region,
            f"cannot look up the primaries of {len(batch)} due copies there "
            f"({describe_error(exc)}); {kept} kept for now, {len(late)} deleted: past their "
            f"DeleteOn by over {self.grace} days",
        )
        return [("delete", s, r) for s, r in late]


def kept_primaries(ec2, ids):
    """{primary id: "key=value" that keeps it} among these ids (a filter, not SnapshotIds:
    a primary already deleted is no error)."""
    snaps = paginate(
        ec2,
        "describe_snapshots",
        "Snapshots",
        OwnerIds=["self"],
        Filters=[{"Name": "snapshot-id", "Values": ids}],
    )
    kept = {}
    for snap in snaps:
        tags = tag_map(snap)
        key = keep_forever_key(tags)
        if key:
            kept[snap["SnapshotId"]] = f"{TAG_KEEP_FOREVER}={tags[key]}"
    return kept


class Tiers:
    """The archive tier, as the sweep lists the region: counts the archived snapshots, takes
    each Restore request at once, says once why an Archive=Yes snapshot stays standard, and
    keeps the snapshots to archive and those being restored for after the last page: one
    DescribeSnapshotTierStatus per LOOKUP_BATCH of them (an archive already under way is
    not asked for twice) and, for primaries with Copy_Dest or a vault, one DescribeSnapshots
    per batch and destination: an archived snapshot can be neither copied nor shared, so it
    waits for its copies."""

    def __init__(self, summary, now, client, vault, enabled=None):
        self.summary, self.now, self.client = summary, now, client  # client(region)
        self.vault = functools.cache(vault)  # vault(account, region): through its writer role
        self.enabled = enabled  # the regions a Copy_Dest may name (None: not known)
        self.candidates, self.requested = {}, []  # candidates: id: (snapshot, why)
        self.held = []  # due snapshots with a restore request: see()
        self.seen, self.archived = set(), 0  # pages shift as they are read: once each

    def see(self, snapshot, due=False):
        """The work items this snapshot asks for now (a restore, a note). A due snapshot
        that the sweep may keep (a volume's last backup) is never archived, but a restore
        asked for on it is made once the sweep knows it keeps it (end): it may be the very
        backup someone wants back."""
        tags, sid = tag_map(snapshot), snapshot["SnapshotId"]
        if sid in self.seen:  # pages shift as they are read: one listed twice acts once
            return []
        self.archived += snapshot.get("StorageTier") == "archive"  # a gauge: a shift is noise
        verdict = None if due else archive_verdict(snapshot, self.now)
        asked = TAG_RESTORE in tags or TAG_RESTORE_REQUESTED in tags
        if asked or verdict:
            self.seen.add(sid)  # only those that ask for work: memory stays with the volumes
        if asked:
            if due:
                self.held.append(snapshot)
                return []
            return self.restore(snapshot)
        action, why = verdict or (None, None)
        if action == "archive":
            self.candidates[sid] = (snapshot, why)
        if action == "standard" and TAG_ARCHIVE_NOTE not in tags:
            return [("note", snapshot, why)]
        return []

    def restore(self, snapshot):
        """A restore asked for (Restore) now, or one asked for before (Restore_Requested),
        whose progress end() reads."""
        tags, sid = tag_map(snapshot), snapshot["SnapshotId"]
        if TAG_RESTORE not in tags:
            self.requested.append(snapshot)
            return []
        params, problem = restore_request(tags[TAG_RESTORE])
        if problem:
            self.summary.tag_error(sid, TAG_RESTORE, tags[TAG_RESTORE], problem)
        return [("restore", snapshot, params)] if params else []

    def end(self, kept=lambda snapshot_id: True, newest=lambda snapshot: False):
        """After the last page: the restores of due snapshots the sweep ``kept``, the
        restores' progress, then the archives that may start: never a backed-up volume's
        ``newest`` snapshot, its quick restore (after an outage of the creator, an
        Archive=Yes monthly may be all there is; an Archive tag anyone wrote, too)."""
        if self.archived:  # the metric is written either way (0 when none)
            self.summary.count("archived", self.archived)
        items = []
        for snapshot in self.held:
            items += self.restore(snapshot) if kept(snapshot["SnapshotId"]) else []
        for batch in batches(self.requested):
            items += self.restores(batch)
        candidates = []
        for snapshot, why in self.candidates.values():
            if newest(snapshot):
                why = "its volume's newest snapshot: archived once a newer one completes"
                self.summary.skip(snapshot["SnapshotId"], why)
            else:
                candidates.append((snapshot, why))
        for batch in batches(candidates):
            items += self.archives(batch)
        return items

    def statuses(self, batch):
        """{snapshot id: its tier status} for these snapshots, or None (a warning)."""
        ids = [snapshot["SnapshotId"] for snapshot, *_ in batch]
        try:
            found = paginate(
                self.client(self.summary.region),
                "describe_snapshot_tier_status",
                "SnapshotTierStatuses",
                Filters=[{"Name": "snapshot-id", "Values": ids}],
            )
            return {status["SnapshotId"]: status for status in found}
        except OutOfTime:
            raise
        except Exception as exc:
            self.summary.warn(self.summary.region, f"tier status not read: {describe_error(exc)}")
            return None

    def restores(self, batch):
        """Restores someone asked for: one still under way is reported (restoring); one
        done or failed is said once, and its Restore_Requested tag goes."""
        statuses = self.statuses([(s,) for s in batch]) or {}
        items = []
        for snapshot in batch:
            status = statuses.get(snapshot["SnapshotId"], {})
            state = RESTORE_STATES.get(status.get("LastTieringOperationStatus"), "restoring")
            if state == "restoring":  # or its status could not be read: still waited for
                progress = status.get("LastTieringProgress")
                self.summary.add(
                    "restoring",
                    snapshot_id=snapshot["SnapshotId"],
                    requested=tag_map(snapshot)[TAG_RESTORE_REQUESTED],
                    progress="unknown" if progress is None else f"{progress}%",
                )
            else:
                items.append(("restored", snapshot, status))
        return items

    def archives(self, batch):
        """The candidates whose archive may start: not under way already, and every copy
        their Copy_Dest and vault ask for completed."""
        statuses = self.statuses(batch)
        if statuses is None:
            return []
        waiting = []
        for snapshot, why in batch:
            status = statuses.get(snapshot["SnapshotId"], {})
            last = status.get("LastTieringOperationStatus")
            if last == "archival-in-progress":
                self.summary.count("archived")  # AWS shows it standard until it is done
                continue
            if last == "archival-failed":  # asked again: AWS says why in the detail
                detail = status.get("LastTieringOperationStatusDetail") or last
                self.summary.warn(snapshot["SnapshotId"], f"its last archive failed: {detail}")
            waiting.append((snapshot, why))
        copied = self.copied([s for s, _ in waiting])
        return [("archive", s, why) for s, why in waiting if s["SnapshotId"] in copied]

    def copied(self, snapshots):
        """Ids of these primaries that have a completed copy in every Copy_Dest region and
        vault they ask for (or ask for none); a copy is never looked for in the primary's own
        region."""
        missing = {s["SnapshotId"]: self.dests(s) for s in snapshots}  # id: regions to see
        owner = next((s.get("OwnerId") for s in snapshots), None)  # this account
        for dest in sorted(set().union(*missing.values())):
            asked = sorted(sid for sid, regions in missing.items() if dest in regions)
            for sid in self.copies_in(dest, asked, owner):
                missing[sid].discard(dest)
        for sid, regions in sorted(missing.items()):
            if regions:
                where = ", ".join(sorted(regions))
                self.summary.skip(sid, f"archived once its copies in {where} are complete")
        return {sid for sid, regions in missing.items() if not regions}

    def dests(self, snapshot):
        """Where the copier will still make a copy of it, so where its archive waits for one:
        its Copy_Dest regions (enabled ones) and its vault regions as "account/region" (a copy
        or a staging copy carries neither: it is never copied), each only while the copies'
        own DeleteOn is ahead, as the copier decides (copy_until): a copy it will never make
        is waited for no more than it is by the copier."""
        tags, home, today = tag_map(snapshot), self.summary.region, utc_today(self.now)
        created = snapshot["StartTime"].astimezone(UTC).date()
        found = set()
        until = copy_until(tags, created, TAG_COPY_RETENTION)
        if until is not None and until > today:
            raw = tags.get(TAG_COPY_DEST, "")
            found |= set(clean_regions(raw, self.known(raw), home)[0])
        until = copy_until(tags, created, TAG_VAULT_RETENTION)
        if until is not None and until > today:
            known = self.known(tags.get(TAG_VAULT_REGION, ""))
            account, vregions, _ = vault_target(tags, known, home)
            found |= {f"{account}/{r}" for r in vregions if account}
        return found

    def known(self, regions):
        """The enabled regions, or (not read this run) the regions named: all taken as real."""
        return self.enabled if self.enabled is not None else set(re.split(r"[\s,]+", regions))

    def copies_in(self, dest, ids, owner):
        """Ids among ``ids`` with a completed copy in ``dest`` (none when it cannot be read:
        their archive waits, with a warning). In a vault ("account/region"), shared with
        other sources, only copies tagged Source_Account=``owner`` (this account) count."""
        try:
            account, _, region = dest.rpartition("/")  # a vault: read through its writer role
            client = self.vault(account, region) if account else self.client(region)
            filters = [{"Name": "tag:" + TAG_SOURCE_SNAPSHOT, "Values": ids}]
            if account:
                filters.append({"Name": "tag:" + TAG_SOURCE_ACCOUNT, "Values": [str(owner)]})
            copies = paginate(
                client, "describe_snapshots", "Snapshots", OwnerIds=["self"], Filters=filters
            )
            return {
                tag_map(c)[TAG_SOURCE_SNAPSHOT] for c in copies if c.get("State") == "completed"
            }
        except OutOfTime:
            raise
        except Exception as exc:
            self.summary.warn(dest, f"copies not read, archives wait: {describe_error(exc)}")
            return set()


def archive_snapshot(ec2, snapshot, why, summary):
    sid = snapshot["SnapshotId"]
    params = {"SnapshotId": sid, "StorageTier": "archive"}
    if summary.dry_run:
        summary.probe("ec2:ModifySnapshotTier", summary.region, ec2.modify_snapshot_tier, **params)
    else:
        try:
            ec2.modify_snapshot_tier(**params)
        except ClientError as exc:  # it stays standard; the next run tries again
            if error_code(exc) == "InvalidSnapshot.NotFound":
                summary.skip(sid, "already deleted")
            else:
                summary.error(sid, exc, "not archived")
            return
        summary.count("archived")
    summary.did("archive", snapshot_id=sid, volume_id=snapshot.get("VolumeId"), reason=why)


def note_standard(ec2, snapshot, why, summary):
    """An Archive=Yes snapshot that stays standard: said once, and the reason kept on it."""
    sid = snapshot["SnapshotId"]
    note = f"{summary.data['date']}: stays standard: {why}"[:256]  # EC2's longest tag value
    refused = write_tag(ec2, sid, TAG_ARCHIVE_NOTE, note, summary)
    if refused:  # said again next run; nothing else depends on the note
        summary.warn(sid, f"{TAG_ARCHIVE_NOTE} not written: {describe_error(refused)}")
    summary.skip(sid, f"not archived: {why}")


def restore_snapshot(ec2, snapshot, params, summary):
    """RestoreSnapshotTier once, then Restore=... becomes Restore_Requested=<date>; a
    permanent restore also drops Archive=Yes, so that it is not archived again."""
    sid, value = snapshot["SnapshotId"], tag_map(snapshot)[TAG_RESTORE]
    if not in_archive(snapshot):  # left as it is: the person may have tagged the wrong one
        summary.warn(sid, f"{TAG_RESTORE}={value}, but it is not archived: nothing to restore")
        return
    if summary.dry_run:
        call = ec2.restore_snapshot_tier
        summary.probe("ec2:RestoreSnapshotTier", summary.region, call, SnapshotId=sid, **params)
    else:
        try:
            ec2.restore_snapshot_tier(SnapshotId=sid, **params)
        except ClientError as exc:
            summary.error(sid, exc, f"{TAG_RESTORE}={value} not done; the next run asks again")
            return
        replace_restore_tag(ec2, sid, params, summary)
    summary.did("restore", snapshot_id=sid, restore=value)
    summary.count("restoring")


def replace_restore_tag(ec2, sid, params, summary):
    requested = [{"Key": TAG_RESTORE_REQUESTED, "Value": summary.data["date"]}]
    gone = [TAG_RESTORE] + ([TAG_ARCHIVE] if params.get("PermanentRestore") else [])
    try:
        ec2.create_tags(Resources=[sid], Tags=requested)
        ec2.delete_tags(Resources=[sid], Tags=[{"Key": key} for key in gone])
    except ClientError as exc:  # AWS restores it anyway; Restore stays, asked again next run
        summary.error(sid, exc, f"restore started, but {TAG_RESTORE} not replaced")


def restore_finished(ec2, snapshot, status, summary):
    """A restore that is done (or failed): said once, and Restore_Requested removed."""
    sid, state = snapshot["SnapshotId"], status["LastTieringOperationStatus"]
    if not summary.dry_run:
        ec2.delete_tags(Resources=[sid], Tags=[{"Key": TAG_RESTORE_REQUESTED}])
    if RESTORE_STATES[state] == "failed":
        detail = status.get("LastTieringOperationStatusDetail") or state
        summary.fail(sid, f"restore from the archive tier failed: {detail}")
        return
    until = status.get("RestoreExpiryTime")
    until = f"until {until:%Y-%m-%d %H:%M} UTC" if until else "for good"
    summary.add("restored", snapshot_id=sid, ready=until, volume_id=snapshot.get("VolumeId"))


ACTIONS = {
    "delete": delete_snapshot,
    "keep": keep_copy,
    "archive": archive_snapshot,
    "note": note_standard,
    "restore": restore_snapshot,
    "restored": restore_finished,
}


class Judge:
    """What the sweep does, snapshot by snapshot as the pages arrive: shows each to the
    coverage check and to LastBackups, counts and warns, and returns the work items
    ("delete" or "keep", snapshot, detail) that may start now."""

    def __init__(self, summary, now, coverage, last, lookup, locks, drills=None, tiers=None):
        self.summary, self.now, self.today = summary, now, utc_today(now)
        self.coverage, self.last, self.lookup, self.locks = coverage, last, lookup, locks
        self.drills, self.tiers = drills, tiers

    def snapshot(self, snapshot):
        sid = snapshot.get("SnapshotId", "?")
        try:  # an odd snapshot, or a bug of ours, costs that snapshot only: it is kept
            if self.coverage:
                self.coverage.see(snapshot)
            self.check_lock(snapshot)
            if self.drills:
                self.drills.see(snapshot)
            due = self.due(snapshot)
            released = self.last.offer(snapshot, due)
            items = [item for snap, why in released for item in self.lookup.add(snap, why)]
            goes = any(snap["SnapshotId"] == snapshot["SnapshotId"] for snap, _ in released)
            return items + (self.tiers.see(snapshot, bool(due)) if self.tiers and not goes else [])
        except OutOfTime:
            raise
        except Exception as exc:
            self.summary.error(sid, exc, "not judged, so kept")
            return []

    def check_lock(self, snapshot):
        """A snapshot tagged Lock and still not locked a day on: a warning, LocksMissing."""
        why = None if self.locks is None else missing_lock(snapshot, self.locks, self.now)
        if why:
            self.summary.warn(snapshot["SnapshotId"], why)
            self.summary.count("lock_missing")

    def due(self, snapshot):
        """The reason when it is due for deletion, else None (and the counts say why)."""
        action, reason = verdict(snapshot, self.today)
        sid, tags, summary = snapshot["SnapshotId"], tag_map(snapshot), self.summary
        warning = near_miss(tags)
        if warning:
            summary.warn(sid, warning)
        if action == "warn":
            summary.tag_error(sid, TAG_DELETE_ON, tags.get(TAG_DELETE_ON), reason)
        elif action == "hold":
            summary.skip(sid, f"{reason}: kept although due")
            summary.count("kept_forever")
        elif action != "delete":
            summary.count("kept_forever" if action == "forever" else "kept")
        elif sid in (self.locks or {}):  # a person extended its lock: never unlocked here
            summary.warn(sid, lock_note(self.locks[sid]))
            summary.skip(sid, "locked")
            return None
        return reason if action == "delete" else None

    def known(self, volumes):
        """After the last page, the volumes the creator must snapshot (None: they could not
        be read, so every volume keeps its newest and coverage is not checked): the
        coverage check's, and the work items for the held snapshots of the other volumes."""
        if volumes is None:
            self.coverage = None
            return []
        self.coverage.know(volumes)
        released = self.last.watch(volumes)
        return [item for snap, why in released for item in self.lookup.add(snap, why)]

    def end(self, now, max_age, lag):
        """After the last page: report what LastBackups kept, look up the last copies."""
        for key, snapshot, reason in self.last.kept():
            report_held(key, snapshot, reason, self.summary, now, max_age, lag)
        tiers = self.tiers.end(self.last.holds, self.last.is_newest) if self.tiers else []
        return self.lookup.flush() + tiers


def report_held(key, snapshot, reason, summary, now, max_age, lag):
    """A due snapshot kept as its volume's newest: said each run; a warning, counted in
    LastBackupsKept, once no newer one has come for longer than the coverage threshold."""
    sid, start = snapshot["SnapshotId"], snapshot["StartTime"]
    if key[0] == "volume":
        what, stale = f"the newest snapshot of {key[1]}", start <= now - max_age
    else:
        what, stale = f"the newest copy of {key[2]} from {key[1]}", start <= now - max_age - lag
    text = f"{what}, kept past its {reason}: none newer since {start:%Y-%m-%d %H:%M} UTC"
    if not stale:
        summary.skip(sid, f"{what}, kept past its {reason} until a newer one completes")
        return
    summary.warn(sid, text, volume_id=key[1] if key[0] == "volume" else key[2])
    summary.count("last_kept")


def sweep(ec2, summary, budget, judge, ends):
    """Judge each automated snapshot as its page arrives and act on it, WORKERS at a time;
    after the last page, read the volumes to back up (with the coverage check). Returns
    (None, items done) once every page is judged, or (why it stopped early, items done)
    when Lambda time ran short."""
    listed = []  # set once the last page has been judged

    def work():
        for snapshot in automated_snapshots(ec2):
            yield from judge.snapshot(snapshot)
        if judge.coverage:  # an invocation that hands the rest over never reads them
            yield from judge.known(backed_up(ec2, summary))
        yield from judge.end(*ends)
        listed.append(True)

    try:
        started, stopped = in_parallel(
            work(),
            lambda item: act(ec2, item, summary),
            budget,
            lambda item, exc: summary.error(item[1]["SnapshotId"], exc),
        )
        why = None if listed and not stopped else f"{budget.left():.0f} s of Lambda time left"
    except OutOfTime as exc:
        started, stopped, why = 0, 0, str(exc)
    return why, started - stopped


def stopped_early(why, done, context, event, summary):
    """A sweep cut short by Lambda time: a new invocation on the same event does the rest
    (ten thousand deletes take longer than one invocation at EC2's rate). Without one (a
    test's context, or the hand-off failed), the next scheduled run continues."""
    if getattr(context, "invoked_function_arn", None):
        hand_off(context, event, summary, done_here=done)
        if summary.data.get("handed_off"):
            return
    summary.add(
        "stopped_early", "WARN", id=summary.region, reason=f"{why}; the next run deletes the rest"
    )


def settings(summary):
    """(coverage threshold, copy allowance, grace days) from the environment; a bad value
    warns and uses the default."""
    max_age, late = env_hours(COVERAGE_ENV, COVERAGE_MAX_AGE_HOURS)
    lag, lagging = env_hours(COPY_LAG_ENV, COPY_LAG_HOURS)
    grace, short = grace_days(os.environ.get(GRACE_ENV))
    for name, problem in zip(
        (COVERAGE_ENV, COPY_LAG_ENV, GRACE_ENV), (late, lagging, short), strict=True
    ):
        if problem:
            summary.warn(name, problem)
    return max_age, lag, grace


def start_coverage(ec2, now, max_age, lag, summary):
    """The coverage check's read before the sweep (the enabled regions, which the
    snapshots' Copy_Dest tags are read against); None, with the reason recorded, when it
    cannot be made."""
    try:
        return Coverage(now, max_age, lag, enabled_regions(ec2), summary.region)
    except OutOfTime as exc:
        summary.warn(summary.region, f"coverage not checked: {exc}")
    except Exception as exc:
        summary.error(summary.region, exc, "coverage not checked")
    summary.warn(summary.region, "volumes unknown: every volume's newest snapshot kept this run")
    return None


def backed_up(ec2, summary):
    """The coverage check's reads once the listing is over (Backup instances, volume
    opt-outs): backed_up_volumes, or None, with the reason recorded, when they cannot be
    made. Read after the listing, not before, so that an invocation that hands the rest
    over does not read ten thousand instances for nothing; OutOfTime is raised (the rest
    is handed over)."""
    filters = [
        {"Name": "tag-key", "Values": [TAG_BACKUP]},
        {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
    ]
    try:
        pages = paginate(ec2, "describe_instances", "Reservations", Filters=filters)
        instances = (i for reservation in pages for i in reservation["Instances"])
        return backed_up_volumes(instances, volume_backup_tags(ec2))
    except OutOfTime:
        raise
    except Exception as exc:
        summary.error(summary.region, exc, "coverage not checked")
    summary.warn(summary.region, "volumes unknown: every volume's newest snapshot kept this run")
    return None


def copies_of(coverage, dest_ec2, today):
    """({(destination, primary id): state} of the copies the check looks for, a completed
    copy winning over another one of the same primary; ExpiredCopies of the destination)."""
    dest = dest_ec2.meta.region_name
    found, expired = {}, ExpiredCopies(today)
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
        tags = tag_map(copy)
        expired.see(copy, tags)
        source = tags.get(TAG_SOURCE_SNAPSHOT)
        state = "archived" if in_archive(copy) else copy["State"]  # archived: no quick restore
        if source in coverage.recent and found.get((dest, source)) != "completed":
            found[(dest, source)] = state
    return found, expired


def finish_coverage(coverage, summary, budget, today):
    """One listing per destination region, then each unprotected volume into the summary
    (``unprotected``, and the count that becomes the UnprotectedVolumes metric), and each
    region where expired copies are left (ExpiredCopiesLeft). A destination that cannot be
    read is one failure: its copies are not judged, everything else is."""
    copies, left, unread = {}, {}, set()
    for dest in sorted(coverage.dests):
        try:
            found, expired = copies_of(coverage, make_client("ec2", dest, budget), today)
        except OutOfTime as exc:
            summary.warn(summary.region, f"coverage not checked: {exc}")
            return
        except Exception as exc:
            summary.error(dest, exc, "copies there not checked")
            unread.add(dest)
            continue
        copies |= found
        left[dest] = expired.count()
    vault_copies, vault_unread = vaults_coverage(coverage, summary, budget)
    copies, unread = copies | vault_copies, unread | vault_unread
    report_unprotected(coverage, coverage.unprotected(copies, unread), summary)
    report_expired_copies(left, summary)


def vaults_coverage(coverage, summary, budget):
    """({("account/region", primary id): state} of the vault copies of this region's recent
    primaries, read through each vault's writer role (its read-only DescribeSnapshots); the
    vaults that could not be read: one failure each, their copies not judged)."""
    copies, unread = {}, set()
    for account, vregion in sorted(coverage.vaults):
        where = f"{account}/{vregion}"
        try:
            vault_ec2 = vault_client(account, vregion, budget)
            states, _ = vault_copy_states(vault_ec2, coverage.region, str(coverage.account))
            copies |= {(where, s): state for s, state in states.items() if s in coverage.recent}
        except OutOfTime as exc:
            summary.warn(where, f"vault copies there not checked: {exc}")
            unread.add(where)
        except Exception as exc:
            summary.error(where, exc, "vault copies there not checked")
            unread.add(where)
    return copies, unread


def report_unprotected(coverage, unprotected, summary):
    """Each unprotected volume, the protected count, and the volumes not yet due."""
    for vid, reasons in sorted(unprotected.items()):
        more = f"; and {len(reasons) - MAX_REASONS} more" if len(reasons) > MAX_REASONS else ""
        who = {k: v for k, v in coverage.protected[vid].items() if k in ("instance_id", "name")}
        summary.add(
            "unprotected",
            "WARN",
            volume_id=vid,
            **who,
            reason="; ".join(reasons[:MAX_REASONS]) + more,
        )
    summary.count("unprotected", 0)
    summary.count("protected", len(coverage.protected) - summary.data["counts"]["unprotected"])
    for vid, who in sorted(coverage.volumes.items()):
        if who["enabled"] and vid not in coverage.protected:  # attached since the threshold
            expected = who["attached"] + coverage.max_age
            summary.add(
                "not_yet_due",
                volume_id=vid,
                instance_id=who["instance_id"],
                name=who["name"],
                expected_by=f"{expected:%Y-%m-%d %H:%M} UTC",
            )


def report_expired_copies(left, summary):
    if left:  # the metric exists where this region has copies to look at
        summary.count("expired_copies_left", 0)
    for dest, count in sorted(left.items()):
        if count:
            summary.warn(
                dest,
                f"no manager is deleting expired copies in {dest}: {count} copies of this "
                f"region's snapshots are over {EXPIRED_COPY_DAYS} days past their DeleteOn. "
                "Deploy the manager there (template parameter Jobs=manager)",
            )
            summary.count("expired_copies_left", count)


def clean_drill_volumes(ec2, summary, now):
    """Delete the drill volumes a run that died left behind (or one that could not delete
    them), once their DeleteAfter has passed, and only those that are recognisably drills
    (not_a_drill). Each one is a warning, counted (drill_volumes_deleted); any other volume
    tagged Type=RestoreDrill, or one without a readable DeleteAfter, is a tag error, left."""
    drills = [{"Name": "tag:" + TAG_TYPE, "Values": [DRILL_TYPE]}]
    try:
        volumes = list(paginate(ec2, "describe_volumes", "Volumes", Filters=drills))
    except OutOfTime:
        raise
    except Exception as exc:
        why = f"leftover drill volumes not looked for: {describe_error(exc)}"
        summary.warn(summary.region, why)
        return
    for volume in volumes:
        vid, after = volume["VolumeId"], tag_map(volume).get(TAG_DELETE_AFTER)
        when = parse_timestamp(after)
        if when is None:
            why = f"tagged Type={DRILL_TYPE}, but {TAG_DELETE_AFTER} {after!r} is not a time: left"
            summary.tag_error(vid, TAG_DELETE_AFTER, after, why)
        elif when <= now and not_a_drill(volume, when):
            # a tag is not enough: anyone who can tag could name their own volume
            why = f"{not_a_drill(volume, when)}: not a restore drill, left"
            summary.tag_error(vid, TAG_TYPE, DRILL_TYPE, f"tagged Type={DRILL_TYPE}, but {why}")
        elif when <= now and delete_drill_volume(ec2, vid, summary):
            summary.warn(vid, f"drill volume left by an earlier run ({after}): deleted")
            summary.count("drill_volumes_deleted")


def not_a_drill(volume, delete_after):
    """Why a volume tagged Type=RestoreDrill is not one the manager made (start_drill), or
    None. Read from what EC2 sets and nobody can change: the snapshot it was made from, its
    attachments, its type, its creation time (DRILL_LIFE before its DeleteAfter)."""
    source = tag_map(volume).get(TAG_SOURCE_SNAPSHOT)
    if not source or volume.get("SnapshotId") != source:
        made_from = volume.get("SnapshotId") or "no snapshot"
        return f"it was made from {made_from}, not from its {TAG_SOURCE_SNAPSHOT} {source}"
    if volume.get("Attachments") or volume.get("State") == "in-use":
        return "it is attached to an instance"
    if volume.get("VolumeType") != "gp3":
        return f"it is {volume.get('VolumeType')}, and drills are gp3"
    created, expected = volume.get("CreateTime"), delete_after - DRILL_LIFE
    if created is None:
        return "its creation time is unknown"
    if abs(created - expected) > DRILL_TAG_SLACK:
        hours = f"{DRILL_LIFE.total_seconds() / 3600:g} h"
        return f"it was created at {created:%Y-%m-%d %H:%M} UTC, not {hours} before it"
    return None


def parse_timestamp(value):
    """A DeleteAfter tag (ISO 8601, UTC) as an aware datetime, or None."""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return moment if moment.tzinfo else None


def delete_drill_volume(ec2, vid, summary):
    """Delete a drill volume; False, with a warning, when it cannot be (EC2 deletes only an
    available volume: one still creating is deleted by a later run, once its DeleteAfter
    has passed). A dry run deletes nothing."""
    if summary.dry_run:
        return False
    try:
        ec2.delete_volume(VolumeId=vid)
    except ClientError as exc:
        if error_code(exc) == "InvalidVolume.NotFound":
            return True
        summary.warn(vid, f"drill volume not deleted ({describe_error(exc)}); a later run will")
        return False
    except Exception as exc:  # the network, or out of time: the same
        summary.warn(vid, f"drill volume not deleted ({describe_error(exc)}); a later run will")
        return False
    return True


def drill_all(ec2, coverage, drills, summary, budget, now, cap):
    """Today's drills, at most ``cap`` (the least recently drilled first), side by side:
    every volume is created first, then all are watched together until each is available
    (or not), and deleted at once."""
    gone = {d["snapshot_id"] for d in summary.data.get("deleted", [])}
    protected = coverage.protected if coverage else {}
    due = drills.today(protected, utc_today(now), gone)
    weekly = len(protected) + len(drills.copies)
    if weekly > 7 * cap:
        summary.warn(
            DRILL_CAP_ENV,
            f"{weekly} volumes to drill each week, at most {cap} a run: the weekly round "
            f"cannot complete; raise {DRILL_CAP_ENV}",
        )
    if len(due) > cap:
        summary.warn(
            summary.region,
            f"{len(due) - cap} drills due today over {DRILL_CAP_ENV}={cap}: they wait a "
            "week (the least recently drilled go first)",
        )
        summary.count("drills_overdue", len(due) - cap)
    due = due[:cap]
    left = budget.left() - STOP_MARGIN_S - 2 * ATTEMPT_S - len(due) * DRILL_FINISH_S
    wait = min(DRILL_WAIT_S, left)  # time kept back to delete and tag them all
    if due and wait < DRILL_MIN_S:
        summary.warn(summary.region, f"restore drills not run: {budget.left():.0f} s left")
        return
    if due:
        watch_drills(ec2, start_drills(ec2, due, summary, budget, now), summary, budget, wait, now)


def start_drills(ec2, due, summary, budget, now):
    """CreateVolume for each drill, WORKERS at a time; [(target, drill volume id, start)]."""
    zone = None
    if any(z is None for _, _, z in due):  # copies: the region's first zone (not a Local Zone)
        filters = [
            {"Name": "zone-type", "Values": ["availability-zone"]},
            {"Name": "state", "Values": ["available"]},
        ]
        zones = ec2.describe_availability_zones(Filters=filters)["AvailabilityZones"]
        zone = min(z["ZoneName"] for z in zones)
    started = []
    in_parallel(
        due,
        lambda target: started.append(start_drill(ec2, target, zone, summary, now)),
        budget,
        lambda target, exc: summary.error(target[1]["SnapshotId"], exc, "restore drill not run"),
    )
    return [drill for drill in started if drill]


def start_drill(ec2, target, zone, summary, now):
    """A gp3 volume from the snapshot (encrypted with the snapshot's own key), never
    attached, tagged at creation so that a later run deletes it should this one die. Its
    ClientToken, new for each drill, makes botocore's retries of the call make no second
    volume; a second drill (another run that day) gets its own, for a token used again
    answers with the first volume, which is deleted by then."""
    vid, snap, own_zone = target
    sid = snap["SnapshotId"]
    after = (clock_of(now, summary) + DRILL_LIFE).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    tags = {TAG_TYPE: DRILL_TYPE, TAG_SOURCE_SNAPSHOT: sid, TAG_DELETE_AFTER: after}
    params = {
        "SnapshotId": sid,
        "AvailabilityZone": own_zone or zone,
        "VolumeType": "gp3",
        "ClientToken": f"drill-{sid}-{os.urandom(8).hex()}",  # at most 64 characters
        "TagSpecifications": [
            {"ResourceType": "volume", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ],
    }
    if summary.dry_run:
        summary.probe("ec2:CreateVolume", summary.region, ec2.create_volume, **params)
        summary.did("drill", snapshot_id=sid, volume_id=vid, zone=params["AvailabilityZone"])
        return None
    try:
        return target, ec2.create_volume(**params)["VolumeId"], time.monotonic()
    except ClientError as exc:
        code = error_code(exc)
        if code == "InvalidSnapshot.NotFound":  # deleted since: nothing to prove
            summary.skip(sid, "deleted since it was listed: not drilled")
        elif code in DRILL_NOT_TRIED:
            summary.warn(sid, f"not drilled ({describe_error(exc)}); next week")
        else:  # refused, e.g. a KMS key it cannot use: the backup does not restore
            record_drill(ec2, target, None, summary, now, f"CreateVolume: {describe_error(exc)}")
    except OutOfTime:
        raise
    except Exception as exc:
        if not from_botocore(exc):
            raise  # a bug of ours: in_parallel names it, with its traceback in the log
        summary.warn(sid, f"not drilled ({describe_error(exc)}); next week")
    return None


def watch_drills(ec2, started, summary, budget, wait, now):
    """Poll the drill volumes together until each is available or in error (or has
    vanished: EC2 removes a volume it cannot make, e.g. with a KMS key it cannot use), at
    most ``wait`` seconds and never into the Lambda's last minute; each is then deleted and
    its snapshot tagged with the result."""
    waiting = {volume_id: (target, t0) for target, volume_id, t0 in started}
    missing, polls = dict.fromkeys(waiting, 0), int(wait // DRILL_POLL_S)
    for poll in range(polls + 1):
        try:
            found = {v["VolumeId"]: v["State"] for v in drill_volumes(ec2, list(waiting))}
        except Exception as exc:  # cannot watch: not judged, and nobody's fault
            unwatched(ec2, waiting, summary, exc)
            return
        seen = time.monotonic()
        for volume_id in list(waiting):
            state = found.get(volume_id)
            missing[volume_id] = 0 if state else missing[volume_id] + 1
            reason = DRILL_STATES.get(state)
            if missing[volume_id] >= DRILL_GONE_POLLS:
                reason = "the restored volume vanished (EC2 removes one it cannot make, e.g. "
                reason += "with a KMS key it cannot use)"
            if state == "available" or reason:
                target, t0 = waiting.pop(volume_id)
                finish_drill(ec2, target, volume_id, round(seen - t0), summary, now, reason)
        if not waiting or poll == polls or budget.left() - DRILL_POLL_S < STOP_MARGIN_S + ATTEMPT_S:
            break
        time.sleep(DRILL_POLL_S)
    for volume_id, (target, t0) in waiting.items():
        reason = f"the restored volume was not available within {wait:.0f} s"
        finish_drill(ec2, target, volume_id, round(time.monotonic() - t0), summary, now, reason)


DRILL_STATES = {"error": "the restored volume went to error"}  # others: not done yet


def unwatched(ec2, waiting, summary, exc):
    """The drill volumes could not be described: deleted (or left to a later run), and
    their drills not judged."""
    for volume_id, (target, _) in waiting.items():
        delete_drill_volume(ec2, volume_id, summary)
        sid = target[1]["SnapshotId"]
        summary.warn(
            sid, f"restore drill not judged: its volume could not be read ({describe_error(exc)})"
        )


def drill_volumes(ec2, ids):
    """The drill volumes among ``ids`` as EC2 describes them now (a filter, not VolumeIds:
    one deleted meanwhile is no error)."""
    found = []
    for start in range(0, len(ids), LOOKUP_BATCH):
        batch = ids[start : start + LOOKUP_BATCH]
        filters = [{"Name": "volume-id", "Values": batch}]
        found += paginate(ec2, "describe_volumes", "Volumes", Filters=filters)
    return found


def finish_drill(ec2, target, volume_id, seconds, summary, now, reason):
    """Delete the drill volume (whatever the result), then record the result."""
    delete_drill_volume(ec2, volume_id, summary)
    record_drill(ec2, target, volume_id, summary, now, reason, seconds)


def record_drill(ec2, target, volume_id, summary, now, reason, seconds=None):
    """The result: the snapshot's RestoreDrill tag, and the summary (a failed drill is a
    failure and a warning; a passed one counts its time to "available")."""
    vid, snap, _ = target
    sid = snap["SnapshotId"]
    value = drill_result(utc_today(now), seconds, reason)
    try:
        ec2.create_tags(Resources=[sid], Tags=[{"Key": TAG_DRILL, "Value": value}])
    except Exception as exc:  # the result is still in the summary and the metrics
        summary.warn(sid, f"drill result not tagged on the snapshot: {describe_error(exc)}")
    if reason is not None:
        summary.fail(sid, f"restore drill failed: {reason}", volume_id=vid)
        summary.warn(sid, f"restore drill of {vid} failed: {reason}")
        summary.count("drills_failed")
        return
    summary.did("drill", snapshot_id=sid, volume_id=vid, drill_volume_id=volume_id, seconds=seconds)
    summary.count("drills_passed")
    counts = summary.data["counts"]
    counts["restore_seconds"] = max(counts.get("restore_seconds", 0), seconds)


def run(event=None, context=None, *, region=None, now=None):
    """One manager run; ``now`` (a datetime) is injectable for tests and the demo."""
    return run_job(JOB, manage, event, context, region, now)


def manage(event, context, summary, budget, now):
    """The sweep, with the coverage check's first read (the regions) before it and the rest
    (the instances, then each destination's copies) after its last page."""
    pacer = Pacer()
    ec2 = make_client("ec2", summary.region, budget, pacer)
    max_age, lag, grace = settings(summary)
    drills_on, cap = drill_settings(summary)
    clean_drill_volumes(ec2, summary, now)
    coverage = start_coverage(ec2, now, max_age, lag, summary)
    today = utc_today(now)
    last = LastBackups(None, today, grace)  # the volumes backed up are read after the listing
    lookup = SourceLookup(summary, budget, pacer, today, grace)
    drills = DrillTargets() if drills_on else None
    lookup.clients[summary.region] = ec2
    vault = lambda a, r: vault_client(a, r, budget, pacer)  # noqa: E731
    tiers = Tiers(summary, now, lookup.client, vault, coverage.enabled if coverage else None)
    locks = read_locks(ec2, summary)
    judge = Judge(summary, now, coverage, last, lookup, locks, drills, tiers)
    why, done = sweep(ec2, summary, budget, judge, (now, max_age, lag))
    coverage = judge.coverage  # None when the volumes could not be read
    if why:
        stopped_early(why, done, context, event, summary)
    if coverage and not why:
        finish_coverage(coverage, summary, budget, today)
    elif coverage:
        summary.warn(summary.region, "coverage not checked: the sweep stopped early")
    if drills and not why:
        drill_all(ec2, coverage, drills, summary, budget, now, cap)


def lambda_handler(event, context):
    return run(event, context)


def main(argv=None):
    description = (
        "Delete automated snapshots whose DeleteOn has come (never a volume's last backup, "
        "nor a KeepForever one), and check coverage: that every volume the tags say must be "
        "backed up has a recent completed snapshot, and a recent copy in each Copy_Dest region."
    )
    return cli(cli_parser(JOB, description), argv)


if __name__ == "__main__":
    sys.exit(main())
