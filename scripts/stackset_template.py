"""`make stackset-template`: write build/stackset.json for CloudFormation StackSets.

StackSets deploy one template to many accounts and regions, but Lambda code kept in S3
must sit in the function's own region. So this renders template.yaml as plain
CloudFormation (no SAM transform left) with each job file inline (Python functions may be
given inline). The handler becomes index.lambda_handler, CloudFormation's file name for
inline code.

Its size (KB: 1,000 bytes; about: within 5%; tests/artefacts/test_template.py fails when
these numbers stop being true): build/stackset.json is about 550 KB, a little over half of the
1 MB CloudFormation takes for a template given by URL (TemplateURL, CreateStackSet's too:
the CloudFormation quotas), and most of it is the three job files. The largest, the
manager's, is about 185 KB of source, under 55 KB zipped, far below the 4 MB zip
CloudFormation allows for a function's inline code (AWS::Lambda::Function, Code.ZipFile):
the template's 1 MB binds first. Past it, the code would have to go to S3, a bucket in
each region.
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


def dump(template):
    """The text main writes: what CloudFormation reads, and what its 1 MB limit counts."""
    return json.dumps(template, indent=1) + "\n"


def main(out=ROOT / "build" / "stackset.json"):
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(dump(render()))
    size = out.stat().st_size
    print(f"wrote {out} ({size / 1000:.0f} KB of the 1 MB CloudFormation takes from S3)")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
