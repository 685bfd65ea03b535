"""Vault copies: share, stage, copy through the writer role, unshare."""

import os
from datetime import UTC

from botocore.exceptions import ClientError

from ebs_snapshots.common.aws import (
    automated_snapshots,
    batches,
    describe_error,
    enabled_regions,
    error_code,
    make_client,
    paginate,
)
from ebs_snapshots.common.budget import OutOfTime
from ebs_snapshots.common.locking import RELOCK, lock_request, lock_snapshot, unlocked
from ebs_snapshots.common.locks import TAG_LOCK, TAG_LOCK_COOL_OFF
from ebs_snapshots.common.tags import (
    AUTOMATED,
    TAG_COPY_STATE,
    TAG_DELETE_ON,
    TAG_SOURCE_ACCOUNT,
    TAG_SOURCE_REGION,
    TAG_SOURCE_SNAPSHOT,
    TAG_SOURCE_VOLUME,
    TAG_TYPE,
    TAG_VAULT_ACCOUNT,
    TAG_VAULT_RETENTION,
    TAG_VAULT_STAGING,
    copy_until,
    parse_date,
    tag_map,
)
from ebs_snapshots.common.vault import vault_accounts, vault_retention, vault_target
from ebs_snapshots.common.vault_access import vault_client, vault_copy_states
from ebs_snapshots.copier.copies import COPY_LIMIT_CODE, copy_once
from ebs_snapshots.copier.plan import (
    COPIES_IN_FLIGHT,
    MAX_LOOKUP,
    NOTIFIED_MAX_IN_FLIGHT,
    locked_among,
    plan_destination,
    tag_pairs,
)
from ebs_snapshots.copier.staging import not_staging, staging_copies, staging_of, staging_request

#
# EBS user guide, "Share an Amazon EBS snapshot": "You can't share snapshots that are
# encrypted with the default AWS managed key"; the EC2 API reference, ModifySnapshotAttribute:
# "Snapshots encrypted with your default KMS key cannot be shared with other accounts". Such
# a primary is first copied here with VAULT_SHARE_KMS_KEY (a customer managed key whose key
# policy lets the vault account use it), and that staging copy is shared instead.
SHARE_KEY_ENV, VAULT_KEY_ENV = "VAULT_SHARE_KMS_KEY", "VAULT_KMS_KEY"
NO_SHARE_KEY = (
    "encrypted with the AWS managed key (aws/ebs), which AWS does not let anyone share: set "
    f"{SHARE_KEY_ENV} (template parameter VaultShareKmsKey) to a customer managed key whose "
    "key policy lets the vault account use it (docs/immutable-backups.md, The KMS key "
    "policies); not copied to the vault"
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
