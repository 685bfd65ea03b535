"""Where moto falls short of EC2 for what the jobs call, emulated as the EC2 API reference
states it. ``install()`` patches moto in this process; the tests, the demo and the
benchmarks call it before they start moto.

Besides two small gaps (a DescribeVolumes filter, CreateSnapshots' exclusions), EBS Snapshot
Lock, which moto 5 lacks: LockSnapshot, UnlockSnapshot, DescribeLockedSnapshots, and
DeleteSnapshot refusing a locked snapshot (see "Snapshot lock" below; ``locks()`` shows the
emulated table). And copies across accounts (see "Shared snapshots" below): CopySnapshot of
a snapshot another account shared, DescribeSnapshots' RestorableByUserIds, sharing refused
for the AWS managed key, CopySnapshot's Encrypted. And CreateVolume's ClientToken.
"""

import base64
import binascii
import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import moto.ec2.models.elastic_block_store as moto_ebs
from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.responses import ActionResult
from moto.ec2.exceptions import (
    EC2ClientError,
    InvalidNextToken,
    InvalidSnapshotIdError,
    MissingParameterError,
)
from moto.ec2.models.elastic_block_store import EBSBackend, Volume
from moto.ec2.responses import EC2Response

_moto_filter_value = Volume.get_filter_value
_moto_create_snapshots = EBSBackend.create_snapshots


def _volume_filter_value(self, filter_name, method_name=None):
    # EC2 API reference, DescribeVolumes, Filters: "multi-attach-enabled - Indicates whether
    # the volume is enabled for Multi-Attach (true | false)". moto 5 raises
    # FilterNotImplementedError for it.
    if filter_name == "multi-attach-enabled":
        return str(bool(self.multi_attach_enabled)).lower()
    return _moto_filter_value(self, filter_name, method_name)


def _create_snapshots(self, instance_spec, description, tags):
    # EC2 API reference, CreateSnapshots, InstanceSpecification.ExcludeDataVolumeIds: "The
    # IDs of the data (non-root) volumes to exclude from the multi-volume snapshot set".
    # moto 5 snapshots every volume; the ones excluded are deleted again here, unseen.
    excluded = instance_spec.get("ExcludeDataVolumeIds") or []
    excluded = [excluded] if isinstance(excluded, str) else list(excluded)
    made = _moto_create_snapshots(self, instance_spec, description, tags)
    for snapshot in [s for s in made if s.volume.id in excluded]:
        del self.snapshots[snapshot.id]
    return [s for s in made if s.volume.id not in excluded]


# ---- Snapshot lock -------------------------------------------------------------------------
#
# moto 5 has no EBS Snapshot Lock. Emulated here through moto's own request path: three
# actions added to EC2Response (moto dispatches a query Action to the method of its snake_case
# name and serialises the ActionResult with botocore's output shape), and EBSBackend's
# delete_snapshot wrapped, so boto3 calls, the tests' fault injection and their call records
# see them like any other EC2 call. Errors are EC2ClientError, which moto sends as EC2's
# <Response><Errors><Error><Code> body, so botocore raises ClientError with that code.
#
# The locks live on each moto EBS backend (one per account and Region), in an attribute made
# on first use: moto's reset between tests (mock_aws) rebuilds the backend and drops them, and
# another account or Region never sees them. ``locks(account, region)`` returns that table.
#
# Clock: moto's own, ``moto.ec2.models.elastic_block_store.utcnow()`` (naive UTC), looked up
# at each call, so a test that patches it moves the locks' time along with moto's.
#
# Pages cited (the rule next to each check says which one it follows):
#   LOCK      https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_LockSnapshot.html
#   UNLOCK    https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_UnlockSnapshot.html
#   DESCRIBE  https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeLockedSnapshots.html
#   INFO      https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_LockedSnapshotsInfo.html
#   DELETE    https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DeleteSnapshot.html
#   ERRORS    https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html
#   CONCEPTS  https://docs.aws.amazon.com/ebs/latest/userguide/snapshot-lock-concepts.html
#   CONSIDER  https://docs.aws.amazon.com/ebs/latest/userguide/snapshot-lock-considerations.html
#   UNLOCKING https://docs.aws.amazon.com/ebs/latest/userguide/unlock-snapshot.html
#   UPDATING  https://docs.aws.amazon.com/ebs/latest/userguide/update-snapshot-lock.html
#
# None of these pages names an error code for any snapshot-lock refusal (API_LockSnapshot,
# API_UnlockSnapshot, API_DescribeLockedSnapshots and API_DeleteSnapshot list only "the errors
# that are common to all actions"; the ERRORS page has no lock-specific code). Where a code is
# chosen, the comment says from which documented code on the ERRORS page, and why.

LOCK_MODES = ("governance", "compliance")
LOCK_STATES = ("compliance-cooloff", "governance", "compliance", "expired")
IN_FORCE = ("compliance-cooloff", "governance", "compliance")
_TABLE = "_moto_gaps_snapshot_locks"
_TOKEN_PREFIX = "moto-gaps-locked-snapshots:"
_DEFAULT_PAGE = 1000  # no MaxResults: pages of the documented maximum (DESCRIBE: 5 to 1000)


def _now():
    # moto's clock, looked up now (tests patch moto.ec2.models.elastic_block_store.utcnow).
    return _naive_utc(moto_ebs.utcnow())


def _naive_utc(moment):
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _error(code, message):
    return EC2ClientError(code, message)


def _not_permitted(message):
    # The docs name no code for what a lock forbids (deleting a locked snapshot, unlocking one
    # in compliance mode after its cooling-off period, shortening such a lock or changing its
    # mode or cooling-off period). Chosen: OperationNotPermitted, from ERRORS' table of
    # action-specific codes: "The specified operation is not allowed ... for example, you might
    # be trying to terminate an instance that has termination protection enabled" - the
    # documented case closest to a deletion protection refusing an action. None of ERRORS'
    # common codes fits (UnsupportedOperation is about unsupported requests, not protection).
    return _error("OperationNotPermitted", message)


@dataclass
class SnapshotLock:
    """One snapshot's lock as EC2 keeps it; times are naive UTC, like moto's."""

    snapshot_id: str
    owner_id: str
    mode: str  # governance | compliance
    created_on: datetime  # LockCreatedOn: when this lock was first placed
    duration_days: int | None  # LockDuration; None when locked until a date
    until: datetime | None  # ExpirationDate; None when locked for a duration
    started_on: datetime | None  # LockDurationStartTime; None while the snapshot is pending
    cool_off_hours: int | None = None  # CoolOffPeriod (compliance mode only)
    cool_off_from: datetime | None = None  # when the lock entered compliance mode

    def expires_on(self):
        # CONCEPTS, "Lock duration": a number of days, or an expiration date. CONSIDER: a lock
        # for a duration on a pending snapshot starts counting when it reaches completed.
        if self.until is not None:
            return self.until
        if self.started_on is None:
            return None
        return self.started_on + timedelta(days=self.duration_days)

    def cool_off_expires_on(self):
        # CONCEPTS, "Cooling-off period": it "starts immediately after you lock the snapshot".
        if self.cool_off_hours is None or self.cool_off_from is None:
            return None
        return self.cool_off_from + timedelta(hours=self.cool_off_hours)

    def state(self, now):
        # CONCEPTS, "Lock state" (and INFO, lockState): compliance-cooloff, governance,
        # compliance, expired - computed at the time asked.
        expires = self.expires_on()
        if expires is not None and now >= expires:
            return "expired"
        if self.mode == "governance":
            return "governance"
        cool_off_ends = self.cool_off_expires_on()
        if cool_off_ends is not None and now < cool_off_ends:
            return "compliance-cooloff"
        return "compliance"

    def info(self, now):
        """LockedSnapshotsInfo (INFO): what is known, nothing made up. LockDuration only when
        locked for a duration; LockExpiresOn and LockDurationStartTime only once the duration
        has started (a pending snapshot's has not)."""
        fields = {
            "OwnerId": self.owner_id,
            "SnapshotId": self.snapshot_id,
            "LockState": self.state(now),
            "LockDuration": self.duration_days,
            "CoolOffPeriod": self.cool_off_hours,
            "CoolOffPeriodExpiresOn": self.cool_off_expires_on(),
            "LockCreatedOn": self.created_on,
            "LockDurationStartTime": self.started_on,
            "LockExpiresOn": self.expires_on(),
        }
        return {key: value for key, value in fields.items() if value is not None}


def _table(backend):
    """The backend's lock table, {snapshot id: SnapshotLock}, made on first use."""
    table = vars(backend).get(_TABLE)
    if table is None:
        table = {}
        setattr(backend, _TABLE, table)
    return table


def _refresh(backend, now):
    """The backend's locks, brought up to date with its snapshots at ``now``."""
    table = _table(backend)
    for snapshot_id, lock in list(table.items()):
        snapshot = backend.snapshots.get(snapshot_id)
        if snapshot is None:  # gone by a path other than DeleteSnapshot: no lock left
            del table[snapshot_id]
        elif lock.started_on is None and snapshot.status == "completed":
            # CONSIDER: "If you lock a snapshot while it is in the pending state, and you lock
            # it for a specific duration, the lock duration starts only when the snapshot
            # reaches the completed state." moto has no completion event: the duration starts
            # at the first lock call (or DeleteSnapshot) that sees the snapshot completed.
            lock.started_on = now
        elif lock.started_on is None and snapshot.status != "pending":
            # CONSIDER: "If you lock a snapshot while it is in the pending state and the
            # snapshot creation fails for any reason, the lock is canceled."
            del table[snapshot_id]
    return table


def locks(account_id=DEFAULT_ACCOUNT_ID, region="us-east-1"):
    """The emulated lock table of one account and Region, {snapshot id: SnapshotLock}, up to
    date with moto's clock. Live: for tests and the demo to look at, not to edit."""
    from moto.ec2.models import ec2_backends

    backend = ec2_backends[account_id][region]
    return _refresh(backend, _now())


def _require(value, name):
    # ERRORS, MissingParameter (common): "The request is missing a required parameter."
    # LOCK: SnapshotId and LockMode "Required: Yes"; UNLOCK: SnapshotId "Required: Yes".
    if value is None or value == "":
        raise MissingParameterError(name)


def _snapshot(backend, snapshot_id):
    # The snapshot must exist in the caller's account and Region (the backend is exactly that).
    # ERRORS, InvalidSnapshot.NotFound: "The specified snapshot does not exist. Ensure that you
    # specify the AWS Region in which the snapshot is located".
    snapshot = backend.snapshots.get(snapshot_id)
    if snapshot is None:
        raise InvalidSnapshotIdError()
    return snapshot


def _expiry(start, days, until):
    if until is not None:
        return until
    return None if start is None else start + timedelta(days=days)


def _check_lock_parameters(mode, cool_off, days, until, now):
    # LOCK, LockMode: "governance" | "compliance". botocore does not check enums, EC2 does.
    # ERRORS, InvalidParameterValue (common): "A value specified in a parameter is not valid".
    if mode not in LOCK_MODES:
        raise _error("InvalidParameterValue", f"Value ({mode}) for parameter LockMode is invalid.")
    # LOCK, LockDuration and ExpirationDate: "You must specify either this parameter or
    # ExpirationDate, but not both." No code named; ERRORS, InvalidParameterCombination
    # (common): "Indicates an incorrect combination of parameters, or a missing parameter" -
    # it covers both halves of the rule (both given; neither given).
    if days is not None and until is not None:
        raise _error(
            "InvalidParameterCombination",
            "Specify either LockDuration or ExpirationDate, but not both.",
        )
    if days is None and until is None:
        raise _error(
            "InvalidParameterCombination", "Specify either LockDuration or ExpirationDate."
        )
    # LOCK, CoolOffPeriod: "If you are locking the snapshot in governance mode, omit this
    # parameter." No code named; InvalidParameterCombination, as above (a parameter that this
    # LockMode does not take).
    if cool_off is not None and mode == "governance":
        raise _error(
            "InvalidParameterCombination",
            "CoolOffPeriod applies to compliance mode only; omit it in governance mode.",
        )
    # LOCK, CoolOffPeriod "Valid Range: Minimum value of 1. Maximum value of 72"; LockDuration
    # "Allowed values: Min: 1, max 36500" (CONCEPTS: 1 day to 36500 days). No code named;
    # InvalidParameterValue, as above. (botocore itself refuses values under the minimum
    # before sending; EC2 refuses both ends.)
    if cool_off is not None and not 1 <= cool_off <= 72:
        raise _error(
            "InvalidParameterValue",
            f"Value ({cool_off}) for parameter CoolOffPeriod is invalid. Expecting 1 to 72.",
        )
    if days is not None and not 1 <= days <= 36500:
        raise _error(
            "InvalidParameterValue",
            f"Value ({days}) for parameter LockDuration is invalid. Expecting 1 to 36500.",
        )
    # CONCEPTS, "Lock expiration date": "determined by an expiration date in the future". No
    # code named; InvalidParameterValue, as above. (No upper bound is documented for it.)
    if until is not None and until <= now:
        raise _error(
            "InvalidParameterValue",
            f"Value ({until.isoformat()}Z) for parameter ExpirationDate is invalid. "
            "It must be in the future.",
        )


def _check_extension(current, mode, cool_off, days, until, now):
    """A lock in the ``compliance`` state may only be lengthened (LOCK's description: "If the
    snapshot is locked in compliance mode and the cooling-off period has lapsed, you can only
    increase the lock duration or extend the lock expiration date"; CONCEPTS and UPDATING say
    the same). Anything else is refused with OperationNotPermitted (see _not_permitted)."""
    sid = current.snapshot_id
    if mode != "compliance":
        # LOCK, LockMode compliance: "Users can't decrease the lock duration or change the
        # lock mode to governance."
        raise _not_permitted(
            f"The snapshot {sid} is locked in compliance mode and its cooling-off period has "
            "expired; its lock mode can't be changed."
        )
    if cool_off is not None:
        # CONSIDER: "If you extend the lock duration for a snapshot that is locked in
        # compliance mode after the cooling-off period has expired, you can't specify another
        # cooling-off period. If you specify a cooling-off period, the request fails." (LOCK,
        # CoolOffPeriod, says the same.)
        raise _not_permitted(
            f"The snapshot {sid} is past its cooling-off period; omit CoolOffPeriod."
        )
    old = current.expires_on()
    if old is None:
        # Locked for a duration while pending: the old and the new duration start together
        # (at completion), so only a LockDuration can be shown not to be a decrease.
        lengthens = days is not None and days >= current.duration_days
    else:
        # For a pending snapshot a new LockDuration starts at completion, no earlier than now.
        lengthens = _expiry(current.started_on or now, days, until) >= old
    if not lengthens:
        raise _not_permitted(
            f"The snapshot {sid} is locked in compliance mode and its cooling-off period has "
            "expired; its lock can only be extended."
        )


def _lock_snapshot(self):
    """LockSnapshot (LOCK): lock a snapshot, or change its lock."""
    backend, now = self.ec2_backend, _now()
    snapshot_id = self._get_param("SnapshotId")
    mode = self._get_param("LockMode")
    cool_off = self._get_param("CoolOffPeriod")
    days = self._get_param("LockDuration")
    until = self._get_param("ExpirationDate")
    until = None if until is None else _naive_utc(until)
    _require(snapshot_id, "SnapshotId")
    _require(mode, "LockMode")
    _check_lock_parameters(mode, cool_off, days, until, now)
    table = _refresh(backend, now)
    snapshot = _snapshot(backend, snapshot_id)
    # CONSIDER: "You can lock a snapshot only if it is in the pending or completed state."
    # (lock-snapshot.html says the same.) No code named; ERRORS, IncorrectState: "The resource
    # is in an incorrect state for the request" - EC2's documented code for acting on a
    # resource (volume, snapshot) in the wrong state.
    if snapshot.status not in ("pending", "completed"):
        raise _error(
            "IncorrectState",
            f"The snapshot {snapshot_id} is in the {snapshot.status} state; only pending or "
            "completed snapshots can be locked.",
        )
    current = table.get(snapshot_id)
    state = current.state(now) if current else None
    # LOCK's description, CONCEPTS and UPDATING: governance - the mode and the duration or
    # expiration date may change; compliance-cooloff - the mode, the cooling-off period and
    # the duration or date may change; compliance - only lengthen.
    if state == "compliance":
        _check_extension(current, mode, cool_off, days, until, now)
    # LOCK, DryRun: with the permissions, "the error response is DryRunOperation" - after
    # the checks above, before anything changes (moto's DryRunClientError).
    self.error_on_dryrun()
    started = now if snapshot.status == "completed" else None
    if state in (None, "expired"):  # a new lock (an expired one is no lock: CONCEPTS)
        lock = SnapshotLock(snapshot_id, snapshot.owner_id, mode, now, days, until, started)
        if mode == "compliance":
            lock.cool_off_hours, lock.cool_off_from = cool_off, now
    else:
        # A changed lock keeps when it was placed and when its duration started, so a new
        # LockDuration counts from that start, and a new CoolOffPeriod from when the lock
        # entered compliance mode (CONCEPTS: the cooling-off period may be increased or
        # decreased). The request gives the lock's settings in full: in compliance-cooloff,
        # leaving CoolOffPeriod out ends the cooling-off period (LOCK, CoolOffPeriod: "To lock
        # the snapshot in compliance mode immediately without a cooling-off period, omit this
        # parameter"); in compliance, the old cooling-off period stays on record.
        lock = SnapshotLock(
            snapshot_id,
            current.owner_id,
            mode,
            current.created_on,
            days,
            until,
            current.started_on,
        )
        if state == "compliance":
            lock.cool_off_hours, lock.cool_off_from = current.cool_off_hours, current.cool_off_from
        elif mode == "compliance":
            entered = current.cool_off_from if current.mode == "compliance" else now
            lock.cool_off_hours, lock.cool_off_from = cool_off, entered
    table[snapshot_id] = lock
    result = lock.info(now)
    del result["OwnerId"]  # not in LockSnapshot's output (LOCK, Response Elements)
    return ActionResult(result)


def _unlock_snapshot(self):
    """UnlockSnapshot (UNLOCK)."""
    backend, now = self.ec2_backend, _now()
    snapshot_id = self._get_param("SnapshotId")
    _require(snapshot_id, "SnapshotId")
    table = _refresh(backend, now)
    _snapshot(backend, snapshot_id)
    lock = table.get(snapshot_id)
    state = lock.state(now) if lock else None
    if state in (None, "expired"):
        # UNLOCK and UNLOCKING: "You can unlock a snapshot only if it is locked in governance
        # mode, or if it is locked in compliance mode and it is still within the cooling-off
        # period"; CONCEPTS: an expired lock means "The snapshot is not locked". No code named
        # for a snapshot that is not locked; ERRORS, IncorrectState: "The resource is in an
        # incorrect state for the request" - the snapshot exists, but is not in a locked state.
        raise _error("IncorrectState", f"The snapshot {snapshot_id} is not locked.")
    if state == "compliance":
        # UNLOCK: "You can't unlock a snapshot that is locked in compliance mode after the
        # cooling-off period has expired." No code named: OperationNotPermitted (_not_permitted).
        raise _not_permitted(
            f"The snapshot {snapshot_id} is locked in compliance mode and its cooling-off "
            "period has expired; it can't be unlocked."
        )
    self.error_on_dryrun()  # UNLOCK, DryRun: DryRunOperation when it would have succeeded
    del table[snapshot_id]
    return ActionResult({"SnapshotId": snapshot_id})


def _page_token(snapshot_id):
    return base64.urlsafe_b64encode((_TOKEN_PREFIX + snapshot_id).encode()).decode()


def _page_after(token):
    # ERRORS, InvalidNextToken: "The specified NextToken is not valid."
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeError, ValueError):
        text = ""
    if not text.startswith(_TOKEN_PREFIX) or text == _TOKEN_PREFIX:
        raise InvalidNextToken(token)
    return text[len(_TOKEN_PREFIX) :]


def _describe_locked_snapshots(self):
    """DescribeLockedSnapshots (DESCRIBE): the snapshots that have a lock - expired ones too,
    with LockState expired (DESCRIBE's lock-state filter takes compliance-cooloff | governance |
    compliance | expired) - in snapshot id order, paged with NextToken. A snapshot never
    locked, or unlocked, or not found is simply not listed: DESCRIBE documents no error for
    SnapshotIds (unlike DescribeSnapshots), so none is made up."""
    backend, now = self.ec2_backend, _now()
    max_results = self._get_param("MaxResults")
    token = self._get_param("NextToken")
    wanted = set(self._get_param("SnapshotIds") or [])
    filters = self._filters_from_querystring()
    # DESCRIBE, MaxResults: "Valid Range: Minimum value of 5. Maximum value of 1000." ERRORS
    # documents InvalidMaxResults: "The specified value for MaxResults is not valid." DESCRIBE
    # says nothing against MaxResults with SnapshotIds (DescribeSnapshots does), so both go.
    if max_results is not None and not 5 <= max_results <= 1000:
        raise _error(
            "InvalidMaxResults",
            f"Value ({max_results}) for parameter MaxResults is invalid. Expecting 5 to 1000.",
        )
    # DESCRIBE, Filter.N: lock-state is the only filter. ERRORS, InvalidFilter: "The specified
    # filter is not valid."
    for name in filters:
        if name != "lock-state":
            raise _error("InvalidFilter", f"The filter '{name}' is invalid.")
    after = _page_after(token) if token else None
    self.error_on_dryrun()  # DESCRIBE, DryRun: DryRunOperation when it would have succeeded
    rows = sorted(_refresh(backend, now).values(), key=lambda lock: lock.snapshot_id)
    if wanted:
        rows = [lock for lock in rows if lock.snapshot_id in wanted]
    if "lock-state" in filters:
        states = set(filters["lock-state"])
        rows = [lock for lock in rows if lock.state(now) in states]
    if after is not None:  # a cursor, not an offset: deleting while paging skips nothing
        rows = [lock for lock in rows if lock.snapshot_id > after]
    size = max_results or _DEFAULT_PAGE
    page = rows[:size]
    result = {"Snapshots": [lock.info(now) for lock in page]}
    if len(rows) > size:
        # DESCRIBE, nextToken: "This value is null when there are no more items to return."
        result["NextToken"] = _page_token(page[-1].snapshot_id)
    return ActionResult(result)


# moto's own, even if this module is imported twice (as moto_gaps and as scripts.moto_gaps)
_moto_delete_snapshot = EBSBackend.delete_snapshot
_moto_delete_snapshot = getattr(_moto_delete_snapshot, "moto_original", _moto_delete_snapshot)


@functools.wraps(_moto_delete_snapshot)
def _delete_snapshot(self, snapshot_id):
    # LOCK: "A locked snapshot can't be deleted." CONCEPTS, "Lock state": compliance-cooloff,
    # governance and compliance - "The snapshot can't be deleted"; expired - "The snapshot is
    # not locked and can be deleted". DELETE, and its user guide page (ebs-deleting-snapshot),
    # name no error for it, nor does ERRORS: OperationNotPermitted (see _not_permitted).
    now = _now()
    table = _refresh(self, now)
    lock = table.get(snapshot_id)
    if lock is not None and snapshot_id in self.snapshots:
        state = lock.state(now)
        if state in IN_FORCE:
            until = lock.expires_on()
            until = f"until {until.isoformat()}Z" if until else "until its duration has run"
            raise _not_permitted(
                f"The snapshot {snapshot_id} is locked ({state}) {until}; it can't be deleted."
            )
    deleted = _moto_delete_snapshot(self, snapshot_id)
    table.pop(snapshot_id, None)  # a deleted snapshot's lock goes with it
    return deleted


_delete_snapshot.moto_original = _moto_delete_snapshot


# moto makes a volume "available" at once and has no other state for a volume that is not
# attached. EC2 API reference, Volume.State: "creating | available | in-use | deleting |
# deleted | error"; a volume made from a snapshot is "creating" until its data is ready, and
# may end in "error". Tests and the demo force such a state with ``force_volume_state``.
_moto_volume_status = Volume.status


def _volume_status(self):
    return getattr(self, "forced_status", None) or _moto_volume_status.fget(self)


def force_volume_state(volume, state):
    """Make moto describe ``volume`` (its backend object) in ``state`` from now on."""
    volume.forced_status = state


_moto_delete_volume = EBSBackend.delete_volume


def _delete_volume(self, volume_id):
    # EC2 API reference, DeleteVolume: "The volume must be in the available state (not
    # attached to an instance)". moto deletes a volume in any state; a volume forced to
    # "creating" is refused here with IncorrectState (ERRORS: "The resource is in an
    # incorrect state for the request").
    volume = self.volumes.get(volume_id)
    if volume is not None and getattr(volume, "forced_status", None) == "creating":
        raise EC2ClientError("IncorrectState", f"The volume '{volume_id}' is 'creating'.")
    return _moto_delete_volume(self, volume_id)


# ---- Shared snapshots ----------------------------------------------------------------------
#
# moto keeps each account's EC2 apart, and its CopySnapshot looks for the source snapshot in
# the caller's own account only, so a snapshot another account shared is "not found". EC2
# lets an account copy a snapshot that another account shared with it, and only then:
#   SHARE    https://docs.aws.amazon.com/ebs/latest/userguide/ebs-modifying-snapshot-permissions.html
#            "Users that you have authorized can use the snapshots that you share to create
#            their own EBS volumes"; "You can't share snapshots that are encrypted with the
#            default AWS managed key."
#   USE      https://docs.aws.amazon.com/ebs/latest/userguide/view-shared-snapshot.html
#            (to use a shared snapshot, copy it: "Copy the shared snapshot")
#   COPY     https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CopySnapshot.html
#            Encrypted: "To encrypt a copy of an unencrypted snapshot ... enable encryption
#            using this parameter"; KmsKeyId: "If this parameter is not specified, your KMS
#            key for Amazon EBS is used."
#   MODIFY   https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_ModifySnapshotAttribute.html
#            "Snapshots encrypted with your default KMS key cannot be shared with other
#            accounts."
#   DESCRIBE https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeSnapshots.html
#            RestorableByUserIds: "The IDs of the Amazon Web Services accounts that can
#            create volumes from the snapshot."
#   KEYS     https://docs.aws.amazon.com/kms/latest/developerguide/concepts.html (AWS managed
#            keys, alias aws/<service>; DescribeKey's KeyManager is AWS for them)
#   ERRORS   (above): InvalidSnapshot.NotFound "The specified snapshot does not exist."
# A snapshot that is not shared with the caller is invisible to it: InvalidSnapshot.NotFound,
# as for one that does not exist. AWS documents no error code for sharing a snapshot under the
# AWS managed key: OperationNotPermitted, as for the locks above.
def _original(cls, name):
    """moto's own method, even if this module was imported (and installed) twice."""
    method = getattr(cls, name)
    return getattr(method, "moto_original", method)


_moto_copy_snapshot = _original(EBSBackend, "copy_snapshot")
_moto_copy_response = _original(EC2Response, "copy_snapshot")
_moto_modify_attribute = _original(EC2Response, "modify_snapshot_attribute")
_moto_describe_snapshots = _original(EC2Response, "describe_snapshots")
_moto_default_key = _original(EBSBackend, "_create_default_encryption_key")
_moto_create_snapshot = _original(EBSBackend, "create_snapshot")


def _create_snapshot(self, volume_id, description, owner_id=None, from_ami=None):
    # EC2 API reference, Snapshot.KmsKeyId: "The Amazon Resource Name (ARN) of the KMS key
    # that was used to protect the volume encryption key for the parent volume." moto leaves
    # it empty on a snapshot of an encrypted volume.
    snapshot = _moto_create_snapshot(self, volume_id, description, owner_id, from_ami)
    if snapshot.encrypted and not snapshot.kms_key_id:
        snapshot.kms_key_id = self.get_volume(volume_id).kms_key_id
    return snapshot


def _shared_with(snapshot, account_id):
    """SHARE: a snapshot shared with this account, or with everyone (group all)."""
    return (
        account_id in snapshot.create_volume_permission_userids
        or "all" in snapshot.create_volume_permission_groups
    )


def _foreign_snapshot(account_id, region, snapshot_id):
    """The snapshot of another account that it shared with ``account_id``, else None."""
    from moto.ec2.models import ec2_backends

    for owner in list(dict.keys(ec2_backends)):
        regions = dict.__getitem__(ec2_backends, owner)
        if owner == account_id or region not in dict.keys(regions):
            continue
        snapshot = dict.__getitem__(regions, region).snapshots.get(snapshot_id)
        if snapshot is not None and _shared_with(snapshot, account_id):
            return snapshot
    return None


def _copy_snapshot(self, source_snapshot_id, source_region, description, kms_key_id):
    # USE, COPY: the source may be another account's snapshot shared with the caller.
    try:
        return _moto_copy_snapshot(self, source_snapshot_id, source_region, description, kms_key_id)
    except InvalidSnapshotIdError:
        source = _foreign_snapshot(self.account_id, source_region, source_snapshot_id)
        if source is None:  # not shared with the caller: as if it did not exist (ERRORS)
            raise
    copy = moto_ebs.Snapshot(
        self,
        moto_ebs.random_snapshot_id(),
        volume=source.volume,
        description=description,
        encrypted=source.encrypted,
        kms_key_id=kms_key_id,
    )
    self.snapshots[copy.id] = copy
    return copy


class _CopyVolume:
    """What a copy's VolumeId names: no volume (see COPY_VOLUME below); its size, which
    CreateVolume from the copy takes, is its source's."""

    id = "vol-ffffffff"

    def __init__(self, size):
        self.size = size


def _copy_snapshot_response(self):
    # COPY: Encrypted=true encrypts the copy; an encrypted copy without KmsKeyId gets the
    # destination account's default EBS key. moto ignores Encrypted and leaves the key empty.
    # COPY_VOLUME: EC2 API reference, Snapshot.VolumeId: "Snapshots created by the
    # CopySnapshot action have an arbitrary volume ID that should not be used for any
    # purpose" (EC2 shows vol-ffffffff); moto keeps the source's volume on the copy.
    result = _moto_copy_response(self)
    copy = self.ec2_backend.snapshots[result.result["SnapshotId"]]
    copy.volume = _CopyVolume(copy.volume.size)
    if str(self._get_param("Encrypted")).lower() == "true":
        copy.encrypted = True
    if copy.encrypted and not copy.kms_key_id:
        copy.kms_key_id = self.ec2_backend.default_kms_key_id or (
            self.ec2_backend._create_default_encryption_key()
        )
    return result


def _aws_managed(backend, key_id):
    from moto.kms import kms_backends
    from moto.kms.exceptions import NotFoundException

    kms = kms_backends[backend.account_id][backend.region_name]
    try:
        return kms.describe_key(key_id).key_manager == "AWS"
    except (KeyError, NotFoundException):  # a key moto does not know (a made-up ARN in a
        # test; moto's backend raises KeyError for an unknown key id): not AWS managed
        return False


def _modify_snapshot_attribute(self):
    # MODIFY, SHARE: a snapshot under the AWS managed key cannot be shared with anyone.
    snapshot = self.ec2_backend.get_snapshot(self._get_param("SnapshotId"))
    sharing = self._get_param("OperationType") == "add" and (
        self._get_param("UserIds", []) or self._get_param("GroupNames", [])
    )
    if sharing and snapshot.encrypted and _aws_managed(self.ec2_backend, snapshot.kms_key_id):
        raise _not_permitted(
            f"The snapshot {snapshot.id} is encrypted with the AWS managed key: not shareable."
        )
    return _moto_modify_attribute(self)


def _describe_snapshots(self):
    # DESCRIBE: RestorableByUserIds keeps the snapshots those accounts may create volumes
    # from (moto ignores the parameter).
    result = _moto_describe_snapshots(self)
    users = self._get_param("RestorableByUserIds", [])
    if users:
        kept = [s for s in result.result["Snapshots"] if any(_shared_with(s, u) for u in users)]
        result = ActionResult({"Snapshots": kept})
    return result


def _default_key(self):
    # KEYS: the key behind alias/aws/ebs is an AWS managed key (moto makes it CUSTOMER).
    from moto.kms import kms_backends

    arn = _moto_default_key(self)
    kms_backends[self.account_id][self.region_name].describe_key(arn).key_manager = "AWS"
    return arn


for _wrapper, _moto in [
    (_copy_snapshot, _moto_copy_snapshot),
    (_copy_snapshot_response, _moto_copy_response),
    (_modify_snapshot_attribute, _moto_modify_attribute),
    (_describe_snapshots, _moto_describe_snapshots),
    (_default_key, _moto_default_key),
    (_create_snapshot, _moto_create_snapshot),
]:
    _wrapper.moto_original = _moto


# ---- CreateVolume's ClientToken ------------------------------------------------------------
# EC2 API reference, CreateVolume: ClientToken, "Unique, case-sensitive identifier that you
# provide to ensure the idempotency of the request" ("Ensuring idempotency in Amazon EC2 API
# requests": a request sent again with the same token returns the first one's result and
# makes nothing). moto ignores it, so a retried CreateVolume would make a second volume.
_moto_create_volume_response = _original(EC2Response, "create_volume")
_VOLUME_TOKENS = "_moto_gaps_volume_tokens"


def _create_volume_response(self):
    token = self._get_param("ClientToken")
    if not token or self._get_bool_param("DryRun", False):
        return _moto_create_volume_response(self)
    made = self.ec2_backend.__dict__.setdefault(_VOLUME_TOKENS, {})
    if token not in made:
        made[token] = _moto_create_volume_response(self)
    return made[token]


_create_volume_response.moto_original = _moto_create_volume_response


# ---- CreateVolume from a snapshot another account shared ------------------------------------
# SHARE, USE (above): "Users that you have authorized can use the snapshots that you share to
# create their own EBS volumes"; CreateVolume's SnapshotId then names the other account's
# snapshot. moto looks for it in the caller's own account only. Emulated: a snapshot another
# account shared with the caller (createVolumePermission) is read from that account's backend;
# one not shared stays InvalidSnapshot.NotFound, "The specified snapshot does not exist."
# (ERRORS), as EC2 answers for a snapshot the caller may not see.
_moto_create_volume = _original(EBSBackend, "create_volume")


def _create_volume(self, size, zone_name, snapshot_id=None, encrypted=False, *args, **kwargs):
    try:
        return _moto_create_volume(self, size, zone_name, snapshot_id, encrypted, *args, **kwargs)
    except InvalidSnapshotIdError:
        source = _foreign_snapshot(self.account_id, self.region_name, snapshot_id)
        if source is None:
            raise
    size = size or source.volume.size
    volume = _moto_create_volume(
        self, size, zone_name, None, encrypted or source.encrypted, *args, **kwargs
    )
    volume.snapshot_id = snapshot_id
    return volume


_create_volume.moto_original = _moto_create_volume


# ---- DescribeKey of another account's key ---------------------------------------------------
# KMS developer guide, "Allowing users in other accounts to use a KMS key": another account's
# key is named by its key ARN, and DescribeKey is one of the operations allowed across
# accounts. moto looks for the key in the caller's account only. Emulated without the key
# policy (moto evaluates none): a key ARN of another account is described from that account.
def _describe_key_response(self):
    import json

    from moto.kms.exceptions import NotFoundException
    from moto.kms.models import kms_backends

    parts = str(self._get_param("KeyId")).split(":")
    if len(parts) < 6 or parts[4] == self.current_account or not parts[5].startswith("key/"):
        return _describe_key_response.moto_original(self)
    keys = kms_backends[parts[4]][parts[3]].keys
    if parts[5][4:] not in keys:
        raise NotFoundException(f"Invalid keyId {self._get_param('KeyId')}")
    return json.dumps(keys[parts[5][4:]].to_dict())


def install():
    from moto.kms.responses import KmsResponse

    _describe_key_response.moto_original = _original(KmsResponse, "describe_key")
    KmsResponse.describe_key = _describe_key_response
    EBSBackend.create_volume = _create_volume
    Volume.get_filter_value = _volume_filter_value
    Volume.status = property(_volume_status)
    EBSBackend.delete_volume = _delete_volume
    EBSBackend.create_snapshots = _create_snapshots
    EBSBackend.delete_snapshot = _delete_snapshot
    EC2Response.lock_snapshot = _lock_snapshot
    EC2Response.unlock_snapshot = _unlock_snapshot
    EC2Response.describe_locked_snapshots = _describe_locked_snapshots
    EBSBackend.copy_snapshot = _copy_snapshot
    EBSBackend._create_default_encryption_key = _default_key
    EBSBackend.create_snapshot = _create_snapshot
    EC2Response.copy_snapshot = _copy_snapshot_response
    EC2Response.modify_snapshot_attribute = _modify_snapshot_attribute
    EC2Response.describe_snapshots = _describe_snapshots
    EC2Response.create_volume = _create_volume_response
