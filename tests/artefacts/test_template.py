"""template.yaml (AWS SAM) and the StackSet template rendered from it."""

import io
import json
import os
import re
import shutil
import subprocess
import types
import zipfile
from pathlib import Path

import pytest
from cfnlint.api import lint_all
from cfnlint.decode import cfn_yaml
from conftest import NOW, launch, snapshots

ROOT = Path(__file__).resolve().parents[2]

import ebs_snapshot_copier as copier  # noqa: E402
import ebs_snapshot_creator as creator  # noqa: E402
import ebs_snapshot_manager as manager  # noqa: E402
from scripts import stackset_template  # noqa: E402

TEMPLATE = json.loads(json.dumps(cfn_yaml.load(str(ROOT / "template.yaml"))))
RESOURCES = TEMPLATE["Resources"]
FUNCTIONS = {
    "creator": RESOURCES["CreatorFunction"],
    "copier": RESOURCES["CopierFunction"],
    "manager": RESOURCES["ManagerFunction"],
}


# iam-policy.json stands for VaultAccountIds with this placeholder (docs/deploy.md: replace it).
VAULT_ACCOUNTS_PLACEHOLDER = ["111122223333"]
OWN_ACCOUNT_PLACEHOLDER = "123456789012"  # iam-policy.json's "this account" (docs/deploy.md)


def resolve(node, partition="aws", suffix="amazonaws.com"):
    """Fn::Sub of the pseudo parameters, as CloudFormation does in the aws partition, and
    the VaultAccountIds parameter as iam-policy.json's placeholder list."""
    if node == {"Ref": "VaultAccountIds"}:
        return VAULT_ACCOUNTS_PLACEHOLDER
    if isinstance(node, dict) and list(node) == ["Fn::Sub"]:
        text = node["Fn::Sub"]
        text = text.replace("${AWS::Partition}", partition).replace("${AWS::URLSuffix}", suffix)
        return text.replace("${AWS::AccountId}", OWN_ACCOUNT_PLACEHOLDER)
    if isinstance(node, dict):
        return {k: resolve(v) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(v) for v in node]
    return node


def problems(text):
    """cfn-lint's errors and warnings (what its command line reports by default)."""
    return [str(m) for m in lint_all(text) if m.rule.id[0] in "EW"]


def holds(condition, **params):
    """CloudFormation's value of a condition (a Conditions entry or a Rules one) for these
    parameter values, the defaults for the rest. Fn::Equals compares strings, as there."""
    if isinstance(condition, str):
        return holds(TEMPLATE["Conditions"][condition], **params)
    ((function, arg),) = condition.items()
    if function == "Condition":
        return holds(arg, **params)
    if function == "Fn::Not":
        return not holds(arg[0], **params)
    if function in ("Fn::And", "Fn::Or"):
        answers = [holds(c, **params) for c in arg]
        return all(answers) if function == "Fn::And" else any(answers)
    assert function == "Fn::Equals", function
    return len({str(given(value, **params)) for value in arg}) == 1


def given(node, **params):
    """A template fragment as CloudFormation deploys it with these parameter values: each
    Fn::If decided, AWS::NoValue dropped, each parameter's Ref replaced by its value."""
    if isinstance(node, dict) and list(node) == ["Fn::If"]:
        condition, yes, no = node["Fn::If"]
        return given(yes if holds(condition, **params) else no, **params)
    if isinstance(node, dict) and list(node) == ["Ref"] and node["Ref"] in TEMPLATE["Parameters"]:
        parameter = TEMPLATE["Parameters"][node["Ref"]]
        value = params.get(node["Ref"], parameter.get("Default"))
        if parameter["Type"] == "CommaDelimitedList" and isinstance(value, str):
            return value.split(",")  # as CloudFormation splits it: "" is [""]
        return value
    if isinstance(node, dict) and list(node) == ["Fn::Join"]:
        separator, items = node["Fn::Join"]
        return separator.join(given(items, **params))
    if isinstance(node, dict) and list(node) == ["Fn::Split"]:
        separator, text = node["Fn::Split"]
        return given(text, **params).split(separator)
    if isinstance(node, dict):
        found = {k: given(v, **params) for k, v in node.items()}
        return {k: v for k, v in found.items() if v != {"Ref": "AWS::NoValue"}}
    if isinstance(node, list):
        return [v for v in (given(v, **params) for v in node) if v != {"Ref": "AWS::NoValue"}]
    return node


def references(node):
    """The logical ids a template fragment names: Ref, Fn::GetAtt, and Fn::Sub's ${Name} or
    ${Name.Attribute}."""
    text = json.dumps(node)
    return set(re.findall(r'"(?:Ref|Fn::GetAtt)": \[?"(\w+)', text)) | set(
        re.findall(r"\$\{(\w+)[.}]", text)
    )


def test_cfn_lint_finds_nothing():
    assert problems((ROOT / "template.yaml").read_text()) == []


def role_policy(**params):
    """The template role's policy as deployed with these parameters (VaultAccountIds as
    iam-policy.json's placeholder)."""
    (policy,) = RESOURCES["Role"]["Properties"]["Policies"]
    return given(resolve(policy["PolicyDocument"]), **params)


IAM_POLICY = json.loads((ROOT / "iam-policy.json").read_text())
CENTRAL = ["444455556666", "777788889999"]  # an organisation's central KMS key accounts


def test_the_role_has_exactly_the_permissions_of_iam_policy_json():
    assert role_policy() == IAM_POLICY  # CopyKmsKeyAccountIds empty, its default


def test_with_key_accounts_the_role_differs_only_by_those_accounts():
    """iam-policy.json lets the role encrypt only with keys of its own account; the template
    adds the accounts of CopyKmsKeyAccountIds to the same two statements, and nothing else."""
    widened = role_policy(CopyKmsKeyAccountIds=",".join(CENTRAL))
    changed = []
    for ours, theirs in zip(widened["Statement"], IAM_POLICY["Statement"], strict=True):
        if ours == theirs:
            continue
        changed.append(ours["Sid"])
        operator = "StringEquals" if ours["Effect"] == "Allow" else "StringNotEquals"
        accounts = ours["Condition"][operator]["aws:ResourceAccount"]
        assert accounts == [*theirs["Condition"][operator]["aws:ResourceAccount"], *CENTRAL]
        ours["Condition"][operator]["aws:ResourceAccount"] = accounts[: -len(CENTRAL)]
        assert ours == theirs
    assert changed == ["EncryptOnlyWithKeysOfThisAccount", "NeverEncryptWithAnotherAccountsKey"]


def test_the_role_can_only_be_assumed_by_lambda():
    (stmt,) = RESOURCES["Role"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert stmt["Principal"] == {"Service": "lambda.amazonaws.com"}


@pytest.mark.parametrize("job", list(FUNCTIONS))
def test_each_function_runs_its_own_file(job):
    props = FUNCTIONS[job]["Properties"]
    assert props["Handler"] == f"ebs_snapshot_{job}.lambda_handler"
    assert props["FunctionName"] == f"ebs-snapshot-{job}"  # the names the policy allows
    assert FUNCTIONS[job]["Metadata"]["BuildMethod"] == "makefile"
    target = re.search(
        rf"^build-{job.title()}Function:\n\t(.*)\n\t(.*)$", (ROOT / "Makefile").read_text(), re.M
    )
    # a stale job file (src edited, make build not run) is refused, never deployed
    assert target.group(1) == "$(PYTHON) -m scripts.build --check"
    assert target.group(2) == f"cp ebs_snapshot_{job}.py $(ARTIFACTS_DIR)/"


@pytest.mark.parametrize("job", list(FUNCTIONS))
def test_sam_build_copies_a_small_directory_not_the_checkout(job):
    """Issue 27. `sam build` copies a makefile function's CodeUri to a scratch directory
    (all of it but .git and .aws-sam), then runs make. With CodeUri `.` that was the
    checkout, .venv included: 5 minutes. CodeUri is src/ (milliseconds); make runs in the
    checkout (WorkingDirectory, outside CodeUri, so SAM leaves it there) with the root
    Makefile (ContextPath), and the job file stays at the root."""
    metadata = FUNCTIONS[job]["Metadata"]
    # No ProjectRootDirectory: it would replace CodeUri as what is copied.
    assert metadata == {"BuildMethod": "makefile", "ContextPath": ".", "WorkingDirectory": "."}
    copied = (ROOT / FUNCTIONS[job]["Properties"]["CodeUri"]).resolve()
    assert copied.is_dir() and ROOT in copied.parents
    assert sum(f.stat().st_size for f in copied.rglob("*") if f.is_file()) < 1_000_000
    working = (ROOT / metadata["WorkingDirectory"]).resolve()
    assert working == ROOT and copied not in (working, *working.parents)
    assert (working / f"ebs_snapshot_{job}.py").is_file()
    assert ((ROOT / metadata["ContextPath"]).resolve() / "Makefile").is_file()


@pytest.mark.skipif(not shutil.which("sam"), reason="no AWS SAM CLI (not a dev dependency)")
def test_sam_build_gives_each_function_its_one_job_file_in_seconds(tmp_path):
    """The real `sam build`, where the SAM CLI is installed. It took 5 minutes with .venv in
    the checkout it copied; now about 3 s, so a minute is plenty."""
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0"}
    build = ["sam", "build", "--template-file", str(ROOT / "template.yaml")]
    subprocess.run(
        [*build, "--build-dir", str(tmp_path / "build")],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    for job in FUNCTIONS:
        artifact = tmp_path / "build" / f"{job.title()}Function"
        assert [f.name for f in artifact.iterdir()] == [f"ebs_snapshot_{job}.py"]
        assert (artifact / f"ebs_snapshot_{job}.py").read_bytes() == (
            ROOT / f"ebs_snapshot_{job}.py"
        ).read_bytes()


@pytest.mark.parametrize("job", list(FUNCTIONS))
def test_each_function_logs_to_its_own_group_with_a_retention(job):
    group = FUNCTIONS[job]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    props = RESOURCES[group]["Properties"]
    assert props["LogGroupName"] == f"/aws/lambda/ebs-snapshot-{job}"
    assert props["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_runtime_timeout_and_memory_suit_thousands_of_volumes():
    function = TEMPLATE["Globals"]["Function"]
    assert re.fullmatch(r"python3\.1[3-9]", function["Runtime"])
    assert function["Timeout"] == 900  # the jobs stop 60 s before it and hand on the rest
    assert function["MemorySize"] >= 256


def test_schedules_in_utc_keep_the_order_the_jobs_need():
    creator = FUNCTIONS["creator"]["Properties"]
    assert creator["Events"]["Hourly"]["Properties"]["Schedule"] == "cron(0 * * * ? *)"
    assert creator["Environment"]["Variables"]["BACKUP_DAILY_HOUR"] == {"Ref": "DailyHour"}
    daily = TEMPLATE["Parameters"]["DailyHour"]
    assert (daily["MinValue"], daily["MaxValue"]) == (0, 23)
    schedule = FUNCTIONS["manager"]["Properties"]["Events"]["Daily"]["Properties"]["Schedule"]
    default = TEMPLATE["Parameters"][schedule["Ref"]]["Default"]
    manager = int(re.fullmatch(r"cron\(0 (\d+) \* \* \? \*\)", default).group(1))
    assert manager != daily["Default"]
    # An event older than its hour does nothing (the creator's RUN_WINDOW): Lambda drops it.
    assert creator["EventInvokeConfig"]["MaximumEventAgeInSeconds"] == 3600


def test_the_copier_sweeps_often_enough_to_keep_the_copy_slots_busy():
    params = TEMPLATE["Parameters"]
    interval = int(
        re.fullmatch(r"cron\(0/(\d+) \* \* \* \? \*\)", params["CopierSchedule"]["Default"]).group(
            1
        )
    )
    stay = params["CopierStayMinutes"]
    assert interval == 15  # all day: a sweep, and its stay, while copies wait
    # A sweep ends before the next begins, within Lambda's 15 minutes, whatever is chosen.
    assert stay["Default"] < interval and stay["MaxValue"] == copier.MAX_STAY_MINUTES < 15
    assert stay["Default"] == copier.STAY_MINUTES
    env = FUNCTIONS["copier"]["Properties"]["Environment"]["Variables"]
    assert env[copier.STAY_ENV] == {"Ref": "CopierStayMinutes"}


def test_the_copier_also_runs_when_a_snapshot_completes():
    event = FUNCTIONS["copier"]["Properties"]["Events"]["SnapshotCompleted"]
    assert event["Type"] == "EventBridgeRule"
    assert event["Properties"]["Pattern"] == {
        "source": ["aws.ec2"],
        "detail-type": ["EBS Snapshot Notification"],
        "detail": {"event": ["createSnapshot"], "result": ["succeeded"]},
    }


def test_async_retries_are_limited_and_runs_are_one_at_a_time_unless_the_account_cannot():
    for job, function in FUNCTIONS.items():
        props = function["Properties"]
        assert props["EventInvokeConfig"]["MaximumRetryAttempts"] <= 1, job
        assert props["ReservedConcurrentExecutions"] == {
            "Fn::If": ["Reserve", {"Ref": "ReservedConcurrency"}, {"Ref": "AWS::NoValue"}]
        }, job
    assert FUNCTIONS["manager"]["Properties"]["EventInvokeConfig"]["MaximumRetryAttempts"] == 0
    parameter = TEMPLATE["Parameters"]["ReservedConcurrency"]
    assert (parameter["Default"], parameter["MinValue"]) == (1, 0)
    assert "below its minimum value" in parameter["Description"]  # the error it avoids
    assert TEMPLATE["Conditions"]["Reserve"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ReservedConcurrency"}, 0]}]
    }


def test_a_dr_region_can_have_just_the_manager():
    """Jobs=manager: no creator or copier (nor their logs and alarms); the manager and the
    alarms of the copies it deletes stay."""
    assert TEMPLATE["Parameters"]["Jobs"]["AllowedValues"] == ["all", "manager"]
    assert TEMPLATE["Conditions"]["AllJobs"] == {"Fn::Equals": [{"Ref": "Jobs"}, "all"]}
    conditional = {n for n, r in RESOURCES.items() if r.get("Condition") == "AllJobs"}
    assert conditional == {n for n in RESOURCES if n.startswith(("Creator", "Copier"))}
    # two functions, their logs and three alarms each; fsfreeze; the creator's schedule alarms
    assert len(conditional) == 13
    for name in conditional - {"CreatorLogs", "CopierLogs"}:
        assert {"ManagerFunction", "ManagerLogs"}.isdisjoint(references(RESOURCES[name])), name
    for name in set(RESOURCES) - conditional:  # nothing else may need the two functions
        assert conditional.isdisjoint(references(given(RESOURCES[name], Jobs="manager"))), name
    outputs = TEMPLATE["Outputs"]
    assert outputs["CreatorFunctionArn"]["Condition"] == "AllJobs"
    assert outputs["CopierFunctionArn"]["Condition"] == "AllJobs"
    assert "Condition" not in outputs["ManagerFunctionArn"]


def test_the_settings_reach_the_jobs_that_read_them_and_the_defaults_agree():
    params = TEMPLATE["Parameters"]
    for job, variable, parameter, default in [
        (
            "manager",
            "COVERAGE_MAX_AGE_HOURS",
            "CoverageMaxAgeHours",
            manager.COVERAGE_MAX_AGE_HOURS,
        ),
        ("manager", "COPY_MAX_LAG_HOURS", "CopyMaxLagHours", creator.COPY_LAG_HOURS),
        ("copier", "COPY_MAX_LAG_HOURS", "CopyMaxLagHours", creator.COPY_LAG_HOURS),
        ("manager", "LAST_COPY_GRACE_DAYS", "LastCopyGraceDays", manager.LAST_COPY_GRACE_DAYS),
        ("manager", "RESTORE_DRILL_PER_RUN", "RestoreDrillsPerRun", manager.DRILLS_PER_RUN),
        ("manager", "RESTORE_DRILL", "RestoreDrill", "on"),
    ]:
        variables = FUNCTIONS[job]["Properties"]["Environment"]["Variables"]
        assert variables[variable] == {"Ref": parameter}, (job, variable)
        assert params[parameter]["Default"] == default, parameter
    # Lists of account ids: a CommaDelimitedList, joined for the jobs (commas or spaces).
    for job, variable, parameter, default in [
        ("creator", "COPY_KMS_ACCOUNT_IDS", "CopyKmsKeyAccountIds", ""),
        ("copier", "COPY_KMS_ACCOUNT_IDS", "CopyKmsKeyAccountIds", ""),
    ]:
        variables = FUNCTIONS[job]["Properties"]["Environment"]["Variables"]
        assert variables[variable] == {"Fn::Join": [",", {"Ref": parameter}]}, (job, variable)
        assert params[parameter] | {"Default": default} == params[parameter], parameter
        assert params[parameter]["Type"] == "CommaDelimitedList"
        assert given(variables[variable], **{parameter: "1,2"}) == "1,2"


def test_the_jobs_that_get_the_key_accounts_read_them(monkeypatch):
    """The contract with the code: the creator and the copier refuse a Copy_KmsKeyId of any
    account but their own and COPY_KMS_ACCOUNT_IDS (tests/test_tag_errors.py runs them)."""
    key = "arn:aws:kms:us-east-1:444455556666:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    for job in (creator, copier):
        monkeypatch.delenv(job.KMS_ACCOUNTS_ENV, raising=False)
        assert job.key_refusal(key, lambda: "123456789012"), job.JOB
        monkeypatch.setenv(job.KMS_ACCOUNTS_ENV, "444455556666")
        assert job.key_refusal(key, lambda: "123456789012") is None, job.JOB


# ---- the Recycle Bin ---------------------------------------------------------------------

RULE = RESOURCES["RecycleBinRule"]


@pytest.mark.parametrize("jobs", ["all", "manager"])
@pytest.mark.parametrize("days", [0, 1, 7, 365])
def test_the_recycle_bin_rule_exists_when_it_has_a_retention_whatever_the_jobs(jobs, days):
    """A DR region (Jobs=manager) deletes copies too: they need the bin as much."""
    created = holds(RULE["Condition"], Jobs=jobs, RecycleBinRetentionDays=days)
    assert created == (days > 0)
    output = TEMPLATE["Outputs"]["RecycleBinRuleArn"]
    assert output["Condition"] == RULE["Condition"]
    assert output["Value"] == {"Fn::GetAtt": ["RecycleBinRule", "Arn"]}
    assert TEMPLATE["Parameters"]["RecycleBinRetentionDays"]["Default"] == 7


def rule(**params):
    return given(RULE["Properties"], **params)


def test_by_default_the_rule_is_region_level_and_locked():
    """Issue 6a: a tag-level rule is skipped by whoever removes Type=Automated first, and
    cannot be locked; the default is the ransomware-proof one, a locked Region-level rule."""
    props = rule()
    assert "ResourceTags" not in props and "ExcludeResourceTags" not in props
    assert props["LockConfiguration"] == {"UnlockDelayUnit": "DAYS", "UnlockDelayValue": 7}
    assert props["RetentionPeriod"] == {"RetentionPeriodUnit": "DAYS", "RetentionPeriodValue": 7}
    assert props["Description"].startswith("Locked, Region-level")
    params = TEMPLATE["Parameters"]
    assert params["RecycleBinScope"]["Default"] == "region"
    assert params["RecycleBinScope"]["AllowedValues"] == ["region", "tag"]
    assert params["RecycleBinUnlockDelayDays"]["Default"] == 7


@pytest.mark.parametrize("days", [1, 7, 365])
def test_tag_level_the_rule_keeps_exactly_the_snapshots_the_jobs_make(days):
    props = rule(RecycleBinRetentionDays=days, RecycleBinScope="tag", RecycleBinUnlockDelayDays=0)
    assert props["ResourceType"] == "EBS_SNAPSHOT"
    assert props["RetentionPeriod"] == {"RetentionPeriodUnit": "DAYS", "RetentionPeriodValue": days}
    # The tag the role's policy makes every snapshot and copy of the jobs carry.
    assert props["ResourceTags"] == [
        {"ResourceTagKey": creator.TAG_TYPE, "ResourceTagValue": creator.AUTOMATED}
    ]
    (deny,) = [
        s
        for s in RESOURCES["Role"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        if s["Sid"] == "DenyUntaggedSnapshots"
    ]
    assert deny["Condition"]["StringNotEquals"] == {
        f"aws:RequestTag/{creator.TAG_TYPE}": creator.AUTOMATED
    }
    assert "LockConfiguration" not in props
    assert "ExcludeResourceTags" not in props
    assert "Region-level" not in props["Description"]


def test_region_level_unlocked_is_a_choice_too():
    props = rule(RecycleBinUnlockDelayDays=0)
    assert "ResourceTags" not in props and "LockConfiguration" not in props
    assert props["Description"].startswith("Region-level")


@pytest.mark.parametrize("delay", [7, 14, 30])
def test_locked_the_rule_is_region_level_as_aws_requires(delay):
    """AWS: "You can't lock tag-level retention rules, or Region-level retention rules that
    have exclusion tags" (the LockRule API). Locked, the rule keeps every deleted snapshot."""
    props = rule(RecycleBinRetentionDays=7, RecycleBinUnlockDelayDays=delay)
    assert props["LockConfiguration"] == {"UnlockDelayUnit": "DAYS", "UnlockDelayValue": delay}
    assert "ResourceTags" not in props
    assert "ExcludeResourceTags" not in props
    assert props["ResourceType"] == "EBS_SNAPSHOT"
    assert "Region-level" in props["Description"]
    # and the operator is told so before choosing it
    for name in ("RecycleBinUnlockDelayDays", "RecycleBinScope"):
        description = " ".join(TEMPLATE["Parameters"][name]["Description"].split())
        assert "Region-level" in description, name
    scope = " ".join(TEMPLATE["Parameters"]["RecycleBinScope"]["Description"].split())
    assert "EVERY deleted EBS snapshot of the region" in scope


def test_the_recycle_bin_parameters_allow_what_aws_allows():
    """Recycle Bin: 1-365 days for EBS snapshots; an unlock delay of 7-30 days. 0: none."""
    retention = TEMPLATE["Parameters"]["RecycleBinRetentionDays"]
    assert (retention["Type"], retention["MinValue"], retention["MaxValue"]) == ("Number", 0, 365)
    delay = TEMPLATE["Parameters"]["RecycleBinUnlockDelayDays"]
    assert delay["Type"] == "Number"
    assert delay["AllowedValues"] == [0, *range(7, 31)]


@pytest.mark.parametrize(
    ("days", "scope", "delay", "refused"),
    [
        (0, "region", 0, False),
        (7, "region", 0, False),
        (7, "region", 7, False),
        (365, "region", 30, False),
        (7, "tag", 0, False),
        (0, "region", 7, True),  # no rule to lock
        (0, "region", 30, True),
        (7, "tag", 7, True),  # AWS cannot lock a tag-level rule
        (0, "tag", 7, True),
    ],
)
def test_a_lock_without_a_region_level_rule_is_refused_at_deploy_time(days, scope, delay, refused):
    params = {
        "RecycleBinRetentionDays": days,
        "RecycleBinScope": scope,
        "RecycleBinUnlockDelayDays": delay,
    }
    broken = [
        name
        for name, rule in TEMPLATE["Rules"].items()
        if holds(rule.get("RuleCondition", {"Fn::Equals": [1, 1]}), **params)
        and not all(holds(a["Assert"], **params) for a in rule["Assertions"])
    ]
    assert bool(broken) == refused
    locked = holds("LockRecycleBin", **params)
    assert locked == (days > 0 and delay > 0 and scope == "region")


@pytest.mark.parametrize(
    ("days", "scope", "delay"),
    [(1, "tag", 0), (365, "region", 0), (7, "region", 7), (365, "region", 30)],
)
def test_the_rule_as_deployed_lints_clean(days, scope, delay):
    """With its values in place, cfn-lint checks them against the resource's schema."""
    props = rule(
        RecycleBinRetentionDays=days, RecycleBinScope=scope, RecycleBinUnlockDelayDays=delay
    )
    template = {"Resources": {"RecycleBinRule": {"Type": RULE["Type"], "Properties": props}}}
    assert problems(json.dumps(template)) == []


# ---- the StackSet template ---------------------------------------------------------------


@pytest.fixture(scope="module")
def stackset():
    return stackset_template.render()


def test_stackset_template_is_plain_cloudformation_and_lints_clean(stackset):
    assert "Transform" not in stackset
    assert not any(r["Type"].startswith("AWS::Serverless") for r in stackset["Resources"].values())
    assert problems(json.dumps(stackset)) == []
    text = json.dumps(stackset)
    assert not re.search(r"\b[a-z]{2}-[a-z]+-\d\b", text), "a region baked in"


# CloudFormation's limits, in bytes (KB, MB: powers of 1,000, the smaller reading of AWS's
# "1 MB" and "4MB"). A template given by URL: the CloudFormation quotas, "Template body size
# in an Amazon S3 object", and CreateStackSet's TemplateURL ("maximum size: 1 MB"). Inline
# code: AWS::Lambda::Function, Code.ZipFile ("This zip file cannot exceed 4MB").
TEMPLATE_URL_LIMIT = 1_000_000
INLINE_ZIP_LIMIT = 4_000_000
ABOUT = 0.05  # "about N KB" in the docs: within 5% of what is measured


def zipped(code):
    """The size of inline code as CloudFormation packages it: index.py, deflated."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("index.py", code)
    return len(buffer.getvalue())


SIZE_CLAIMS = re.compile(
    r"stackset\.json`? is about (?P<total>\d+) KB, a little over half of the 1 MB .*?"
    r"The largest, the (?P<job>\w+)'s, is about (?P<code>\d+) KB of source, under "
    r"(?P<zipped>\d+) KB zipped, far (?:below|under) the 4 MB zip"
)


@pytest.mark.parametrize("where", ["docs/deploy.md", "scripts/stackset_template.py"])
def test_the_stackset_template_is_the_size_the_docs_say(stackset, where):
    """Issue 27: the docstring said about 100 KB when it was 390. The sizes the docs and
    the script's docstring give, checked on build/stackset.json as make writes it."""
    written = len(stackset_template.dump(stackset).encode())
    code = {
        job: stackset["Resources"][f"{job.title()}Function"]["Properties"]["Code"]["ZipFile"]
        for job in FUNCTIONS
    }
    largest = max(code, key=lambda job: len(code[job].encode()))
    claims = SIZE_CLAIMS.search(" ".join((ROOT / where).read_text().split()))
    assert claims, f"{where} no longer states the StackSet template's size"
    measured = {
        "total": f"{written / 1000:.0f}",
        "job": largest,
        "code": f"{len(code[largest].encode()) / 1000:.0f}",
        "zipped": f"{zipped(code[largest]) / 1000:.0f}",
    }
    said = claims.groupdict()
    wrong = f"{where} says {said}, measured (KB) {measured}"
    assert said["job"] == largest, wrong
    assert abs(int(said["total"]) * 1000 / written - 1) <= ABOUT, wrong
    assert abs(int(said["code"]) * 1000 / len(code[largest].encode()) - 1) <= ABOUT, wrong
    assert zipped(code[largest]) < int(said["zipped"]) * 1000, wrong
    # The margins stated: a little over half the template limit (the manager's restore
    # modules, issue 30); the inline code, most of it.
    assert TEMPLATE_URL_LIMIT / 2 < written < TEMPLATE_URL_LIMIT * 0.6, wrong
    assert sum(len(json.dumps(c).encode()) for c in code.values()) > written / 2


def test_the_stackset_template_is_within_cloudformations_limits(stackset):
    assert len(stackset_template.dump(stackset).encode()) < TEMPLATE_URL_LIMIT
    for resource in stackset["Resources"].values():
        if resource["Type"] == "AWS::Lambda::Function":
            assert zipped(resource["Properties"]["Code"]["ZipFile"]) < INLINE_ZIP_LIMIT


@pytest.mark.parametrize("job", list(FUNCTIONS))
def test_stackset_functions_carry_their_job_file_inline(stackset, job):
    props = stackset["Resources"][f"{job.title()}Function"]["Properties"]
    assert props["Handler"] == "index.lambda_handler"
    assert props["Code"]["ZipFile"] == (ROOT / f"ebs_snapshot_{job}.py").read_text()


def test_the_inline_creator_runs_as_cloudformation_packages_it(stackset):
    """CloudFormation names inline code `index`; load it so and run it on moto."""
    index = types.ModuleType("index")
    code = stackset["Resources"]["CreatorFunction"]["Properties"]["Code"]["ZipFile"]
    exec(compile(code, "index.py", "exec"), index.__dict__)
    launch({"Backup": "Yes"})
    assert index.run({}, None, now=NOW)["counts"] == {"created": 1}
    assert len(snapshots()) == 1


# ---- alarms ------------------------------------------------------------------------------

# As deployed with Jobs=all (an alarm may watch only the jobs deployed: Fn::If on AllJobs).
ALARMS = {
    name: given(r["Properties"])
    for name, r in RESOURCES.items()
    if r["Type"] == "AWS::CloudWatch::Alarm"
}


def watched(props):
    """(namespace, metric, {dimension: value}, period) of each metric an alarm reads: its
    own, or each MetricStat of its metric math."""
    if "MetricName" in props:
        dims = {d["Name"]: d["Value"] for d in props["Dimensions"]}
        return [(props["Namespace"], props["MetricName"], dims, props["Period"])]
    found = []
    for query in props["Metrics"]:
        if "MetricStat" in query:
            metric = query["MetricStat"]["Metric"]
            dims = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
            found.append(
                (metric["Namespace"], metric["MetricName"], dims, query["MetricStat"]["Period"])
            )
    return found


def alarm_on(namespace, metric, **dimensions):
    """The alarms watching that metric with exactly those dimensions."""
    return [
        name
        for name, props in ALARMS.items()
        if any(w[:3] == (namespace, metric, dimensions) for w in watched(props))
    ]


def test_every_alarm_notifies_the_topic_and_says_what_it_means():
    assert RESOURCES["AlarmTopic"]["Type"] == "AWS::SNS::Topic"
    for name, props in ALARMS.items():
        assert props["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
        assert len(props["AlarmDescription"]) > 60, name
        window = max(w[3] for w in watched(props)) * props["EvaluationPeriods"]
        assert window <= (2 if name == "ManagerStoppedEarlyAlarm" else 1) * 86400, name


def test_the_email_subscription_exists_only_when_an_address_is_given():
    subscription = RESOURCES["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}
    assert TEMPLATE["Parameters"]["AlarmEmail"]["Default"] == ""
    assert TEMPLATE["Conditions"]["HasAlarmEmail"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]
    }


@pytest.mark.parametrize("job", list(FUNCTIONS))
def test_each_job_has_an_errors_a_failures_and_a_did_not_run_alarm(job):
    function = {"Ref": f"{job.title()}Function"}
    (errors,) = alarm_on("AWS/Lambda", "Errors", FunctionName=function)
    assert ALARMS[errors]["ComparisonOperator"] == "GreaterThanThreshold"
    assert ALARMS[errors]["Threshold"] == 0
    assert ALARMS[errors]["TreatMissingData"] == "notBreaching"
    region = {"Ref": "AWS::Region"}
    (failures,) = alarm_on(creator.METRIC_NAMESPACE, "Failures", job=job, region=region)
    assert (ALARMS[failures]["ComparisonOperator"], ALARMS[failures]["Threshold"]) == (
        "GreaterThanThreshold",
        0,
    )
    (not_run,) = alarm_on("AWS/Lambda", "Invocations", FunctionName=function)
    props = ALARMS[not_run]
    assert (props["Statistic"], props["ComparisonOperator"], props["Threshold"]) == (
        "Sum",
        "LessThanThreshold",
        1,
    )
    hours = 2 if job == "creator" else 24  # the creator runs every hour, the others daily
    assert props["Period"] * props["EvaluationPeriods"] == hours * 3600
    assert props["TreatMissingData"] == "breaching"  # no data is exactly "did not run"


def test_unprotected_volumes_alarm_fires_on_any_from_the_manager_or_the_copier():
    region = {"Ref": "AWS::Region"}
    names = {
        job: alarm_on(creator.METRIC_NAMESPACE, "UnprotectedVolumes", job=job, region=region)
        for job in ("manager", "copier")
    }
    assert names == {"manager": ["UnprotectedVolumesAlarm"], "copier": ["UnprotectedVolumesAlarm"]}
    props = ALARMS["UnprotectedVolumesAlarm"]
    (result,) = [q for q in props["Metrics"] if q["ReturnData"]]
    # A job that counted nothing writes no such metric: missing is 0, not "no alarm".
    assert result["Expression"] == "MAX([FILL(manager, 0), FILL(copier, 0)])"
    assert (props["ComparisonOperator"], props["Threshold"]) == ("GreaterThanThreshold", 0)


@pytest.mark.parametrize(
    ("metric", "name"),
    [("LastBackupsKept", "LastBackupsKeptAlarm"), ("ExpiredCopiesLeft", "ExpiredCopiesLeftAlarm")],
)
def test_the_managers_outage_alarms_fire_on_any(metric, name):
    region = {"Ref": "AWS::Region"}
    assert alarm_on(creator.METRIC_NAMESPACE, metric, job="manager", region=region) == [name]
    props = ALARMS[name]
    assert (props["ComparisonOperator"], props["Threshold"]) == ("GreaterThanThreshold", 0)
    assert (props["Period"], props["EvaluationPeriods"]) == (86400, 1)


def test_a_manager_that_stops_early_two_days_in_a_row_raises_an_alarm():
    region = {"Ref": "AWS::Region"}
    (name,) = alarm_on(creator.METRIC_NAMESPACE, "StoppedEarly", job="manager", region=region)
    props = ALARMS[name]
    assert (props["Period"], props["EvaluationPeriods"], props["DatapointsToAlarm"]) == (
        86400,
        2,
        2,
    )
    assert (props["ComparisonOperator"], props["Threshold"]) == ("GreaterThanThreshold", 0)


def test_snapshots_left_unlocked_raise_an_alarm():
    """The manager counts snapshots tagged Lock still not locked a day after creation; a DR
    region's copies can carry Lock too, so the alarm is there whatever the Jobs."""
    region = {"Ref": "AWS::Region"}
    assert creator.METRICS["LocksMissing"] == ("lock_missing", ("manager",))
    (name,) = alarm_on(creator.METRIC_NAMESPACE, "LocksMissing", job="manager", region=region)
    assert name == "LocksMissingAlarm"
    assert "Condition" not in RESOURCES[name]
    props = ALARMS[name]
    assert (props["Statistic"], props["Period"], props["EvaluationPeriods"]) == (
        "Maximum",
        86400,
        1,
    )
    assert (props["ComparisonOperator"], props["Threshold"]) == ("GreaterThanThreshold", 0)
    assert props["TreatMissingData"] == "notBreaching"


@pytest.mark.parametrize("jobs", ["all", "manager"])
def test_a_tag_any_deployed_job_cannot_honour_raises_an_alarm(jobs):
    """TagErrors: instances or snapshots with a tag the jobs cannot honour, 0 when none, on
    every run's summary line of each job; one alarm over the jobs this stack deploys."""
    assert creator.METRICS["TagErrors"] == ("tag_errors", ("creator", "copier", "manager"))
    resource = RESOURCES["TagErrorsAlarm"]
    assert "Condition" not in resource  # the manager runs everywhere
    props = given(resource["Properties"], Jobs=jobs)
    deployed = ["creator", "copier", "manager"] if jobs == "all" else ["manager"]
    region = {"Ref": "AWS::Region"}
    assert watched(props) == [
        (creator.METRIC_NAMESPACE, "TagErrors", {"job": job, "region": region}, 86400)
        for job in deployed
    ]
    (result,) = [q for q in props["Metrics"] if q["ReturnData"]]
    filled = ", ".join(f"FILL({job}, 0)" for job in deployed)
    assert result["Expression"] == (f"MAX([{filled}])" if len(deployed) > 1 else filled)
    assert all(q["MetricStat"]["Stat"] == "Maximum" for q in props["Metrics"] if "MetricStat" in q)
    assert (props["ComparisonOperator"], props["Threshold"]) == ("GreaterThanThreshold", 0)
    assert props["TreatMissingData"] == "notBreaching"
    assert "tag_errors" in props["AlarmDescription"]  # where to look


def test_make_cost_counts_every_alarm_metric():
    """CloudWatch bills each metric an alarm reads: scripts/cost.py counts the Jobs=all stack."""
    from scripts import cost

    assert cost.alarm_metrics() == sum(len(watched(props)) for props in ALARMS.values())


JOBS = {"creator": creator, "copier": copier, "manager": manager}
# The metrics no job writes on every run (METRICS names no job): the jobs that count them.
COUNTED_BY = {
    "unprotected": ("manager", "copier", "creator"),  # the creator's: sub-daily slots missed
    "peak_hour_calls": ("creator",),  # the creator's scheduled runs
    "projected_snapshots": ("creator",),
    "over_limits": ("creator",),
    "expired_copies_left": ("manager",),
    "locked": ("creator", "copier"),
    "restore_seconds": ("manager",),
}


def written_by(metric):
    """The jobs whose summary lines carry that metric, each by its own METRICS table."""
    found = set()
    for job, module in JOBS.items():
        count, jobs = module.METRICS.get(metric, (None, ()))
        if job in jobs or job in COUNTED_BY.get(count, ()):
            found.add(job)
    return found


def test_every_metric_some_job_writes_only_at_times_says_which():
    for metric, (count, jobs) in creator.METRICS.items():
        assert jobs or count in COUNTED_BY, metric
        assert written_by(metric), metric


def test_alarmed_metrics_are_ones_the_jobs_write():
    """A renamed metric would leave its alarm watching nothing, silently."""
    ours = [w for p in ALARMS.values() for w in watched(p) if w[0] == creator.METRIC_NAMESPACE]
    assert len(ours) >= 8
    for _, metric, dims, _ in ours:
        assert dims["job"] in written_by(metric), (metric, dims["job"])


def test_every_log_level_offered_is_one_the_jobs_know():
    for level in TEMPLATE["Parameters"]["LogLevel"]["AllowedValues"]:
        assert level in creator.LOG_LEVELS


def test_a_failed_restore_drill_raises_an_alarm():
    alarm = RESOURCES["RestoreDrillsFailedAlarm"]["Properties"]
    assert (alarm["MetricName"], alarm["Threshold"]) == ("RestoreDrillsFailed", 0)
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert {"Name": "job", "Value": "manager"} in alarm["Dimensions"]
    assert alarm["TreatMissingData"] == "notBreaching"
    assert manager.parse_bool(TEMPLATE["Parameters"]["RestoreDrill"]["AllowedValues"][1]) is False


# ---- the dashboard -----------------------------------------------------------------------

DASHBOARD = RESOURCES["JobsDashboard"]
REGION = "eu-west-3"  # any region: each metric must name the stack's own
STACK = "ebs-snapshots"


def substituted(node, names):
    """Each Fn::Sub replaced by its string as CloudFormation makes it: its own variables
    (substituted first), else these names. A name neither knows fails (KeyError), as the
    deployment would."""
    if isinstance(node, dict) and list(node) == ["Fn::Sub"]:
        arg = node["Fn::Sub"]
        text, variables = (arg, {}) if isinstance(arg, str) else arg
        known = names | {name: substituted(v, names) for name, v in variables.items()}
        return re.sub(r"\$\{([^!}][^}]*)\}", lambda m: known[m.group(1)], text)
    if isinstance(node, dict):
        return {k: substituted(v, names) for k, v in node.items()}
    if isinstance(node, list):
        return [substituted(v, names) for v in node]
    return node


def dashboard(**params):
    """(name, body) of the dashboard deployed with these parameter values in REGION: each
    Fn::If decided, each Fn::Sub substituted (a function's Ref is its FunctionName, and only
    the functions created are known), the body parsed as the JSON it must be."""
    names = {"AWS::Region": REGION, "AWS::StackName": STACK}
    for name, resource in RESOURCES.items():
        function = resource["Type"] == "AWS::Serverless::Function"
        if function and holds(resource.get("Condition", {"Fn::Equals": [1, 1]}), **params):
            names[name] = resource["Properties"]["FunctionName"]
    props = substituted(given(DASHBOARD["Properties"], **params), names)
    return props["DashboardName"], json.loads(props["DashboardBody"])


def graphed(body):
    """(widget, namespace, metric, {dimension: value}, stat, period) of each metric line."""
    for widget in body["widgets"]:
        if widget["type"] != "metric":
            continue
        props = widget["properties"]
        for line in props["metrics"]:
            rendering = line[-1] if isinstance(line[-1], dict) else {}
            namespace, metric, *dims = [item for item in line if not isinstance(item, dict)]
            assert len(dims) % 2 == 0 and "." not in line, line  # no shorthand, name-value pairs
            stat = rendering.get("stat", props.get("stat"))
            period = rendering.get("period", props.get("period"))
            yield (
                props["title"],
                namespace,
                metric,
                dict(zip(dims[::2], dims[1::2], strict=True)),
                stat,
                period,
            )


def unwritten(body):
    """Each line of the jobs' namespace that graphs nothing: a metric no job's METRICS has,
    a job that does not write it, or other dimensions than the job's summary line gives."""
    wrong = []
    for title, namespace, metric, dims, _, _ in graphed(body):
        if namespace == "AWS/Lambda":
            continue
        job = dims.get("job")
        module = JOBS.get(job, creator)
        (directive,) = module.metrics(job, {})["_aws"]["CloudWatchMetrics"]
        if (
            namespace != module.METRIC_NAMESPACE
            # the one dimension set the summary line declares, no more, no fewer
            or [sorted(dims)] != [sorted(d) for d in directive["Dimensions"]]
            or dims.get("region") != REGION
            or job not in written_by(metric)
        ):
            wrong.append((title, namespace, metric, dims))
    return wrong


@pytest.mark.parametrize("jobs", ["all", "manager"])
def test_the_dashboard_body_is_json_with_every_placeholder_filled(jobs):
    name, body = dashboard(Jobs=jobs)
    # Dashboards are account-wide: one per region stack needs the region in the name.
    assert name == f"{STACK}-{REGION}"
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,255}", name)
    assert "${" not in json.dumps(body)
    assert (body["start"], body["periodOverride"]) == ("-P30D", "inherit")
    cells = set()
    for widget in body["widgets"]:
        assert widget["type"] in ("metric", "text")
        x, y, width, height = (widget[k] for k in ("x", "y", "width", "height"))
        assert x >= 0 and x + width <= 24, widget
        area = {(i, j) for i in range(x, x + width) for j in range(y, y + height)}
        assert cells.isdisjoint(area), widget  # no two widgets on the same spot
        cells |= area
        if widget["type"] == "metric":
            props = widget["properties"]
            assert props["region"] == REGION and props["title"], widget
            assert props["view"] == "timeSeries"


@pytest.mark.parametrize("jobs", ["all", "manager"])
def test_the_dashboard_graphs_only_metrics_the_jobs_write_with_their_dimensions(jobs):
    _, body = dashboard(Jobs=jobs)
    ours = [line for line in graphed(body) if line[1] != "AWS/Lambda"]
    assert len(ours) >= (17 if jobs == "all" else 11)
    assert unwritten(body) == []
    for title, _, metric, _, stat, period in ours:
        assert period == 86400, (title, metric)  # a day: the creator and manager run daily
        assert stat in ("Sum", "Maximum"), (title, metric)


R = REGION
UNWRITTEN = [
    ("SnapshotsCreated", ["EBSSnapshots", "SnapshotCreated", "job", "creator", "region", R]),
    ("SnapshotsCreated", ["EBSSnapshots", "SnapshotsCreated", "job", "copier", "region", R]),
    ("SnapshotsDeleted", ["EBSSnapshot", "SnapshotsDeleted", "job", "manager", "region", R]),
    ("Failures", ["EBSSnapshots", "Failures", "job", "manager", "region", R, "fn", "x"]),
    ("Failures", ["EBSSnapshots", "Failures", "job", "manager"]),
    ("Failures", ["EBSSnapshots", "Failures", "region", R]),
    ("Failures", ["EBSSnapshots", "Failures", "job", "manager", "region", "us-east-1"]),
    ("LocksMissing", ["EBSSnapshots", "LocksMissing", "job", "creator", "region", R]),
    ("RestoreSeconds", ["EBSSnapshots", "RestoreSeconds", "job", "copier", "region", R]),
]


@pytest.mark.parametrize(("metric", "line"), UNWRITTEN)
def test_a_line_the_jobs_do_not_write_is_found(metric, line):
    """The check above fails on a misspelt metric or namespace, a job that does not write the
    metric, a dimension too many or too few, another region."""
    _, body = dashboard(Jobs="all")
    for widget in body["widgets"]:
        for i, old in enumerate(widget.get("properties", {}).get("metrics", [])):
            if old[:2] == ["EBSSnapshots", metric]:
                widget["properties"]["metrics"][i] = line
                assert len(unwritten(body)) == 1, line
                return
    pytest.fail(f"no line of {metric}")


def test_the_dashboard_shows_what_an_operator_asks_of_each_job():
    """Issue 16: created, copied and deleted per day, copies deferred, unprotected volumes,
    failures; and warnings, locks missing and restore drills."""
    _, body = dashboard(Jobs="all")
    shown = {
        (metric, dims["job"]): stat
        for _, _, metric, dims, stat, _ in graphed(body)
        if "job" in dims
    }
    asked = {
        ("SnapshotsCreated", "creator"): "Sum",
        ("SnapshotsCopied", "copier"): "Sum",
        ("SnapshotsDeleted", "manager"): "Sum",
        ("CopiesDeferred", "copier"): "Maximum",  # a backlog: each sweep reports it again
        ("UnprotectedVolumes", "manager"): "Maximum",  # as the alarm reads it
        ("UnprotectedVolumes", "copier"): "Maximum",
        **{("Failures", job): "Sum" for job in JOBS},
        **{("Warnings", job): "Sum" for job in JOBS},
        ("LocksMissing", "manager"): "Maximum",
        ("RestoreDrillsPassed", "manager"): "Sum",
        ("RestoreDrillsFailed", "manager"): "Sum",
    }
    assert asked.items() <= shown.items()
    # Everything an alarm watches in the jobs' namespace is on the dashboard too.
    alarmed = {
        (w[1], w[2]["job"])
        for props in ALARMS.values()
        for w in watched(props)
        if w[0] == creator.METRIC_NAMESPACE
    }
    assert alarmed <= set(shown)


@pytest.mark.parametrize("jobs", ["all", "manager"])
def test_the_dashboard_shows_each_created_jobs_run_time_and_no_other(jobs):
    _, body = dashboard(Jobs=jobs)
    created = {
        function["Properties"]["FunctionName"]
        for function in FUNCTIONS.values()
        if holds(function.get("Condition", {"Fn::Equals": [1, 1]}), Jobs=jobs)
    }
    assert len(created) == (3 if jobs == "all" else 1)
    lambda_lines = [line for line in graphed(body) if line[1] == "AWS/Lambda"]
    assert {(m, tuple(d)) for _, _, m, d, _, _ in lambda_lines} == {("Duration", ("FunctionName",))}
    shown = {(d["FunctionName"], stat) for _, _, _, d, stat, _ in lambda_lines}
    assert shown == {(name, stat) for name in created for stat in ("Maximum", "Average")}
    (widget,) = {line[0] for line in lambda_lines}
    (props,) = [w["properties"] for w in body["widgets"] if w["properties"].get("title") == widget]
    # The line the runs must stay under: the functions' timeout, in Duration's milliseconds.
    (timeout,) = props["annotations"]["horizontal"]
    assert timeout["value"] == TEMPLATE["Globals"]["Function"]["Timeout"] * 1000
    text = json.dumps(body)
    for job, function in FUNCTIONS.items():
        if function["Properties"]["FunctionName"] not in created:
            assert function["Properties"]["FunctionName"] not in text
            assert f'"{job}"' not in text  # nor its metrics: it writes none there


@pytest.mark.parametrize(("value", "made"), [("on", True), ("off", False)])
def test_the_dashboard_can_be_left_out(value, made):
    """CloudWatch bills dashboards beyond the account's free ones: a StackSet over many
    accounts and regions may want none."""
    parameter = TEMPLATE["Parameters"]["Dashboard"]
    assert (parameter["Default"], parameter["AllowedValues"]) == ("on", ["on", "off"])
    assert DASHBOARD["Type"] == "AWS::CloudWatch::Dashboard"
    assert holds(DASHBOARD["Condition"], Dashboard=value) == made
    output = TEMPLATE["Outputs"]["DashboardName"]
    assert output["Condition"] == DASHBOARD["Condition"]
    assert output["Value"] == {"Ref": "JobsDashboard"}


def test_the_operations_page_shows_what_is_on_the_dashboard():
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text[text.index("## Dashboard") : text.index("## The bad day")]
    _, body = dashboard(Jobs="all")
    for _, _, metric, _, _, _ in graphed(body):
        assert f"`{metric}`" in section, metric
    timeout = TEMPLATE["Globals"]["Function"]["Timeout"]
    assert f"{timeout} s timeout" in section
    assert "`<stack name>-<region>`" in section and "`Dashboard=off`" in section


# ---- what the defaults cost, said where they are set (issue 28) ----------------------------

COSTLY_DEFAULTS = (
    "RestoreDrill",
    "RestoreDrillsPerRun",
    "RecycleBinRetentionDays",
    "RecycleBinScope",
    "Dashboard",
    "CopierStayMinutes",
    "AlarmEmail",  # the alarms and metrics: no switch, said next to their topic
    "LogRetentionDays",
)


def described(name):
    return " ".join(TEMPLATE["Parameters"][name]["Description"].split())


@pytest.mark.parametrize("name", COSTLY_DEFAULTS)
def test_a_default_that_costs_money_says_what_it_costs_where_it_is_set(name):
    cost = described(name).split("Cost: ", 1)[-1]
    assert "Cost: " in described(name) and (re.search(r"\$\d", cost) or "under a cent" in cost)


def test_the_costs_the_parameters_state_are_what_make_cost_counts():
    from scripts import cost

    usd = {item.split(" (")[0]: u for item, _, u in cost.rows()}
    total, price = sum(usd.values()), {k: v[0] for k, v in cost.PRICES.items()}
    binned = f"at {cost.recycle_bin_days()}, ${usd['Recycle Bin']:.2f} of the ${total:,.2f} a month"
    assert binned in described("RecycleBinRetentionDays")
    assert f"(${price['snapshot']:.2f} a GB-month)" in described("RecycleBinRetentionDays")
    assert f"at ${price['snapshot']:.2f} a GB-month;" in described("RecycleBinScope")
    drills = f"${usd['restore drills']:.2f} a month"
    assert drills in described("RestoreDrill") and drills in described("RestoreDrillsPerRun")
    assert f"(${price['gp3']:.2f} a GB-month, billed by the second)" in described("RestoreDrill")
    alarms = f"${usd['CloudWatch alarms']:.2f} a month ({cost.alarm_metrics()} alarm metrics"
    metrics = (
        f"${usd['CloudWatch metrics']:.2f} ({cost.custom_metrics()} at ${price['metric']:.2f})"
    )
    assert alarms in described("AlarmEmail") and metrics in described("AlarmEmail")
    assert f"at ${price['alarm']:.2f})" in described("AlarmEmail")
    stays = 96 * cost.STAY_S
    worst = (
        f"${stays * cost.MEMORY_GB * price['lambda']:.2f} a day at {cost.MEMORY_GB * 1024:.0f} MB"
    )
    assert f"at most {stays:,} Lambda-seconds a day, {worst}" in described("CopierStayMinutes")
    logs = cost.LOG_BYTES_A_DAY * 30 / 1e9
    assert f"writes {logs:.3f} GB of logs a month, under a cent" in described("LogRetentionDays")
    assert logs * price["logs"] < 0.01


@pytest.mark.parametrize(
    "name, off",
    [
        ("RestoreDrill", "off: no drills, and no such cost"),
        ("Dashboard", "off: none, and no such cost"),
        ("RecycleBinRetentionDays", "0: no Recycle Bin rule, and no such cost"),
        ("CopierStayMinutes", "0: no stay"),
        ("AlarmEmail", "no parameter turns them off"),
    ],
)
def test_a_costly_default_says_how_to_turn_it_off(name, off):
    assert off in described(name)
