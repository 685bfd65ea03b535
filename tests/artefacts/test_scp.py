"""scp-protect-backups.json, the optional Service Control Policy, evaluated (moto evaluates
no IAM, nor AWS Organizations).

An SCP grants nothing: a request in a member account needs an Allow in the SCPs (the
FullAWSAccess policy AWS Organizations attaches by default) and in the caller's own policies,
and any Deny wins (AWS Organizations user guide, "Service control policies (SCPs)"). SCPs do
not affect the management account, nor service-linked roles: what docs/immutable-backups.md
says.
"""

import json
from pathlib import Path

import pytest
from cfnlint.decode import cfn_yaml

import ebs_snapshot_manager as manager
from testkit import iam_eval

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "scp-protect-backups.json").read_text()
SCP = json.loads(TEXT)
IAM = json.loads((ROOT / "iam-policy.json").read_text())
WRITER = json.loads((ROOT / "vault-writer-policy.json").read_text())
FULL_AWS_ACCESS = {"Effect": "Allow", "Action": "*", "Resource": "*"}
ORG = {"Statement": [*SCP["Statement"], FULL_AWS_ACCESS]}

ACCOUNT = "111122223333"
SNAPSHOT = "arn:aws:ec2:us-east-1::snapshot/snap-0123456789abcdef0"
# The template's role: a generated name under the path /ebs-snapshot-lifecycle/
JOBS = f"arn:aws:iam::{ACCOUNT}:role/ebs-snapshot-lifecycle/ebs-snapshots-Role-1AB2C3D4E5F6"
PEOPLE = {
    "an administrator": f"arn:aws:iam::{ACCOUNT}:role/Admin",
    "the root user": f"arn:aws:iam::{ACCOUNT}:root",
    "an IAM user": f"arn:aws:iam::{ACCOUNT}:user/alice",
    "a role named like the jobs' but not under their path": (
        f"arn:aws:iam::{ACCOUNT}:role/ebs-snapshots-Role-1AB2C3D4E5F6"
    ),
    "the vault writer role": f"arn:aws:iam::{ACCOUNT}:role/ebs-snapshot-vault-writer",
}
AUTOMATED = {"ec2:resourcetag/type": "Automated"}


def org(action, context, principal, resource=SNAPSHOT):
    """What the organization's SCPs decide for this principal's request."""
    return iam_eval.decision(ORG, action, resource, {"aws:principalarn": principal} | context)


def effective(action, context, principal, policy, resource=SNAPSHOT):
    """The SCPs and the principal's own policy: both must allow, a Deny in either wins."""
    own = iam_eval.decision(policy, action, resource, context)
    return iam_eval.combined(org(action, context, principal, resource), own)


def tagging(tags, create_action=None):
    context = AUTOMATED | {f"aws:requesttag/{k.lower()}": v for k, v in tags.items()}
    context["aws:tagkeys"] = list(tags)
    if create_action:
        context["ec2:createaction"] = create_action
    return context


def untagging(keys):
    return AUTOMATED | ({"aws:tagkeys": keys} if keys is not None else {})


# ---- the document ------------------------------------------------------------------------


def test_it_is_an_scp_parliament_finds_nothing_above_low_and_it_fits():
    assert SCP["Version"] == "2012-10-17"
    sids = [s["Sid"] for s in SCP["Statement"]]
    assert len(sids) == len(set(sids))
    # "The following elements aren't supported in SCPs: NotPrincipal, Principal" (SCP syntax)
    assert not any({"Principal", "NotPrincipal"} & set(s) for s in SCP["Statement"])
    # it only refuses: an SCP grants nothing, the default FullAWSAccess does the allowing
    assert {s["Effect"] for s in SCP["Statement"]} == {"Deny"}
    assert len(TEXT) <= 5120  # AWS Organizations quotas: an SCP's maximum size, characters
    assert iam_eval.findings_above_low(TEXT) == []


def test_it_exempts_exactly_the_path_the_templates_role_has():
    role = cfn_yaml.load(str(ROOT / "template.yaml"))["Resources"]["Role"]["Properties"]
    assert role["Path"] == "/ebs-snapshot-lifecycle/"
    (stmt,) = [s for s in SCP["Statement"] if "aws:PrincipalArn" in json.dumps(s)]
    pattern = stmt["Condition"]["ArnNotLike"]["aws:PrincipalArn"]
    # IAM user guide: for a role, aws:PrincipalArn is the role's ARN (its path included)
    arn = f"arn:aws:iam::{ACCOUNT}:role{role['Path']}ebs-snapshots-Role-XYZ"
    assert iam_eval.holds("ArnLike", "aws:PrincipalArn", pattern, {"aws:principalarn": arn})


# ---- deleting ----------------------------------------------------------------------------


@pytest.mark.parametrize("who", list(PEOPLE))
def test_nobody_but_the_jobs_deletes_an_automated_snapshot(who):
    assert org("ec2:DeleteSnapshot", AUTOMATED, PEOPLE[who]) == "denied"
    # what is not the jobs' is not the SCP's business
    manual = {"ec2:resourcetag/type": "Manual"}
    assert org("ec2:DeleteSnapshot", manual, PEOPLE[who]) == "allowed"
    assert org("ec2:DeleteSnapshot", {}, PEOPLE[who]) == "allowed"


def test_the_jobs_delete_what_their_own_policy_lets_them():
    assert org("ec2:DeleteSnapshot", AUTOMATED, JOBS) == "allowed"
    assert effective("ec2:DeleteSnapshot", AUTOMATED, JOBS, IAM) == "allowed"
    kept = AUTOMATED | {"ec2:resourcetag/keepforever": "yes"}
    assert effective("ec2:DeleteSnapshot", kept, JOBS, IAM) == "denied"


# ---- untagging ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "keys", [["Type"], ["type"], ["DeleteOn"], ["KeepForever"], ["keepforever"], ["Lock"], None]
)
@pytest.mark.parametrize("principal", [*PEOPLE.values(), JOBS])
def test_no_one_removes_type_delete_on_keep_forever_or_lock(keys, principal):
    # None: DeleteTags naming no key, which removes every tag
    assert org("ec2:DeleteTags", untagging(keys), principal) == "denied"


def test_the_manager_still_replaces_restore_requests():
    for keys in (["Restore"], ["Restore", "Archive"], ["Restore_Requested"]):
        assert effective("ec2:DeleteTags", untagging(keys), JOBS, IAM) == "allowed", keys
    assert org("ec2:DeleteTags", untagging(["Name"]), PEOPLE["an administrator"]) == "allowed"


# ---- tagging -----------------------------------------------------------------------------

VALUES = ["yes", "Yes", "", "2030-01-01", "no", "No", "NO", "false", "0", "off", "OFF", " no"]


@pytest.mark.parametrize("key", ["KeepForever", "keepforever"])
@pytest.mark.parametrize("value", VALUES)
def test_a_person_may_add_keep_forever_but_never_release_a_snapshot(key, value):
    released = value.lower() in manager.FALSE_WORDS
    context = tagging({key: value})
    assert org("ec2:CreateTags", context, PEOPLE["an administrator"]) == (
        "denied" if released else "allowed"
    )


@pytest.mark.parametrize("key", ["DeleteOn", "Type", "type", "Lock"])
@pytest.mark.parametrize("principal", [*PEOPLE.values(), JOBS])
def test_type_delete_on_and_lock_are_never_rewritten_on_an_existing_snapshot(key, principal):
    value = {"DeleteOn": "2020-01-01", "Lock": "No"}.get(key, "Manual")
    assert org("ec2:CreateTags", tagging({key: value}), principal) == "denied"


@pytest.mark.parametrize("action", ["CreateSnapshot", "CreateSnapshots", "CopySnapshot"])
def test_tags_written_in_the_create_call_pass(action):
    tags = {"Type": "Automated", "DeleteOn": "2030-01-01", "Lock": "governance"}
    context = tagging(tags, create_action=action)
    assert org("ec2:CreateTags", context, PEOPLE["an administrator"]) == "allowed"
    assert effective("ec2:CreateTags", context, JOBS, IAM) == "allowed"


def test_the_vault_writers_tagged_copies_pass_in_a_member_account():
    tags = {"Type": "Automated", "DeleteOn": "2030-01-01", "Source_Account": "444455556666"}
    context = tagging(tags, create_action="CopySnapshot")
    context["aws:principaltag/source_account"] = "444455556666"  # its session (vault copies)
    writer = PEOPLE["the vault writer role"]
    assert effective("ec2:CreateTags", context, writer, WRITER) == "allowed"
    assert effective("ec2:CopySnapshot", context, writer, WRITER) == "allowed"


@pytest.mark.parametrize(
    "tags",
    [
        {"KeepForever": "yes"},  # carried onto copies
        {"Copy_State": "done"},
        {"RestoreDrill": "2026-12-04 ok 7s"},
        {"Archive_Note": "kept standard"},
        {"Restore_Requested": "2026-12-04"},
    ],
)
def test_the_tags_the_jobs_write_later_pass(tags):
    assert effective("ec2:CreateTags", tagging(tags), JOBS, IAM) == "allowed"


VOLUME = "arn:aws:ec2:us-east-1:111122223333:volume/vol-0123456789abcdef0"


@pytest.mark.parametrize("key", ["Type", "DeleteAfter", "Source_SnapshotId", "type"])
@pytest.mark.parametrize("principal", [*PEOPLE.values(), JOBS])
def test_nobody_dresses_an_existing_volume_as_a_restore_drill(key, principal):
    """The manager deletes a leftover drill volume by what EC2 sets and its tags; written
    after the volume was made, those tags could dress a detached data volume as a drill."""
    context = tagging({key: "RestoreDrill"})
    assert org("ec2:CreateTags", context, principal, VOLUME) == "denied"


def test_the_managers_drill_volumes_are_still_tagged_in_their_create_call():
    tags = {"Type": "RestoreDrill", "Source_SnapshotId": "snap-1", "DeleteAfter": "2030-01-01"}
    context = tagging(tags, create_action="CreateVolume")
    assert effective("ec2:CreateTags", context, JOBS, IAM, VOLUME) == "allowed"
    other = tagging({"Name": "db-restore"})  # other tags of volumes: nothing to do with it
    assert org("ec2:CreateTags", other, PEOPLE["an administrator"], VOLUME) == "allowed"


# ---- the Recycle Bin's lock --------------------------------------------------------------


@pytest.mark.parametrize("principal", [*PEOPLE.values(), JOBS])
def test_nobody_in_a_member_account_unlocks_a_recycle_bin_rule(principal):
    rule = f"arn:aws:rbin:us-east-1:{ACCOUNT}:rule/6lsJ2Fa9nh9"
    assert org("rbin:UnlockRule", {}, principal, rule) == "denied"
    assert org("rbin:ListRules", {}, principal, "*") == "allowed"


def test_the_docs_say_what_each_statement_refuses_and_what_it_does_not_cover():
    text = (ROOT / "docs" / "immutable-backups.md").read_text()
    section = text[text.index("## The Service Control Policy") : text.index("## Whose keys")]
    rows = {
        cell
        for line in section.splitlines()
        if line.startswith("| `")
        for cell in line.split("|")[1].replace("`", "").strip().split(", ")
    }
    assert rows == {s["Sid"] for s in SCP["Statement"]}
    assert "SCPs don't affect users or roles in the management" in " ".join(section.split())
    assert "--content file://scp-protect-backups.json" in section
