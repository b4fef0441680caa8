"""Security review, as tests: tokens never logged, constant-time compare, TLS, the roles' privileges, SQL built
only with parameters or ``psycopg.sql``, secrets only from the environment."""

from __future__ import annotations

import ast
import hmac
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from psycopg import errors, sql
from pydantic import SecretStr

from collectors.config import Settings
from collectors.ingest import registry
from collectors.proto.telemetry.v1 import ingest_pb2 as pb
from collectors.receiver import auth
from collectors.receiver.cli import parse_args
from collectors.receiver.server import Receiver
from collectors.senders.client import IngestClient, IngestError
from tests.support import records
from tests.support.receivers import REPO_ROOT, TOKEN

pytestmark = pytest.mark.security

RAW_TABLES = registry.TABLE_NAMES
WRONG_TOKEN = "wrong-token-" + "y" * 20


def settings(url: str, **overrides: object) -> Settings:
    return Settings(
        **{"database_url": url, "listen": "127.0.0.1:0", "metrics_port": 0, "ingest_tokens": TOKEN, **overrides}
    )


# --------------------------------------------------------------------------- tokens


def test_tokens_never_reach_the_logs(warehouse_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, gRPC's and psycopg's included
    running = Receiver(settings(warehouse_url, ingest_tokens=f"{TOKEN},second-token-{'z' * 20}")).start()
    target = f"127.0.0.1:{running.port}"
    try:
        with IngestClient(target, TOKEN) as client:
            assert client.push_message_samples([records.sample("m1"), records.sample("")]).accepted == 1
        raw = grpc.insecure_channel(target).unary_unary("/telemetry.v1.TelemetryIngest/PushMessageSamples")
        request = pb.PushMessageSamplesRequest(samples=[records.sample("m2")]).SerializeToString()
        for metadata in [
            (("authorization", f"Bearer {WRONG_TOKEN}"),),
            (("authorization", WRONG_TOKEN),),
            (("authorization", f"Basic {TOKEN}"),),
            (),
        ]:
            with pytest.raises(grpc.RpcError) as refused:
                raw(request, metadata=metadata)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert TOKEN not in (refused.value.details() or "") and WRONG_TOKEN not in (refused.value.details() or "")
        with IngestClient(target, WRONG_TOKEN, attempts=1) as bad, pytest.raises(IngestError) as error:
            bad.push_message_samples([records.sample("m3")])
        assert WRONG_TOKEN not in str(error.value) and WRONG_TOKEN not in repr(error.value)
    finally:
        running.stop(grace=1)
    assert caplog.records, "nothing was logged: the test would prove nothing"
    for secret in (TOKEN, WRONG_TOKEN, "second-token"):
        assert secret not in caplog.text
    assert TOKEN not in repr(running.settings) and TOKEN not in str(running.settings.model_dump())


def test_tokens_never_reach_the_receiver_process_output(receiver_process) -> None:
    process, target = receiver_process(GRPC_VERBOSITY="debug")
    with IngestClient(target, TOKEN) as client:
        client.push_message_samples([records.sample("m1")])
    with IngestClient(target, WRONG_TOKEN, attempts=1) as bad, pytest.raises(IngestError):
        bad.push_message_samples([records.sample("m2")])
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    output = process.stdout.read() if process.stdout else ""
    assert "receiver listening" in output
    assert TOKEN not in output and WRONG_TOKEN not in output


def test_configuration_errors_do_not_echo_secrets() -> None:
    salt, password = "short-salt", "pw-" + "q" * 12
    base = {"PATH": "/usr/bin:/bin", "TELEMETRY_INGEST_TOKENS": TOKEN}
    cases = [
        ({"TELEMETRY_HASH_RECEIVER_KEYS": "true", "TELEMETRY_RECEIVER_KEY_SALT": salt}, "TELEMETRY_RECEIVER_KEY_SALT"),
        ({"TELEMETRY_DATABASE_URL": f"mysql://user:{password}@127.0.0.1/telemetry"}, "database_url"),
    ]
    for module, args in (("collectors.receiver.cli", []), ("collectors.senders.loader.cli", [__file__])):
        for env, named in cases:
            done = subprocess.run(
                [sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main({args!r}))"],
                capture_output=True,
                text=True,
                env={**base, **env},
                timeout=60,
            )
            assert done.returncode == 2, done.stderr
            assert "invalid configuration" in done.stderr and named in done.stderr
            for secret in (salt, password, TOKEN):
                assert secret not in done.stderr + done.stdout


def test_token_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    compare = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    tokens = ["first-token-aaaaaaaa", "second-token-bbbbbbb", "third-token-ccccccccc"]
    for presented, expected in [(tokens[0], True), (tokens[2], True), ("nope", False), ("", False)]:
        calls.clear()
        assert auth.token_matches(presented, tokens) is expected
        assert len(calls) == len(tokens)  # no early exit: every token is compared, whatever matched
    # and nothing in auth.py compares tokens with == / != / in
    tree = ast.parse(Path(auth.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and "token" in ast.unparse(node).lower():
            pytest.fail(f"auth.py compares a token outside hmac.compare_digest: {ast.unparse(node)}")


def test_receiver_never_takes_a_token_from_its_command_line() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--token", TOKEN])
    source = (REPO_ROOT / "collectors" / "receiver" / "cli.py").read_text()
    assert "ingest_tokens" not in source  # the CLI never passes a token: Settings reads the environment


# --------------------------------------------------------------------------- TLS


def _self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert


def test_tls_refuses_an_unknown_certificate_and_half_a_configuration(warehouse_url: str, tmp_path: Path) -> None:
    key, cert = _self_signed(tmp_path, "server")
    _, other = _self_signed(tmp_path, "other")
    running = Receiver(
        settings(warehouse_url, listen="localhost:0", tls_cert_file=cert, tls_key_file=key)
    ).start()  # (test_receiver_process.test_tls: a trusted client lands, a plaintext one is refused)
    try:
        target = f"localhost:{running.port}"
        with (
            IngestClient(target, TOKEN, root_certificates=other.read_bytes(), attempts=1, timeout=5) as client,
            pytest.raises(grpc.RpcError) as error,
        ):
            client.push_message_samples([records.sample("m1")])
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE
        with IngestClient(target, WRONG_TOKEN, root_certificates=cert.read_bytes(), attempts=1) as client:
            with pytest.raises(IngestError) as refused:
                client.push_message_samples([records.sample("m2")])
            assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
    finally:
        running.stop(grace=1)
    with pytest.raises(ValueError, match="TLS needs both"):
        Receiver(settings(warehouse_url, tls_cert_file=cert))


# --------------------------------------------------------------------------- roles


def _relations(db: psycopg.Connection, *schemas: str) -> list[str]:
    return [
        f"{schema}.{name}"
        for schema, name in db.execute(
            "select n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = any(%s) and c.relkind in ('r', 'p', 'v', 'm') order by 1, 2",
            (list(schemas),),
        )
    ]


def test_the_receiver_works_under_the_ingest_role(login_in_role, warehouse_url: str, db: psycopg.Connection) -> None:
    """Every write path of the receiver needs only what telemetry_ingest has: COPY, the duplicate-counting
    path (a retried batch), rejects, the per-row fallback for values the database refuses, two tables at once."""
    ingest_url = login_in_role("telemetry_ingest")
    with psycopg.connect(ingest_url) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute("select count(*) from raw.message_samples")
    running = Receiver(settings(warehouse_url, ingest_database_url=ingest_url)).start()
    try:
        with IngestClient(f"127.0.0.1:{running.port}", TOKEN, attempts=1) as client:
            samples = [records.sample(f"m{i}") for i in range(20)] + [records.sample("")]
            assert (client.push_message_samples(samples).accepted, client.push_message_samples(samples).duplicates) == (
                20,
                20,
            )
            refused_by_db = records.event("surrogate")
            refused_by_db.payload_json = '{"x": "\\ud800"}'
            events = [records.event("a1", name="account_created", channel="user"), records.event("e1")]
            first = client.push_product_events([*events, refused_by_db])
            again = client.push_product_events([*events, refused_by_db])
    finally:
        running.stop(grace=1)
    assert (first.accepted, first.rejected) == (2, 1)
    assert first.rejects[0][0] == 2 and first.rejects[0][1].startswith("refused by the database: ")
    assert (again.accepted, again.duplicates, again.rejected) == (0, 2, 1)
    assert db.execute("select count(*) from raw.message_samples").fetchone() == (20,)
    assert db.execute("select count(*) from raw.accounts_created").fetchone() == (1,)
    assert db.execute("select count(*), count(distinct reason) from raw.rejects").fetchone() == (4, 2)


def test_the_loader_works_under_the_ingest_role(login_in_role, db: psycopg.Connection, tmp_path: Path) -> None:
    """The loader's direct path writes each reject with its file and line in one INSERT (the ingest role cannot
    UPDATE rejects afterwards), for a file with a bad line, a refused value and an account."""
    ingest_url = login_in_role("telemetry_ingest")
    moment = records.this_minute(5).isoformat()
    line = {"schema_version": "telemetry_event_v1", "timestamp": moment, "user_id": "u1", "payload": {}}
    path = tmp_path / "events.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({**line, "channel": "app", "event": "open", "event_id": "l1"}),
                "{not json",
                json.dumps({**line, "channel": "user", "event": "account_created", "event_id": "l3"}),
                # a number beyond numeric: valid JSON, refused by jsonb
                json.dumps(
                    {**line, "channel": "app", "event": "open", "event_id": "l4", "payload": {"s": "BIG"}}
                ).replace('"BIG"', "1e1000000"),
            ]
        )
        + "\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "collectors.senders.loader.cli", str(path), "--no-progress"],
        capture_output=True,
        text=True,
        env={**os.environ, "TELEMETRY_DATABASE_URL": ingest_url},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "landed 2" in done.stderr and "rejected 2" in done.stderr, done.stderr
    rows = db.execute("select line_number, file_name, reason from raw.rejects order by line_number").fetchall()
    assert [(n, f) for n, f, _ in rows] == [(2, str(path)), (4, str(path))]
    assert rows[1][2].startswith("refused by the database: ")
    assert db.execute("select event_id from raw.accounts_created").fetchall() == [("l3",)]


def test_ingest_role_can_insert_but_never_read_change_or_delete(login_in_role, db: psycopg.Connection) -> None:
    user_url = login_in_role("telemetry_ingest")
    role = "telemetry_ingest"
    tables = _relations(db, "raw", "quality", "marts", "staging", "intermediate")
    assert len(tables) > 2 * len(RAW_TABLES)  # the partitions are in the list too
    for table in tables:
        for privilege in ("SELECT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"):
            assert not db.execute("select has_table_privilege(%s, %s, %s)", (role, table, privilege)).fetchone()[0], (
                f"{role} has {privilege} on {table}"
            )
    insertable = {
        t for t in tables if db.execute("select has_table_privilege(%s, %s, 'INSERT')", (role, t)).fetchone()[0]
    }
    assert {f"raw.{t}" for t in RAW_TABLES} | {"raw.rejects", "quality.ingest_batches"} == insertable
    for schema in ("raw", "quality", "marts", "public"):
        assert not db.execute("select has_schema_privilege(%s, %s, 'CREATE')", (role, schema)).fetchone()[0]
    with psycopg.connect(user_url, autocommit=True) as conn:
        for table in (*(f"raw.{t}" for t in RAW_TABLES), "raw.rejects", "quality.ingest_batches"):
            name = sql.SQL(table)  # constants of this test
            for statement in (
                sql.SQL("select count(*) from {}").format(name),
                sql.SQL("delete from {}").format(name),
                sql.SQL("update {} set batch_id = null").format(name),
                sql.SQL("truncate {}").format(name),
            ):
                with pytest.raises(errors.InsufficientPrivilege):
                    conn.execute(statement)
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("drop table raw.message_samples")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("select raw.ensure_partitions('message_samples', current_date, current_date + 30)")


def test_analyst_role_reads_marts_and_writes_nothing(login_in_role, db: psycopg.Connection) -> None:
    db.execute("create table marts.fct_example (day date, n int)")  # as dbt creates marts (default privileges)
    db.execute("insert into marts.fct_example values (current_date, 1)")
    analyst_url = login_in_role("telemetry_analyst")
    with psycopg.connect(analyst_url, autocommit=True) as conn:
        assert conn.execute("select n from marts.fct_example").fetchall() == [(1,)]
        for statement in (
            "insert into marts.fct_example values (current_date, 2)",
            "update marts.fct_example set n = 3",
            "delete from marts.fct_example",
            "truncate marts.fct_example",
            "create table marts.mine (x int)",
            "drop table marts.fct_example",
            "select count(*) from raw.message_samples",
            "select count(*) from raw.rejects",
            "select count(*) from quality.ingest_batches",
            "insert into raw.rejects (source, reason, record) values ('x', 'y', '')",
        ):
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(statement)
    assert db.execute("select n from marts.fct_example").fetchall() == [(1,)]


# --------------------------------------------------------------------------- SQL composition and secrets

SQL_CALLS = {"execute", "executemany", "copy", "stream", "SQL"}
# Known exceptions, each with its reason. None are in the collectors' ingest path.
SQL_TEXT_ALLOWED: set[tuple[str, str]] = set()  # (file, call) of SQL text that is safe though formatted


def _text_built(node: ast.AST) -> bool:
    """An f-string with fields, ``%`` or ``+`` on text, or ``"...".format(...)``."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
        sides = (node.left, node.right)
        return any(isinstance(x, ast.Constant) and isinstance(x.value, str) for x in sides) or any(
            _text_built(x) for x in sides
        )
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return isinstance(node.func.value, ast.Constant | ast.JoinedStr)
    return False


def sql_built_from_text(path: Path) -> list[str]:
    """Calls that send SQL (execute, copy, sql.SQL, ...) with text built by formatting, inline or through a
    local variable assigned such text."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for scope in [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef))]:
        built = {
            target.id
            for node in ast.walk(scope)
            if isinstance(node, ast.Assign) and _text_built(node.value)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        for node in ast.walk(scope):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            first = node.args[0]
            if name in SQL_CALLS and (_text_built(first) or (isinstance(first, ast.Name) and first.id in built)):
                found.append(ast.unparse(node))
    return sorted(set(found))


def test_sql_is_built_only_with_parameters_or_psycopg_sql(tmp_path: Path) -> None:
    roots = [REPO_ROOT / d for d in ("collectors", "plugins", "dags")]
    files = [p for root in roots if root.exists() for p in root.rglob("*.py") if "proto" not in p.parts]
    assert len(files) > 30
    offending = {
        (str(path.relative_to(REPO_ROOT)), call) for path in files for call in sql_built_from_text(path)
    } - SQL_TEXT_ALLOWED
    assert not offending, "SQL built by string formatting (use parameters or psycopg.sql):\n" + "\n".join(
        f"{p}: {c}" for p, c in sorted(offending)
    )
    # the check itself finds what it must
    probe = tmp_path / "sql_probe.py"
    probe.write_text(
        "def f(cur, t, v):\n"
        "    cur.execute(f'select * from {t}')\n"
        "    cur.execute('select * from %s' % t)\n"
        "    q = 'delete from ' + t\n"
        "    cur.execute(q)\n"
        "    cur.execute('select {}'.format(v))\n"
        "    cur.execute('select %s', (v,))\n"
    )
    assert len(sql_built_from_text(probe)) == 4


URL_WITH_PASSWORD = re.compile(r"\b[a-z+]+://[^/\s:@'\"]+:[^@\s/'\"{}]+@")


def test_secrets_come_only_from_the_environment() -> None:
    """No credentials in code or config files: connection URLs carry no password, dbt's profile reads env vars,
    the secret settings are SecretStr (masked in any repr)."""
    roots = [REPO_ROOT / d for d in ("collectors", "plugins", "dags", "dbt_project")]
    files = [
        p
        for root in roots
        if root.exists()
        for p in root.rglob("*")
        if p.suffix in {".py", ".yml", ".yaml", ".sql", ".cfg", ".ini", ".toml"} and "target" not in p.parts
    ]
    files += [REPO_ROOT / "docker-compose.yml"] if (REPO_ROOT / "docker-compose.yml").exists() else []
    leaks = [
        f"{p.relative_to(REPO_ROOT)}: {m.group(0)}"
        for p in files
        for m in URL_WITH_PASSWORD.finditer(p.read_text(errors="replace"))
        if "${" not in m.group(0)
    ]
    assert not leaks, leaks
    profile = (REPO_ROOT / "dbt_project" / "profiles.yml").read_text()
    password_line = next(line for line in profile.splitlines() if "password" in line)
    assert "env_var(" in password_line
    secret_fields = {name for name, spec in Settings.model_fields.items() if spec.annotation is SecretStr}
    assert {"ingest_tokens", "receiver_key_salt"} <= secret_fields


# --------------------------------------------------------------------------- stalled calls


def _stalled_call(target: str, method: str, metadata: tuple, release: threading.Event) -> grpc.Future:
    """A call that sends its headers but never its request (until ``release``): a slowloris of gRPC."""

    def never() -> Iterator[bytes]:
        release.wait()
        yield b""

    channel = grpc.insecure_channel(target)
    call = channel.stream_unary(method, request_serializer=None, response_deserializer=None)
    return call.future(never(), metadata=metadata, timeout=60)


def test_stalled_calls_cannot_hold_the_receiver(warehouse_url: str) -> None:
    workers = 4
    running = Receiver(settings(warehouse_url, workers=workers, receive_timeout_seconds=3)).start()
    target = f"127.0.0.1:{running.port}"
    release = threading.Event()
    ingest = "/telemetry.v1.TelemetryIngest/PushMessageSamples"
    kinds = [
        (ingest, ()),
        (ingest, (("authorization", f"Bearer {WRONG_TOKEN}"),)),
        ("/no.Such/Method", (("authorization", f"Bearer {TOKEN}"),)),
        (ingest, (("authorization", f"Bearer {TOKEN}"),)),  # even with the right token
    ]
    try:
        stalled = [_stalled_call(target, *kinds[i % len(kinds)], release) for i in range(4 * workers)]
        time.sleep(0.5)  # every stalled call has reached the receiver
        with grpc.insecure_channel(target) as channel, IngestClient(target, TOKEN, attempts=1, timeout=5) as client:
            health = health_pb2_grpc.HealthStub(channel)
            for round_ in range(3):
                started = time.monotonic()
                status = health.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                assert status == health_pb2.HealthCheckResponse.SERVING
                assert client.push_message_samples([records.sample(f"m{round_}")]).accepted == 1
                assert time.monotonic() - started < 1.0
        # refused tokens and unknown methods were answered at once, not after their (never sent) request
        early = [f.exception().code() for f in stalled if f.done()]
        assert early.count(grpc.StatusCode.UNAUTHENTICATED) == 2 * workers
        assert early.count(grpc.StatusCode.UNIMPLEMENTED) == workers
        # an authenticated call that never sends its request is cut off after the receive timeout
        authenticated = stalled[3 :: len(kinds)]
        for future in authenticated:
            assert future.exception(timeout=10).code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert "did not arrive within 3 s" in future.exception().details()
    finally:
        release.set()
        running.stop(grace=1)


def test_calls_beyond_the_concurrency_cap_are_refused_at_once(warehouse_url: str) -> None:
    running = Receiver(settings(warehouse_url, max_concurrent_calls=4, receive_timeout_seconds=5)).start()
    target = f"127.0.0.1:{running.port}"
    release = threading.Event()
    auth_md = (("authorization", f"Bearer {TOKEN}"),)
    try:
        held = [
            _stalled_call(target, "/telemetry.v1.TelemetryIngest/PushHostMinutes", auth_md, release) for _ in range(4)
        ]
        time.sleep(0.5)
        started = time.monotonic()
        with IngestClient(target, TOKEN, attempts=1, timeout=5) as client, pytest.raises(grpc.RpcError) as busy:
            client.push_host_minutes([records.host_minute()])
        assert busy.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and time.monotonic() - started < 1.0
        release.set()
        for future in held:
            future.exception(timeout=10)
    finally:
        release.set()
        running.stop(grace=1)


# --------------------------------------------------------------------------- tokens a transport cannot carry


def test_a_token_gRPC_cannot_send_is_refused_at_configuration_time(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="visible ASCII without spaces"):
        IngestClient("127.0.0.1:1", TOKEN + "\n")
    with pytest.raises(ValueError, match="token 2 must be visible ASCII"):
        Settings(ingest_tokens=f"{TOKEN},two words")
    assert Settings(ingest_tokens=f"{TOKEN}\n").token_list() == [TOKEN]  # a secret file's newline is not the token
    done = subprocess.run(
        [sys.executable, "-m", "collectors.senders.host", "--minutes", "1"],
        capture_output=True,
        text=True,
        env={**os.environ, "TELEMETRY_TOKEN": "", "TELEMETRY_INGEST_TOKENS": "", "TELEMETRY_TOKEN_FILE": ""},
        timeout=60,
    )
    assert done.returncode == 2 and "TELEMETRY_TOKEN" in done.stderr


def test_a_metadata_error_on_the_client_side_is_permanent_not_spooled(tmp_path: Path) -> None:
    with IngestClient("127.0.0.1:1", TOKEN, spool_dir=tmp_path / "spool", attempts=3, timeout=2) as client:
        client._metadata = (("authorization", f"Bearer {TOKEN}\n"),)  # what a token from a bad file would do
        with pytest.raises(IngestError) as error:
            client.push_message_samples([records.sample("m1")])
        assert error.value.code == grpc.StatusCode.INTERNAL and "Invalid metadata" in error.value.details
        assert len(client.spool) == 0  # nothing spooled forever


# --------------------------------------------------------------------------- secrets on the command line


def test_a_password_on_the_command_line_is_warned_about_and_a_file_form_exists(
    receiver_process, warehouse_url: str, tmp_path: Path
) -> None:
    with_password = warehouse_url.replace("postgresql://postgres@", "postgresql://postgres:not-needed@")
    # the warning (and a clean stop: the URL is otherwise fine, trust authentication ignores the password)
    done = subprocess.run(
        [sys.executable, "-m", "collectors.senders.loader.cli", "--database-url", with_password, "--dry-run", __file__],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "--database-url carries a password" in done.stderr and "not-needed" not in done.stderr
    url_file = tmp_path / "url"
    url_file.write_text(with_password + "\n")
    process, target = receiver_process(TELEMETRY_INGEST_DATABASE_URL_FILE=str(url_file))
    with IngestClient(target, TOKEN) as client:
        assert client.push_message_samples([records.sample("from-file")]).accepted == 1
    assert "not-needed" not in " ".join(Path(f"/proc/{process.pid}/cmdline").read_text().split("\0"))


def test_secrets_can_come_from_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "tokens").write_text(f"{TOKEN},second-{TOKEN}\n")
    (tmp_path / "url").write_text("postgresql://ingest:secret@db:5432/telemetry\n")
    for name in ("TELEMETRY_INGEST_TOKENS", "TELEMETRY_INGEST_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TELEMETRY_INGEST_TOKENS_FILE", str(tmp_path / "tokens"))
    monkeypatch.setenv("TELEMETRY_INGEST_DATABASE_URL_FILE", str(tmp_path / "url"))
    loaded = Settings()
    assert loaded.token_list() == [TOKEN, f"second-{TOKEN}"]
    assert loaded.receiver_database_url == "postgresql://ingest:secret@db:5432/telemetry"
    monkeypatch.setenv("TELEMETRY_INGEST_TOKENS_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="TELEMETRY_INGEST_TOKENS_FILE: cannot read"):
        Settings()


def test_tls_mistakes_get_clear_errors(warehouse_url: str, tmp_path: Path) -> None:
    _, cert = _self_signed(tmp_path, "server")
    other_key, _ = _self_signed(tmp_path, "other")
    base = {
        **os.environ,
        "TELEMETRY_DATABASE_URL": warehouse_url,
        "TELEMETRY_INGEST_TOKENS": TOKEN,
        "TELEMETRY_METRICS_PORT": "0",
    }
    cases = [
        ({"TELEMETRY_TLS_KEY_FILE": str(tmp_path / "missing.key")}, "cannot read the TLS key file"),
        ({"TELEMETRY_TLS_KEY_FILE": str(other_key)}, "does not belong to the certificate"),
        ({"TELEMETRY_TLS_KEY_FILE": str(tmp_path)}, "cannot read the TLS key file"),
        ({"TELEMETRY_TLS_KEY_FILE": __file__}, "is not a PEM certificate and private key"),
    ]
    for env, message in cases:
        done = subprocess.run(
            [sys.executable, "-m", "collectors.receiver.cli", "--listen", "127.0.0.1:0"],
            capture_output=True,
            text=True,
            env={**base, "TELEMETRY_TLS_CERT_FILE": str(cert), **env},
            timeout=60,
        )
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
