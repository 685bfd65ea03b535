"""The vault's restorer role (vault-role.yaml, RestorerRole), evaluated with iam_eval: a
source account's session shares a copy back to that account alone, and changes nothing else."""

import json
from pathlib import Path

import pytest
from cfnlint.decode import cfn_yaml
from test_template import resolve
from test_vault_policy import SESSION, SNAPSHOT, SOURCE_A, SOURCE_B, VAULT_ACCOUNT

import ebs_snapshot_manager as manager
from testkit import iam_eval

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "vault-restorer-policy.json").read_text()
RESTORER = json.loads(TEXT)
ROLE = cfn_yaml.load(str(ROOT / "vault-role.yaml"))["Resources"]["RestorerRole"]["Properties"]
RESTORE_POLICY = json.loads((ROOT / "iam-policy-restore.json").read_text())
OWN_COPY = {"ec2:resourcetag/type": "Automated", "ec2:resourcetag/source_account": SOURCE_A}
EVERYTHING = {"Effect": "Allow", "Action": "*", "Resource": "*"}


def decision(action, context, policy=RESTORER, session=SESSION):
    return iam_eval.decision(policy, action, SNAPSHOT, session | context)


def test_the_template_role_is_vault_restorer_policy_json_and_the_restores_default():
    (policy,) = ROLE["Policies"]
    assert resolve(json.loads(json.dumps(policy["PolicyDocument"]))) == RESTORER
    assert ROLE["RoleName"] == manager.VAULT_RESTORER


def test_parliament_finds_nothing_above_low_in_the_restorer_policy():
    assert iam_eval.findings_above_low(TEXT) == []


def test_a_copy_is_shared_back_only_to_its_own_source_account():
    assert decision("ec2:ModifySnapshotAttribute", OWN_COPY | {"ec2:add/userid": SOURCE_A}) == (
        "allowed"
    )
    for read in ("ec2:DescribeSnapshots", "ec2:DescribeLockedSnapshots"):
        assert decision(read, {}) == "allowed"
    widened = {"Statement": [*RESTORER["Statement"], EVERYTHING]}
    for policy in (RESTORER, widened):
        for refused in (
            OWN_COPY | {"ec2:add/userid": SOURCE_B},  # to another account
            OWN_COPY | {"ec2:add/userid": [SOURCE_A, SOURCE_B]},  # beside it
            OWN_COPY | {"ec2:resourcetag/source_account": SOURCE_B, "ec2:add/userid": SOURCE_A},
            OWN_COPY | {"ec2:add/group": "all"},  # public
            OWN_COPY | {"ec2:remove/userid": SOURCE_A},  # unshared, even its own
            OWN_COPY | {"ec2:remove/group": "all"},
        ):
            got = decision("ec2:ModifySnapshotAttribute", refused, policy)
            assert got == "denied", (refused, policy is widened)
    # another source's session shares A's copy with B: not B's copy
    session_b = SESSION | {"aws:principaltag/source_account": SOURCE_B}
    to_b = OWN_COPY | {"ec2:add/userid": SOURCE_B}
    assert decision("ec2:ModifySnapshotAttribute", to_b, session=session_b) == "denied"
    # the vault's own account is the session's aws:PrincipalAccount: never a grantee
    to_vault = OWN_COPY | {"ec2:add/userid": VAULT_ACCOUNT}
    assert decision("ec2:ModifySnapshotAttribute", to_vault) == "denied"


NEVER = ["ec2:DeleteSnapshot", "ec2:CreateTags", "ec2:DeleteTags", "ec2:ResetSnapshotAttribute"]
NEVER += ["ec2:ModifySnapshotTier", "ec2:UnlockSnapshot", "ec2:CopySnapshot", "iam:PassRole"]


@pytest.mark.parametrize("action", NEVER)
def test_the_restorer_never_deletes_retags_or_does_anything_else(action):
    widened = {"Statement": [*RESTORER["Statement"], EVERYTHING]}
    for policy in (RESTORER, widened):
        assert decision(action, OWN_COPY, policy) == "denied", action


def test_a_session_that_does_not_say_its_account_can_do_nothing():
    untagged = {"aws:principalaccount": VAULT_ACCOUNT}
    for action in ("ec2:DescribeSnapshots", "ec2:ModifySnapshotAttribute"):
        context = OWN_COPY | {"ec2:add/userid": SOURCE_A}
        assert decision(action, context, session=untagged) == "denied", action


def test_the_restorer_trust_is_the_writers_for_people_of_the_source_accounts():
    trust = ROLE["AssumeRolePolicyDocument"]["Statement"]
    deny = next(s for s in trust if s["Effect"] == "Deny")
    assert deny["Condition"]["StringNotEquals"] == {
        "aws:RequestTag/Source_Account": "${aws:PrincipalAccount}"
    }
    for allow in (s for s in trust if s["Effect"] == "Allow"):
        both = allow["Condition"]["StringEquals"]["Fn::If"][1:]
        for condition in both:
            assert condition["aws:RequestTag/Source_Account"] == "${aws:PrincipalAccount}"


def test_the_person_who_restores_may_assume_only_the_restorer_role():
    role = f"arn:aws:iam::{VAULT_ACCOUNT}:role/{manager.VAULT_RESTORER}"
    for action in ("sts:AssumeRole", "sts:TagSession"):
        assert iam_eval.decision(RESTORE_POLICY, action, role, {}) == "allowed"
    writer = f"arn:aws:iam::{VAULT_ACCOUNT}:role/ebs-snapshot-vault-writer"
    assert iam_eval.decision(RESTORE_POLICY, "sts:AssumeRole", writer, {}) == "not allowed"
