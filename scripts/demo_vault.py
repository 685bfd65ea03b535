"""The vault act of `make demo`: two accounts in moto, five days.

The source account (moto's default) backs up one instance whose volume is encrypted with
the AWS managed key, tagged Copy_Dest (a regional copy) and Vault_Account (a vault copy,
kept Vault_Retention=2 days). The copier sweeps three times a morning: the staging copy
(the AWS managed key cannot be shared), then the share and the vault copy, then the unshare.
The vault account's own manager expires the vault copies; the source's managers expire its
primaries and copies. The jobs are the real modules; the vault is reached through moto's STS.
Snapshots are named, not shown by id (demo.Names): the act prints the same lines every run.
"""

import contextlib
import os
from datetime import timedelta

import boto3
from moto.core import DEFAULT_ACCOUNT_ID
from moto.moto_api._internal import mock_random

import ebs_snapshot_copier
import ebs_snapshot_creator
import ebs_snapshot_manager

SOURCE, VAULT = DEFAULT_ACCOUNT_ID, "222233334444"
EAST, WEST = "us-east-1", "eu-west-1"
DAYS = 5
SEED = 5
TAGS = {
    "Name": "pay-1",
    "Backup": "Yes",
    "Retention": "3",
    "Copy_Dest": WEST,
    "Vault_Account": VAULT,
    "Vault_Retention": "2",
}


@contextlib.contextmanager
def account(account_id, clock, now):
    """Run as ``account_id``, at ``now`` on moto's clock. The vault runs with moto's
    MOTO_ACCOUNT_ID; the source without it, so that credentials from STS AssumeRole still
    reach the role's account (MOTO_ACCOUNT_ID would send every call to one account)."""
    before = os.environ.pop("MOTO_ACCOUNT_ID", None)
    if account_id != SOURCE:
        os.environ["MOTO_ACCOUNT_ID"] = account_id
    try:
        with clock(now):
            yield
    finally:
        os.environ.pop("MOTO_ACCOUNT_ID", None)
        if before is not None:
            os.environ["MOTO_ACCOUNT_ID"] = before


def run(module, region, now):
    try:
        return module.run({}, None, region=region, now=now)
    except module.JobFailed as failed:
        return failed.summary


def setup(clock, start, names):
    """The instance (encrypted volume, AWS managed key) and the share key, the day before;
    moto's ids from a seed, the same on every run. Its one volume is named pay-1."""
    mock_random.seed(SEED)
    with clock(start - timedelta(hours=12)):
        ec2 = boto3.client("ec2", region_name=EAST)
        (instance,) = ec2.run_instances(
            ImageId="ami-12345678",
            MinCount=1,
            MaxCount=1,
            BlockDeviceMappings=[
                {"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8, "Encrypted": True}}
            ],
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [{"Key": k, "Value": v} for k, v in TAGS.items()],
                }
            ],
        )["Instances"]
        names.of[instance["InstanceId"]] = TAGS["Name"]
        names.of[instance["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]] = TAGS["Name"]
        key = boto3.client("kms", region_name=EAST).create_key(Description="vault share key")
    return key["KeyMetadata"]["Arn"]


def lines_of(hour, job, where, summary, names):
    """Short lines for what one run did, snapshots by their ``names``."""
    head = f"  {hour}  {job:<8} {where:<17} "
    out = []
    for item in summary.get("created", []):
        out.append(f"{head}snapshot {item['snapshot_id']} (DeleteOn {item['delete_on']})")
    for item in summary.get("copied", []):
        if item.get("staging"):
            what = f"{item['snapshot_id']}, shareable"
        elif item.get("vault_account"):
            what = f"{item['snapshot_id']} in the vault's {item['dest_region']}"
        else:
            what = f"{item['snapshot_id']} in {item['dest_region']}"
        out.append(f"{head}{what} (DeleteOn {item['delete_on']})")
    for kind in ("shared", "unshared"):
        for item in summary.get(kind, []):
            out.append(f"{head}{kind} {item['snapshot_id']} with the vault")
    for item in summary.get("deleted", []):
        reason = item.get("reason", "")
        reason = "done" if reason.startswith("staging copy of") else reason
        out.append(f"{head}deleted {item['snapshot_id']} ({reason})")
    for item in summary.get("failures", []):
        out.append(f"{head}FAILED {item['id']}: {item['error']}")
    return [names(line) for line in out]


def inventory(account_id, region, names):
    with account(account_id, contextlib.nullcontext, None):
        snaps = boto3.client("ec2", region_name=region).describe_snapshots(OwnerIds=["self"])
    rows = []
    for snap in sorted(snaps["Snapshots"], key=lambda s: s["StartTime"]):
        delete_on = {t["Key"]: t["Value"] for t in snap.get("Tags", [])}.get("DeleteOn")
        where, name = f"{account_id}/{region}", names(snap["SnapshotId"])
        rows.append(f"  {where:<24} {name:<26} DeleteOn {delete_on}")
    return rows


PLACES = ((SOURCE, EAST), (SOURCE, WEST), (VAULT, EAST))


def play_days(plan, clock, start, names, out):
    """Each day of the act, each job of ``plan`` at its hour, in its account and region."""
    for n in range(DAYS):
        today = start + timedelta(days=n)
        out(f"Day {n + 1} ({today:%a %Y-%m-%d})")
        for hour, job, module, account_id, region, who in plan:
            h, m = map(int, hour.split(":"))
            now = today + timedelta(hours=h, minutes=m)
            with account(account_id, clock, now):
                summary = run(module, region, now)
            names.learn(summary)
            for line in lines_of(hour, job, f"{who} {region}", summary, names):
                out(line)


def play_vault(clock, start, names, out=print):
    """Five days of the vault act, snapshots named by ``names`` (a demo.Names)."""
    out(f"\nVault copies: source account {SOURCE}, vault account {VAULT} (moto, two accounts).")
    out("  pay-1 in us-east-1: " + ", ".join(f"{k}={v}" for k, v in TAGS.items() if k != "Name"))
    out("  its volume encrypted with the AWS managed key (aws/ebs)")
    os.environ["VAULT_SHARE_KMS_KEY"] = setup(clock, start, names)
    os.environ["RESTORE_DRILL"] = "off"  # the first act shows the drills
    os.environ["VAULT_ACCOUNT_IDS"] = VAULT  # the template's VaultAccountIds
    plan = [
        ("01:00", "manager", ebs_snapshot_manager, VAULT, EAST, "vault"),
        ("01:00", "manager", ebs_snapshot_manager, SOURCE, EAST, "source"),
        ("01:00", "manager", ebs_snapshot_manager, SOURCE, WEST, "source"),
        ("02:00", "creator", ebs_snapshot_creator, SOURCE, EAST, "source"),
        ("06:00", "copier", ebs_snapshot_copier, SOURCE, EAST, "source"),
        ("06:15", "copier", ebs_snapshot_copier, SOURCE, EAST, "source"),
        ("06:30", "copier", ebs_snapshot_copier, SOURCE, EAST, "source"),
    ]
    try:
        play_days(plan, clock, start, names, out)
    finally:
        for name in ("VAULT_SHARE_KMS_KEY", "RESTORE_DRILL", "VAULT_ACCOUNT_IDS"):
            os.environ.pop(name, None)
    out(f"\nSnapshots after day {DAYS}, in both accounts:")
    for account_id, region in PLACES:
        for line in inventory(account_id, region, names):
            out(line)
    out(
        "\nThe vault keeps each copy Vault_Retention=2 days from its primary's creation; its own"
        "\nmanager deletes it then. The source could not: its copier reaches the vault only"
        "\nthrough the writer role, which creates copies and nothing else (vault-role.yaml)."
    )
