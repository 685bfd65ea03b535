"""The vault's guarantee, proved on the policies (moto does not evaluate IAM): nothing the
source account can do deletes a vault copy or moves its DeleteOn earlier.

The source account reaches the vault only through the writer role (EC2 snapshots have no
resource policy: the source's own EC2 permissions act on its own account only), and the
writer role can create copies and nothing else that changes one.
"""

import json
from pathlib import Path

import pytest
from cfnlint.decode import cfn_yaml
from test_template import VAULT_ACCOUNTS_PLACEHOLDER, problems, resolve

import ebs_snapshot_copier as copier
from testkit import iam_eval
from testkit.iam_eval import listed

ROOT = Path(__file__).resolve().parents[2]
LISTED = VAULT_ACCOUNTS_PLACEHOLDER[0]  # the vault: one of VaultAccountIds
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


VAULT_ACCOUNT = "222233334444"
SOURCE_A, SOURCE_B = "444455556666", "777788889999"  # two sources sharing one vault
# A writer session that source A opened: its requests in the vault carry the session tag as
# aws:PrincipalTag/Source_Account (IAM user guide, "Pass session tags in AWS STS").
SESSION = {"aws:principalaccount": VAULT_ACCOUNT, "aws:principaltag/source_account": SOURCE_A}


def decision(action, resource, context, policy=WRITER, caller=None, session=SESSION):
    """ "allowed", "denied" (an explicit Deny) or "not allowed" (no Allow applies). Any
    policy but the source's is evaluated for a request of ``session`` (default: source A's
    writer session; {}: a session without tags)."""
    if policy is not SOURCE:
        context = session | context
    return iam_eval.decision(policy, action, resource, context, caller)


def copy_request(tags):
    return {"aws:requesttag/" + k.lower(): v for k, v in tags.items()} | {"aws:tagkeys": list(tags)}


GOOD_COPY = {"Type": "Automated", "DeleteOn": "2027-01-01", "Source_SnapshotId": "snap-1"}
GOOD_COPY |= {"Source_Account": SOURCE_A}


# ---- the writer role ---------------------------------------------------------------------


def test_the_template_role_is_vault_writer_policy_json_and_lints_clean():
    (policy,) = ROLE["Policies"]
    assert resolve(json.loads(json.dumps(policy["PolicyDocument"]))) == WRITER
    assert ROLE["RoleName"] == copier.VAULT_ROLE
    assert problems((ROOT / "vault-role.yaml").read_text()) == []


def test_parliament_finds_nothing_above_low_in_the_writer_policy():
    assert iam_eval.findings_above_low(WRITER_TEXT) == []


def test_a_vault_copy_is_allowed_only_automated_with_a_delete_on_and_the_vault_tags():
    assert decision("ec2:CopySnapshot", SNAPSHOT, copy_request(GOOD_COPY)) == "allowed"
    every = dict.fromkeys(VAULT_TAGS, "x") | {"Type": "Automated", "Source_Account": SOURCE_A}
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
    # the session the copier opened for this account (its own id, as the trust requires)
    session = SESSION | {"aws:principaltag/source_account": primary["owner"]}
    assert tags["Source_Account"] == primary["owner"]
    assert decision("ec2:CopySnapshot", SNAPSHOT, copy_request(tags), session=session) == "allowed"


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
    assume, tag, deny = ROLE["AssumeRolePolicyDocument"]["Statement"]
    assert (assume["Action"], tag["Action"]) == ("sts:AssumeRole", "sts:TagSession")
    for stmt in (assume, tag):
        assert stmt["Principal"]["AWS"]["Fn::If"][1:] == ["*", {"Ref": "SourceAccountIds"}]
        by_org, by_account = stmt["Condition"]["StringEquals"]["Fn::If"][1:]
        own = {"aws:RequestTag/Source_Account": "${aws:PrincipalAccount}"}
        jobs = {"aws:PrincipalTag/ebs-snapshot-lifecycle": "jobs"}
        assert by_org == {"aws:PrincipalOrgID": {"Ref": "SourceOrgId"}} | jobs | own
        assert by_account == jobs | own
    assert deny["Effect"] == "Deny" and deny["Principal"] == {"AWS": "*"}
    source_role = cfn_yaml.load(str(ROOT / "template.yaml"))["Resources"]["Role"]["Properties"]
    assert {"Key": "ebs-snapshot-lifecycle", "Value": "jobs"} in source_role["Tags"]


# ---- Source_Account: a vault copy proves which source account made it -------------------

ORG = "o-abc123def4"
EVERYTHING = {"Effect": "Allow", "Action": "*", "Resource": "*"}
OF_B = {"ec2:resourcetag/source_account": SOURCE_B}
# whoever holds a source account's keys can give its own roles any permission
ALLOW_ALL = {"Statement": [EVERYTHING]}


def cfn(node, params):
    """vault-role.yaml's trust policy as CloudFormation deploys it with these parameters."""
    if isinstance(node, dict) and list(node) == ["Fn::If"]:
        condition, yes, no = node["Fn::If"]
        assert condition == "TrustOrg"
        return cfn(yes if params["SourceOrgId"] else no, params)
    if isinstance(node, dict) and list(node) == ["Ref"]:
        return params[node["Ref"]]
    if isinstance(node, dict):
        return {k: cfn(v, params) for k, v in node.items()}
    if isinstance(node, list):
        return [cfn(v, params) for v in node]
    return node


MODES = {
    "accounts": {"SourceAccountIds": [SOURCE_A, SOURCE_B], "SourceOrgId": ""},
    "organization": {"SourceAccountIds": [""], "SourceOrgId": ORG},
}


def trust(mode):
    return cfn(ROLE["AssumeRolePolicyDocument"], MODES[mode])


def assume(account, tags, trust_policy, identity=SOURCE, transitive=None):
    """A jobs role of ``account`` calls AssumeRole on the vault's writer role passing ``tags``
    (session tags; None: no Tags parameter) while carrying ``transitive`` incoming transitive
    session tags. Allowed only if the caller's identity policy and the role's trust policy
    allow sts:AssumeRole and, when tags are passed, sts:TagSession, and neither denies."""
    role = f"arn:aws:iam::{LISTED}:role/{copier.VAULT_ROLE}"
    caller = {"account": account, "arn": f"arn:aws:iam::{account}:role/jobs"}
    context = {
        "aws:principalaccount": account,
        "aws:principalorgid": ORG,
        "aws:principaltag/ebs-snapshot-lifecycle": "jobs",
        "aws:resourceaccount": LISTED,
    }
    request = (transitive or {}) | (tags or {})
    if request:
        context |= {f"aws:requesttag/{k.lower()}": v for k, v in request.items()}
        context["aws:tagkeys"] = list(request)
    if transitive:
        context |= {f"aws:principaltag/{k.lower()}": v for k, v in transitive.items()}
    found = []
    for action in ["sts:AssumeRole"] + (["sts:TagSession"] if tags else []):
        found.append(iam_eval.decision(identity, action, role, context))
        found.append(iam_eval.decision(trust_policy, action, role, context, caller))
    return iam_eval.combined(*found)


def widened_trust(mode):
    policy = trust(mode)
    anyone = EVERYTHING | {
        "Principal": {"AWS": "*"},
        "Action": ["sts:AssumeRole", "sts:TagSession"],
    }
    return {"Statement": [*policy["Statement"], anyone]}


@pytest.mark.parametrize("mode", list(MODES))
def test_a_source_opens_a_writer_session_only_in_its_own_name(mode):
    policy = trust(mode)
    own = {"Source_Account": SOURCE_A}
    # what the copier and the manager pass: their own account, from GetCallerIdentity
    assert assume(SOURCE_A, own, policy) == "allowed"
    assert assume(SOURCE_A, own, policy, identity=ALLOW_ALL) == "allowed"
    # B, holding all of its own keys, in A's name; or in no name; or with more tags
    for identity in (SOURCE, ALLOW_ALL):
        assert assume(SOURCE_B, own, policy, identity) == "denied"
        assert assume(SOURCE_B, None, policy, identity) == "denied"  # no Source_Account
    more = {"Source_Account": SOURCE_B, "Team": "x"}
    assert assume(SOURCE_B, more, policy, ALLOW_ALL) == "not allowed"
    # after an edit that adds an Allow for everyone, the Deny still refuses
    for tags in (own, None):
        assert assume(SOURCE_B, tags, widened_trust(mode), ALLOW_ALL) == "denied"


@pytest.mark.parametrize("in_request", [True, False])
def test_a_transitive_tag_carries_no_other_name_in(in_request):
    """B chains roles so that its jobs role carries an incoming transitive session tag
    Source_Account=<A> and passes none. Whether IAM counts an inherited tag among the
    request's aws:RequestTag is not documented: refused either way (in the request: not B's
    own id; not in it: no Source_Account at all). Passing Source_Account again beside an
    inherited one fails in STS itself (IAM user guide, "Chaining roles with session tags")."""
    chained = {"Source_Account": SOURCE_A}
    for mode in MODES:
        for policy in (trust(mode), widened_trust(mode)):
            transitive = chained if in_request else None
            got = assume(SOURCE_B, None, policy, ALLOW_ALL, transitive=transitive)
            assert got == "denied", mode


def forged(tags):
    """B's writer session copying into the vault with these tags."""
    session = SESSION | {"aws:principaltag/source_account": SOURCE_B}
    return copy_request(GOOD_COPY | tags), session


def test_a_session_copies_only_in_the_name_of_the_source_that_opened_it():
    assert decision("ec2:CopySnapshot", SNAPSHOT, copy_request(GOOD_COPY)) == "allowed"
    # B copies its own snapshot tagged with A's account and A's primary's id
    context, session_b = forged({"Source_Account": SOURCE_A, "Source_SnapshotId": "snap-a"})
    assert decision("ec2:CopySnapshot", SNAPSHOT, context, session=session_b) == "denied"
    mine, _ = forged({"Source_Account": SOURCE_B})
    assert decision("ec2:CopySnapshot", SNAPSHOT, mine, session=session_b) == "allowed"
    # a copy without Source_Account; a session without the tag (IAM: the variable has no
    # value, so StringEquals fails and StringNotEquals holds)
    unnamed = {k: v for k, v in GOOD_COPY.items() if k != "Source_Account"}
    assert decision("ec2:CopySnapshot", SNAPSHOT, copy_request(unnamed)) == "denied"
    untagged = {"aws:principalaccount": VAULT_ACCOUNT}
    for action in ("ec2:CopySnapshot", "ec2:DescribeSnapshots", "ec2:LockSnapshot"):
        got = decision(action, SNAPSHOT, copy_request(GOOD_COPY), session=untagged)
        assert got == "denied", action
    widened = {"Statement": [*WRITER["Statement"], EVERYTHING]}
    assert decision("ec2:CopySnapshot", SNAPSHOT, context, widened, session=session_b) == "denied"
    got = decision("ec2:CopySnapshot", SNAPSHOT, copy_request(GOOD_COPY), widened, session=untagged)
    assert got == "denied"


def assume_role_calls():
    """Every assume_role call in the job files: its keyword arguments' source, by name."""
    import ast

    found = []
    for job in ("creator", "copier", "manager"):
        text = (ROOT / f"ebs_snapshot_{job}.py").read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "assume_role":
                found.append(
                    (job, {k.arg: ast.get_source_segment(text, k.value) for k in node.keywords})
                )
    return found


def test_the_jobs_open_each_writer_session_in_their_own_accounts_name():
    """The contract with the code: every AssumeRole of the writer role passes the session tag
    Source_Account (the caller's own id, read from sts:GetCallerIdentity, which needs no
    permission: STS API reference, GetCallerIdentity), the session name the docs name,
    and no TransitiveTagKeys."""
    calls = assume_role_calls()
    assert {job for job, _ in calls} >= {"copier", "manager"}
    for job, keywords in calls:
        assert "Tags" in keywords, job
        # the key, literally or by the job files' constant for it
        assert any(k in keywords["Tags"] for k in ('"Source_Account"', "TAG_SOURCE_ACCOUNT")), job
        assert keywords.get("RoleSessionName") == '"ebs-snapshot-lifecycle"', job
        assert "TransitiveTagKeys" not in keywords, job


# ---- the source role ---------------------------------------------------------------------


def test_the_source_reaches_a_vault_only_through_the_writer_role():
    sts = [s for s in SOURCE["Statement"] if any(a.startswith("sts:") for a in listed(s["Action"]))]
    assume, tag = sts
    assert (assume["Action"], tag["Action"]) == ("sts:AssumeRole", "sts:TagSession")
    for stmt in sts:
        assert stmt["Effect"] == "Allow"
        assert stmt["Resource"] == f"arn:aws:iam::*:role/{copier.VAULT_ROLE}"
        assert stmt["Condition"]["StringEquals"]["aws:ResourceAccount"] == [LISTED]
    assert not any(
        a.startswith(("iam:", "organizations:", "ram:"))
        for s in SOURCE["Statement"]
        for a in listed(s["Action"])
    )


UNLISTED = "444455556666"  # not one of VaultAccountIds


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


@pytest.mark.parametrize(
    ("tags", "transitive", "vault", "expected"),
    [
        ({"Source_Account": SOURCE_A}, None, LISTED, "allowed"),
        ({"Source_Account": SOURCE_B}, None, LISTED, "not allowed"),  # another account's id
        ({"Source_Account": SOURCE_A, "Team": "x"}, None, LISTED, "not allowed"),  # more keys
        ({"Source_Account": SOURCE_A}, ["Source_Account"], LISTED, "not allowed"),  # transitive
        ({"Source_Account": SOURCE_A}, None, UNLISTED, "not allowed"),  # not a listed vault
    ],
)
def test_the_source_tags_its_vault_sessions_only_with_its_own_account(
    tags, transitive, vault, expected
):
    context = {"aws:principalaccount": SOURCE_A, "aws:resourceaccount": vault}
    context |= {f"aws:requesttag/{k.lower()}": v for k, v in tags.items()}
    context["aws:tagkeys"] = list(tags)
    if transitive:
        context["sts:transitivetagkeys"] = transitive
    role = f"arn:aws:iam::{vault}:role/{copier.VAULT_ROLE}"
    assert decision("sts:TagSession", role, context, SOURCE) == expected


def calls_in_jobs(names):
    """The boto3 methods among ``names`` that the job files call."""
    import ast

    found = set()
    for job in ("creator", "copier", "manager"):
        tree = ast.parse((ROOT / f"ebs_snapshot_{job}.py").read_text())
        found |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)} & names
    return found


def test_the_source_policy_grants_the_sts_and_direct_kms_calls_the_code_makes():
    # GetCallerIdentity (the account the jobs name as Source_Account) needs no permission:
    # "No permissions are required to perform this operation" (STS API reference)
    assert calls_in_jobs({"assume_role", "describe_key", "get_caller_identity"}) == {
        "assume_role",
        "describe_key",
        "get_caller_identity",
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


def test_the_docs_share_key_statement_grants_what_the_ebs_guide_lists():
    readme = (ROOT / "docs" / "immutable-backups.md").read_text()
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


def test_the_writer_locks_only_automated_copies_of_the_calling_source():
    # what it can lock, in any mode and for any time, is documented in docs/immutable-backups.md
    # (what remains to the source): IAM offers no key to tie a lock to the copy's DeleteOn
    own = {"ec2:resourcetag/type": "Automated", "ec2:resourcetag/source_account": SOURCE_A}
    assert decision("ec2:LockSnapshot", SNAPSHOT, own) == "allowed"
    manual = own | {"ec2:resourcetag/type": "Manual"}
    assert decision("ec2:LockSnapshot", SNAPSHOT, manual) == "not allowed"
    # another source's copy, or one that names no source: refused, even after a widening
    widened = {"Statement": [*WRITER["Statement"], EVERYTHING]}
    for context in ({}, {"ec2:resourcetag/type": "Automated"}, own | OF_B):
        assert decision("ec2:LockSnapshot", SNAPSHOT, context) == "denied", context
        assert decision("ec2:LockSnapshot", SNAPSHOT, context, widened) == "denied", context
    assert decision("ec2:UnlockSnapshot", SNAPSHOT, own) == "denied"


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
