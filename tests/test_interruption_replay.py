"""AWS's published sample events, replayed through the interruption rules, targets and queue as the program renders
them (moto's EventBridge matches each rule's pattern and delivers to its SQS target).

The events are AWS's own, verbatim, each with the page it is published on (tests/data/aws_sample_events.json); the
rules, targets, queue and queue policy come from the default stack's render. moto does not evaluate the queue policy
when EventBridge delivers (moto 5.2.5 moto/events/models.py `_send_to_sqs_queue` calls the SQS backend's
`send_message` directly), so the policy is judged on its own below by AWS's documented evaluation rules.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tests.conftest import render_stack

SAMPLES = json.loads((Path(__file__).parent / "data" / "aws_sample_events.json").read_text(encoding="utf-8"))["events"]
RULE = "aws:cloudwatch/eventRule:EventRule"
TARGET = "aws:cloudwatch/eventTarget:EventTarget"
REGION = "us-west-2"  # the default stack's (tests/conftest.py DEFAULT_CONFIG)


def put_events_entry(event: dict[str, Any]) -> dict[str, Any]:
    """The PutEvents entry that makes EventBridge emit `event`. The envelope's id, account, region and time are the
    bus's own; `resources` is passed only when the sample has it as a list (one sample has a placeholder string).
    Real EventBridge refuses PutEvents for `aws.*` sources from customers; moto lets a test stand in for the service."""
    entry = {"Source": event["source"], "DetailType": event["detail-type"], "Detail": json.dumps(event["detail"])}
    if isinstance(event.get("resources"), list):
        entry["Resources"] = event["resources"]
    return entry


@pytest.fixture(scope="module")
def rendered():
    stack = render_stack()
    return {
        "queue": stack.one("aws:sqs/queue:Queue", "karpenter-interruption").inputs,
        "policy": json.loads(stack.one("aws:sqs/queuePolicy:QueuePolicy", "karpenter-interruption").inputs["policy"]),
        "rules": [r for r in stack.of_type(RULE) if r.name.startswith("karpenter-")],
        "targets": [t for t in stack.of_type(TARGET) if t.name.startswith("karpenter-")],
    }


@pytest.fixture(scope="module")
def replay(rendered):
    """sample name -> the message bodies the interruption queue received for it (each sample replayed alone)."""
    with pytest.MonkeyPatch.context() as env, mock_aws():
        for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
            env.setenv(key, value)
        env.delenv("AWS_PROFILE", raising=False)
        sqs, events = (boto3.client(service, region_name=REGION) for service in ("sqs", "events"))
        queue = rendered["queue"]
        url = sqs.create_queue(
            QueueName=queue["name"],
            Attributes={
                "MessageRetentionPeriod": str(queue["messageRetentionSeconds"]),
                "SqsManagedSseEnabled": str(queue["sqsManagedSseEnabled"]).lower(),
                "Policy": json.dumps(rendered["policy"]),
            },
        )["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        for rule in rendered["rules"]:
            # moto delivers whatever the rule's state; the rendered rules set none, so AWS's default (ENABLED) holds.
            assert rule.inputs.get("state", "ENABLED") == "ENABLED", rule.name
            events.put_rule(Name=rule.name, EventPattern=rule.inputs["eventPattern"], State="ENABLED")
        for target in rendered["targets"]:
            # The rendered target must name the queue that exists, or EventBridge has nowhere to deliver.
            assert target.inputs["arn"] == queue_arn, target.name
            events.put_targets(
                Rule=target.inputs["rule"], Targets=[{"Id": target.inputs["targetId"], "Arn": target.inputs["arn"]}]
            )
        received = {}
        for sample in SAMPLES:
            answer = events.put_events(Entries=[put_events_entry(sample["event"])])
            assert answer["FailedEntryCount"] == 0, (sample["name"], answer)
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            for message in messages:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            received[sample["name"]] = [json.loads(m["Body"]) for m in messages]
        yield received


@pytest.mark.parametrize("sample", [s for s in SAMPLES if s["delivered"]], ids=lambda s: s["name"])
def test_published_interruption_event_arrives_once_as_aws_sent_it(replay, sample):
    (body,) = replay[sample["name"]]
    event = sample["event"]
    # What Karpenter reads: source and detail-type pick its parser (karpenter-provider-aws v1.14.1
    # pkg/controllers/interruption/parser.go newParserKey, with the envelope's version), which parses the detail.
    assert body["source"] == event["source"]
    assert body["detail-type"] == event["detail-type"]
    assert body["detail"] == event["detail"]


@pytest.mark.parametrize("sample", [s for s in SAMPLES if not s["delivered"]], ids=lambda s: s["name"])
def test_published_event_outside_the_interruption_rules_never_arrives(replay, sample):
    assert replay[sample["name"]] == []


def test_every_rendered_rule_has_a_published_sample_and_every_interruption_sample_a_rule(rendered):
    patterns = [json.loads(r.inputs["eventPattern"]) for r in rendered["rules"]]
    ruled = {(p["source"][0], p["detail-type"][0]) for p in patterns}
    assert all(len(p["source"]) == len(p["detail-type"]) == 1 and set(p) == {"source", "detail-type"} for p in patterns)
    sampled = {(s["event"]["source"], s["event"]["detail-type"]) for s in SAMPLES if s["delivered"]}
    assert ruled == sampled


# --- the queue policy, judged by AWS's documented evaluation ------------------------------------------------------
# IAM User Guide, "Policy evaluation logic" (reference_policies_evaluation-logic.html): a request is denied if any
# statement that applies denies it; else allowed if a statement that applies allows it (here a resource-based policy
# in the queue's own account, which suffices for a service principal); else implicitly denied. A statement applies
# when its Principal, Action, Resource and Condition all match the request (reference_policies_elements_*.html;
# actions are case-insensitive, `*` and `?` are wildcards). Only the elements this policy uses are understood: any
# other element or condition operator fails the test rather than being ignored.
KNOWN_ELEMENTS = {"Sid", "Effect", "Principal", "Action", "Resource", "Condition"}


def _listed(value: str | list[str]) -> list[str]:
    return value if isinstance(value, list) else [value]


def _principal_matches(principal: str | dict, request: dict) -> bool:
    if principal == "*":
        return True
    assert set(principal) <= {"Service", "AWS"}, f"principal kind not understood: {principal}"
    return request["principal"] in _listed(principal.get(request["principal_kind"], []))


def _condition_matches(condition: dict, context: dict[str, bool]) -> bool:
    """`Bool` only (reference_policies_elements_condition_operators.html#Conditions_Boolean): a key absent from the
    request does not match; values compare as lower-case "true"/"false"."""
    assert set(condition) <= {"Bool"}, f"condition operator not understood: {condition}"
    return all(
        key in context and str(context[key]).lower() in [v.lower() for v in _listed(values)]
        for key, values in condition.get("Bool", {}).items()
    )


def evaluate(policy: dict, request: dict) -> str:
    """'Deny' (explicit), 'Allow' or 'ImplicitDeny' for one request against one resource-based policy."""
    decisions = set()
    for statement in policy["Statement"]:
        assert set(statement) <= KNOWN_ELEMENTS, f"policy element not understood: {set(statement) - KNOWN_ELEMENTS}"
        applies = (
            _principal_matches(statement["Principal"], request)
            and any(fnmatch.fnmatchcase(request["action"].lower(), a.lower()) for a in _listed(statement["Action"]))
            and any(fnmatch.fnmatchcase(request["resource"], r) for r in _listed(statement["Resource"]))
            and _condition_matches(statement.get("Condition", {}), request["context"])
        )
        if applies:
            decisions.add(statement["Effect"])
    return "Deny" if "Deny" in decisions else "Allow" if "Allow" in decisions else "ImplicitDeny"


def request(queue_arn: str, *, principal="events.amazonaws.com", kind="Service", action="sqs:SendMessage", tls=True):
    return {
        "principal": principal,
        "principal_kind": kind,
        "action": action,
        "resource": queue_arn,
        "context": {"aws:SecureTransport": tls},
    }


@pytest.fixture(scope="module")
def queue_arn(rendered) -> str:
    (arn,) = {t.inputs["arn"] for t in rendered["targets"]}
    return arn


def test_queue_policy_lets_eventbridge_deliver_to_the_rules_target(rendered, queue_arn):
    # EventBridge needs the SQS target's policy to allow events.amazonaws.com sqs:SendMessage (EventBridge User Guide,
    # eb-use-resource-based.html "Amazon SQS permissions"); it delivers over TLS, which upstream's identical deny
    # statement (getting-started CloudFormation v1.14, KarpenterInterruptionQueuePolicy) also presumes.
    assert evaluate(rendered["policy"], request(queue_arn)) == "Allow"
    assert evaluate(rendered["policy"], request(queue_arn, action="SQS:sendmessage")) == "Allow"


@pytest.mark.parametrize(
    ("case", "overrides", "decision"),
    [
        ("plain HTTP, even for EventBridge", {"tls": False}, "Deny"),
        ("EventBridge reading the queue", {"action": "sqs:ReceiveMessage"}, "ImplicitDeny"),
        ("EventBridge purging the queue", {"action": "sqs:PurgeQueue"}, "ImplicitDeny"),
        ("another service", {"principal": "sns.amazonaws.com"}, "ImplicitDeny"),
        ("another account", {"principal": "arn:aws:iam::111122223333:root", "kind": "AWS"}, "ImplicitDeny"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_queue_policy_refuses_what_it_must(rendered, queue_arn, case, overrides, decision):
    assert evaluate(rendered["policy"], request(queue_arn, **overrides)) == decision, case


def test_queue_policy_does_not_reach_beyond_this_queue(rendered, queue_arn):
    other_queue = queue_arn.rsplit(":", 1)[0] + ":another-queue"
    assert evaluate(rendered["policy"], request(other_queue)) == "ImplicitDeny"
