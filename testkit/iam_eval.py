"""IAM policy evaluation for the policy tests: moto evaluates no IAM, so the tests evaluate
the policies' conditions here, as the IAM user guide documents them:

- "IAM JSON policy elements: Condition operators"
  (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html):
  String and ARN operators ("ArnEquals and ArnLike ... behave identically": "Each of the six
  colon-delimited components of the ARN is checked separately and each can include
  multi-character match wildcards (*) or single-character match wildcards (?)"), Bool,
  ...IfExists (true when the key is absent) and Null. A key absent from the request context:
  a positive operator does not match, a negated one (StringNotEquals, ArnNotLike ...) does.
- "Multivalued context keys"
  (reference_policies_condition-single-vs-multi-valued-context-keys.html): ForAllValues
  "returns true if there are no context keys in the request", ForAnyValue false.
- "IAM policy elements: Variables and tags" (reference_policies_variables.html), "Policy
  variables with no value": a variable whose key is absent is "effectively null": "condition
  operators like StringEquals or StringLike do not match ... Inverted condition operators like
  StringNotEquals or StringNotLike do match against a null value"; "${key, 'default'}" gives
  the default instead; ${*}, ${?} and ${$} stand for those characters.
- "Policy evaluation logic": an explicit Deny in any applicable policy wins; else an Allow; else
  the request is implicitly denied. A cross-account request needs an Allow on both sides.

Condition key names are case-insensitive (the same page: "Key names are case-insensitive"), so
a context maps lower-cased keys to a value or a list of values (multivalued keys such as
aws:TagKeys). Not modelled: Numeric/Date/IP operators, NotPrincipal, and multi-valued keys
given to a plain (unqualified) operator, which match on any of their values.
"""

import re

NULL = object()  # a policy variable whose key is absent from the request context
SPECIAL = {"*": "*", "?": "?", "$": "$"}  # ${*}, ${?}, ${$}: the character itself, literally


def listed(value):
    return value if isinstance(value, list) else [value]


def lower_keys(context):
    return {k.lower(): v for k, v in context.items()}


def substitute(text, context):
    """A policy value with its ${...} variables replaced from the context: a list of
    (literal, is_literal) pieces, or NULL when a variable has no value and no default."""
    pieces, end = [], 0
    for m in re.finditer(r"\$\{([^}]*)\}", text):
        pieces.append((text[end : m.start()], False))
        inner = m[1].strip()
        if inner in SPECIAL:
            pieces.append((SPECIAL[inner], True))
        else:
            name, _, default = inner.partition(",")
            value = context.get(name.strip().lower())
            if isinstance(value, list) or value is None:  # multivalued keys do not resolve
                default = default.strip()
                if not (default.startswith("'") and default.endswith("'") and len(default) > 1):
                    return NULL
                value = default[1:-1]
            pieces.append((value, True))  # a variable's value is never a wildcard
        end = m.end()
    pieces.append((text[end:], False))
    return pieces


def glob(pieces, wildcards):
    """A regular expression for the substituted value: * and ? are wildcards only where the
    operator allows them and only in the policy's own text."""
    out = []
    for text, literal in pieces:
        if literal or not wildcards:
            out.append(re.escape(text))
        else:
            wild = {"*": ".*", "?": "."}
            out.append("".join(wild.get(c) or re.escape(c) for c in text))
    return "".join(out)


def matches(op, expected, value, context):
    """Whether one request value matches one policy value under the (positive) operator. A
    variable with no value matches nothing, so a negated operator on it holds."""
    pieces = substitute(expected, context)
    if pieces is NULL:
        return False  # "There is no equal or like value"
    if op.startswith("Arn"):
        # component by component: a wildcard in one of the first five never spans a colon
        out, colons = [], 0
        for text, literal in pieces:
            for c in text:
                if c in "*?" and not literal:
                    out.append(("[^:]" if colons < 5 else ".") + ("*" if c == "*" else ""))
                else:
                    out.append(re.escape(c))
                colons += c == ":"
        return value.count(":") >= 5 and re.fullmatch("".join(out), value, re.S) is not None
    if op == "Bool":
        return value.lower() == "".join(p for p, _ in pieces).lower()
    flags = re.I if op.endswith("IgnoreCase") else 0
    regex = glob(pieces, wildcards=op.startswith("StringLike"))
    return re.fullmatch(regex, value, flags | re.S) is not None


def holds(operator, key, expected, context):
    """One condition (one operator, one key, its values), as IAM evaluates it."""
    context = lower_keys(context)
    expected = listed(expected)
    qualifier, _, op = operator.rpartition(":")
    value = context.get(key.lower())
    absent = value is None or value == []
    if op == "Null":
        return absent == (str(expected[0]).lower() == "true")
    if op.endswith("IfExists"):
        if absent:
            return True
        op = op[: -len("IfExists")]
    negated = op.startswith(("StringNot", "ArnNot"))
    base = op.replace("Not", "", 1) if negated else op
    if absent:
        # "ForAllValues ... returns true if there are no context keys in the request"
        return qualifier == "ForAllValues" or (negated and not qualifier)
    hits = [any(matches(base, e, v, context) for e in expected) for v in listed(value)]
    if qualifier == "ForAnyValue":
        return any(not h for h in hits) if negated else any(hits)
    if qualifier == "ForAllValues":
        return all(not h for h in hits) if negated else all(hits)
    return not any(hits) if negated else any(hits)


def action_matches(patterns, action):
    # Action names are case-insensitive ("ec2:DescribeInstances" = "EC2:describeinstances").
    return any(re.fullmatch(glob([(p, False)], True), action, re.I) for p in listed(patterns))


def resource_matches(patterns, resource, context=None):
    """A Resource element against the request's resource: its policy variables replaced
    from the context (one with no value matches nothing), its own * and ? wildcards."""
    for pattern in listed(patterns):
        pieces = substitute(pattern, context or {})
        if pieces is not NULL and re.fullmatch(glob(pieces, True), resource):
            return True
    return False


def principal_matches(principal_element, caller):
    """A resource (or trust) policy's Principal against the caller: {"account": ..., "arn":
    ...} or {"service": ...}. An account id or its root ARN stands for every principal of that
    account (whose own policies must also allow the request)."""
    if principal_element == "*":
        return True
    if "service" in caller:
        return caller["service"] in listed(principal_element.get("Service", []))
    for entry in listed(principal_element.get("AWS", [])):
        if entry == "*" or entry == caller.get("arn"):
            return True
        if entry in (caller["account"], f"arn:aws:iam::{caller['account']}:root"):
            return True
    return False


def applies(stmt, action, resource, context, caller=None):
    if "Action" in stmt:
        if not action_matches(stmt["Action"], action):
            return False
    elif action_matches(stmt["NotAction"], action):
        return False
    if "Resource" in stmt and not resource_matches(stmt["Resource"], resource, context):
        return False
    if "NotResource" in stmt and resource_matches(stmt["NotResource"], resource, context):
        return False
    if "Principal" in stmt and (caller is None or not principal_matches(stmt["Principal"], caller)):
        return False
    conditions = stmt.get("Condition", {})
    return all(holds(op, k, v, context) for op, keys in conditions.items() for k, v in keys.items())


def decision(policy, action, resource, context, caller=None):
    """ "allowed", "denied" (an explicit Deny applies) or "not allowed" (no Allow applies)."""
    statements = policy["Statement"]
    found = {s["Effect"] for s in statements if applies(s, action, resource, context, caller)}
    return "denied" if "Deny" in found else "allowed" if "Allow" in found else "not allowed"


def combined(*decisions):
    """Several policies that must each allow a request (identity policy and trust policy of a
    cross-account AssumeRole; an SCP and the identity policy): one Deny denies."""
    if "denied" in decisions:
        return "denied"
    return "allowed" if all(d == "allowed" for d in decisions) else "not allowed"


def findings_above_low(text):
    """parliament's findings on a policy document, as (severity, issue, detail), above LOW."""
    from parliament import analyze_policy_string, enhance_finding

    policy = analyze_policy_string(text)
    for finding in policy.findings:
        enhance_finding(finding)
    return [
        (f.severity, f.issue, f.detail)
        for f in policy.findings
        if f.severity not in ("LOW", "INFO")
    ]
