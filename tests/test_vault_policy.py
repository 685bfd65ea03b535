"""The vault's guarantee, proved on the policies (moto does not evaluate IAM): nothing the
source account can do deletes a vault copy or moves its DeleteOn earlier.

The source account reaches the vault only through the writer role (EC2 snapshots have no
resource policy: the source's own EC2 permissions act on its own account only), and the
writer role can create copies and nothing else that changes one.
"""

import json
from pathlib import Path

import iam_eval
import pytest
from cfnlint.decode import cfn_yaml
from iam_eval import listed
from parliament import analyze_policy_string, enhance_finding
from test_template import VAULT_ACCOUNTS_PLACEHOLDER, problems, resolve

import ebs_snapshot_copier as copier

ROOT = Path(__file__).resolve().parent.parent
WRITER_TEXT = (ROOT / "vault-writer-policy.json").read_text()
WRITER = json.loads(WRITER_TEXT)
SOURCE = json.loads((ROOT / "iam-policy.json").read_text())
VAULT_TEMPLATE = cfn_yaml.load(str(ROOT / "vault-role.yaml"))
ROLE = VAULT_TEMPLATE["Resources"]["WriterRole"]["Properties"]
SNAPSHOT = "arn:aws:ec2:us-east-1::snapshot/snap-0123456789abcdef0"
VAULT_TAGS = {"Type", "DeleteOn", "Source_SnapshotId", "Source_Region", "Source_Account"}
VAULT_TAGS |= {"Source_VolumeId", "Lock", "Lock_CoolOffHours"}
# Every EC2 action that changes or removes a snapshot, its tags, its sharing or its lock.
HARMFUL = [
    "ec2:DeleteSnapshot",
    "ec2:DeleteTags",
    "ec2:ModifySnapshotAttribute",
    "ec2:ResetSnapshotAttribute",
    "ec2:ModifySnapshotTier",
    "ec2:UnlockSnapshot",
]


def decision(action, resource, context, policy=WRITER, caller=None):
    """ "allowed", "denied" (an explicit Deny) or "not allowed" (no Allow applies)."""
    return iam_eval.decision(policy, action, resource, context, caller)


def copy_request(tags):
    return {"aws:requesttag/" + k.lower(): v for k, v in tags.items()} | {"aws:tagkeys": list(tags)}


GOOD_COPY = {"Type": "Automated", "DeleteOn": "2027-01-01", "Source_SnapshotId": "snap-1"}


# ---- the writer role ---------------------------------------------------------------------


def test_the_template_role_is_vault_writer_policy_json_and_lints_clean():
    (policy,) = ROLE["Policies"]
    assert resolve(json.loads(json.dumps(policy["PolicyDocument"]))) == WRITER
    assert ROLE["RoleName"] == copier.VAULT_ROLE
    assert problems((ROOT / "vault-role.yaml").read_text()) == []


def test_parliament_finds_nothing_above_low_in_the_writer_policy():
    policy = analyze_policy_string(WRITER_TEXT)
    for finding in policy.findings:
        enhance_finding(finding)
    assert [f.issue for f in policy.findings if f.severity not in ("LOW", "INFO")] == []


def test_a_vault_copy_is_allowed_only_automated_with_a_delete_on_and_the_vault_tags():
    assert decision("ec2:CopySnapshot", SNAPSHOT, copy_request(GOOD_COPY)) == "allowed"
    every = dict.fromkeys(VAULT_TAGS, "x") | {"Type": "Automated"}
    assert decision("ec2:CopySnapshot", SNAPSHOT, copy_request(every)) == "allowed"
    for bad in (
        {},  # untagged
        {"Type": "Manual", "DeleteOn": "2027-01-01"},
        {"Type": "Automated"},  # no DeleteOn: never expired
        GOOD_COPY | {"KeepForever": "yes"},  # kept forever by the vault's manager
        GOOD_COPY | {"Backup": "yes"},
    ):
        assert decision("ec2:CopySnapshot", SNAPSHOT, copy_request(bad)) == "denied", bad


def test_the_copier_writes_only_what_the_writer_role_accepts():
    from datetime import date

    primary = {
        "id": "snap-1",
        "owner": "111122223333",
        "volume_id": "vol-1",
        "copy_delete_on": date(2027, 1, 1),
        "lock": {"LockMode": "compliance", "CoolOffPeriod": 24},
    }
    tags = copier.vault_tags(primary, "us-east-1")
    assert set(tags) <= VAULT_TAGS and tags["Type"] == "Automated" and "DeleteOn" in tags
    assert decision("ec2:CopySnapshot", SNAPSHOT, copy_request(tags)) == "allowed"


def test_tags_are_written_only_in_the_copy_call():
    inside = {"ec2:createaction": "CopySnapshot", "aws:tagkeys": ["DeleteOn"]}
    assert decision("ec2:CreateTags", SNAPSHOT, inside) == "allowed"
    # on an existing copy: no DeleteOn moved, no KeepForever, no Type changed
    for tags in ({"DeleteOn": "2020-01-01"}, {"Type": "Manual"}, {"KeepForever": "no"}):
        assert decision("ec2:CreateTags", SNAPSHOT, copy_request(tags)) == "denied"
    other = {"ec2:createaction": "CreateSnapshot"}
    assert decision("ec2:CreateTags", SNAPSHOT, other) == "denied"


@pytest.mark.parametrize("action", HARMFUL)
def test_the_writer_can_never_delete_untag_share_archive_or_unlock(action):
    for context in ({}, {"ec2:resourcetag/type": "Automated"}):
        assert decision(action, SNAPSHOT, context) == "denied"
        assert decision(action, "*", context) == "denied"


def test_nothing_else_is_allowed_even_after_an_edit_that_allows_everything():
    widened = {
        "Statement": [*WRITER["Statement"], {"Effect": "Allow", "Action": "*", "Resource": "*"}]
    }
    for action in [*HARMFUL, "ec2:CreateVolume", "iam:PutRolePolicy", "ebs:GetSnapshotBlock"]:
        assert decision(action, SNAPSHOT, {}, widened) == "denied", action
    retag = {"aws:requesttag/deleteon": "2020-01-01", "aws:tagkeys": ["DeleteOn"]}
    assert decision("ec2:CreateTags", SNAPSHOT, retag, widened) == "denied"


def test_the_writer_allows_exactly_what_the_copier_calls_in_the_vault():
    allowed = {
        a for s in WRITER["Statement"] if s["Effect"] == "Allow" for a in listed(s["Action"])
    }
    ec2 = {a for a in allowed if a.startswith("ec2:")}
    assert ec2 == {
        "ec2:DescribeSnapshots",
        "ec2:DescribeLockedSnapshots",
        "ec2:CopySnapshot",
        "ec2:CreateTags",
        "ec2:LockSnapshot",
    }
    kms = [s for s in WRITER["Statement"] if s["Effect"] == "Allow" and "kms:" in str(s)]
    for stmt in kms:
        assert stmt["Condition"]["StringLike"] == {"kms:ViaService": "ec2.*.amazonaws.com"}


VAULT_ACCOUNT = "222233334444"
ENCRYPT = ["kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptTo"]


def kms_request(key_account):
    return {
        "kms:viaservice": "ec2.us-east-1.amazonaws.com",
        "aws:principalaccount": VAULT_ACCOUNT,
        "aws:resourceaccount": key_account,
    }


@pytest.mark.parametrize("action", ENCRYPT)
def test_the_writer_encrypts_vault_copies_only_with_the_vaults_own_keys(action):
    # a key of the source (or any other account) could be scheduled for deletion by whoever
    # holds it, leaving the vault copies made under it unreadable
    key = "arn:aws:kms:us-east-1:{}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    own = decision(action, key.format(VAULT_ACCOUNT), kms_request(VAULT_ACCOUNT))
    assert own == "allowed"
    for other in ("111122223333", "444455556666"):
        assert decision(action, key.format(other), kms_request(other)) == "denied"
    widened = {
        "Statement": [*WRITER["Statement"], {"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]
    }
    assert (
        decision(action, key.format("111122223333"), kms_request("111122223333"), widened)
        == "denied"
    )


def test_the_writer_reads_the_shared_snapshots_key_of_the_source():
    key = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    for action in ("kms:DescribeKey", "kms:Decrypt", "kms:ReEncryptFrom", "kms:CreateGrant"):
        assert decision(action, key, kms_request("111122223333")) == "allowed", action


def test_only_the_sources_snapshot_jobs_may_assume_the_writer_role():
    (trust,) = ROLE["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Action"] == "sts:AssumeRole"
    principals = trust["Principal"]["AWS"]["Fn::If"]
    assert principals[1:] == ["*", {"Ref": "SourceAccountIds"}]
    by_org, by_account = trust["Condition"]["StringEquals"]["Fn::If"][1:]
    assert by_org == {
        "aws:PrincipalOrgID": {"Ref": "SourceOrgId"},
        "aws:PrincipalTag/ebs-snapshot-lifecycle": "jobs",
    }
    assert by_account == {"aws:PrincipalTag/ebs-snapshot-lifecycle": "jobs"}
    source_role = cfn_yaml.load(str(ROOT / "template.yaml"))["Resources"]["Role"]["Properties"]
    assert {"Key": "ebs-snapshot-lifecycle", "Value": "jobs"} in source_role["Tags"]


# ---- the source role ---------------------------------------------------------------------


def test_the_source_reaches_a_vault_only_through_the_writer_role():
    sts = [s for s in SOURCE["Statement"] if any(a.startswith("sts:") for a in listed(s["Action"]))]
    (assume,) = sts
    assert assume["Action"] == "sts:AssumeRole" and assume["Effect"] == "Allow"
    assert assume["Resource"] == f"arn:aws:iam::*:role/{copier.VAULT_ROLE}"
    assert not any(
        a.startswith(("iam:", "organizations:", "ram:"))
        for s in SOURCE["Statement"]
        for a in listed(s["Action"])
    )


LISTED, UNLISTED = VAULT_ACCOUNTS_PLACEHOLDER[0], "444455556666"  # VaultAccountIds or not


def test_the_source_shares_only_automated_snapshots_with_listed_vaults_never_publicly():
    share = {"ec2:resourcetag/type": "Automated", "ec2:add/userid": LISTED}
    assert decision("ec2:ModifySnapshotAttribute", SNAPSHOT, share, SOURCE) == "allowed"
    unshare = {"ec2:resourcetag/type": "Automated", "ec2:remove/userid": LISTED}
    assert decision("ec2:ModifySnapshotAttribute", SNAPSHOT, unshare, SOURCE) == "allowed"
    manual = {"ec2:resourcetag/type": "Manual", "ec2:add/userid": LISTED}
    assert decision("ec2:ModifySnapshotAttribute", SNAPSHOT, manual, SOURCE) == "not allowed"
    public = {"ec2:resourcetag/type": "Automated", "ec2:add/group": "all"}
    assert decision("ec2:ModifySnapshotAttribute", SNAPSHOT, public, SOURCE) == "denied"
    # an account someone tagged an instance with, alone or beside a listed one
    for ids in (UNLISTED, [LISTED, UNLISTED]):
        other = {"ec2:resourcetag/type": "Automated", "ec2:add/userid": ids}
        assert decision("ec2:ModifySnapshotAttribute", SNAPSHOT, other, SOURCE) == "denied"


def test_the_source_assumes_the_writer_role_of_listed_vaults_only():
    role = f"arn:aws:iam::{{}}:role/{copier.VAULT_ROLE}"
    listed_role = {"aws:resourceaccount": LISTED}
    assert decision("sts:AssumeRole", role.format(LISTED), listed_role, SOURCE) == "allowed"
    unlisted = {"aws:resourceaccount": UNLISTED}
    assert decision("sts:AssumeRole", role.format(UNLISTED), unlisted, SOURCE) == "not allowed"
    other_role = f"arn:aws:iam::{LISTED}:role/admin"
    assert decision("sts:AssumeRole", other_role, listed_role, SOURCE) == "not allowed"


def calls_in_jobs(names):
    """The boto3 methods among ``names`` that the job files call."""
    import ast

    found = set()
    for job in ("creator", "copier", "manager"):
        tree = ast.parse((ROOT / f"ebs_snapshot_{job}.py").read_text())
        found |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)} & names
    return found


def test_the_source_policy_grants_the_sts_and_direct_kms_calls_the_code_makes():
    assert calls_in_jobs({"assume_role", "describe_key", "get_caller_identity"}) == {
        "assume_role",
        "describe_key",
    }
    (describe,) = [s for s in SOURCE["Statement"] if s["Sid"] == "ReadWhoManagesAPrimarysKey"]
    assert describe["Action"] == "kms:DescribeKey" and "Condition" not in describe
    assert describe["Resource"] == "arn:aws:kms:*:*:key/*"


def test_the_vault_settings_reach_the_copier_with_the_copiers_defaults():
    template = cfn_yaml.load(str(ROOT / "template.yaml"))
    variables = template["Resources"]["CopierFunction"]["Properties"]["Environment"]["Variables"]
    assert variables[copier.SHARE_KEY_ENV] == {"Ref": "VaultShareKmsKey"}
    assert variables[copier.VAULT_KEY_ENV] == {"Ref": "VaultKmsKey"}
    params = template["Parameters"]
    assert params["VaultShareKmsKey"]["Default"] == params["VaultKmsKey"]["Default"] == ""


# EBS user guide, "Share the KMS key used to encrypt a shared Amazon EBS snapshot": the
# actions a user of a shared key needs on it.
SHARED_KEY_ACTIONS = ["DescribeKey", "CreateGrant", "GenerateDataKey"]
SHARED_KEY_ACTIONS += ["GenerateDataKeyWithoutPlaintext", "ReEncrypt", "Decrypt"]


def test_the_readmes_share_key_statement_grants_what_the_ebs_guide_lists():
    readme = (ROOT / "README.md").read_text()
    statement = readme.split('"Sid": "VaultAccountCopiesSharedSnapshots"')[1].split("\n}")[0]
    grants = readme.split('"Sid": "VaultAccountGrantsToEBS"')[1].split("\n}")[0]
    for action in SHARED_KEY_ACTIONS:
        wanted = "kms:ReEncrypt*" if action == "ReEncrypt" else f'"kms:{action}"'
        assert wanted in statement + grants, action


def test_the_writer_may_use_each_listed_action_on_the_vaults_own_key():
    key = f"arn:aws:kms:us-east-1:{VAULT_ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    for action in SHARED_KEY_ACTIONS:
        names = ["ReEncryptFrom", "ReEncryptTo"] if action == "ReEncrypt" else [action]
        for name in names:
            got = decision(f"kms:{name}", key, kms_request(VAULT_ACCOUNT))
            assert got == "allowed", name


def test_the_writer_locks_only_automated_snapshots_in_the_vault():
    # what it can lock, in any mode and for any time, is documented in the README (what
    # remains to the source): IAM offers no key to tie a lock to the copy's DeleteOn
    automated = {"ec2:resourcetag/type": "Automated"}
    assert decision("ec2:LockSnapshot", SNAPSHOT, automated) == "allowed"
    for context in ({}, {"ec2:resourcetag/type": "Manual"}):
        assert decision("ec2:LockSnapshot", SNAPSHOT, context) == "not allowed"
    assert decision("ec2:UnlockSnapshot", SNAPSHOT, automated) == "denied"


def rule_value(node, params):
    """A vault-role.yaml Rules assertion's value for these parameter values (CloudFormation
    splits a CommaDelimitedList, so an empty one is [""])."""
    ((function, arg),) = node.items() if isinstance(node, dict) else [("value", node)]
    if function == "value":
        return node
    if function == "Ref":
        return params[arg]
    values = [rule_value(a, params) for a in arg]
    if function == "Fn::Or":
        return any(values)
    if function == "Fn::Not":
        return not values[0]
    if function == "Fn::Equals":
        return values[0] == values[1]
    assert function == "Fn::Contains", function
    return values[1] in values[0]


@pytest.mark.parametrize(
    ("accounts", "org", "refused"),
    [
        ("111122223333", "", False),
        ("111122223333,444455556666", "", False),
        ("", "o-abc123def4", False),
        ("", "", True),
        ("111122223333", "o-abc123def4", True),  # one of the two would be silently ignored
    ],
)
def test_the_vault_role_takes_source_accounts_or_an_organization_not_both(accounts, org, refused):
    params = {"SourceAccountIds": accounts.split(","), "SourceOrgId": org}
    broken = [
        name
        for name, rule in VAULT_TEMPLATE["Rules"].items()
        if not all(rule_value(a["Assert"], params) for a in rule["Assertions"])
    ]
    assert bool(broken) == refused
