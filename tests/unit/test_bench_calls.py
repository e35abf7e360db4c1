"""bench/calls.py and bench/proxy.py: real SDK requests are counted as what AWS bills.

The requests are the ones botocore really sends (captured before they leave), so a change in
the SDK's wire protocol (JSON vs query, X-Amz-Target) shows up here.
"""

import asyncio
import json
import subprocess
import sys
import threading

import boto3
import pytest
from aiohttp import web

from bench.calls import classify
from bench.proxy import CallerLookup, Counts, build_app

ENDPOINT = "http://127.0.0.1:4566"
QUEUE = f"{ENDPOINT}/000000000000/q"


class Captured(Exception):
    pass


def wire(service, operation, **params):
    """(method, path, headers, body) of the request botocore sends for one call."""
    client = boto3.session.Session(
        aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    ).client(service, endpoint_url=ENDPOINT)
    seen = {}

    def capture(request, **_):
        seen["request"] = request
        raise Captured

    client.meta.events.register("before-send", capture)
    with pytest.raises(Captured):
        getattr(client, operation)(**params)
    request = seen["request"]
    path = request.url[len(ENDPOINT) :] or "/"
    body = request.body if isinstance(request.body, bytes) else (request.body or "").encode()
    headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
    return request.method, path, headers, body  # as the proxy sees them: text headers


def entry(size=100):
    return {
        "Source": "datasync.api",
        "DetailType": "UserCreated",
        "Detail": json.dumps({"x": "y" * size}),
    }


def test_put_events_is_billed_per_entry_not_per_call():
    call = classify(*wire("events", "put_events", Entries=[entry(), entry(), entry()]))
    assert (call.service, call.operation, call.entries, call.billed_units) == (
        "events",
        "PutEvents",
        3,
        3,
    )
    assert call.payload_bytes > 300


def test_a_put_events_entry_over_64_kb_is_billed_per_chunk():
    call = classify(*wire("events", "put_events", Entries=[entry(70 * 1024), entry()]))
    assert call.billed_units == 2 + 1


def test_sqs_batch_is_one_billed_request_with_ten_entries():
    call = classify(
        *wire(
            "sqs",
            "send_message_batch",
            QueueUrl=QUEUE,
            Entries=[{"Id": str(i), "MessageBody": "m"} for i in range(10)],
        )
    )
    assert (call.service, call.operation, call.entries, call.billed_units) == (
        "sqs",
        "SendMessageBatch",
        10,
        1,
    )


def test_sqs_payload_over_64_kb_costs_a_request_per_chunk():
    call = classify(*wire("sqs", "send_message", QueueUrl=QUEUE, MessageBody="m" * (130 * 1024)))
    assert call.billed_units == 3
    receive = classify(*wire("sqs", "receive_message", QueueUrl=QUEUE), response_bytes=200 * 1024)
    assert (receive.operation, receive.billed_units) == ("ReceiveMessage", 4)


def test_query_protocol_sqs_is_understood_too():
    headers = {
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
        "Authorization": "AWS4-HMAC-SHA256 Credential=test/20261201/us-east-1/sqs/aws4_request, "
        "SignedHeaders=host, Signature=0",
    }
    body = (
        b"Action=DeleteMessageBatch&QueueUrl=q&DeleteMessageBatchRequestEntry.1.Id=a"
        b"&DeleteMessageBatchRequestEntry.1.ReceiptHandle=r&DeleteMessageBatchRequestEntry.2.Id=b"
        b"&DeleteMessageBatchRequestEntry.2.ReceiptHandle=s"
    )
    call = classify("POST", "/", headers, body)
    assert (call.service, call.operation, call.entries, call.billed_units) == (
        "sqs",
        "DeleteMessageBatch",
        2,
        1,
    )


def test_rest_calls_group_by_path_shape_and_unsigned_ones_are_not_aws():
    call = classify(*wire("lambda", "invoke", FunctionName="datasync-crm-transform", Payload=b"{}"))
    assert (call.service, call.operation) == ("lambda", "POST /2015-03-31/functions/{}/invocations")
    health = classify("GET", "/_localstack/health", {}, b"")
    assert health.service == "unsigned"


# -- the proxy itself, between a real boto3 client and a stand-in emulator ---------------------
@pytest.fixture
def servers():
    """A stand-in emulator that answers every SQS call with an empty result, and the proxy."""
    loop = asyncio.new_event_loop()
    ports = {}
    counts = Counts()

    async def emulator(request):
        await request.read()
        return web.json_response({}, headers={"x-amzn-RequestId": "r"})

    async def start():
        upstream = web.Application()
        upstream.router.add_route("*", "/{tail:.*}", emulator)
        runners = [web.AppRunner(upstream), web.AppRunner(build_app(counts, CallerLookup()))]
        for runner in runners:
            await runner.setup()
        sites = [web.TCPSite(r, "127.0.0.1", 0) for r in runners]
        for site in sites:
            await site.start()
        ports["emulator"], ports["proxy"] = (s._server.sockets[0].getsockname()[1] for s in sites)
        return runners

    runners = loop.run_until_complete(start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield ports, counts
    finally:

        async def stop():
            for runner in runners:
                await runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


CLIENT = """
import sys, boto3
from botocore.config import Config
emulator, proxy, queue = sys.argv[1:4]
sqs = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test").client(
    "sqs", region_name="us-east-1", endpoint_url=emulator,
    config=Config(proxies={"http": proxy}, retries={"max_attempts": 1}))
for _ in range(3):
    sqs.receive_message(QueueUrl=queue)
sqs.delete_message_batch(QueueUrl=queue, Entries=[{"Id": str(i), "ReceiptHandle": "r"} for i in range(4)])
"""


def test_the_proxy_forwards_and_counts_each_call_by_operation_and_caller(servers):
    """A client process that looks like a consumer (by its command line) makes four calls."""
    ports, counts = servers
    emulator, proxy = (f"http://127.0.0.1:{ports[name]}" for name in ("emulator", "proxy"))
    subprocess.run(
        [sys.executable, "-c", CLIENT, emulator, proxy, QUEUE, "datasync-consumer"],
        check=True,
        timeout=60,
    )

    rows = {(r["service"], r["operation"]): r for r in counts.snapshot()}
    assert rows[("sqs", "ReceiveMessage")]["calls"] == 3
    assert rows[("sqs", "DeleteMessageBatch")]["calls"] == 1
    assert rows[("sqs", "DeleteMessageBatch")]["entries"] == 4
    # The caller was found from the connection's ports: the client process, not the proxy's own.
    assert {r["caller"] for r in counts.snapshot()} == {"consumers"}
