#!/usr/bin/env python3
"""`just api-check`: the gateway's HTTP API against its OpenAPI document,
judged by tools we did not write. Run by the `api_check` test, which starts
the stack it names (scripts/api-check.sh installs the tools).

1. The served document validates as OpenAPI 3.1 (openapi-spec-validator)
   and is the committed docs/openapi.json.
2. schemathesis runs every one of its checks on every operation: examples,
   coverage, fuzzing and stateful scenarios along the document's links
   (create an event, reserve, read the decision, purchase or cancel).
3. A probe reaches what generated requests cannot: a body that never ends,
   a WebSocket upgrade, an oversized body, rate limits, a broker away, an
   address over its connection cap. Each answer is checked against the
   document (status, media type, body schema, Retry-After).
4. Every status the document gives an operation was answered at least once,
   by schemathesis or by the probe.

Gateways: --url (plain), --strict (rate limits of 1 per 100 s, a 1 s body
timeout, 4 connections per address), --broken (its RabbitMQ connection cut).
"""

import argparse
import json
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from urllib.parse import urlsplit

import jsonschema
import requests
from openapi_spec_validator import validate as validate_spec

HERE = pathlib.Path(__file__).resolve().parent
METHODS = ("get", "post", "put", "delete", "patch")


class Operation:
    """One documented operation: its method, path template and statuses."""

    def __init__(self, doc, path, method, spec):
        self.doc = doc
        self.path = path
        self.method = method.upper()
        self.id = spec["operationId"]
        self.responses = spec["responses"]
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path))
        self.regex = re.compile(f"^{pattern}$")

    def statuses(self):
        return {int(s) for s in self.responses}

    def response(self, status):
        """The documented response and the JSON pointer to it."""
        r = self.responses.get(str(status))
        if r is None:
            return None, None
        pointer = f"#/paths/{esc(self.path)}/{self.method.lower()}/responses/{status}"
        if "$ref" in r:
            pointer = r["$ref"]
            r = resolve(self.doc, pointer)
        return r, pointer


def esc(key):
    return key.replace("~", "~0").replace("/", "~1")


def resolve(doc, pointer):
    node = doc
    for part in pointer.lstrip("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def operations(doc):
    ops = []
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                ops.append(Operation(doc, path, method, item[method]))
    return ops


def operation_of(ops, method, url):
    path = urlsplit(url).path
    for op in ops:
        if op.method == method.upper() and op.regex.match(path):
            return op
    return None


class Answer:
    """One response the probe received."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.body = body

    @classmethod
    def of(cls, r):
        return cls(r.status_code, dict(r.headers), r.content)


def conformance(doc, op, answer):
    """What is wrong with an answer, by the document (empty: nothing)."""
    spec, pointer = op.response(answer.status)
    if spec is None:
        return [f"status {answer.status} is not documented"]
    problems = []
    for name in spec.get("headers", {}):
        if name.lower() not in answer.headers:
            problems.append(f"no {name} header")
        elif name.lower() == "retry-after" and not answer.headers["retry-after"].isdigit():
            problems.append(f"Retry-After {answer.headers['retry-after']!r} is not whole seconds")
    content = spec.get("content")
    if not content:
        return problems
    media = answer.headers.get("content-type", "")
    documented = next((m for m in content if m.split(";")[0] == media.split(";")[0]), None)
    if documented is None:
        return problems + [f"media type {media!r}, documented {sorted(content)}"]
    if documented.split(";")[0] != "application/json":
        return problems
    try:
        body = json.loads(answer.body)
    except ValueError as e:
        return problems + [f"the body is not JSON: {e}"]
    # The whole document is the root schema (its other keys are unknown
    # keywords, ignored), so that its `#/components/...` references resolve.
    root = dict(doc)
    root["$ref"] = f"{pointer}/content/{esc(documented)}/schema"
    validator = jsonschema.Draft202012Validator(
        root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    problems += [f"body: {e.message} at {list(e.absolute_path)}" for e in validator.iter_errors(body)]
    return problems


def raw(url, request, read_timeout=5.0):
    """Sends `request` (bytes) on a connection of its own; the answer's
    status, headers and body (up to Content-Length, or what came within the
    timeout)."""
    try:
        return _raw(url, request, read_timeout)
    except (OSError, IndexError, ValueError) as e:
        # Reported as a status 0: the probe names it as a problem.
        return Answer(0, {}, f"no HTTP answer: {e!r}".encode())


def _raw(url, request, read_timeout):
    u = urlsplit(url)
    with socket.create_connection((u.hostname, u.port), timeout=read_timeout) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip()] = v.strip()
        length = int({k.lower(): v for k, v in headers.items()}.get("content-length", 0))
        while len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
        return Answer(status, headers, body)


class Probe:
    def __init__(self, doc, ops, args):
        self.doc = doc
        self.ops = {op.id: op for op in ops}
        self.a = args
        self.answers = []  # (operation id, status)
        self.problems = []
        self.http = requests.Session()
        self.suffix = uuid.uuid4().hex[:6]

    def note(self, op_id, answer, expect):
        op = self.ops[op_id]
        self.answers.append((op_id, answer.status))
        where = f"probe {op.method} {op.path} ({expect})"
        if answer.status != expect:
            self.problems.append(f"{where}: answered {answer.status}: {answer.body[:200]!r}")
        for p in conformance(self.doc, op, answer):
            self.problems.append(f"{where}: {p}")

    def call(self, op_id, expect, base, path, method=None, admin=False, token=None, **kw):
        headers = kw.pop("headers", {})
        if admin:
            headers["Authorization"] = f"Bearer {self.a.admin_token}"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        r = self.http.request(method or self.ops[op_id].method, base + path, headers=headers, timeout=30, **kw)
        self.note(op_id, Answer.of(r), expect)
        return r

    def decided(self, status_url, want):
        """Long-polls a reservation until it is decided (30 s at most), and
        records a problem unless it reads `want`."""
        deadline = time.monotonic() + 30
        while True:
            r = self.call("get_reservation", 200, self.a.url, status_url, params={"wait_ms": 5000})
            status = r.json().get("status") if r.status_code == 200 else None
            if status != "pending" or time.monotonic() > deadline:
                break
        if status != want:
            self.problems.append(f"probe: {status_url} reads {status!r}, expected {want!r}")

    def run(self):
        a, g0, g1, g2 = self.a, self.a.url, self.a.strict, self.a.broken
        final, holds = f"probe-final-{self.suffix}", f"probe-holds-{self.suffix}"
        self.call("create_event", 201, g0, "/admin/events", admin=True,
                  json={"event_id": final, "name": "Probe, final", "capacity": 1})
        self.call("create_event", 201, g0, "/admin/events", admin=True,
                  json={"event_id": holds, "name": "Probe, holds", "capacity": 5, "hold_seconds": 600})
        self.call("create_event", 409, g0, "/admin/events", admin=True,
                  json={"event_id": final, "name": "again", "capacity": 1})
        closed = f"probe-closed-{self.suffix}"
        self.call("create_event", 201, g0, "/admin/events", admin=True,
                  json={"event_id": closed, "name": "Probe, over", "capacity": 1,
                        "closes_at": "2000-01-01T00:00:00Z"})
        self.call("reserve", 409, g0, "/reserve", json={"event_id": closed, "user_id": "p0"})
        # Every other status the document names, so that the coverage does
        # not rest on what schemathesis happened to generate.
        self.call("reserve", 400, g0, "/reserve", json={"event_id": final, "user_id": "p0", "quantity": 11})
        self.call("reserve", 404, g0, "/reserve", json={"event_id": f"nowhere-{self.suffix}", "user_id": "p0"})
        made_up = f"/events/{final}/reservations/{uuid.uuid4()}"
        self.call("get_reservation", 404, g0, made_up)
        self.call("purchase", 404, g0, made_up + "/purchase", admin=True)
        self.call("cancel", 404, g0, made_up + "/cancel", admin=True)
        self.call("get_event", 200, g0, f"/events/{final}")
        self.call("get_event", 404, g0, f"/events/nowhere-{self.suffix}")
        self.call("create_event", 400, g0, "/admin/events", admin=True, json={"name": "", "capacity": 1})
        self.call("create_event", 401, g0, "/admin/events", json={"name": "n", "capacity": 1})
        self.call("reset_event", 200, g0, f"/admin/events/{closed}/reset", admin=True, json={"capacity": 2})
        self.call("reset_event", 400, g0, f"/admin/events/{closed}/reset", admin=True, json={"capacity": 0})
        self.call("reset_event", 401, g0, f"/admin/events/{closed}/reset")
        self.call("reset_event", 404, g0, f"/admin/events/nowhere-{self.suffix}/reset", admin=True)
        self.call("readyz", 200, g0, "/readyz")
        self.call("healthz", 200, g0, "/healthz")
        self.call("openapi", 200, g0, "/openapi.json")
        self.call("metrics", 200, g0, "/metrics", token=a.feed_token)
        self.call("metrics", 401, g0, "/metrics")

        # A confirmed seat, then a reset that would delete it.
        won = self.call("reserve", 202, g0, "/reserve", json={"event_id": final, "user_id": "p1"}).json()
        self.decided(won["status_url"], "confirmed")
        self.call("reset_event", 409, g0, f"/admin/events/{final}/reset", admin=True)
        self.call("get_reservation", 400, g0, won["status_url"], params={"wait_ms": "soon"})

        # Holds: purchased, then cancelled (409); another cancelled, then
        # purchased (409); a third for the calls below.
        def hold(user):
            r = self.call("reserve", 202, g0, "/reserve", json={"event_id": holds, "user_id": user}).json()
            self.decided(r["status_url"], "held")
            return r["status_url"]

        bought, given, spare = hold("h1"), hold("h2"), hold("h3")
        self.call("purchase", 200, g0, bought + "/purchase", json={"payment_ref": "probe"})
        self.call("cancel", 409, g0, bought + "/cancel")
        self.call("cancel", 200, g0, given + "/cancel")
        self.call("purchase", 409, g0, given + "/purchase", json=None)
        self.call("purchase", 400, g0, spare + "/purchase", json={"payment_ref": ""})
        self.call("cancel", 400, g0, spare + "/cancel", json={"why": "a body"})
        bare = spare.rsplit("/", 1)[0] + "/" + spare.rsplit("/", 1)[1].split(".")[0]
        self.call("purchase", 401, g0, bare + "/purchase")
        self.call("cancel", 401, g0, bare + "/cancel")

        # Bodies: too large, not JSON, on every route that reads one.
        with_body = [
            ("reserve", "/reserve", False),
            ("purchase", spare + "/purchase", False),
            ("cancel", spare + "/cancel", False),
            ("create_event", "/admin/events", True),
            ("reset_event", f"/admin/events/{holds}/reset", True),
        ]
        big = b'{"pad":"' + b"x" * (20 * 1024) + b'"}'
        text = {"Content-Type": "text/plain"}
        for op_id, path, admin in with_body:
            self.call(op_id, 413, g0, path, admin=admin, data=big,
                      headers={"Content-Type": "application/json"})
            self.call(op_id, 415, g0, path, admin=admin, data=b"{}", headers=dict(text))

        # The feed: a plain GET, no token, and an upgrade.
        self.call("feed", 400, g0, "/ws", token=a.feed_token)
        self.call("feed", 401, g0, "/ws")
        u = urlsplit(g0)
        upgrade = raw(g0, (
            f"GET /ws HTTP/1.1\r\nHost: {u.netloc}\r\nAuthorization: Bearer {a.feed_token}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode())
        self.note("feed", upgrade, 101)

        # The strict gateway: a body that never ends (1 s body timeout) …
        for op_id, path, admin in with_body:
            auth = f"Authorization: Bearer {a.admin_token}\r\n" if admin else ""
            slow = raw(g1, (
                f"POST {path} HTTP/1.1\r\nHost: {urlsplit(g1).netloc}\r\n{auth}"
                "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"event_id\"").encode())
            self.note(op_id, slow, 408)
        # … rate limits (one request per 100 s, per user on /reserve, per
        # address on the read routes) …
        self.call("reserve", 202, g1, "/reserve", json={"event_id": holds, "user_id": "eager"})
        self.call("reserve", 429, g1, "/reserve", json={"event_id": holds, "user_id": "eager"})
        self.call("list_events", 200, g1, "/events")
        self.call("list_events", 429, g1, "/events")
        self.call("get_event", 429, g1, f"/events/{holds}")
        self.call("get_reservation", 429, g1, spare)
        # … and an address over its connection cap: every route is refused.
        self.http.close()
        held = [socket.create_connection((urlsplit(g1).hostname, urlsplit(g1).port)) for _ in range(4)]
        try:
            # The gateway accepts in arrival order, so a fifth connection is
            # counted after these four; until the connections closed above
            # are let go, it may still get in: ask until refused.
            deadline = time.monotonic() + 10
            for op in self.ops.values():
                path = (op.path.replace("{event_id}", holds)
                        .replace("{reservation}", spare.rsplit("/", 1)[1]))
                request = f"{op.method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode()
                answer = raw(g1, request)
                while answer.status != 503 and time.monotonic() < deadline:
                    answer = raw(g1, request)
                self.note(op.id, answer, 503)
        finally:
            for s in held:
                s.close()

        # The gateway whose broker is away.
        self.http = requests.Session()
        self.call("readyz", 503, g2, "/readyz")
        self.call("reserve", 503, g2, "/reserve", json={"event_id": holds, "user_id": "late"})
        self.call("healthz", 200, g2, "/healthz")


def schemathesis_run(args, har, cwd):
    exe = shutil.which("schemathesis", path=str(pathlib.Path(sys.executable).parent))
    cmd = [
        exe, "--config-file", str(HERE / "schemathesis.toml"), "--no-color", "run",
        f"{args.url}/openapi.json",
        "-H", f"Authorization: Bearer {args.admin_token}",
        "--report", "har", "--report-har-path", str(har),
        "--seed", args.seed,
    ]
    print("$", " ".join(c if "Bearer" not in c else "Authorization: Bearer …" for c in cmd), flush=True)
    # Its crash cache and example database go where it runs: the
    # git-ignored report folder.
    return subprocess.call(cmd, cwd=cwd)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--strict", required=True)
    p.add_argument("--broken", required=True)
    p.add_argument("--admin-token", required=True)
    p.add_argument("--feed-token", required=True)
    p.add_argument("--committed", required=True)
    p.add_argument("--report-dir", required=True)
    p.add_argument("--seed", default="1")
    a = p.parse_args()
    failures = []

    text = requests.get(f"{a.url}/openapi.json", timeout=10).text
    doc = json.loads(text)
    try:
        validate_spec(doc)
        print(f"openapi-spec-validator: the served document is valid OpenAPI {doc['openapi']}")
    except Exception as e:  # the validator's own error types vary by version
        failures.append(f"the served document is not valid OpenAPI: {e}")
    if text != pathlib.Path(a.committed).read_text():
        failures.append("the served document differs from docs/openapi.json: run `just openapi`")
    ops = operations(doc)

    report = pathlib.Path(a.report_dir)
    report.mkdir(parents=True, exist_ok=True)
    har = (report / "schemathesis.har.json").resolve()
    har.unlink(missing_ok=True)  # never judge an earlier run's requests
    if schemathesis_run(a, har, report) != 0:
        failures.append("schemathesis found failures (above)")
    reached = {op.id: set() for op in ops}
    entries = json.loads(har.read_text())["log"]["entries"] if har.exists() else []
    for e in entries:
        op = operation_of(ops, e["request"]["method"], e["request"]["url"])
        if op is not None:
            reached[op.id].add(e["response"]["status"])

    probe = Probe(doc, ops, a)
    probe.run()
    failures += probe.problems
    by_probe = {op.id: set() for op in ops}
    for op_id, status in probe.answers:
        reached[op_id].add(status)
        by_probe[op_id].add(status)
    alone = sum(len(op.statuses() - by_probe[op.id]) for op in ops)
    print(f"\nThe probe alone answered every documented status but {alone}.")

    print(f"\nRequests: schemathesis {len(entries)}, probe {len(probe.answers)}")
    print(f"{'operation':<18} {'documented':<44} never answered")
    for op in ops:
        missing = sorted(op.statuses() - reached[op.id])
        documented = " ".join(str(s) for s in sorted(op.statuses()))
        print(f"{op.id:<18} {documented:<44} {' '.join(map(str, missing)) or '-'}")
        if missing:
            failures.append(f"{op.method} {op.path}: documented {missing}, never answered")
    if failures:
        print("\nAPI CHECK FAILED:")
        for f in failures:
            print(f"  - {f}")
        return 1
    print("\nAPI check passed: 0 server errors, 0 schema violations, every documented status answered")
    return 0


if __name__ == "__main__":
    sys.exit(main())
