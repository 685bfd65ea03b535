"""template.yaml (AWS SAM) and the StackSet template rendered from it."""

import json
import re
import sys
import types
from pathlib import Path

import pytest
from cfnlint.api import lint_all
from cfnlint.decode import cfn_yaml
from conftest import NOW, launch, snapshots

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import stackset_template  # noqa: E402

import ebs_snapshot_creator as creator  # noqa: E402
import ebs_snapshot_manager as manager  # noqa: E402

TEMPLATE = json.loads(json.dumps(cfn_yaml.load(str(ROOT / "template.yaml"))))
RESOURCES = TEMPLATE["Resources"]
FUNCTIONS = {
    "creator": RESOURCES["CreatorFunction"],
    "copier": RESOURCES["CopierFunction"],
    "manager": RESOURCES["ManagerFunction"],
}


def resolve(node, partition="aws", suffix="amazonaws.com"):
    """Fn::Sub of the pseudo parameters, as CloudFormation does in the aws partition."""
    if isinstance(node, dict) and list(node) == ["Fn::Sub"]:
        text = node["Fn::Sub"]
        return text.replace("${AWS::Partition}", partition).replace("${AWS::URLSuffix}", suffix)
    if isinstance(node, dict):
        return {k: resolve(v) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(v) for v in node]
    return node


def problems(text):
    """cfn-lint's errors and warnings (what its command line reports by default)."""
    return [str(m) for m in lint_all(text) if m.rule.id[0] in "EW"]


def test_cfn_lint_finds_nothing():
    assert problems((ROOT / "template.yaml").read_text()) == []


def test_the_role_has_exactly_the_permissions_of_iam_policy_json():
    (policy,) = RESOURCES["Role"]["Properties"]["Policies"]
    assert resolve(policy["PolicyDocument"]) == json.loads((ROOT / "iam-policy.json").read_text())


def test_the_role_can_only_be_assumed_by_lambda():
    (stmt,) = RESOURCES["Role"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert stmt["Principal"] == {"Service": "lambda.amazonaws.com"}


@pytest.mark.parametrize("job", list(FUNCTIONS))
def test_each_function_runs_its_own_file(job):
    props = FUNCTIONS[job]["Properties"]
    assert props["Handler"] == f"ebs_snapshot_{job}.lambda_handler"
    assert props["FunctionName"] == f"ebs-snapshot-{job}"  # the names the policy allows
    assert FUNCTIONS[job]["Metadata"] == {"BuildMethod": "makefile"}
    target = re.search(
        rf"^build-{job.title()}Function:\n\t(.*)$", (ROOT / "Makefile").read_text(), re.M
    )
    assert target.group(1) == f"cp ebs_snapshot_{job}.py $(ARTIFACTS_DIR)/"


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
    hours = {}
    for job, function in FUNCTIONS.items():
        schedule = function["Properties"]["Events"]["Daily"]["Properties"]["Schedule"]
        default = TEMPLATE["Parameters"][schedule["Ref"]]["Default"]
        hours[job] = int(
            re.fullmatch(r"cron\(0(?:/30)? (\d+)(?:-23)? \* \* \? \*\)", default).group(1)
        )
    assert hours["creator"] + 3 <= hours["copier"]  # the first sweep, hours after the snapshots
    assert hours["manager"] != hours["creator"]


def test_the_copier_sweeps_often_enough_to_keep_the_copy_slots_busy():
    default = TEMPLATE["Parameters"]["CopierSchedule"]["Default"]
    assert default == "cron(0/30 6-23 * * ? *)"  # 20 copies at a time: a sweep each half hour


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
    assert len(conditional) == 10  # two functions, their logs and their three alarms each
    for name in conditional - {"CreatorLogs", "CopierLogs"}:
        refs = re.findall(r'"(?:Ref|Fn::GetAtt)": \[?"(\w+)', json.dumps(RESOURCES[name]))
        assert {"ManagerFunction", "ManagerLogs"}.isdisjoint(refs), name
    for name in set(RESOURCES) - conditional:  # nothing else may need the two functions
        refs = re.findall(r'"(?:Ref|Fn::GetAtt)": \[?"(\w+)', json.dumps(RESOURCES[name]))
        assert conditional.isdisjoint(refs), name
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
    ]:
        variables = FUNCTIONS[job]["Properties"]["Environment"]["Variables"]
        assert variables[variable] == {"Ref": parameter}, (job, variable)
        assert params[parameter]["Default"] == default, parameter


# ---- the StackSet template ---------------------------------------------------------------


@pytest.fixture(scope="module")
def stackset():
    return stackset_template.render()


def test_stackset_template_is_plain_cloudformation_and_lints_clean(stackset):
    assert "Transform" not in stackset
    assert not any(r["Type"].startswith("AWS::Serverless") for r in stackset["Resources"].values())
    assert problems(json.dumps(stackset)) == []
    text = json.dumps(stackset)
    assert len(text.encode()) < 1_000_000  # CloudFormation's limit for a template in S3
    assert not re.search(r"\b[a-z]{2}-[a-z]+-\d\b", text), "a region baked in"


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

ALARMS = {
    name: r["Properties"] for name, r in RESOURCES.items() if r["Type"] == "AWS::CloudWatch::Alarm"
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
    assert props["Period"] * props["EvaluationPeriods"] == 86400  # "in the last day"
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


def test_alarmed_metrics_are_ones_the_jobs_write():
    """A renamed metric would leave its alarm watching nothing, silently."""
    ours = [w for p in ALARMS.values() for w in watched(p) if w[0] == creator.METRIC_NAMESPACE]
    assert len(ours) >= 8
    for _, metric, dims, _ in ours:
        count, jobs = creator.METRICS[metric]
        job = dims["job"]
        written = {"unprotected": ("manager", "copier"), "expired_copies_left": ("manager",)}
        assert job in jobs or job in written.get(count, ()), (metric, job)


def test_every_log_level_offered_is_one_the_jobs_know():
    for level in TEMPLATE["Parameters"]["LogLevel"]["AllowedValues"]:
        assert level in creator.LOG_LEVELS
