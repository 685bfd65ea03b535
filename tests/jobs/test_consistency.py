"""Consistent snapshots: multi-volume sets (CreateSnapshots), fsfreeze and VSS through SSM,
and the crash-consistent fallback when the SSM step cannot be done.

moto implements CreateSnapshots (but ignores ExcludeDataVolumeIds), SendCommand (always
Success) and not DescribeInstanceInformation: the SSM answers are stubbed, and what the
creator asks for is asserted on the requests it sends."""

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from cfnlint.decode import cfn_yaml
from conftest import NOW, launch, snapshots

import ebs_snapshot_creator as creator

DEVICES = ("/dev/sda1", "/dev/sdf", "/dev/sdg")
ROOT = Path(__file__).resolve().parents[2]


def run(event=None):
    return creator.run(event or {}, None, now=NOW)


def agent(api, status="Online", platform="Linux", registered=True):
    def answer(params):
        (iid,) = params["Filters"][0]["Values"]
        info = {"InstanceId": iid, "PingStatus": status, "PlatformType": platform}
        return {"InstanceInformationList": [info] if registered else []}

    api.stub("DescribeInstanceInformation", answer)


def invocations(api, status):
    api.stub(
        "GetCommandInvocation",
        lambda params: {"Status": status, "StandardOutputContent": f"{status} output"},
    )


def consistency_tags():
    return sorted(t.get("Consistency") for t in snapshots().values())


def ssm_documents(api):
    return [p["DocumentName"] for p in api.ops("SendCommand")]


# ---- the tag ----


@pytest.mark.parametrize(
    ("value", "mode", "warned"),
    [
        (None, "volume", False),
        ("volume", "volume", False),
        ("Instance", "instance", False),
        (" FSFREEZE ", "fsfreeze", False),
        ("vss", "vss", False),
        ("app-consistent", "volume", True),
        ("", "volume", True),
    ],
)
def test_the_consistency_tag(value, mode, warned):
    got, warning = creator.parse_mode(value)
    assert got == mode and (warning is not None) == warned


def test_an_unknown_mode_warns_and_snapshots_each_volume(api):
    iid, _ = launch({"Backup": "Yes", "Consistency": "atomic"}, devices=DEVICES[:2])
    result = run()
    assert [w["id"] for w in result["warnings"]] == [iid]
    assert len(api.ops("CreateSnapshot")) == 2 and api.ops("CreateSnapshots") == []
    assert consistency_tags() == ["volume", "volume"]


# ---- instance: one multi-volume set ----


def test_instance_takes_every_volume_in_one_call_with_the_tags(api):
    iid, vols = launch(
        {"Backup": "Yes", "Consistency": "instance", "Name": "db"},
        devices=DEVICES,
        volume_tags={"/dev/sdg": {"Backup": "No"}},
    )
    result = run()
    assert api.ops("CreateSnapshot") == []
    (call,) = api.ops("CreateSnapshots")
    assert call["InstanceSpecification"] == {
        "InstanceId": iid,
        "ExcludeBootVolume": False,
        "ExcludeDataVolumeIds": [vols["/dev/sdg"]],
    }
    (spec,) = call["TagSpecifications"]
    tags = {t["Key"]: t["Value"] for t in spec["Tags"]}
    assert tags["Type"] == "Automated" and tags["DeleteOn"] == "2026-12-03"
    assert tags["Consistency"] == "instance" and tags["Name"] == "db"
    assert all(c["consistency"] == "instance" for c in result["created"])
    assert all(t["Consistency"] == "instance" for t in snapshots().values())


def test_an_opted_out_boot_volume_is_excluded_as_the_boot_volume(api):
    iid, _ = launch(
        {"Backup": "Yes", "Consistency": "instance"},
        devices=DEVICES[:2],
        volume_tags={"/dev/sda1": {"Backup": "No"}},
    )
    run()
    (call,) = api.ops("CreateSnapshots")
    assert call["InstanceSpecification"] == {"InstanceId": iid, "ExcludeBootVolume": True}


def test_an_instance_with_every_volume_opted_out_makes_no_call(api):
    launch(
        {"Backup": "Yes", "Consistency": "instance"},
        devices=DEVICES[:1],
        volume_tags={"/dev/sda1": {"Backup": "No"}},
    )
    run()
    assert api.ops("CreateSnapshots") == [] and snapshots() == {}


def test_a_retried_event_does_not_take_the_set_again(api):
    launch({"Backup": "Yes", "Consistency": "instance"}, devices=DEVICES[:2])
    run({"id": "ev-1"})
    result = run({"id": "ev-1"})
    assert len(api.ops("CreateSnapshots")) == 1 and len(snapshots()) == 2
    assert len(result["skipped"]) == 2


def test_a_refused_set_fails_that_instance_only(api):
    bad, _ = launch({"Backup": "Yes", "Consistency": "instance"})
    launch({"Backup": "Yes"})
    api.fail("CreateSnapshots", "IncorrectState")
    with pytest.raises(creator.JobFailed, match=bad):
        run()
    assert consistency_tags() == ["volume"]


def test_dry_run_asks_aws_about_create_snapshots(api):
    launch({"Backup": "Yes", "Consistency": "instance"}, devices=DEVICES[:2])
    result = run({"dry_run": True})
    assert snapshots() == {}
    assert [p["DryRun"] for p in api.ops("CreateSnapshots")] == [True]
    assert len(result["would_create"]) == 2


# ---- fsfreeze ----


def test_fsfreeze_freezes_snapshots_then_thaws(api):
    iid, vols = launch({"Backup": "Yes", "Consistency": "fsfreeze"}, devices=DEVICES)
    agent(api)
    result = run()
    ssm = [op for _, op, _ in api.calls if op in ("SendCommand", "CreateSnapshots")]
    assert ssm == ["SendCommand", "CreateSnapshots", "SendCommand"]  # freeze, set, thaw
    freeze, thaw = api.ops("SendCommand")
    # the stack's own document, whose parameters name volumes, and nothing else
    assert freeze["DocumentName"] == thaw["DocumentName"] == "ebs-snapshot-fsfreeze"
    assert freeze["DocumentVersion"] == thaw["DocumentVersion"] == "$LATEST"
    assert freeze["InstanceIds"] == [iid]
    data = f"{vols['/dev/sdf']}=/dev/sdf {vols['/dev/sdg']}=/dev/sdg"  # never the root volume
    assert freeze["Parameters"] == {
        "Action": ["freeze"],
        "Volumes": [data],
        "ThawAfterSeconds": ["60"],
    }
    assert thaw["Parameters"] == {"Action": ["thaw"], "Volumes": [data]}
    for sent in (freeze, thaw):
        assert accepted(sent["Parameters"]), sent
    assert consistency_tags() == ["fsfreeze"] * 3
    assert result["warnings"] == []


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ({"status": "ConnectionLost"}, "its SSM agent is ConnectionLost"),
        ({"registered": False}, "no SSM agent has registered from it"),
        ({"platform": "Windows"}, "fsfreeze needs Linux; it runs Windows"),
    ],
)
def test_without_an_agent_online_it_falls_back(api, answer, reason):
    iid, _ = launch({"Backup": "Yes", "Consistency": "fsfreeze"}, devices=DEVICES[:2])
    agent(api, **answer)
    result = run()
    assert api.ops("SendCommand") == []
    assert consistency_tags() == ["crash-fallback"] * 2
    (warning,) = result["warnings"]
    assert warning["id"] == iid and reason in warning["reason"]


@pytest.mark.parametrize("status", ["Failed", "TimedOut", "Cancelled"])
def test_a_failed_freeze_falls_back_and_still_thaws(api, status):
    launch({"Backup": "Yes", "Consistency": "fsfreeze"}, devices=DEVICES[:2])
    agent(api)
    invocations(api, status)
    result = run()
    assert consistency_tags() == ["crash-fallback"] * 2
    assert f"ended {status}" in result["warnings"][0]["reason"]
    assert api.ops("SendCommand")[-1]["Parameters"]["Action"] == ["thaw"]


def test_a_freeze_that_never_ends_is_waited_for_a_bounded_time(api):
    launch({"Backup": "Yes", "Consistency": "fsfreeze"}, devices=DEVICES[:2])
    agent(api)
    invocations(api, "InProgress")
    result = run()
    assert len(api.ops("GetCommandInvocation")) == creator.FREEZE_WAIT_S // creator.POLL_S
    assert consistency_tags() == ["crash-fallback"] * 2
    assert "did not finish within 30 s" in result["warnings"][0]["reason"]


def test_a_refused_command_falls_back(api):
    launch({"Backup": "Yes", "Consistency": "fsfreeze"}, devices=DEVICES[:2])
    agent(api)
    error = {"Error": {"Code": "InvalidInstanceId", "Message": "not managed"}}
    api.stub("SendCommand", ClientError(error, "SendCommand"))
    result = run()
    assert consistency_tags() == ["crash-fallback"] * 2
    assert "InvalidInstanceId" in result["warnings"][0]["reason"]


def test_a_set_taken_after_the_thaw_timer_says_so(api, monkeypatch):
    iid, _ = launch({"Backup": "Yes", "Consistency": "fsfreeze"}, devices=DEVICES[:2])
    agent(api)
    monkeypatch.setattr(creator, "THAW_AFTER_S", -1)  # as if the set came back too late
    result = run()
    assert consistency_tags() == ["fsfreeze"] * 2
    (warning,) = result["warnings"]
    assert warning["id"] == iid and "thawed by themselves" in warning["reason"]


def test_only_a_root_volume_has_nothing_to_freeze(api):
    launch({"Backup": "Yes", "Consistency": "fsfreeze"}, devices=DEVICES[:1])
    agent(api)
    result = run()
    assert api.ops("SendCommand") == []
    assert consistency_tags() == ["crash-fallback"]
    assert "root filesystem is never frozen" in result["warnings"][0]["reason"]


def test_one_slow_instance_does_not_hold_up_the_others(api):
    slow, _ = launch({"Backup": "Yes", "Consistency": "fsfreeze", "Name": "slow"}, DEVICES[:2])
    fast, _ = launch({"Backup": "Yes", "Consistency": "fsfreeze", "Name": "fast"}, DEVICES[:2])
    plain, _ = launch({"Backup": "Yes", "Name": "plain"})
    agent(api)
    api.stub(
        "GetCommandInvocation",
        lambda p: {"Status": "InProgress" if p["InstanceId"] == slow else "Success"},
    )
    result = run()
    by_instance = {c["instance_id"]: c.get("consistency") for c in result["created"]}
    assert by_instance == {slow: "crash-fallback", fast: "fsfreeze", plain: "volume"}
    polls = [p["InstanceId"] for p in api.ops("GetCommandInvocation")]
    assert polls.count(fast) == 1  # one poll, then its set: it never waited for the slow one
    assert polls.count(slow) == creator.FREEZE_WAIT_S // creator.POLL_S


# ---- vss ----


def test_vss_runs_awss_document_with_our_tags(api):
    iid, vols = launch(
        {"Backup": "Yes", "Consistency": "VSS", "Name": "sql,1", "Copy_Dest": "us-west-2"},
        devices=DEVICES[:2],
    )
    agent(api, platform="Windows")
    result = run({"id": "ev-7"})
    (call,) = api.ops("SendCommand")
    assert call["DocumentName"] == "AWSEC2-CreateVssSnapshot" and call["InstanceIds"] == [iid]
    parameters = call["Parameters"]
    assert parameters["ExcludeBootVolume"] == ["False"]
    pairs = dict(item.split(",Value=") for item in parameters["tags"][0].split(";"))
    assert pairs["Key=Type"] == "Automated" and pairs["Key=DeleteOn"] == "2026-12-03"
    assert pairs["Key=Consistency"] == "vss" and pairs["Key=EventId"] == "ev-7"
    assert pairs["Key=Copy_Dest"] == "us-west-2" and pairs["Key=Name"] == "sql 1"
    assert api.ops("CreateSnapshots") == [] and api.ops("CreateSnapshot") == []
    assert sorted(c["volume_id"] for c in result["created"]) == sorted(vols.values())
    assert all(c["consistency"] == "vss" for c in result["created"])


def test_vss_failure_falls_back(api):
    launch({"Backup": "Yes", "Consistency": "vss"}, devices=DEVICES[:2])
    agent(api, platform="Windows")
    invocations(api, "Failed")
    result = run()
    assert consistency_tags() == ["crash-fallback"] * 2
    assert "AWSEC2-CreateVssSnapshot ended Failed" in result["warnings"][0]["reason"]


def test_vss_says_it_cannot_leave_out_a_data_volume(api):
    _, vols = launch(
        {"Backup": "Yes", "Consistency": "vss"},
        devices=DEVICES[:2],
        volume_tags={"/dev/sdf": {"Backup": "No"}},
    )
    agent(api, platform="Windows")
    result = run()
    assert [w["id"] for w in result["warnings"]] == [vols["/dev/sdf"]]


# ---- "snapshot me now" works with every mode ----


@pytest.mark.parametrize("mode", ["volume", "instance", "fsfreeze", "vss"])
def test_instance_ids_event_works_with_every_mode(api, mode):
    iid, _ = launch({"Backup": "Yes", "Consistency": mode}, devices=DEVICES[:2])
    launch({"Backup": "Yes", "Consistency": mode}, devices=DEVICES[:2])  # not asked for
    agent(api, platform="Windows" if mode == "vss" else "Linux")
    result = run({"instance_ids": [iid]})
    assert {c["instance_id"] for c in result["created"]} == {iid}
    assert len(result["created"]) == 2 and result["warnings"] == []
    assert all(p["InstanceIds"] == [iid] for p in api.ops("SendCommand"))


# ---- the freeze script itself ----


@pytest.fixture
def box(tmp_path):
    """A fake machine: devices under DEVROOT, and lsblk and fsfreeze on PATH that report
    mounts and record every call."""
    bin_dir, root = tmp_path / "bin", tmp_path / "root"
    (root / "dev/disk/by-id").mkdir(parents=True)
    (root / "dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0").touch()
    (root / "dev/xvdg").touch()  # Xen: /dev/sdg shows as /dev/xvdg
    bin_dir.mkdir()
    log = tmp_path / "calls"
    (bin_dir / "lsblk").write_text(
        '#!/bin/bash\ncase "$*" in\n'
        "  *vol0123456789abcdef0*) printf '/data\\n\\n' ;;\n"
        "  *xvdg*) printf '/logs\\n/\\n[SWAP]\\n' ;;\n"
        "esac\n"
    )
    (bin_dir / "fsfreeze").write_text(
        f'#!/bin/bash\necho "$@" >> {log}\n[ "$*" != "-f ${{FAIL_ON:-none}}" ]\n'
    )
    for tool in ("lsblk", "fsfreeze"):
        (bin_dir / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "DEVROOT": str(root)}
    return env, log


VOLUMES = "vol-0123456789abcdef0=/dev/sdf vol-0bbbbbbbbbbbbbbbb=/dev/sdg"
DOCUMENT = json.loads(json.dumps(cfn_yaml.load(str(ROOT / "template.yaml"))))["Resources"][
    "CreatorFreezeDocument"
]["Properties"]


def accepted(parameters):
    """Whether SSM accepts these parameters for the document: each one it declares, within
    its allowedValues and allowedPattern (defaults filled in), and no other."""
    declared = DOCUMENT["Content"]["parameters"]
    if not set(parameters) <= set(declared):
        return False
    for name, spec in declared.items():
        (value,) = parameters.get(name, [spec.get("default")])
        if value is None or value not in spec.get("allowedValues", [value]):
            return False
        if "allowedPattern" in spec and not re.search(spec["allowedPattern"], value):
            return False
    return True


def document_script(action, volumes, thaw_after="60"):
    """The document's script as SSM runs it: each {{ parameter }} replaced by its value."""
    assert accepted({"Action": [action], "Volumes": [volumes], "ThawAfterSeconds": [thaw_after]})
    ((step,),) = [DOCUMENT["Content"]["mainSteps"]]
    (script,) = step["inputs"]["runCommand"]
    values = {"Action": action, "Volumes": volumes, "ThawAfterSeconds": thaw_after}
    return re.sub(r"\{\{ (\w+) \}\}", lambda m: values[m[1]], script)


def sh(script, env):
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)


def test_the_document_is_a_bash_script_for_linux_only():
    ((step,),) = [DOCUMENT["Content"]["mainSteps"]]
    assert step["action"] == "aws:runShellScript"
    assert step["precondition"] == {"StringEquals": ["platformType", "Linux"]}
    for action in ("freeze", "thaw"):
        script = document_script(action, VOLUMES)
        assert script.startswith("#!/bin/bash\n")  # SSM runs it as a file: bash, not sh
        assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    assert DOCUMENT["Name"] == creator.FREEZE_DOCUMENT


@pytest.mark.parametrize(
    "volumes",
    [
        "vol-0123456789abcdef0=/dev/sdf; reboot",
        "vol-0123456789abcdef0=/dev/sdf $(reboot)",
        "vol-0123456789abcdef0=/dev/sdf\nreboot",
        "vol-0123456789abcdef0=/dev/sd`reboot`",
        "vol-0123456789abcdef0=/dev/../sdf",
        "x=/dev/sdf",
        "",
        " ".join(["vol-0123456789abcdef0=/dev/sdf"] * 128),  # 127 data volumes at most
    ],
)
def test_ssm_refuses_any_volumes_value_that_could_reach_the_shell(volumes):
    assert not accepted({"Action": ["freeze"], "Volumes": [volumes]})


@pytest.mark.parametrize(
    "parameters",
    [
        {"Action": ["reboot"], "Volumes": [VOLUMES]},
        {"Action": ["freeze"], "Volumes": [VOLUMES], "ThawAfterSeconds": ["60; reboot"]},
        {"Action": ["freeze"], "Volumes": [VOLUMES], "commands": ["reboot"]},
    ],
)
def test_ssm_refuses_any_other_action_time_or_parameter(parameters):
    assert not accepted(parameters)


def test_freeze_script_freezes_data_filesystems_and_thaws_by_itself(box):
    env, log = box
    done = sh(document_script("freeze", VOLUMES, thaw_after="1"), env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "FROZEN: /data /logs"
    # never "/" nor swap; the self-thaw may already have begun on a loaded machine
    assert log.read_text().splitlines()[:2] == ["-f /data", "-f /logs"]
    for _ in range(50):  # its own thaw, a second later, though nobody asked
        if len(log.read_text().splitlines()) == 4:
            break
        time.sleep(0.1)
    assert log.read_text().splitlines()[2:] == ["-u /data", "-u /logs"]


def test_a_failed_freeze_thaws_what_it_froze(box):
    env, log = box
    done = sh(document_script("freeze", VOLUMES, thaw_after="30"), {**env, "FAIL_ON": "/logs"})
    assert done.returncode == 1 and "FREEZE FAILED: /logs" in done.stdout
    assert log.read_text().splitlines() == ["-f /data", "-f /logs", "-u /data"]


def test_thaw_script_thaws_each_filesystem(box):
    env, log = box
    done = sh(document_script("thaw", VOLUMES), env)
    assert done.returncode == 0 and done.stdout.strip() == "THAWED"
    assert log.read_text().splitlines() == ["-u /data", "-u /logs"]


def test_nothing_mounted_means_nothing_frozen(box):
    env, log = box
    done = sh(document_script("freeze", "vol-0cccccccccccccccc=/dev/sdh"), env)
    assert done.returncode == 0 and done.stdout.strip() == "NOTHING TO FREEZE"
    assert not log.exists()


# ---- the SSM client: only for a run that needs it ----


def built_clients(monkeypatch):
    built, original = [], creator.boto3.client

    def client(service, *args, **kwargs):
        built.append(service)
        return original(service, *args, **kwargs)

    monkeypatch.setattr(creator.boto3, "client", client)
    return built


def test_a_run_without_fsfreeze_or_vss_builds_no_ssm_client(api, monkeypatch):
    launch({"Backup": "Yes"}, devices=DEVICES[:2])
    launch({"Backup": "Yes", "Consistency": "instance"}, devices=DEVICES[:2])
    built = built_clients(monkeypatch)
    run()
    assert "ssm" not in built and len(snapshots()) == 4


def test_fsfreeze_sets_share_one_ssm_client(api, monkeypatch):
    for _ in range(3):
        launch({"Backup": "Yes", "Consistency": "fsfreeze"}, devices=DEVICES[:2])
    agent(api)
    built = built_clients(monkeypatch)
    run()
    assert built.count("ssm") == 1 and len(api.ops("SendCommand")) == 6
