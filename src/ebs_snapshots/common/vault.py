"""Other accounts: vaults, the writer role's client, the KMS key accounts allowed."""

import os
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any

import boto3

from ebs_snapshots.common.aws import Guard, make_client, paginate
from ebs_snapshots.common.budget import Budget, Client, LambdaContext, OutOfTime
from ebs_snapshots.common.locks import TAG_LOCK
from ebs_snapshots.common.tags import (
    KMS_KEY,
    MAX_RETENTION_DAYS,
    TAG_COPY_KMS_KEY,
    TAG_SOURCE_ACCOUNT,
    TAG_SOURCE_REGION,
    TAG_SOURCE_SNAPSHOT,
    TAG_VAULT_ACCOUNT,
    TAG_VAULT_REGION,
    TAG_VAULT_RETENTION,
    parse_count,
    tag_map,
)

VAULT_ROLE_ENV, VAULT_ROLE = "VAULT_ROLE_NAME", "ebs-snapshot-vault-writer"
# The only accounts a Vault_Account tag may name (template parameter VaultAccountIds): anyone
# who can tag an instance could otherwise send its snapshots to an account of their own.
VAULT_ACCOUNTS_ENV = "VAULT_ACCOUNT_IDS"
# The accounts, besides this one, whose KMS keys a Copy_KmsKeyId may name (template parameter
# CopyKmsKeyAccountIds): an organisation's central key account.
KMS_ACCOUNTS_ENV = "COPY_KMS_ACCOUNT_IDS"


def vault_target(
    tags: Mapping[str, str], enabled: Collection[str], home: str
) -> tuple[str | None, list[str], list[tuple[str, str]]]:
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
    regions: list[str] = []
    problems: list[tuple[str, str]] = []
    for entry in re.split(r"[\s,]+", tags.get(TAG_VAULT_REGION, "").strip()):
        if entry and entry not in regions and (entry in enabled or entry == home):
            regions.append(entry)
        elif entry and entry not in regions:
            reason = "is not an enabled region of this account; dropped"
            problems.append((TAG_VAULT_REGION, f"{TAG_VAULT_REGION} entry {entry!r} {reason}"))
    return account, regions or [home], problems


def vault_retention(tags: Mapping[str, str]) -> tuple[int | None, list[tuple[str, str]]]:
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


def env_accounts(name: str) -> set[str]:
    """The 12-digit account ids in the environment variable ``name``, separated by commas
    or spaces (anything else in it is ignored)."""
    ids = re.split(r"[\s,]+", os.environ.get(name, "").strip())
    return {i for i in ids if re.fullmatch(r"[0-9]{12}", i)}


def vault_accounts() -> set[str]:
    """The vault accounts this stack may copy into: VAULT_ACCOUNT_IDS (template parameter
    VaultAccountIds; none: no vault copies at all)."""
    return env_accounts(VAULT_ACCOUNTS_ENV)


def key_refusal(key: str, own: Callable[[], str | None]) -> str | None:
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
    account = own()
    if named[1] == account:
        return None
    allowed = f"{KMS_ACCOUNTS_ENV} (template parameter CopyKmsKeyAccountIds)"
    this = "this one" if account else "this one (whose id could not be read)"
    return f"{TAG_COPY_KMS_KEY} {key!r} is a key of account {named[1]}, not {this} nor {allowed}"


def own_account(context: LambdaContext, region: str, budget: Budget | None = None) -> str | None:
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


def caller_account(region: str, budget: Budget | None = None) -> str:
    """This account's id (sts:GetCallerIdentity, which needs no permission)."""
    return make_client("sts", region, budget).get_caller_identity()["Account"]


def vault_client(
    account: str, region: str, budget: Budget | None = None, pacer: Guard | None = None
) -> Client:
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


def vault_copy_states(
    vault_ec2: Client, region: str, account: str, ids: list[str] | None = None
) -> tuple[dict[str, str], list[dict[str, Any]]]:
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
    states: dict[str, str] = {}
    lockable: list[dict[str, Any]] = []
    for snap in paginate(
        vault_ec2, "describe_snapshots", "Snapshots", OwnerIds=["self"], Filters=filters
    ):
        source = tag_map(snap).get(TAG_SOURCE_SNAPSHOT)
        if source and states.get(source) != "completed":
            states[source] = snap["State"]
        if TAG_LOCK in tag_map(snap):
            lockable.append(snap)
    return states, lockable
