"""The IAM and queue policies `terraform apply` deployed, enforced by a real policy engine.

MiniStack evaluates IAM only when started with AUTH=true, and the session stack does not run that
way: MiniStack 1.5.33 authorizes SendMessageBatch, DeleteMessageBatch and
ChangeMessageVisibilityBatch as IAM actions of those names, where AWS authorizes them as
SendMessage, DeleteMessage and ChangeMessageVisibility, so every Lambda's batch would be denied.
Instead, the policy documents are read back from the session stack (exactly what Terraform
created) into a second MiniStack that enforces IAM: queues of the same names in the same account
and region (so the same ARNs) with the deployed queue and redrive policies, and roles of the same
names (the functions' roles, and the consumers' and operators' roles the stack names) holding the
deployed identity policies, each batch action's MiniStack name added beside the action AWS
authorizes it as (`with_batch_actions`, which grants what the policy grants on AWS). Each
principal then tries calls, allowed and forbidden, and the crm consumer's role runs the real
worker.

What MiniStack 1.5.33 does with a queue policy (read from its source; the controls below check
it): an explicit Deny in it wins over any identity Allow, for SendMessage and SendMessageBatch
alike, and the caller is the principal its access key belongs to. Where it differs from AWS:
- aws:PrincipalArn of a role session is the session's ARN (arn:aws:sts::<account>:assumed-role/
  <role>/<session>); on AWS it is the role's ARN, which the policies name. The policies are loaded
  with each named role's session pattern added beside it (`for_this_emulator`), which excepts
  no one else; `test_the_emulator_still_needs_the_session_patterns` fails once MiniStack does as
  AWS does, and the patterns can go.
- EventBridge delivers to SQS without consulting the queue policy (MiniStack's SNS and S3
  deliveries do), so `test_eventbridge_may_deliver_only_for_its_own_rule` puts the EventBridge
  cases to MiniStack's policy engine directly, the way those deliveries do.
Bus policies are not evaluated by MiniStack at all: terraform/tests checks the bus policy's
document instead.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from apps.consumers.metrics import ConsumerMetrics
from apps.consumers.worker import ConsumerWorker, RedriveTarget
from datasync.contract import RecordPack
from datasync.core.stores import open_store
from devstack.settings import stack_settings
from tests.builders import record
from tests.pipeline import free_port

pytestmark = pytest.mark.integration

DENIED = {"AccessDenied", "AccessDeniedException"}
REGION = "us-east-1"
ROOT_KEYS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}  # the emulator's root
# Every queue kind: the outputs that name its URL and ARN, by destination or (intake) alone.
DESTINATION_QUEUES = {"queue": "queue", "dlq": "dlq", "buffer": "buffer_queue"}
INTAKE_QUEUES = {"intake": "intake_queue", "intake-dlq": "intake_dlq"}
# Broad SQS rights, as an administrator's or a careless developer role's: only the queue
# policies stand between such a principal and the queues.
EVERY_SQS_ACTION = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}],
}
ROLE_ARN = re.compile(r"^arn:(aws[a-z-]*):iam::(\d{12}):role/(?:.*/)?([^/]+)$")
# The batch calls as MiniStack 1.5.33 names them in identity policies, by the action AWS
# authorizes them as.
BATCH_ACTIONS = {
    "sqs:SendMessage": "sqs:SendMessageBatch",
    "sqs:DeleteMessage": "sqs:DeleteMessageBatch",
    "sqs:ChangeMessageVisibility": "sqs:ChangeMessageVisibilityBatch",
}


def queue_name(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def role_name(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def deployed_queues(outputs: dict[str, Any]) -> dict[tuple[str, str | None], tuple[str, str]]:
    """(kind, destination or None) -> (URL, ARN) of every queue Terraform created."""
    queues: dict[tuple[str, str | None], tuple[str, str]] = {}
    for kind, key in INTAKE_QUEUES.items():
        queues[kind, None] = (outputs[f"{key}_url"], outputs[f"{key}_arn"])
    for kind, key in DESTINATION_QUEUES.items():
        for destination, url in outputs[f"{key}_urls"].items():
            queues[kind, destination] = (url, outputs[f"{key}_arns"][destination])
    return queues


def own_rule(outputs: dict[str, Any], kind: str, destination: str | None) -> str | None:
    """The EventBridge rule that delivers to a queue (as target or target DLQ), if any."""
    if kind.startswith("intake"):
        return outputs["intake_rule_arn"]
    return None if kind == "queue" else outputs["rule_arns"][destination]


@pytest.fixture(scope="module")
def deployed(stack, pipeline, workload_role_arns) -> dict[str, Any]:
    """What Terraform deployed: names, ARNs and the policy documents as IAM and SQS hold them."""
    outputs = stack.outputs
    iam = pipeline.aws("iam")
    sqs = pipeline.aws("sqs")

    def managed_document(arn: str) -> dict:
        version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
        return iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]

    def function_role(function: str) -> dict:
        arn = pipeline.aws("lambda").get_function_configuration(FunctionName=function)["Role"]
        name = role_name(arn)
        return {
            "name": name,
            "trust": iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"],
            "attached": iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"],
            "inline": [
                iam.get_role_policy(RoleName=name, PolicyName=p)["PolicyDocument"]
                for p in iam.list_role_policies(RoleName=name)["PolicyNames"]
            ],
        }

    queues = deployed_queues(outputs)
    return {
        "outputs": outputs,
        "destinations": sorted(outputs["queue_urls"]),
        "queues": queues,
        "queue_attributes": {
            where: sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=["Policy", "RedrivePolicy"]
            )["Attributes"]
            for where, (url, _) in queues.items()
        },
        "transform_roles": {
            d: function_role(f) for d, f in outputs["lambda_function_names"].items()
        },
        "intake_role": function_role(outputs["intake_function_name"]),
        "consumer_policies": {
            d: managed_document(arn) for d, arn in outputs["consumer_policy_arns"].items()
        },
        "api_policy": managed_document(outputs["api_policy_arn"]),
        "dashboard_policy": managed_document(outputs["dashboard_policy_arn"]),
        "workload_roles": workload_role_arns,
    }


def for_this_emulator(policy: str) -> str:
    """A queue policy as deployed, each role it names by aws:PrincipalArn followed by that role's
    session ARN pattern, which is how MiniStack 1.5.33 reports a role session's aws:PrincipalArn
    (AWS reports the role's ARN). The pattern matches sessions of that role only."""
    document = json.loads(policy)
    for statement in document["Statement"]:
        for block in statement.get("Condition", {}).values():
            arns = block.get("aws:PrincipalArn")
            if arns is None:
                continue
            named = [arns] if isinstance(arns, str) else arns
            sessions = []
            for arn in named:
                partition, account, name = ROLE_ARN.fullmatch(arn).groups()
                sessions.append(f"arn:{partition}:sts::{account}:assumed-role/{name}/*")
            block["aws:PrincipalArn"] = named + sessions
    return json.dumps(document)


def with_batch_actions(policy: dict) -> dict:
    """An identity policy as deployed, each SQS action that has a batch call followed by that
    call's own name, which is how MiniStack 1.5.33 authorizes it (AWS authorizes SendMessageBatch
    as SendMessage, and so on). Grants exactly what the policy grants on AWS."""
    document = json.loads(json.dumps(policy))
    for statement in document["Statement"]:
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        statement["Action"] = actions + [BATCH_ACTIONS[a] for a in actions if a in BATCH_ACTIONS]
    return document


class EnforcingEmulator:
    """A MiniStack with AUTH=true holding the deployed queues and bus (same names, same ARNs)."""

    def __init__(self, url: str, deployed: dict[str, Any]):
        self.url = url
        outputs = deployed["outputs"]
        self.root = {"endpoint_url": url, "region_name": REGION, **ROOT_KEYS}
        sqs = boto3.client("sqs", **self.root)
        self.queue_urls: dict[str, dict[str | None, str]] = {}
        # The DLQs first: the other queues' redrive policies name them.
        order = sorted(deployed["queues"], key=lambda where: "dlq" not in where[0])
        for where in order:
            url_there, expected_arn = deployed["queues"][where]
            attributes = dict(deployed["queue_attributes"][where])
            if "Policy" in attributes:
                attributes["Policy"] = for_this_emulator(attributes["Policy"])
            created = sqs.create_queue(QueueName=queue_name(url_there), Attributes=attributes)
            arn = sqs.get_queue_attributes(
                QueueUrl=created["QueueUrl"], AttributeNames=["QueueArn"]
            )
            assert arn["Attributes"]["QueueArn"] == expected_arn, "ARNs differ: the test is void"
            self.queue_urls.setdefault(where[0], {})[where[1]] = created["QueueUrl"]
        # A queue without a policy: what an identity Allow alone lets a principal do.
        self.queue_urls["unguarded"] = {
            None: sqs.create_queue(QueueName="probe-unguarded")["QueueUrl"]
        }
        self.bus = outputs["event_bus_name"]
        boto3.client("events", **self.root).create_event_bus(Name=self.bus)
        self.account = outputs["event_bus_arn"].split(":")[4]
        self._sessions: dict[str, Any] = {}

    def session_for(self, name: str, policy: dict | None, attach: str = "inline"):
        """Credentials of a new role holding ``policy`` (inline, or as a managed policy)."""
        iam = boto3.client("iam", **self.root)
        trust = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                           "Principal": {"AWS": f"arn:aws:iam::{self.account}:root"}}],
        }  # fmt: skip
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
        if policy is not None and attach == "inline":
            iam.put_role_policy(RoleName=name, PolicyName=name, PolicyDocument=json.dumps(policy))
        elif policy is not None:
            arn = iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(policy))
            iam.attach_role_policy(RoleName=name, PolicyArn=arn["Policy"]["Arn"])
        keys = boto3.client("sts", **self.root).assume_role(
            RoleArn=f"arn:aws:iam::{self.account}:role/{name}", RoleSessionName="probe"
        )["Credentials"]
        return boto3.session.Session(
            aws_access_key_id=keys["AccessKeyId"],
            aws_secret_access_key=keys["SecretAccessKey"],
            aws_session_token=keys["SessionToken"],
            region_name=REGION,
        )

    def role(self, name: str, policy: dict | None, attach: str = "inline"):
        """``session_for``, once per role name (the roles below are shared by several tests)."""
        if name not in self._sessions:
            self._sessions[name] = self.session_for(name, policy, attach)
        return self._sessions[name]


@pytest.fixture(scope="module")
def enforcing(tmp_path_factory, deployed) -> Iterator[EnforcingEmulator]:
    port = free_port()
    log = tmp_path_factory.mktemp("enforcing") / "ministack.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DATASYNC_"))}
    env.update(GATEWAY_PORT=str(port), BIND_HOST="127.0.0.1", AUTH="true", LOG_LEVEL="WARNING")
    with log.open("ab") as out:
        process = subprocess.Popen(  # noqa: S603 - the pinned emulator of .tools/ministack
            [str(stack_settings().ministack_venv / "bin" / "ministack")],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, process, log)
        yield EnforcingEmulator(url, deployed)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def wait_healthy(url: str, process: subprocess.Popen, log) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the enforcing MiniStack exited ({process.returncode}); see {log}")
        try:
            with urllib.request.urlopen(url + "/_ministack/health", timeout=2):  # noqa: S310 - loopback
                return
        except OSError:
            time.sleep(0.25)
    pytest.fail(f"the enforcing MiniStack did not start within 60 s; see {log}")


def authorized(call: Callable[[], Any]) -> bool:
    """Did IAM let the call through? (It may still fail after that, e.g. on a fake receipt handle.)"""
    try:
        call()
    except ClientError as error:
        return error.response["Error"]["Code"] not in DENIED
    return True


def check(expectations: list[tuple[str, Callable[[], Any], bool]]) -> None:
    wrong = [
        f"{label}: {'allowed' if allowed else 'denied'}, must be {'allowed' if want else 'denied'}"
        for label, call, want in expectations
        if (allowed := authorized(call)) != want
    ]
    assert not wrong, "\n".join(wrong)


class Queues:
    """SQS calls of one principal on the enforcing emulator, by queue kind and destination."""

    def __init__(self, session, emulator: EnforcingEmulator):
        self.sqs = session.client("sqs", endpoint_url=emulator.url)
        self.urls = emulator.queue_urls

    def send(self, kind, d=None):
        return lambda: self.sqs.send_message(QueueUrl=self.urls[kind][d], MessageBody="{}")

    def send_batch(self, kind, d=None):
        def call():
            entries = [{"Id": "probe", "MessageBody": "{}"}]
            failed = self.sqs.send_message_batch(QueueUrl=self.urls[kind][d], Entries=entries)
            if failed.get("Failed"):  # a per-entry refusal, not a transport error
                error = {"Code": failed["Failed"][0]["Code"], "Message": "entry refused"}
                raise ClientError({"Error": error}, "SendMessageBatch")

        return call

    def receive(self, kind, d=None):
        return lambda: self.sqs.receive_message(QueueUrl=self.urls[kind][d], WaitTimeSeconds=0)

    def delete(self, kind, d=None):
        return lambda: self.sqs.delete_message(QueueUrl=self.urls[kind][d], ReceiptHandle="probe")

    def hide(self, kind, d=None):
        return lambda: self.sqs.change_message_visibility(
            QueueUrl=self.urls[kind][d], ReceiptHandle="probe", VisibilityTimeout=1
        )

    def attributes(self, kind, d=None):
        return lambda: self.sqs.get_queue_attributes(QueueUrl=self.urls[kind][d])

    def purge(self, kind, d=None):
        return lambda: self.sqs.purge_queue(QueueUrl=self.urls[kind][d])


def every_queue(deployed) -> list[tuple[str, str | None]]:
    return sorted(deployed["queues"], key=lambda where: (where[0], where[1] or ""))


def label(where: tuple[str, str | None]) -> str:
    kind, destination = where
    return kind if destination is None else f"{destination} {kind}"


@pytest.fixture(scope="module")
def roles(enforcing, deployed) -> dict[str, Any]:
    """Sessions of the pipeline's own roles, named as deployed and holding the deployed policies,
    and of two roles the queue policies do not name."""
    workload = deployed["workload_roles"]
    [operator] = workload["operators"]
    sessions = {
        "intake": enforcing.role(
            deployed["intake_role"]["name"],
            with_batch_actions(deployed["intake_role"]["inline"][0]),
        ),
        # An operator's role often has broad SQS rights: the queue policies alone keep its sends
        # to the queues a redrive goes to.
        "operator": enforcing.role(role_name(operator), EVERY_SQS_ACTION),
        "foreign": enforcing.role("probe-foreign", EVERY_SQS_ACTION),
    }
    for d in deployed["destinations"]:
        transform = deployed["transform_roles"][d]
        sessions[f"transform-{d}"] = enforcing.role(
            transform["name"], with_batch_actions(transform["inline"][0])
        )
        [consumer] = workload["consumers"][d]
        sessions[f"consumer-{d}"] = enforcing.role(
            role_name(consumer), with_batch_actions(deployed["consumer_policies"][d]), "managed"
        )
    return sessions


def put_event(session, emulator: EnforcingEmulator, bus: str):
    events = session.client("events", endpoint_url=emulator.url)
    entry = {
        "Source": "datasync.api",
        "DetailType": "UserCreated",
        "Detail": "{}",
        "EventBusName": bus,
    }
    return lambda: events.put_events(Entries=[entry])


def test_the_enforcing_emulator_denies_what_no_policy_allows(enforcing, deployed):
    """The control: without it, every 'denied' below could be a misconfigured emulator."""
    destination = deployed["destinations"][0]
    nobody = Queues(enforcing.session_for("probe-nobody", None), enforcing)
    check([(f"receive {destination} queue", nobody.receive("queue", destination), False)])


def test_a_principal_the_queue_policies_do_not_name_may_send_to_no_queue(
    enforcing, deployed, roles
):
    q = Queues(roles["foreign"], enforcing)
    # The controls: its identity policy lets it send where no queue policy says otherwise, and
    # the queue policies deny sending only.
    expectations = [
        ("send to a queue without a policy", q.send("unguarded"), True),
        ("batch-send to a queue without a policy", q.send_batch("unguarded"), True),
        ("receive from the intake queue", q.receive("intake"), True),
    ]
    for where in every_queue(deployed):
        expectations += [
            (f"send to the {label(where)}", q.send(*where), False),
            (f"batch-send to the {label(where)}", q.send_batch(*where), False),
        ]
    check(expectations)


def test_function_roles_carry_only_their_inline_policy(deployed):
    for name, role in [*deployed["transform_roles"].items(), ("intake", deployed["intake_role"])]:
        assert role["attached"] == [], f"{name}: managed policies attached"
        assert len(role["inline"]) == 1, f"{name}: {len(role['inline'])} inline policies"
        principals = [s["Principal"] for s in role["trust"]["Statement"]]
        assert principals == [{"Service": "lambda.amazonaws.com"}], principals


def test_the_intake_role_may_only_send_packs_and_hand_overs(enforcing, deployed, roles):
    q = Queues(roles["intake"], enforcing)
    expectations = [
        ("receive from the intake queue", q.receive("intake"), True),
        ("delete from the intake queue", q.delete("intake"), True),
        ("send to the intake queue", q.send("intake"), False),
        ("send to the intake DLQ", q.send("intake-dlq"), False),
        ("publish to the bus", put_event(roles["intake"], enforcing, enforcing.bus), False),
    ]
    for d in deployed["destinations"]:
        expectations += [
            (f"send to the {d} queue", q.send("queue", d), True),
            (f"hand over to the {d} buffer", q.send("buffer", d), True),
            (f"send to the {d} DLQ", q.send("dlq", d), False),
            (f"receive from the {d} queue", q.receive("queue", d), False),
        ]
    check(expectations)


@pytest.mark.parametrize("destination", ["crm", "marketing", "analytics"])
def test_each_transform_role_may_only_use_its_own_queues(enforcing, deployed, roles, destination):
    session = roles[f"transform-{destination}"]
    q = Queues(session, enforcing)
    d = destination
    expectations = [
        ("send to its destination queue", q.send("queue", d), True),
        ("send to its DLQ", q.send("dlq", d), True),
        ("receive from its buffer", q.receive("buffer", d), True),
        ("delete from its buffer", q.delete("buffer", d), True),
        ("change visibility in its buffer", q.hide("buffer", d), True),
        ("read its buffer's attributes", q.attributes("buffer", d), True),
        ("send to its own buffer", q.send("buffer", d), False),
        ("receive from its destination queue", q.receive("queue", d), False),
        ("receive from its DLQ", q.receive("dlq", d), False),
        ("purge its destination queue", q.purge("queue", d), False),
        ("publish to the bus", put_event(session, enforcing, enforcing.bus), False),
    ]
    for other in (o for o in deployed["destinations"] if o != d):
        expectations += [
            (f"send to the {other} queue", q.send("queue", other), False),
            (f"send to the {other} DLQ", q.send("dlq", other), False),
            (f"send to the {other} buffer", q.send("buffer", other), False),
            (f"receive from the {other} buffer", q.receive("buffer", other), False),
        ]
    check(expectations)


@pytest.mark.parametrize("destination", ["crm", "marketing", "analytics"])
def test_each_consumer_may_only_use_its_own_queue_and_dlq(enforcing, deployed, roles, destination):
    session = roles[f"consumer-{destination}"]
    q = Queues(session, enforcing)
    d = destination
    expectations = [
        ("receive from its queue", q.receive("queue", d), True),
        ("delete from its queue", q.delete("queue", d), True),
        ("change visibility in its queue", q.hide("queue", d), True),
        ("read its queue's attributes", q.attributes("queue", d), True),
        ("re-send to its queue", q.send("queue", d), True),
        ("dead-letter to its DLQ", q.send("dlq", d), True),
        ("read its DLQ's attributes", q.attributes("dlq", d), True),
        ("receive from its DLQ", q.receive("dlq", d), False),
        ("purge its queue", q.purge("queue", d), False),
        ("send to its buffer", q.send("buffer", d), False),
        ("receive from its buffer", q.receive("buffer", d), False),
        ("send to the intake queue", q.send("intake"), False),
        ("publish to the bus", put_event(session, enforcing, enforcing.bus), False),
    ]
    for other in (o for o in deployed["destinations"] if o != d):
        expectations += [
            (f"receive from the {other} queue", q.receive("queue", other), False),
            (f"delete from the {other} queue", q.delete("queue", other), False),
            (f"send to the {other} queue", q.send("queue", other), False),
            (f"dead-letter to the {other} DLQ", q.send("dlq", other), False),
        ]
    check(expectations)


def test_the_consumer_re_sends_the_failed_records_of_a_pack_to_its_own_queue(
    enforcing, roles, tmp_path
):
    """The real worker, with the crm consumer's role: the record that fails goes back alone."""
    root = boto3.client("sqs", **enforcing.root)
    url = enforcing.queue_urls["queue"]["crm"]
    root.purge_queue(QueueUrl=url)  # what the probes above left there
    good, bad = record(key="u1", at=1, name="Ada"), record(key="u2", at=1, op="append")
    pack = RecordPack(destination="crm", records=[good, bad])
    roles["intake"].client("sqs", endpoint_url=enforcing.url).send_message(
        QueueUrl=url,
        MessageBody=pack.model_dump_json(),
        MessageAttributes=pack.message_attributes(),
    )
    sqs = roles["consumer-crm"].client("sqs", endpoint_url=enforcing.url)
    store = open_store("crm", store_dir=tmp_path)
    try:
        worker = ConsumerWorker(
            sqs=sqs,
            queue_url=url,
            store=store,
            redrive=RedriveTarget.of_queue(sqs, url),
            metrics=ConsumerMetrics("crm"),
            wait_seconds=0,
            backoff=lambda attempt: 0,
        )
        assert worker.poll_once() == 1
        assert store.get("u1")["name"] == "Ada"
    finally:
        store.close()
    messages = root.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    ).get("Messages", [])
    # Refused, the re-send would leave the whole pack to come back (both records).
    assert [
        [r.event_id for r in RecordPack.model_validate_json(m["Body"]).records] for m in messages
    ] == [[bad.event_id]], "the failed record must come back alone, re-sent by the consumer"
    assert messages[0]["MessageAttributes"]["delivery_attempt"]["StringValue"] == "2"


def test_operators_may_send_back_only_to_the_queues_a_redrive_goes_to(enforcing, deployed, roles):
    """Their role has every SQS action here; the queue policies still keep them off the DLQs."""
    q = Queues(roles["operator"], enforcing)
    redrive_targets = {"intake", "buffer", "queue"}
    check([
        (f"send to the {label(where)}", q.send(*where), where[0] in redrive_targets)
        for where in every_queue(deployed)
    ])  # fmt: skip


# MiniStack's own evaluation of a queue policy for an AWS service's delivery, as its SNS and S3
# deliveries call it (ministack/services/sqs.py, queue_policy_allows).
SERVICE_DELIVERY = """
import json, sys
from ministack.core.iam_evaluator import EvalContext, evaluate_resource_policy
decisions = []
for case in json.load(sys.stdin):
    context = EvalContext(
        principal_arn="*", principal_type="Service", principal_account="",
        action="sqs:SendMessage", resource_arn=case["queue_arn"], region=case["region"],
        service_context={"aws:sourcearn": case["source_arn"], "aws:sourceaccount": case["account"]},
    )
    result = evaluate_resource_policy(case["policy"], context, service="events.amazonaws.com")
    decisions.append(result.decision)
json.dump(decisions, sys.stdout)
"""


def test_eventbridge_may_deliver_only_for_its_own_rule(deployed):
    outputs = deployed["outputs"]
    account = outputs["event_bus_arn"].split(":")[4]
    rules = [outputs["intake_rule_arn"], *outputs["rule_arns"].values()]
    rules.append(f"arn:aws:events:{REGION}:{account}:rule/{outputs['event_bus_name']}/probe")
    cases, expected = [], []
    for where in every_queue(deployed):
        mine = own_rule(outputs, *where)
        for rule in rules:
            cases.append({
                "queue_arn": deployed["queues"][where][1], "region": REGION, "account": account,
                "policy": deployed["queue_attributes"][where]["Policy"], "source_arn": rule,
            })  # fmt: skip
            expected.append((label(where), rule.rsplit("/", 1)[-1], rule == mine))
    python = stack_settings().ministack_venv / "bin" / "python"
    result = subprocess.run(  # noqa: S603 - the pinned emulator's interpreter, our own script
        [str(python), "-c", SERVICE_DELIVERY],
        input=json.dumps(cases), capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    decisions = json.loads(result.stdout)
    wrong = [
        f"EventBridge for rule {rule} to the {queue}: {decision}, must be "
        f"{'Allow' if want else 'denied'}"
        for (queue, rule, want), decision in zip(expected, decisions, strict=True)
        if (decision == "Allow") != want
    ]
    assert not wrong, "\n".join(wrong)


def test_the_emulator_still_needs_the_session_patterns(enforcing, roles):
    """`for_this_emulator` exists for one deviation of MiniStack 1.5.33 from AWS. When this
    fails, MiniStack reports a role's ARN as aws:PrincipalArn, as AWS does: drop the patterns."""
    root = boto3.client("sqs", **enforcing.root)
    url = root.create_queue(QueueName="probe-role-arn-only")["QueueUrl"]
    arn = root.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    policy = {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Deny", "Principal": "*", "Action": "sqs:SendMessage",
            "Resource": arn["Attributes"]["QueueArn"],
            "Condition": {"ArnNotEquals": {"aws:PrincipalArn": [
                f"arn:aws:iam::{enforcing.account}:role/probe-foreign"]}},
        }],
    }  # fmt: skip
    root.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})
    sqs = roles["foreign"].client("sqs", endpoint_url=enforcing.url)
    assert not authorized(lambda: sqs.send_message(QueueUrl=url, MessageBody="{}")), (
        "a role excepted by its role ARN alone may send: MiniStack now evaluates aws:PrincipalArn "
        "as AWS does, and for_this_emulator can go"
    )


def test_the_api_policy_may_only_publish_to_the_datasync_bus(enforcing, deployed):
    outputs = deployed["outputs"]
    session = enforcing.session_for("probe-api", deployed["api_policy"], "managed")
    events = session.client("events", endpoint_url=enforcing.url)
    q = Queues(session, enforcing)
    bus = outputs["event_bus_name"]
    # Not probed: DescribeEventBus (the API's readiness check). MiniStack 1.5.33 authorizes it
    # against a rule ARN (rule/default/<bus name>) instead of the bus, so its answer says nothing
    # about the policy; terraform/tests checks that statement.
    expectations = [
        ("publish to the datasync bus", put_event(session, enforcing, bus), True),
        ("publish to the default bus", put_event(session, enforcing, "default"), False),
        ("create a rule on the bus", lambda: events.put_rule(Name="probe", EventBusName=bus,
                                                             EventPattern='{"source": ["x"]}'), False),
    ]  # fmt: skip
    for d in deployed["destinations"]:
        expectations += [
            (f"send to the {d} buffer", q.send("buffer", d), False),
            (f"receive from the {d} queue", q.receive("queue", d), False),
        ]
    check(expectations)


def test_the_dashboard_policy_may_only_read_depths_and_peek_at_the_dlqs(enforcing, deployed):
    session = enforcing.session_for("probe-dashboard", deployed["dashboard_policy"], "managed")
    q = Queues(session, enforcing)
    expectations = [("publish to the bus", put_event(session, enforcing, enforcing.bus), False)]
    for d in deployed["destinations"]:
        expectations += [
            (f"read the {d} buffer's attributes", q.attributes("buffer", d), True),
            (f"read the {d} queue's attributes", q.attributes("queue", d), True),
            (f"read the {d} DLQ's attributes", q.attributes("dlq", d), True),
            (f"peek at the {d} DLQ", q.receive("dlq", d), True),
            (f"receive from the {d} queue", q.receive("queue", d), False),
            (f"receive from the {d} buffer", q.receive("buffer", d), False),
            (f"delete from the {d} DLQ", q.delete("dlq", d), False),
            (f"send to the {d} DLQ", q.send("dlq", d), False),
            (f"purge the {d} DLQ", q.purge("dlq", d), False),
        ]
    check(expectations)
