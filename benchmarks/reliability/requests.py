"""Bad HTTP requests against a live ``recfit serve`` on 127.0.0.1, and ``/health`` under load.

The module trains a small DotBias on ``recfit.data.synthetic`` (a few seconds; two user
ids are 2**53 and 2**53 + 1, which a float cannot tell apart), starts
``python -m recfit serve`` on an ephemeral loopback port with its default limits, and
sends a fixed corpus of bad requests (over 300: odd ids, bodies, query strings, paths,
raw protocol, slow clients). Every request is classified:

- ``4xx``: refused with a 4xx and a JSON ``{error, detail}`` (a 400 that the HTTP layer,
  uvicorn/h11, writes in plain text for a request it cannot parse says so in ``detail``);
- ``answer``: a 200 that is right for the input (e.g. null predictions for unknown ids
  under ``on_unknown: "null"``, the exact user asked for);
- ``5xx``: a 5xx, a dropped connection, no answer, or a stalled connection left open;
- ``wrong_answer``: a 200 for another id than the one asked (``"050"`` answered as 50,
  ``true`` as 1, 2**53 + 1 as 2**53), or a 4xx where an answer was due.

Then a load phase: a child process runs 50 clients (25 sending the heaviest allowed
``POST /predict``, 1,000 pairs with unmatched 200-character titles and
``on_unknown: "null"``; 25 the heaviest fold-in, ``POST /recommend`` with 500 ratings by
title and ``n = 100``) while this process times ``GET /health`` every 50 ms. The figures
(p50/p99/max latency in ms, the load responses by status, the load average) are in the
``load_health`` case's ``figures``; the target is p99 < 100 ms.

Traffic goes to 127.0.0.1 only; every loop is bounded in count and time.

Run standalone: ``python -m benchmarks.reliability.requests [--work DIR] [--load-s 15]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.reliability import Case, Outcome

__all__ = ["run"]

CORPUS = "requests"
BIG = 2**53
HOST = "127.0.0.1"
N_USERS, N_ITEMS = 120, 600
_HEADER_TIMEOUT_S = 10.0  # recfit serve's defaults, restated for the slow-client cases
_BODY_TIMEOUT_S = 15.0
#: Niceness of the load clients: on one small machine their CPU competes with the server's.
CLIENT_NICE = int(os.environ.get("RECFIT_BENCH_CLIENT_NICE", "10"))

Check = Callable[[int | None, Any, bytes], tuple[Outcome, str]]


# ------------------------------------------------------------------ the server
def _train(work: Path) -> Path:
    """A small run directory (synthetic data, 2 epochs); users 119 and 120 become 2**53
    and 2**53 + 1 (same order, so the indices stay valid)."""
    import numpy as np

    from recfit.config import RatingConfig
    from recfit.data import Vocabulary
    from recfit.data.synthetic import synthetic
    from recfit.runs import train_run

    out = work / "run"
    if (out / "bundle").is_dir():
        return out
    data = synthetic(6000, N_USERS, N_ITEMS, with_features=True, seed=1)
    ids = data.users.ids.astype(np.int64).copy()
    ids[-2:] = [BIG, BIG + 1]
    data = dataclasses.replace(data, users=Vocabulary(ids, name="user"), user_features=None)
    cfg = RatingConfig(model="dot", epochs=2, n_factors=8, bs=256, lr=1e-2, seed=0)
    train_run(cfg, out, data=data, progress=False)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Server:
    """``python -m recfit serve RUN`` on 127.0.0.1 in a child process."""

    def __init__(self, run: Path, log: Path, extra: tuple[str, ...] = ()) -> None:
        self.port = _free_port()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "recfit", "serve", str(run), "--host", HOST,
             "--port", str(self.port), "--no-report", "--log-level", "warning", *extra],
            stdout=self._log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"recfit serve exited with {self.proc.returncode}; see {log}")
            try:
                status, _, _ = request("GET", "/health", port=self.port, timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"recfit serve did not answer /health within 120 s; see {log}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


def request(
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    port: int,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, Any, bytes]:
    """One request on a fresh loopback connection: (status, parsed JSON or None, raw)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        hdrs = {"Content-Type": "application/json"} if body is not None else {}
        hdrs.update(headers or {})
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    return resp.status, parsed, raw


def raw_exchange(data: bytes, *, port: int, limit_s: float = 30) -> bytes:
    """Send raw bytes, read until the server closes (or ``limit_s`` passes)."""
    got = b""
    with socket.create_connection((HOST, port), timeout=limit_s) as s:
        s.sendall(data)
        deadline = time.monotonic() + limit_s
        s.settimeout(1.0)
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                break
            if not chunk:
                break
            got += chunk
    return got


# ------------------------------------------------------------------ checks
def _is_error_body(body: Any) -> bool:
    return isinstance(body, dict) and set(body) == {"error", "detail"} and bool(body["error"])


def refuse(status: int | None, body: Any, raw: bytes) -> tuple[Outcome, str]:
    """The input is bad: a JSON 4xx is right, a 200 is a wrong answer."""
    if status is None:
        return "5xx", "no answer (connection dropped)"
    if status >= 500:
        return "5xx", f"{status}: {raw[:120]!r}"
    if 400 <= status < 500:
        if _is_error_body(body):
            return "4xx", f"{status}: {body['error'][:100]}"
        return "4xx", f"{status} (non-JSON, from the HTTP layer): {raw[:60]!r}"
    return "wrong_answer", f"{status} for a bad input: {raw[:160]!r}"


def null_or_refuse(status: int | None, body: Any, raw: bytes) -> tuple[Outcome, str]:
    """Unknown ids under ``on_unknown: "null"``: null predictions (or a 4xx) are right."""
    if status == 200:
        preds = body.get("predictions") if isinstance(body, dict) else None
        if preds and all(p.get("prediction") is None for p in preds):
            return "answer", "null predictions"
        return "wrong_answer", f"a prediction for an unknown id: {raw[:160]!r}"
    return refuse(status, body, raw)


def first_answered_rest_null(status: int | None, body: Any, raw: bytes) -> tuple[Outcome, str]:
    """A known pair, then unknown ids, under ``on_unknown: "null"``: the first pair gets a
    prediction and the others null (or the whole request a 4xx for an invalid id)."""
    if status == 200:
        preds = [p.get("prediction") for p in body.get("predictions", [])]
        if len(preds) == 3 and preds[0] is not None and preds[1:] == [None, None]:
            return "answer", "known pair predicted, unknown ids null"
        return "wrong_answer", f"predictions {preds}"
    return refuse(status, body, raw)


def popular_for(asked: str) -> Check:
    """An unknown user on GET /recommend: the popular path, for the string asked."""

    def check(status: int | None, body: Any, raw: bytes) -> tuple[Outcome, str]:
        if status == 200:
            if body.get("path") == "popular" and body.get("user") == asked:
                return "answer", "popular path for the unknown user"
            return "wrong_answer", f"answered as user {body.get('user')!r} ({body.get('path')})"
        return refuse(status, body, raw)

    return check


def user_is(want: int) -> Check:
    def check(status: int | None, body: Any, raw: bytes) -> tuple[Outcome, str]:
        if status == 200 and isinstance(body, dict):
            if body.get("user") == want and body.get("path") == "model":
                return "answer", f"user {want}"
            return "wrong_answer", f"asked {want}, answered {body.get('user')!r}"
        if status is not None and status < 500:
            return "wrong_answer", f"{status} for a known user {want}"
        return refuse(status, body, raw)

    return check


def predicted_for(pairs: list[tuple[Any, Any]], truth: dict[tuple[Any, Any], float]) -> Check:
    """A valid /predict: each prediction must equal the Python API's for the exact ids."""

    def check(status: int | None, body: Any, raw: bytes) -> tuple[Outcome, str]:
        if status != 200:
            if status is not None and status < 500:
                return "wrong_answer", f"{status} for valid pairs: {raw[:120]!r}"
            return refuse(status, body, raw)
        got = [p["prediction"] for p in body["predictions"]]
        want = [truth[p] for p in pairs]
        if all(g is not None and abs(g - w) < 1e-4 for g, w in zip(got, want, strict=True)):
            return "answer", "predictions of the exact ids"
        return "wrong_answer", f"predictions {got} != {want}"

    return check


# ------------------------------------------------------------------ the corpus
def _j(payload: Any) -> bytes:
    return json.dumps(payload).encode()  # lone surrogates travel as \\ud800 escapes


BAD_IDS: list[tuple[str, Any]] = [
    ("true", True), ("false", False), ("null", None), ("float_50", 50.0), ("float_neg0", -0.0),
    ("float_big", 1e308), ("float_frac", 50.5), ("int_2p63", 2**63), ("int_2p64", 2**64 + 1),
    ("int_neg_2p63m1", -(2**63) - 1), ("int_10p40", 10**40), ("surrogate", "\ud800"),
    ("surrogate_mid", "a\udfffb"), ("str_050", "050"), ("str_5e1", "5e1"),
    ("str_pad", " 50 "), ("str_plus", "+50"), ("str_50_0", "50.0"), ("str_hex", "0x32"),
    ("str_underscore", "5_0"), ("str_arabic_digits", "\u0665\u0660"), ("str_empty", ""),
    ("str_501", "x" * 501), ("list", [50]), ("dict", {"id": 50}), ("nested", [[[[50]]]]),
    ("str_nul", "50\x00"), ("str_big", str(2**63)),
]  # fmt: skip
BAD_QUERY = [  # already percent-encoded ("+" is a space in a query string)
    "", "050", "%201%20", "1e0", "%2B1", "+1", "-0", "1.0", "true", "null", "%ED%A0%80", "%00", "%FF%FE",
    str(2**63), str(2**200), "-" + str(2**63 + 1), "x" * 201, "%F0%9F%8E%AC", "1%0A2",
    "..%2F..%2Fetc%2Fpasswd", "%25", "9007199254740992.0", "9.007199254740993e15",
]  # fmt: skip
BAD_N = ["0", "-1", "101", "ten", "1e1", str(10**30), "1.5", "", "true"]


def _corpus(
    port: int, truth: dict[tuple[Any, Any], float]
) -> list[tuple[str, Callable[[], tuple[int | None, Any, bytes]], Check]]:
    cases: list[tuple[str, Callable[[], tuple[int | None, Any, bytes]], Check]] = []

    def add(name: str, method: str, path: str, body: bytes | None, check: Check,
            headers: dict[str, str] | None = None) -> None:  # fmt: skip
        cases.append((name, lambda: request(method, path, body, port=port, headers=headers), check))

    # GET /recommend: odd user strings (unknown: popular path for that string, or 4xx)
    for q in BAD_QUERY:
        from urllib.parse import unquote_plus

        asked = unquote_plus(q, errors="replace")
        add(f"get_recommend_user[{q[:24]}]", "GET", f"/recommend?user={q}", None,
            popular_for(asked))  # fmt: skip
        add(f"get_recommend_user_strict[{q[:24]}]", "GET",
            f"/recommend?user={q}&on_unknown=error", None, refuse)  # fmt: skip
    for n in BAD_N:
        add(f"get_recommend_n[{n}]", "GET", f"/recommend?user=1&n={n}", None, refuse)
    for extra in ("exclude_seen=maybe", "on_unknown=guess", "user=1&user=2&n=1&n=2"):
        check = refuse if "user=1&user=2" not in extra else user_is(2)
        add(f"get_recommend_param[{extra}]", "GET", f"/recommend?user=1&{extra}", None, check)
    add("get_recommend_missing_user", "GET", "/recommend", None, refuse)
    # exact big ids: the user asked, not its float neighbour
    add("get_recommend_2p53", "GET", f"/recommend?user={BIG}", None, user_is(BIG))
    add("get_recommend_2p53p1", "GET", f"/recommend?user={BIG + 1}", None, user_is(BIG + 1))

    # POST /predict: bad ids in each position, both policies
    for name, value in BAD_IDS:
        for pos in ("user", "item"):
            pair = {"user": 1, "item": 5, pos: value}
            add(f"predict_{pos}[{name}]", "POST", "/predict", _j({"pairs": [pair]}), refuse)
            add(f"predict_{pos}_null[{name}]", "POST", "/predict",
                _j({"pairs": [pair], "on_unknown": "null"}), null_or_refuse)  # fmt: skip
        # the same bad id mixed with valid pairs
        pairs = [{"user": 1, "item": 5}, {"user": value, "item": 5}, {"user": "u", "item": 6}]
        add(f"predict_mixed[{name}]", "POST", "/predict",
            _j({"pairs": pairs, "on_unknown": "null"}), first_answered_rest_null)  # fmt: skip
    # exact ids around 2**53, given as int and as string, mixed with strings
    pairs = [(BIG + 1, 5), (str(BIG), 5), (BIG, 6), (str(BIG + 1), 6)]
    add("predict_2p53_exact", "POST", "/predict",
        _j({"pairs": [{"user": u, "item": i} for u, i in pairs]}),
        predicted_for(pairs, truth))  # fmt: skip
    for bad_policy in ("ignore", None, 1, ""):
        add(f"predict_policy[{bad_policy!r}]", "POST", "/predict",
            _j({"pairs": [{"user": 1, "item": 5}], "on_unknown": bad_policy}), refuse)  # fmt: skip

    # POST /recommend (fold-in): bad item ids, bad ratings, bad n
    for name, value in BAD_IDS:
        add(f"fold_in_item[{name}]", "POST", "/recommend",
            _j({"ratings": [{"item": value, "rating": 4}]}), refuse)  # fmt: skip
    bad_ratings: list[tuple[str, bytes]] = [
        ("nan", b'{"ratings": [{"item": 5, "rating": NaN}]}'),
        ("inf", b'{"ratings": [{"item": 5, "rating": Infinity}]}'),
        ("big", b'{"ratings": [{"item": 5, "rating": 1e309}]}'),
        ("neg", _j({"ratings": [{"item": 5, "rating": -1}]})),
        ("six", _j({"ratings": [{"item": 5, "rating": 6}]})),
        ("string", _j({"ratings": [{"item": 5, "rating": "five"}]})),
        ("null", _j({"ratings": [{"item": 5, "rating": None}]})),
        ("list", _j({"ratings": [{"item": 5, "rating": [5]}]})),
        ("missing", _j({"ratings": [{"item": 5}]})),
        ("duplicate_item", _j({"ratings": [{"item": 5, "rating": 4}, {"item": 5, "rating": 2}]})),
        ("dup_by_title", _j({"ratings": [{"item": 5, "rating": 4},
                                         {"item": "Synthetic Movie 5", "rating": 2}]})),
        ("extra_key", _j({"ratings": [{"item": 5, "rating": 4, "weight": 2}]})),
        ("n0", _j({"ratings": [], "n": 0})),
        ("n101", _j({"ratings": [], "n": 101})),
        ("n_float", _j({"ratings": [], "n": 10.5})),
        ("n_huge", _j({"ratings": [], "n": 10**40})),
        ("n_true", _j({"ratings": [], "n": True})),
        ("501_ratings", _j({"ratings": [{"item": i, "rating": 3} for i in range(1, 502)]})),
    ]  # fmt: skip
    for name, body in bad_ratings:
        add(f"fold_in_rating[{name}]", "POST", "/recommend", body, refuse)

    # malformed bodies, to both POST endpoints
    deep = b"[" * 100_000 + b"]" * 100_000
    malformed: list[tuple[str, bytes, dict[str, str] | None]] = [
        ("not_json", b"{not json", None), ("truncated", b'{"pairs": [', None),
        ("empty", b"", None), ("null", b"null", None), ("list", b"[]", None),
        ("number", b"1", None), ("string", b'"x"', None), ("bom", b"\xef\xbb\xbf{}", None),
        ("latin1", b'{"pairs": [{"user": "\xe9", "item": 5}]}', None),
        ("invalid_utf8", b'{"pairs": "\xff\xfe"}', None),
        ("deep_1000", b'{"pairs": ' + b"[" * 1000 + b"]" * 1000 + b"}", None),
        ("deep_100k", b'{"pairs": ' + deep[:150_000] + b"}", None),
        ("deep_dicts", b'{"a":' * 5000 + b"1" + b"}" * 5000, None),
        ("too_big_300k", b'{"pairs": [' + b'{"user": 1, "item": 5},' * 13_000 + b"]}", None),
        ("huge_int_literal", b'{"pairs": [{"user": ' + b"9" * 5000 + b', "item": 5}]}', None),
        ("huge_float_literal", b'{"pairs": [{"user": 1e999999, "item": 5}]}', None),
        ("dup_keys", b'{"pairs": [], "pairs": [{"user": 1, "item": 5}], "n": 1}', None),
        ("text_plain", _j({"pairs": [{"user": 1, "item": 5}]}), {"Content-Type": "text/plain"}),
        ("form", b"user=1&item=5", {"Content-Type": "application/x-www-form-urlencoded"}),
        ("gzip_garbage", b"\x1f\x8b\x08\x00garbage", {"Content-Encoding": "gzip"}),
    ]  # fmt: skip
    for path in ("/predict", "/recommend"):
        for name, body, hdrs in malformed:
            add(f"malformed{path.replace('/', '_')}[{name}]", "POST", path, body, refuse, hdrs)
    add("predict_1001_pairs", "POST", "/predict",
        _j({"pairs": [{"user": 1, "item": 5}] * 1001}), refuse)  # fmt: skip
    add("predict_no_pairs", "POST", "/predict", _j({"pairs": []}), refuse)

    # GET /similar and /items
    for q in BAD_QUERY:
        add(f"similar_item[{q[:24]}]", "GET", f"/similar?item={q}", None, refuse)
    for q in ("", "x" * 201, "%ED%A0%80"):
        add(f"items_query[{q[:24]}]", "GET", f"/items?query={q}", None, refuse)
    for n in BAD_N:
        add(f"similar_n[{n}]", "GET", f"/similar?item=5&n={n}", None, refuse)
        add(f"items_n[{n}]", "GET", f"/items?query=movie&n={n}", None, refuse)

    # paths and methods
    for method, path in [
        ("DELETE", "/predict"), ("PUT", "/recommend"), ("PATCH", "/health"), ("POST", "/health"),
        ("GET", "/predict"), ("GET", "/../../etc/passwd"), ("GET", "/static/../app.py"),
        ("GET", "/static/%2e%2e/app.py"), ("GET", "/docs"), ("GET", "/nowhere"),
        ("GET", "/static/nothing.js"), ("OPTIONS", "/predict"),
    ]:  # fmt: skip
        add(f"path[{method} {path}]", method, path, None, refuse)
    return cases


def _raw_cases(port: int) -> list[tuple[str, bytes, str]]:
    """Raw protocol inputs: (name, bytes, what must come back)."""
    big = _j({"pairs": [{"user": 2**63, "item": 5}]})
    post = b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    return [
        ("pipelined_after_2p63",
         post + b"Content-Length: %d\r\n\r\n%s" % (len(big), big)
         + b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", "4xx+200"),
        ("bad_request_line", b"GARBAGE\r\n\r\n", "4xx"),
        ("bad_content_length", post + b"Content-Length: abc\r\n\r\n{}", "4xx"),
        ("negative_content_length", post + b"Content-Length: -5\r\n\r\n{}", "4xx"),
        ("two_content_lengths", post + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", "4xx"),
        ("huge_header", b"GET /health HTTP/1.1\r\nHost: t\r\nX: " + b"a" * 200_000 + b"\r\n\r\n",
         "4xx"),
        ("bad_chunked", post + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", "4xx"),
        ("http_1_0_no_host", b"GET /health HTTP/1.0\r\n\r\n", "200"),
        ("content_length_short", post + b"Content-Length: 2\r\nConnection: close\r\n\r\n{}xxxx",
         "4xx"),
    ]  # fmt: skip


def _classify_raw(name: str, reply: bytes, want: str) -> tuple[Outcome, str]:
    import re

    statuses = [int(s) for s in re.findall(rb"HTTP/1\.[01] (\d{3})", reply)]
    if not statuses:
        return "5xx", "no answer (connection dropped)"
    if any(s >= 500 for s in statuses):
        return "5xx", f"statuses {statuses}"
    if want == "4xx+200":
        ok = len(statuses) == 2 and 400 <= statuses[0] < 500 and statuses[1] == 200
        return ("4xx" if ok else "5xx"), f"statuses {statuses}"
    if want == "200":
        return ("answer" if statuses[0] == 200 else "4xx"), f"statuses {statuses}"
    return ("4xx" if 400 <= statuses[0] < 500 else "wrong_answer"), f"statuses {statuses}"


def _slow_clients(port: int, n: int) -> Callable[[], list[Case]]:
    """Start ``n`` stalled bodies, a silent connection and a half-sent head; the returned
    function waits (bounded) and classifies them: closed in time is a ``4xx``, left open
    is a ``5xx`` (the server can be starved of connections)."""
    socks: list[tuple[str, socket.socket, float]] = []
    for i in range(n):
        s = socket.create_connection((HOST, port), timeout=5)
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000\r\n\r\n{")  # fmt: skip
        socks.append((f"slow_body[{i}]", s, _BODY_TIMEOUT_S))
    s = socket.create_connection((HOST, port), timeout=5)
    socks.append(("silent_connection", s, _HEADER_TIMEOUT_S))
    s = socket.create_connection((HOST, port), timeout=5)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n")
    socks.append(("half_sent_head", s, _HEADER_TIMEOUT_S))
    opened = time.monotonic()

    def finish() -> list[Case]:
        out = []
        for name, sock, limit in socks:
            got, closed = b"", False
            sock.settimeout(0.5)
            while time.monotonic() < opened + limit + 10:
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    continue
                except ConnectionResetError:
                    closed = True
                    break
                if not chunk:
                    closed = True
                    break
                got += chunk
            sock.close()
            waited = time.monotonic() - opened
            if closed:
                status = got[9:12].decode(errors="replace") if got else "closed"
                out.append(Case(CORPUS, name, "4xx", f"{status} and closed by {waited:.0f} s"))
            else:
                out.append(Case(CORPUS, name, "5xx", f"still open after {waited:.0f} s"))
        return out

    return finish


# ------------------------------------------------------------------ load
_LOAD_CHILD = r"""
import http.client, json, os, sys, threading, time
os.nice(int(sys.argv[5]))  # the clients' own CPU should not count against the server
port, seconds, n_clients = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
polite = sys.argv[4] == "1"  # sleep Retry-After seconds on 429/503, as a client should
bodies = json.loads(sys.stdin.read())
bodies = {k: v.encode() for k, v in bodies.items()}
counts = {}
lock = threading.Lock()
stop = time.monotonic() + seconds
def client(k):
    path, body = ("/predict", bodies["predict"]) if k % 2 == 0 else ("/recommend", bodies["fold_in"])
    conn = None
    for _ in range(100000):
        if time.monotonic() > stop:
            break
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            r = conn.getresponse(); r.read()
            key = f"{path} {r.status}"
            if r.getheader("connection", "").lower() == "close":
                conn.close(); conn = None
            if polite and r.status in (429, 503):
                time.sleep(min(5.0, float(r.getheader("retry-after", "1"))))
        except Exception as exc:
            key = f"{path} dropped:{type(exc).__name__}"
            if conn is not None:
                conn.close()
            conn = None
        with lock:
            counts[key] = counts.get(key, 0) + 1
threads = [threading.Thread(target=client, args=(k,)) for k in range(n_clients)]
for t in threads: t.start()
for t in threads: t.join(seconds + 120)
print(json.dumps(counts))
"""


def _probe_health(port: int, until: float) -> tuple[list[float], Counter[str]]:
    """``GET /health`` every 50 ms on one keep-alive connection until ``until``."""
    lat: list[float] = []
    bad: Counter[str] = Counter()
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    for _ in range(100_000):
        if time.monotonic() > until:
            break
        t0 = time.perf_counter()
        try:
            conn.request("GET", "/health")
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                bad[str(r.status)] += 1
        except (OSError, http.client.HTTPException) as exc:
            bad[type(exc).__name__] += 1
            conn.close()
            conn = http.client.HTTPConnection(HOST, port, timeout=30)
            continue
        lat.append((time.perf_counter() - t0) * 1e3)
        time.sleep(0.05)
    conn.close()
    return lat, bad


def idle_health(port: int, seconds: float) -> Case:
    """``/health`` latency with no load from us (the machine's other load only)."""
    load = os.getloadavg()[0]
    lat, bad = _probe_health(port, time.monotonic() + seconds)
    figures = {
        "health_p50_ms": _percentile(lat, 50),
        "health_p99_ms": _percentile(lat, 99),
        "health_max_ms": max(lat),
        "health_samples": float(len(lat)),
        "loadavg_1m": load,
    }
    detail = (
        f"/health with no load from us: p50 {figures['health_p50_ms']:.1f} ms, p99 "
        f"{figures['health_p99_ms']:.1f} ms over {len(lat)} probes; loadavg {load:.2f}"
    )
    return Case(CORPUS, "idle_health", "5xx" if bad else "answer", detail, figures)


def _heavy_bodies(titles: list[str]) -> dict[str, str]:
    from recfit.server.schemas import MAX_PAIRS, MAX_RATINGS

    pad = "z" * 170
    predict = {
        "pairs": [{"user": 1, "item": f"unmatched {i:05d} {pad}"} for i in range(MAX_PAIRS)],
        "on_unknown": "null",
    }
    fold = {
        "ratings": [{"item": t, "rating": 1 + i % 5} for i, t in enumerate(titles[:MAX_RATINGS])],
        "n": 100,
    }
    return {"predict": json.dumps(predict), "fold_in": json.dumps(fold)}


def _percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def _load(port: int, titles: list[str], seconds: float, n_clients: int, polite: bool) -> Case:
    bodies = _heavy_bodies(titles)
    sizes = {k: len(v) for k, v in bodies.items()}
    # a lone probe of each heavy request, for its unloaded latency
    single = {}
    for k, path in (("predict", "/predict"), ("fold_in", "/recommend")):
        t0 = time.perf_counter()
        status, _, _ = request("POST", path, bodies[k].encode(), port=port, timeout=60)
        single[k] = (status, (time.perf_counter() - t0) * 1e3)
    load_before = os.getloadavg()[0]
    child = subprocess.Popen(
        [sys.executable, "-c", _LOAD_CHILD, str(port), str(seconds), str(n_clients),
         "1" if polite else "0", str(CLIENT_NICE)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdin is not None
    child.stdin.write(json.dumps(bodies))
    child.stdin.close()
    time.sleep(min(2.0, seconds / 4))  # let the clients ramp up
    lat, bad = _probe_health(port, time.monotonic() + seconds - min(2.0, seconds / 4) - 0.5)
    load_during = os.getloadavg()[0]
    assert child.stdout is not None
    out = child.stdout.read()  # the child ends on its own clock (bounded loops)
    child.wait(timeout=seconds + 180)
    counts: dict[str, int] = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    figures = {
        "health_p50_ms": _percentile(lat, 50) if lat else float("nan"),
        "health_p99_ms": _percentile(lat, 99) if lat else float("nan"),
        "health_max_ms": max(lat) if lat else float("nan"),
        "health_samples": float(len(lat)),
        "health_failures": float(sum(bad.values())),
        "load_clients": float(n_clients),
        "load_seconds": float(seconds),
        "loadavg_1m_before": load_before,
        "loadavg_1m_during": load_during,
        "predict_body_bytes": float(sizes["predict"]),
        "fold_in_body_bytes": float(sizes["fold_in"]),
        "single_predict_ms": single["predict"][1],
        "single_fold_in_ms": single["fold_in"][1],
    }
    for key, v in counts.items():
        figures[f"load[{key}]"] = float(v)
    dropped = sum(v for k, v in counts.items() if "dropped" in k or k.split()[-1].startswith("5"))
    fivexx_503 = sum(v for k, v in counts.items() if k.endswith(" 503"))
    met = figures["health_p99_ms"] < 100 and not bad
    detail = (
        f"/health p50 {figures['health_p50_ms']:.1f} ms, p99 {figures['health_p99_ms']:.1f} ms "
        f"(target < 100 ms: {'met' if met else 'MISSED'}) over {len(lat)} probes while "
        f"{n_clients} clients sent the heaviest /predict and fold-in for {seconds:g} s; "
        f"load responses {dict(sorted(counts.items()))}; loadavg {load_before:.2f} -> "
        f"{load_during:.2f}"
    )
    outcome: Outcome = "answer"
    if bad or (dropped - fivexx_503) > 0 or not met:
        outcome = "5xx"  # starved, dropped or crashed: a failure of the service
    if single["predict"][0] != 200 or single["fold_in"][0] != 200:
        outcome = "5xx"
        detail += f"; lone heavy requests answered {single}"
    name = "load_health_retry_after" if polite else "load_health_no_backoff"
    detail += "; clients " + ("sleep Retry-After on 429/503" if polite else "retry at once")
    return Case(CORPUS, name, outcome, detail, figures)


# ------------------------------------------------------------------ entry points
def run(
    work: Path, data_dir: Path | None, *, load_s: float = 15.0, n_clients: int = 50
) -> list[Case]:
    """Train, serve, send the corpus, run the load phase; one :class:`Case` per input."""
    del data_dir  # synthetic data: big ids and titles of our own
    work.mkdir(parents=True, exist_ok=True)
    run_dir = _train(work)
    from recfit.recommender import Recommender

    rec = Recommender.load(run_dir)
    pairs = [(BIG + 1, 5), (str(BIG), 5), (BIG, 6), (str(BIG + 1), 6)]
    values = rec.predict([int(u) for u, _ in pairs], [i for _, i in pairs])
    truth = {p: float(v) for p, v in zip(pairs, values, strict=True)}
    titles = [t for t in rec.titles.titles if t]
    server = Server(run_dir, work / "serve.log")
    cases: list[Case] = []
    try:
        finish_slow = _slow_clients(server.port, 200)
        for name, send, check in _corpus(server.port, truth):
            try:
                status, body, raw = send()
            except (OSError, http.client.HTTPException) as exc:
                status, body, raw = None, None, repr(exc).encode()
            outcome, detail = check(status, body, raw)
            cases.append(Case(CORPUS, name, outcome, detail))
        for name, data, want in _raw_cases(server.port):
            reply = raw_exchange(data, port=server.port, limit_s=30)
            outcome, detail = _classify_raw(name, reply, want)
            cases.append(Case(CORPUS, f"raw[{name}]", outcome, detail))
        cases.extend(finish_slow())
        status, _, _ = request("GET", "/health", port=server.port)
        cases.append(Case(CORPUS, "alive_after_corpus", "answer" if status == 200 else "5xx",
                          f"/health {status}"))  # fmt: skip
        if load_s > 0:
            cases.append(idle_health(server.port, min(load_s, 10.0)))
            for polite in (False, True):
                cases.append(_load(server.port, titles, load_s, n_clients, polite))
    finally:
        server.stop()
    return cases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=None, help="Folder for the run (a temp dir).")
    ap.add_argument("--load-s", type=float, default=15.0, help="Seconds of the load phase.")
    ap.add_argument("--clients", type=int, default=50, help="Clients in the load phase.")
    ap.add_argument("-v", "--verbose", action="store_true", help="Print every case.")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="recfit-requests-"))
    t0 = time.perf_counter()
    cases = run(work, None, load_s=args.load_s, n_clients=args.clients)
    for c in cases:
        if args.verbose or c.outcome not in ("4xx", "answer") or c.figures:
            print(f"{c.outcome:12s} {c.name:44s} {c.detail}")
    counts = Counter(c.outcome for c in cases)
    print(f"\n{len(cases)} cases in {time.perf_counter() - t0:.0f} s: "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))  # fmt: skip
    for c in cases:
        for k, v in c.figures.items():
            print(f"  {c.name:24s} {k:30s} {v:10.2f}")


if __name__ == "__main__":
    main()
