"""The command line: the parser, a thin layer over the job's handler, one-line errors."""

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import boto3
import botocore
from botocore.exceptions import (
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
)

from ebs_snapshots.common.aws import FIRST_CONTACT, Unreachable, describe_error
from ebs_snapshots.common.events import resolve_region
from ebs_snapshots.common.reporting import JobFailed, report


def cli_parser(job: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"ebs_snapshot_{job}.py",
        description=description,
        epilog="Exit codes: 0 all done; 1 the run failed: some items failed (each named), "
        "the region could not be read at all, or AWS could not be reached (at once, nothing "
        "done); 2 bad usage, or no credentials, region or profile; 130 interrupted "
        "(Ctrl-C). Errors are one line on stderr, never a traceback.",
    )
    parser.add_argument(
        "--region",
        help="AWS region (default: AWS_REGION, AWS_DEFAULT_REGION or the profile's region)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="change nothing; list what would be done, and ask AWS (DryRun) "
        "whether each kind of action would be permitted",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "--verbose", action="store_true", help="also write the JSON log lines to stderr"
    )
    return parser


def cli(
    parser: argparse.ArgumentParser,
    handler: Callable[[dict[str, Any], None], dict[str, Any]],
    argv: Sequence[str] | None = None,
) -> int:
    """Command line: a thin layer over the job's handler. Returns the exit code."""
    args = parser.parse_args(argv)  # bad usage exits 2
    os.environ["LOG_LEVEL"] = "DEBUG" if args.verbose else "OFF"
    event = cli_event(args)
    try:
        if args.region is not None:  # given, even empty: never replaced by a default
            os.environ["AWS_REGION"] = region_name(args.region)
        check_setup()
        summary, code = cli_run(handler, event), 0
    except JobFailed as exc:
        summary, code = exc.summary, 1
        # A dry run tagged nothing with its id: running it again with the id adds nothing.
        again = "id" in event and not args.dry_run
        again_text = f"; run it again with --event-id {event['id']}" if again else ""
        print(f"{parser.prog}: {exc}{again_text}", file=sys.stderr)
    except SETUP_ERRORS as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 2
    except Unreachable as exc:  # nothing was done: its one line is all there is to say
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # never a traceback: one line, naming what failed
        print(f"{parser.prog}: {describe_error(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: what was done is done; a run again continues
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
    print(json.dumps(summary, indent=2, default=str) if args.json else report(summary))
    return code


def cli_event(args: argparse.Namespace) -> dict[str, Any]:
    """The event the command line's options make."""
    event: dict[str, Any] = {"dry_run": args.dry_run}
    if getattr(args, "instance_ids", None):
        event["instance_ids"] = args.instance_ids
    if getattr(args, "event_id", None):
        event["id"] = args.event_id
    return event


def cli_run(
    handler: Callable[[dict[str, Any], None], dict[str, Any]], event: dict[str, Any]
) -> dict[str, Any]:
    """The handler's run, its log on stderr (stdout is the report's), with AWS's first
    contact watched: an endpoint that cannot be reached at all stops the run at once
    (Unreachable), instead of 40 s of retries and a failure or warning from each step."""
    FIRST_CONTACT.arm(True)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return handler(event, None)
    finally:
        FIRST_CONTACT.arm(False)


# What stops a command-line run before it starts: exit 2, one line.
SETUP_ERRORS = (
    ValueError,
    NoCredentialsError,
    PartialCredentialsError,
    NoRegionError,
    ProfileNotFound,
)


def check_setup() -> None:
    """Before a command-line run: a region EC2 has, a profile that exists, and credentials."""
    region_name(resolve_region())
    if boto3.session.Session().get_credentials() is None:
        raise NoCredentialsError()


def region_name(text: str) -> str:
    """A region botocore knows for EC2, in any partition (offline data): a typo is refused
    at once instead of retried against an endpoint that does not exist."""
    session = boto3.session.Session()
    known = {
        region
        for partition in session.get_available_partitions()
        for region in session.get_available_regions("ec2", partition_name=partition)
    }
    if text not in known:
        raise ValueError(
            f"{text!r} is not an EC2 region (none of the {len(known)} that botocore "
            f"{botocore.__version__} knows; a newer botocore may know a new one)"
        )
    return text
