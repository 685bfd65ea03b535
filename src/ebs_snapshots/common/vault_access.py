"""A vault through its writer role: the client (session tagged with this account), its copies."""

import os
from typing import Any

import boto3

from ebs_snapshots.common.aws import Guard, caller_account, make_client, paginate
from ebs_snapshots.common.budget import Budget, Client
from ebs_snapshots.common.locks import TAG_LOCK
from ebs_snapshots.common.tags import (
    TAG_SOURCE_ACCOUNT,
    TAG_SOURCE_REGION,
    TAG_SOURCE_SNAPSHOT,
    tag_map,
)

VAULT_ROLE_ENV, VAULT_ROLE = "VAULT_ROLE_NAME", "ebs-snapshot-vault-writer"


def vault_client(
    account: str,
    region: str,
    budget: Budget | None = None,
    pacer: Guard | None = None,
    role: str | None = None,
) -> Client:
    """An EC2 client of the vault account ``account`` in ``region``, through its writer role
    (sts:AssumeRole; the role's name is VAULT_ROLE_NAME, default ebs-snapshot-vault-writer).
    The session is tagged Source_Account=<this account> (sts:GetCallerIdentity, which needs
    no permission): the writer role's trust policy requires it to be the caller's own
    account, and its policy lets a copy be tagged with no other Source_Account, so that no
    source sharing the vault can pass its copy off as another's. ``role``: another role of
    the vault (the restore's ebs-snapshot-vault-restorer), opened the same way."""
    role = role or os.environ.get(VAULT_ROLE_ENV, "").strip() or VAULT_ROLE
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
