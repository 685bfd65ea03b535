"""The restore command line: restore-points and restore (side by side, in place, undo)."""

import argparse
import os
import sys
from datetime import UTC, datetime

from botocore.exceptions import ClientError

from ebs_snapshots.common.aws import (
    FIRST_CONTACT,
    Unreachable,
    caller_account,
    describe_error,
    make_client,
)
from ebs_snapshots.common.cli import SETUP_ERRORS, check_setup, region_name
from ebs_snapshots.common.events import resolve_region
from ebs_snapshots.common.tags import TAG_BACKUP, TAG_NAME, tag_map
from ebs_snapshots.common.vault_access import vault_client
from ebs_snapshots.manager.archive import TAG_RESTORE
from ebs_snapshots.manager.restore_in_place import (
    check_instance,
    record_restore,
    record_undo,
    restore_swaps,
    swap,
    undo_swaps,
)
from ebs_snapshots.manager.restore_points import (
    attached_devices,
    choose_point,
    compare,
    entry_lines,
    instance_of,
    point_details,
    read_points,
)
from ebs_snapshots.manager.restore_volumes import (
    ARCHIVE_RESTORE_HOURS,
    IN_PLACE,
    SIDE_BY_SIDE,
    RestoreError,
    check_keys,
    check_point,
    client_token,
    init_minutes,
    init_rate,
    make_volume,
    probe,
    restore_tags,
    source_volumes,
    volume_in_use,
    volume_spec,
)
from ebs_snapshots.manager.vault_restore import VAULT_RESTORER, share_back, vault_points

RESTORE_COMMANDS = ("restore-points", "restore")
PROG = "ebs_snapshot_manager.py"


def restore_parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Find an instance's restore points, and restore its volumes from one: "
        "side by side (new volumes, not attached), in place (stop, swap, start), or undo.",
        epilog="Exit codes: 0 done; 1 refused or failed (one line says why; nothing is "
        "half done: run the same command again to go on); 2 bad usage, or no credentials "
        "or region; 130 interrupted (Ctrl-C): run the same command again to go on.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    points = commands.add_parser("restore-points", help="list an instance's restore points")
    restore = commands.add_parser("restore", help="restore an instance's volumes")
    for sub in (points, restore):
        sub.add_argument("--instance", required=True, help="the instance id (i-...)")
        sub.add_argument("--region", help="where to read (a Copy_Dest region: its copies)")
        sub.add_argument("--vault-account", help="read the vault's copies of this account's")
        sub.add_argument("--vault-role", default=VAULT_RESTORER, help="the vault's role")
    restore.add_argument("--at", help="a point id (rp-...) or a time: the newest point before")
    restore.add_argument("--az", help="the zone of the new volumes (default: the instance's)")
    restore.add_argument("--in-place", action="store_true", help="swap them onto the instance")
    restore.add_argument("--undo", action="store_true", help="put the replaced volumes back")
    restore.add_argument("--yes", action="store_true", help="do not ask before an in-place swap")
    restore.add_argument("--dry-run", action="store_true", help="check permissions, show plan")
    restore.add_argument("--partial", action="store_true", help="restore an incomplete point")
    restore.add_argument("--type", help="volume type instead of the source volume's")
    restore.add_argument("--iops", type=int, help="IOPS instead of the source volume's")
    restore.add_argument("--throughput", type=int, help="MiB/s instead of the source's")
    restore.add_argument("--kms-key", help="KMS key instead of the source volume's")
    restore.add_argument("--init-rate", type=int, help="VolumeInitializationRate, MiB/s")
    restore.add_argument(
        "--start-archive-restore",
        type=int,
        nargs="?",
        const=7,
        metavar="DAYS",
        help="tag the point's archived snapshots Restore=DAYS (default 7) for the manager",
    )
    return parser


def restore_main(argv):
    """The restore subcommands; returns the exit code. Errors are one line, never a traceback."""
    parser = restore_parser()
    args = parser.parse_args(argv)  # bad usage exits 2
    if args.command == "restore" and not args.undo and not args.at:
        parser.error("restore needs --at (or --undo)")
    try:
        if args.region is not None:
            os.environ["AWS_REGION"] = region_name(args.region)
        check_setup()
    except SETUP_ERRORS as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    FIRST_CONTACT.arm(True)
    try:
        ec2 = make_client("ec2", resolve_region())
        vault = open_vault(args, ec2.meta.region_name)
        if args.command == "restore-points":
            return list_points(ec2, args, vault)
        return restore(ec2, args, vault)
    except (RestoreError, ValueError, Unreachable) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
    except Exception as exc:  # never a traceback: one line, naming what failed
        print(f"{PROG}: {describe_error(exc)}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; run the same command again to go on", file=sys.stderr)
        return 130
    finally:
        FIRST_CONTACT.arm(False)
    return 1


def open_vault(args, region):
    """(the vault's EC2 client through its restorer role, this account's id), or None."""
    if not args.vault_account:
        return None
    if getattr(args, "in_place", False):
        raise RestoreError("--vault-account restores side by side only: no --in-place")
    account = caller_account(region)
    return vault_client(args.vault_account, region, role=args.vault_role), account


def points_of(ec2, args, vault):
    if vault is None:
        return read_points(ec2, args.instance)
    return vault_points(ec2, vault[0], args.instance, vault[1])


def list_points(ec2, args, vault=None):
    points, instance, volumes = points_of(ec2, args, vault)
    region = ec2.meta.region_name
    name = tag_map(instance or {}).get(TAG_NAME)
    where = f"the vault {args.vault_account}, " if vault else ""
    print(f"Restore points of {args.instance}{f' ({name})' if name else ''} in {where}{region}:")
    if not points:
        print("  none: no automated snapshot here names this instance")
    clients = {}
    client_of = lambda r: clients.setdefault(r, make_client("ec2", r))  # noqa: E731
    for point in points:
        print(point_header(point))
        locks, copies = point_details(vault[0] if vault else ec2, point, client_of)
        for _, entry in sorted(point["devices"].items()):
            print("\n".join(entry_lines(entry, locks, copies)))
        for note in point_notes(point, instance, volumes):
            print(f"    note: {note}")
    return 0


def point_header(point):
    hows = sorted({e["how"] for e in point["devices"].values()})
    copies = " (copies)" if any(e["copy_of"] for e in point["devices"].values()) else ""
    return f"  {point['id']}  {point['time']:%Y-%m-%d %H:%M} UTC{copies}  {'; '.join(hows)}"


def point_notes(point, instance, volumes):
    """The point against the instance now; sets point["missing"]."""
    if instance is None and any(e["copy_of"] for e in point["devices"].values()):
        point["missing"] = []
        return ["copies: the instance is in their source region"]
    current = attached_devices(instance) if instance else None
    backup = {vid: tag_map(v).get(TAG_BACKUP) for vid, v in volumes.items()}
    notes, point["missing"] = compare(point, current, backup)
    return notes


def restore(ec2, args, vault=None):
    if args.undo:
        return undo(ec2, args)
    points, instance, volumes = points_of(ec2, args, vault)
    point = choose_point(points, args.at)
    notes = point_notes(point, instance, volumes)
    if args.start_archive_restore is not None:
        if vault:
            raise RestoreError("--start-archive-restore: the vault's copies are not archived")
        return start_archive_restore(ec2, point, args.start_archive_restore, args.dry_run)
    devices = sorted(point["devices"])
    check_point(point, devices, args.partial)
    if args.in_place:
        check_instance(instance, args.instance)
        unknown = [d for d in devices if d.startswith("?")]
        if unknown:
            raise RestoreError(f"device not known for {', '.join(unknown)}: restore side by side")
    zone = args.az or (instance or {}).get("Placement", {}).get("AvailabilityZone")
    if not zone:
        raise RestoreError(f"{args.instance} is not in this region: give --az")
    specs = plan_volumes(ec2, args, point, volumes, zone, notes)
    print_plan(args, point, specs, notes)
    if args.dry_run:
        return dry_run(ec2, args, instance, specs, vault)
    if args.in_place and not confirmed(args):
        raise RestoreError("not confirmed: nothing was done")
    if vault:
        print(f"Shared back from the vault {args.vault_account}:")
        share_back(vault[0], [s["SnapshotId"] for s in specs.values()], vault[1], print)
    made = make_volumes(ec2, args, point, specs, instance)
    if not args.in_place:
        print_attach_lines(made, args.instance)
        return 0
    print(f"In place: {args.instance}")
    swap(ec2, args.instance, restore_swaps(ec2, instance, made), record_restore, print)
    print("Done. The replaced volumes are kept; --undo puts them back.")
    return 0


def plan_volumes(ec2, args, point, volumes, zone, notes):
    """{device: CreateVolume's parameters}, checked: the rate, the keys."""
    options = {
        "type": args.type,
        "iops": args.iops,
        "throughput": args.throughput,
        "kms_key": args.kms_key,
        "init_rate": init_rate(args.init_rate),
    }
    sources = source_volumes(ec2, point, volumes, notes)
    specs = {
        device: volume_spec(point["devices"][device], sources[device], options)
        | {"AvailabilityZone": zone}
        for device in sorted(point["devices"])
    }
    check_keys(make_client("kms", ec2.meta.region_name), specs)
    return specs


def print_plan(args, point, specs, notes):
    how = "in place" if args.in_place else "side by side"
    print(f"Restore {args.instance} to {point['id']} ({point['time']:%Y-%m-%d %H:%M} UTC), {how}:")
    for device, spec in specs.items():
        extra = "".join(
            f" {k.lower()} {spec[k]}" for k in ("Iops", "Throughput", "KmsKeyId") if k in spec
        )
        line = f"  {device}: {spec['SnapshotId']} -> {spec['VolumeType']} {spec['Size']} GiB"
        print(f"{line} in {spec['AvailabilityZone']}{extra}")
        rate = spec.get("VolumeInitializationRate")
        if rate:
            print(f"    fully readable after about {init_minutes(spec['Size'], rate)} min")
    for note in notes:
        print(f"  note: {note}")


def make_volumes(ec2, args, point, specs, instance):
    """{device: restored volume id}, made once each (tags, then the ClientToken)."""
    purpose = IN_PLACE if args.in_place else SIDE_BY_SIDE
    name = tag_map(instance or {}).get(TAG_NAME)
    region, day = ec2.meta.region_name, point_day()
    made = {}
    print("Volumes:")
    for device, spec in specs.items():
        tags = restore_tags(point, point["devices"][device], args.instance, purpose, name)
        token = client_token(region, args.instance, point["id"], device, purpose, day)
        volume = make_volume(ec2, spec, tags, token, print)
        problem = volume_in_use(volume, args.instance)
        if problem:
            raise RestoreError(problem)
        made[device] = volume["VolumeId"]
    return made


def point_day():
    return datetime.now(UTC).date().isoformat()


def print_attach_lines(made, iid):
    print("Not attached. To attach one (the device must be free):")
    for device, vid in made.items():
        print(f"  aws ec2 attach-volume --volume-id {vid} --instance-id {iid} --device {device}")


def confirmed(args):
    if args.yes:
        return True
    print("This stops the instance and swaps its volumes. Type yes to go on: ", end="")
    try:
        return input().strip().lower() == "yes"
    except EOFError:
        return False


def dry_run(ec2, args, instance, specs, vault=None):
    """Ask AWS (DryRun) whether each call the restore would make is permitted."""
    checks = [(f"ec2:CreateVolume {d}", ec2.create_volume, spec) for d, spec in specs.items()]
    if vault:  # a vault copy is visible here only once shared, which a dry run does not do
        checks = []
        print("  not asked: sharing the vault copies and ec2:CreateVolume from them")
    if args.in_place:
        iid = args.instance
        checks.append(("ec2:StopInstances", ec2.stop_instances, {"InstanceIds": [iid]}))
        checks.append(("ec2:StartInstances", ec2.start_instances, {"InstanceIds": [iid]}))
    refused = [(what, why) for what, call, params in checks if (why := probe(call, **params))]
    for what, _, _ in checks:
        print(f"  {'refused' if any(w == what for w, _ in refused) else 'permitted'}: {what}")
    for what, why in refused:
        print(f"  {what}: {why}")
    if args.in_place:  # iam-policy-restore.json: only on volumes the restore has tagged
        print("  not asked: ec2:DetachVolume, ec2:AttachVolume (they need the restore's tags)")
    print("Dry run: nothing was changed.")
    return 1 if refused else 0


def undo(ec2, args):
    instance = instance_of(ec2, args.instance)
    check_instance(instance, args.instance)
    swaps = undo_swaps(ec2, args.instance)
    print(f"Undo on {args.instance}: put back the volumes a restore replaced:")
    for device, out, back in swaps:
        print(f"  {device}: {out} -> {back}")
    back_ids = [back for _, _, back in swaps]
    for volume in ec2.describe_volumes(VolumeIds=back_ids)["Volumes"]:
        problem = volume_in_use(volume, args.instance)
        if problem:
            raise RestoreError(problem)
    if args.dry_run:
        print("Dry run: nothing was changed.")
        return 0
    if not confirmed(args):
        raise RestoreError("not confirmed: nothing was done")
    swap(ec2, args.instance, swaps, record_undo, print)
    print("Done. The restored volumes are kept, tagged Restore_UndoneOn.")
    return 0


def start_archive_restore(ec2, point, days, dry_run):
    """Tag the point's archived snapshots Restore=<days>: the manager's next run starts
    their restore (manager/archive.py); nothing else is done."""
    archived = [e["snapshot_id"] for e in point["devices"].values() if e["archived"]]
    if not archived:
        print(f"{point['id']}: no snapshot of it is archived")
        return 0
    if not dry_run:
        try:
            ec2.create_tags(Resources=archived, Tags=[{"Key": TAG_RESTORE, "Value": str(days)}])
        except ClientError as exc:
            raise RestoreError(f"Restore tag not written: {describe_error(exc)}") from None
    print(f"{'Would tag' if dry_run else 'Tagged'} {TAG_RESTORE}={days}: {', '.join(archived)}.")
    print(
        f"The manager's next run starts the restore; it takes up to {ARCHIVE_RESTORE_HOURS} "
        "hours. Then run this restore again."
    )
    return 0
