"""`make stackset-template`: write build/stackset.json for CloudFormation StackSets.

StackSets deploy one template to many accounts and regions, but Lambda code kept in S3
must sit in the function's own region. So this renders template.yaml as plain
CloudFormation (no SAM transform left) with each job file inline (Python functions may be
given inline; the result is about 100 KB, well under the 1 MB CloudFormation accepts for
a template in S3). The handler becomes index.lambda_handler, CloudFormation's file name
for inline code.
"""

import json
import os
import sys
from pathlib import Path

from cfnlint.decode import cfn_yaml
from samtranslator.translator.transform import transform

ROOT = Path(__file__).resolve().parent.parent


class NoManagedPolicies:
    """The template names no managed policy, so the translator never needs to look one up."""

    def load(self):
        return {}


def inline_code(template):
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        props = resource["Properties"]
        module = props["Handler"].split(".")[0]
        props.pop("CodeUri")
        resource.pop("Metadata", None)
        props["InlineCode"] = (ROOT / f"{module}.py").read_text()
        props["Handler"] = "index.lambda_handler"
    return template


def render():
    """The StackSet template, as a dict of plain CloudFormation."""
    template = json.loads(json.dumps(cfn_yaml.load(str(ROOT / "template.yaml"))))
    # The translator wants a region to exist; it writes none into the output.
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return transform(inline_code(template), {}, NoManagedPolicies())


def main(out=ROOT / "build" / "stackset.json"):
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(render(), indent=1) + "\n")
    print(f"wrote {out.relative_to(ROOT)} ({out.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
