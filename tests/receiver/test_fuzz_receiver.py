"""Hostile input to a real receiver (real gRPC, real PostgreSQL): malformed protobuf, huge strings and lists,
NaN/inf metrics, timestamps at the extremes, JSON payloads PostgreSQL refuses.

The receiver must never crash, must answer every call with the right status code, and must land only records
its rules accept; everything else goes to raw.rejects with a reason. The oracle is the receiver's own rules
run here on the same record: a refused record must be reported with exactly that reason; an accepted one must
land (or count as a duplicate), unless PostgreSQL refuses a value the rules let through, which must then be a
reject "refused by the database" (the writer's per-row fallback) and never a failed batch.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections import Counter
from collections.abc import Iterator

import grpc
import psycopg
import pytest
from google.protobuf.message import DecodeError, Message
from hypothesis import example, given
from hypothesis import strategies as st

from collectors.config import Settings
from collectors.dev import local_postgres
from collectors.ingest import registry, rules
from collectors.ingest.service import ENDPOINTS, Endpoint
from collectors.proto.telemetry.v1 import ingest_pb2 as pb
from collectors.receiver.server import Receiver
from tests.support.fuzzing import EXAMPLES, FUZZ
from tests.support.receivers import TOKEN, report_figures

pytestmark = pytest.mark.fuzz


AUTH = (("authorization", f"Bearer {TOKEN}"),)
BY_METHOD = {e.method: e for e in ENDPOINTS}
ALLOWED_CODES = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}


class Fuzzed:
    """The receiver under test and what the fuzzing saw (for the invariants at the end and the figures)."""

    def __init__(self, url: str, receiver: Receiver) -> None:
        self.url = url
        self.receiver = receiver
        self.channel = grpc.insecure_channel(
            f"127.0.0.1:{receiver.port}", options=[("grpc.max_send_message_length", 64 << 20)]
        )
        self.calls = {m: self.channel.unary_unary(f"/telemetry.v1.TelemetryIngest/{m}") for m in BY_METHOD}
        self.codes: Counter[str] = Counter()
        self.sent = self.accepted = self.duplicates = self.rejected = self.refused_by_db = 0
        # of those, in resent batches: their rejects collapse onto the first send's in raw.rejects
        self.rejected_again = self.refused_by_db_again = 0

    def call(self, method: str, payload: bytes) -> tuple[grpc.StatusCode, bytes | None, str]:
        try:
            response = self.calls[method](payload, metadata=AUTH, timeout=60)
        except grpc.RpcError as error:
            code = error.code()
            self.codes[code.name] += 1
            return code, None, error.details() or ""
        self.codes["OK"] += 1
        return grpc.StatusCode.OK, response, ""

    def limits(self, endpoint: Endpoint) -> rules.Limits:
        return self.receiver.service.limits(endpoint.table.name, dt.datetime.now(dt.UTC))


@pytest.fixture(scope="module")
def fuzzed(pg_server: local_postgres.PostgresServer, template_url: str) -> Iterator[Fuzzed]:
    name = f"telemetry_fuzz_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    url = local_postgres.create_database(pg_server.url, name, template=local_postgres.database_name(template_url))
    settings_ = Settings(database_url=url, listen="127.0.0.1:0", metrics_port=0, ingest_tokens=TOKEN, workers=2)
    receiver = Receiver(settings_).start()
    state = Fuzzed(url, receiver)
    try:
        yield state
    finally:
        state.channel.close()
        receiver.stop(grace=5)
        local_postgres.drop_database(pg_server.url, name)


# --------------------------------------------------------------------------- strategies

NOW = int(dt.datetime.now(dt.UTC).timestamp())
DAY = 86400
# Each record is valid but for a few hostile fields (none in about a third of the records), so that both what
# lands and what is refused get exercised. Valid times stay well clear of the retention and future borders (the
# rules here and in the receiver read the clock apart).
VALID_SECONDS = st.sampled_from([NOW - 120, NOW - 3 * DAY, NOW - 6 * DAY, NOW + 60]) | st.integers(NOW - DAY, NOW)
HOSTILE_SECONDS = st.sampled_from(
    [-(2**63), -1, 0, 1, 253402300799, 253402300800, 2**63 - 1, NOW + 3600, NOW - 400 * DAY]
) | st.integers(min_value=-(2**63), max_value=2**63 - 1)
HOSTILE_NANOS = st.sampled_from([-1, 1_000_000_000, -(2**31), 2**31 - 1])
VALID_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1, max_size=40)
HOSTILE_TEXT = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=40),
    st.sampled_from(["", "\x00", "a\x00b", "x" * 129, "x" * 257, "x" * 513, "\U0001f600" * 200, "\u202e\ufeff"]),
    st.builds(lambda c, n: c * n, st.sampled_from(["a", "é", "\U00020000"]), st.integers(0, 70_000)),
)
VALID_IDS = st.lists(st.integers(0, 2**63 - 1), max_size=20, unique=True)
HOSTILE_IDS = st.one_of(
    st.lists(st.integers(-(2**63), 2**63 - 1), max_size=20),
    st.lists(st.integers(0, 5), min_size=2, max_size=20),  # repeated ids
    st.builds(lambda n: list(range(n)), st.sampled_from([1000, Settings().max_ids_per_list + 1])),
)
VALID_PERCENT = st.floats(0, 100)
VALID_RATE = st.floats(0, 1e12) | st.sampled_from([0.0, 5e-324, 1.7976931348623157e308])
HOSTILE_FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), -0.0, 100.0000001, -1e-300]),
)
VALID_JSON = st.one_of(
    st.sampled_from(["", "{}", '{"a": 1}', '{"x": 1e400}', '{"n": -0.0, "big": 123456789012345678901234567890}']),
    st.recursive(
        st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False) | st.integers() | VALID_TEXT,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(VALID_TEXT, inner, max_size=4),
        max_leaves=20,
    ).map(lambda v: json.dumps({"v": v}, ensure_ascii=False)),
)
HOSTILE_JSON = st.one_of(
    # valid JSON objects that only PostgreSQL refuses: numeric overflow, lone surrogate escapes
    st.sampled_from(['{"x": 1e1000000}', '{"x": -9e999999}', '{"x": "\\ud800"}', '{"k\\udfff": 1}']),
    st.sampled_from(
        [
            "[]",
            "null",
            '{"x": NaN}',
            '{"x": -Infinity}',
            '{"x": "\\u0000"}',
            '{"a": ' * 2000 + "1" + "}" * 2000,
            '{"x": "' + "y" * 20_000 + '"}',
            "{'single': 'quotes'}",
            '{"a": 1}{"b": 2}',
        ]
    ),
    st.text(max_size=60),
)


@st.composite
def fields(draw, spec: dict[str, tuple[st.SearchStrategy, st.SearchStrategy]]) -> dict[str, object]:
    """One value per field: valid, except for up to two hostile ones (none at all in a third of the records)."""
    hostile = set() if draw(st.integers(0, 2)) == 0 else draw(st.sets(st.sampled_from(sorted(spec)), max_size=2))
    return {name: draw(bad if name in hostile else good) for name, (good, bad) in spec.items()}


def stamp(seconds: int, nanos: int = 0) -> dict[str, int]:
    return {"seconds": seconds, "nanos": nanos}


TIME = (VALID_SECONDS.map(stamp), st.builds(stamp, HOSTILE_SECONDS, st.integers(0, 999_999_999) | HOSTILE_NANOS))
TEXT = (VALID_TEXT, HOSTILE_TEXT)


@st.composite
def snapshots(draw) -> pb.MinuteSnapshot:
    f = draw(
        fields(
            {
                "server_id": TEXT,
                "minute": TIME,
                "total": (VALID_IDS, HOSTILE_IDS),
                "states": (st.just(None), HOSTILE_IDS),
                "battles": (
                    st.tuples(st.integers(0, 10), st.integers(0, 5), st.integers(0, 5)).map(
                        lambda t: (t[0] + t[1] + t[2], t[1], t[2])
                    ),
                    st.tuples(*(st.integers(-(2**31), 2**31 - 1),) * 3),
                ),
                "battle_ids": (st.lists(VALID_TEXT, max_size=5), st.lists(HOSTILE_TEXT, max_size=5)),
            }
        )
    )
    msg = pb.MinuteSnapshot(server_id=f["server_id"], minute=f["minute"], battle_ids=f["battle_ids"])
    msg.clients.total.extend(f["total"])
    for state in registry.STATES:  # subsets of total, or (hostile) ids of their own
        if f["states"] is not None:
            ids = f["states"]
        else:
            ids = draw(st.lists(st.sampled_from(f["total"]), unique=True)) if f["total"] else []
        getattr(msg.clients, state).extend(ids)
    msg.battles.total, msg.battles.lobby, msg.battles.in_progress = f["battles"]
    return msg


@st.composite
def samples(draw) -> pb.MessageSample:
    f = draw(
        fields(
            {
                "message_id": TEXT,
                "channel_id": TEXT,
                "receiver_public_key": TEXT,
                "sent_at": TIME,
                "received_at": (st.none() | TIME[0], TIME[1]),
                "topics": (st.binary(max_size=64), st.binary(min_size=4097, max_size=5000)),
                "envelope_id": (st.just("") | VALID_TEXT, HOSTILE_TEXT),
            }
        )
    )
    return pb.MessageSample(**{k: v for k, v in f.items() if v is not None})


@st.composite
def histograms(draw) -> pb.LogHistogram:
    n = draw(st.integers(1, 6))
    index = sorted(draw(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=n, max_size=n, unique=True)))
    valid = pb.LogHistogram(
        bucket_index=index,
        bucket_count=draw(st.lists(st.integers(1, 2**63 - 1), min_size=n, max_size=n)),
        zero_count=draw(st.integers(0, 100)),
        sum=draw(VALID_RATE),
        min=draw(VALID_RATE),
        max=draw(VALID_RATE),
    )
    if draw(st.booleans()):
        return valid
    hostile = draw(st.sampled_from(["reverse", "counts", "zero", "nan", "empty", "length"]))
    if hostile == "reverse" and n > 1:
        valid.bucket_index[:] = index[::-1]
    elif hostile == "counts":
        valid.bucket_count[0] = draw(st.sampled_from([0, 2**63, 2**64 - 1]))
    elif hostile == "zero":
        valid.zero_count = 2**64 - 1
    elif hostile == "nan":
        valid.sum = draw(HOSTILE_FLOATS)
    elif hostile == "empty":
        del valid.bucket_index[:], valid.bucket_count[:]
        valid.zero_count = 0
    else:
        valid.bucket_count.append(1)
    return valid


MAX_CORES = registry.HOST_MINUTES.column("cpu_percent_per_core").spec.max_items  # type: ignore[union-attr]
METRIC_VALID = {
    name: (st.integers(0, 2**63 - 1) if name.endswith("_bytes") else VALID_PERCENT if high == 100 else VALID_RATE)
    for name, high in registry.HOST_METRICS
}
METRIC_HOSTILE = {
    name: (st.integers(2**63, 2**64 - 1) if name.endswith("_bytes") else HOSTILE_FLOATS)
    for name, _ in registry.HOST_METRICS
}


@st.composite
def host_minutes(draw) -> pb.HostMinute:
    spec = {name: (METRIC_VALID[name], METRIC_HOSTILE[name]) for name, _ in registry.HOST_METRICS}
    spec |= {
        "host_id": TEXT,
        "minute": TIME,
        "samples": (st.integers(0, 60), st.integers(2**31, 2**32 - 1)),
        "cpu_percent_per_core": (
            st.lists(VALID_PERCENT, max_size=8),
            st.lists(HOSTILE_FLOATS, min_size=1, max_size=8) | st.just([1.0] * (MAX_CORES + 1)),
        ),
        "server": (
            st.none() | st.builds(pb.ServerPerformance, tick_rate=VALID_RATE, packet_loss_percent=VALID_PERCENT),
            st.builds(
                pb.ServerPerformance,
                tick_duration_ms=histograms(),
                player_ping_ms=histograms(),
                tick_rate=VALID_RATE | HOSTILE_FLOATS,
                connections=st.integers(0, 2**32 - 1),
                players=st.integers(0, 2**32 - 1),
                packet_loss_percent=VALID_PERCENT | HOSTILE_FLOATS,
            ),
        ),
    }
    return pb.HostMinute(**{k: v for k, v in draw(fields(spec)).items() if v is not None})


@st.composite
def events(draw) -> pb.ProductEvent:
    f = draw(
        fields(
            {
                "event_id": TEXT,
                "schema_version": (st.sampled_from(["", rules.SCHEMA_VERSION]), st.sampled_from(["v2", "\x00"])),
                "channel": (st.sampled_from(["user", "app"]) | VALID_TEXT, HOSTILE_TEXT),
                "event": (st.sampled_from(["account_created", "open"]) | VALID_TEXT, HOSTILE_TEXT),
                "timestamp": TIME,
                "user_id": TEXT,
                "session_id": (st.just("") | VALID_TEXT, HOSTILE_TEXT),
                "payload_json": (VALID_JSON, HOSTILE_JSON),
            }
        )
    )
    return pb.ProductEvent(**f)


REPORT_FIELDS = registry.SERVER_REPORTS.column("document").spec.fields  # type: ignore[union-attr]


def _place(document: dict, path: str, value: object) -> None:
    *parents, leaf = path.removesuffix("[]").removesuffix("{}").split(".")
    for name in parents:
        document = document.setdefault(name, {})
    document[leaf] = [value] if path.endswith("[]") else {"map": value} if path.endswith("{}") else value


@st.composite
def server_reports(draw) -> pb.ServerReport:
    """A report document of the original's fields (each present or not, in bounds), or one spoilt: a field out of
    bounds or of the wrong type, another server's id, more memory used than there is, not an object at all."""
    server_id = draw(TEXT[0] if draw(st.integers(0, 3)) else TEXT[1])
    document: dict = {"server_id": server_id} if draw(st.booleans()) else {}
    for field in draw(st.lists(st.sampled_from(REPORT_FIELDS), max_size=6, unique=True)):
        high = min(field.high, 2**53)
        value = draw(st.integers(0, int(high)) if field.whole else st.floats(field.low, high))
        _place(document, field.path, value)
    hostile = draw(st.sampled_from(["none", "bounds", "type", "server", "memory", "json"]))
    if hostile == "bounds":
        field = draw(st.sampled_from(REPORT_FIELDS))
        _place(document, field.path, draw(st.sampled_from([-1, field.high * 2 if field.high < 2**63 else 2**64])))
    elif hostile == "type":
        _place(document, draw(st.sampled_from(REPORT_FIELDS)).path, draw(st.sampled_from(["1", None, [], {}])))
    elif hostile == "server":
        document["server_id"] = server_id + "-other"
    elif hostile == "memory":
        document["hardware"] = {"memory_used_bytes": 2, "memory_total_bytes": 1}
    text = draw(HOSTILE_JSON) if hostile == "json" else json.dumps(document)
    return pb.ServerReport(server_id=server_id, timestamp=draw(TIME[0] | TIME[1]), document_json=text)


RECORDS = {
    "PushMinuteSnapshots": snapshots(),
    "PushMessageSamples": samples(),
    "PushHostMinutes": host_minutes(),
    "PushProductEvents": events(),
    "PushServerReports": server_reports(),
}


# --------------------------------------------------------------------------- properties


def check_ack(
    fuzzed: Fuzzed, endpoint: Endpoint, items: list[Message], response: bytes, *, resent: bool = False
) -> pb.IngestAck:
    """Every record is accounted for; refused ones carry exactly the reason the rules give."""
    ack = endpoint.response.FromString(response).ack
    assert ack.accepted + ack.duplicates + ack.rejected == len(items)
    reasons = {r.index: r.reason for r in ack.rejects}
    assert len(reasons) == ack.rejected and all(reasons.values())
    limits = fuzzed.limits(endpoint)
    expected_to_land = 0
    batch_id = uuid.uuid4()
    passed: list[tuple[int, tuple]] = []
    for index, item in enumerate(items):
        try:
            passed.append((index, endpoint.to_row(item, limits, batch_id)))
        except rules.RecordRefused as refused:
            assert reasons.get(index) == str(refused), (index, item)
    # a record with an earlier record's natural key but other contents is a conflicting duplicate
    conflicts = rules.conflicting_rows(endpoint.table, [row for _, row in passed])
    conflicting = {passed[p][0]: rules.conflict_reason(endpoint.table, passed[f][0]) for p, f in conflicts}
    for index, _ in passed:
        if index in conflicting:
            assert reasons.get(index) == conflicting[index]
            continue
        if index in reasons:  # passed the rules: only the database may refuse it
            assert reasons[index].startswith("refused by the database: "), reasons[index]
            fuzzed.refused_by_db += 1
            fuzzed.refused_by_db_again += resent
        else:
            expected_to_land += 1
    assert ack.accepted + ack.duplicates == expected_to_land
    fuzzed.sent += len(items)
    fuzzed.accepted += ack.accepted
    fuzzed.duplicates += ack.duplicates
    fuzzed.rejected += ack.rejected
    fuzzed.rejected_again += ack.rejected if resent else 0
    return ack


def batch(method: str) -> st.SearchStrategy[list[Message]]:
    return st.lists(RECORDS[method], min_size=1, max_size=6)


@FUZZ
@given(data=st.data(), method=st.sampled_from(sorted(BY_METHOD)), resend=st.booleans())
@example(data=None, method="PushProductEvents", resend=True).via("the writer's per-row fallback, then duplicates")
def test_hostile_records_are_landed_or_rejected_with_their_reason(
    fuzzed: Fuzzed, data: st.DataObject | None, method: str, resend: bool
) -> None:
    endpoint = BY_METHOD[method]
    if data is None:
        good = pb.ProductEvent(event_id="fallback-ok", channel="app", event="open", user_id="u", payload_json="{}")
        good.timestamp.seconds = NOW - 60
        bad = [pb.ProductEvent(), pb.ProductEvent()]
        for i, (message, payload) in enumerate(zip(bad, ('{"x": "\\ud800"}', '{"x": 1e1000000}'), strict=True)):
            message.CopyFrom(good)
            message.event_id, message.payload_json = f"fallback-{i}", payload
        items = [good, *bad]
    else:
        items = data.draw(batch(method))
    request = endpoint.request(batch_id=str(uuid.uuid4()))
    getattr(request, endpoint.field).extend(items)
    payload = request.SerializeToString()
    code, response, details = fuzzed.call(method, payload)
    if len(payload) > fuzzed.receiver.settings.max_batch_bytes:
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
        return
    assert code == grpc.StatusCode.OK, f"{code.name}: {details}"
    first = check_ack(fuzzed, endpoint, items, response)
    if data is None:
        assert [r.index for r in first.rejects] == [1, 2] and first.accepted == 1
    if resend:  # the same batch again (a client that lost the ack): nothing new lands, the same rejects
        code, response, details = fuzzed.call(method, payload)
        assert code == grpc.StatusCode.OK, f"{code.name}: {details}"
        again = check_ack(fuzzed, endpoint, items, response, resent=True)
        assert again.accepted == 0 and again.duplicates == first.accepted + first.duplicates
        assert [(r.index, r.reason) for r in again.rejects] == [(r.index, r.reason) for r in first.rejects]


def mutations(valid: bytes) -> st.SearchStrategy[bytes]:
    """Bytes near a valid request: truncated, with bytes flipped, inserted or removed."""

    @st.composite
    def mutate(draw) -> bytes:
        data = bytearray(valid)
        for _ in range(draw(st.integers(1, 4))):
            if not data:
                break
            at = draw(st.integers(0, len(data) - 1))
            kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
            if kind == "flip":
                data[at] ^= draw(st.integers(1, 255))
            elif kind == "insert":
                data[at:at] = draw(st.binary(min_size=1, max_size=8))
            elif kind == "delete":
                del data[at : at + draw(st.integers(1, 8))]
            else:
                del data[at:]
        return bytes(data)

    return mutate()


def _valid_request(method: str) -> bytes:
    """One valid record of each kind (the starting point of the mutations)."""
    stamp = {"seconds": NOW - 120}
    record = {
        "PushMinuteSnapshots": pb.MinuteSnapshot(
            server_id="s", minute=stamp, clients=pb.ClientStates(player=[1], total=[1, 2])
        ),
        "PushMessageSamples": pb.MessageSample(
            message_id="m", channel_id="c", receiver_public_key="k", envelope_id="e", sent_at=stamp
        ),
        "PushHostMinutes": pb.HostMinute(host_id="h", minute=stamp, samples=60, cpu_percent=5.0),
        "PushProductEvents": pb.ProductEvent(
            event_id="e", channel="app", event="open", user_id="u", payload_json='{"a": 1}', timestamp=stamp
        ),
        "PushServerReports": pb.ServerReport(
            server_id="s", timestamp=stamp, document_json='{"server_id": "s", "hardware": {"cpu_usage_percent": 5}}'
        ),
    }[method]
    endpoint = BY_METHOD[method]
    request = endpoint.request(batch_id=str(uuid.uuid4()))
    getattr(request, endpoint.field).append(record)
    return request.SerializeToString()


@FUZZ
@given(data=st.data(), method=st.sampled_from(sorted(BY_METHOD)))
@example(data=None, method="PushMessageSamples").via("invalid UTF-8 in a string field")
def test_malformed_protobuf_is_invalid_argument_and_lands_nothing(
    fuzzed: Fuzzed, data: st.DataObject | None, method: str
) -> None:
    endpoint = BY_METHOD[method]
    if data is None:  # field 1 of a sample (message_id, a string) holding bytes that are not UTF-8
        payload = b"\x0a\x05\x0a\x03\xff\xfe\xfd"
    else:
        valid = _valid_request(method)
        payload = data.draw(st.one_of(st.binary(max_size=300), mutations(valid)))
    request = endpoint.request()
    try:
        request.ParseFromString(payload)
        items = list(getattr(request, endpoint.field))
    except DecodeError:
        items = None
    code, response, details = fuzzed.call(method, payload)
    if not items:  # unparseable or empty: refused whole
        assert code == grpc.StatusCode.INVALID_ARGUMENT, f"{code.name}: {details}"
        return
    assert code == grpc.StatusCode.OK, f"{code.name}: {details}"
    check_ack(fuzzed, endpoint, items, response)


def test_zz_the_warehouse_holds_only_valid_rows_and_reasoned_rejects(fuzzed: Fuzzed) -> None:
    """After the fuzzing (this test runs last in the module): counts agree with the acks, no row breaks a rule
    PostgreSQL can check, every reject has a reason, and the per-row fallback was reached."""
    if not fuzzed.codes:
        pytest.skip("checks what the fuzz tests of this module sent: run it with them")
    with psycopg.connect(fuzzed.url) as db:
        landed = sum(
            db.execute(f"select count(*) from raw.{e.table.name}").fetchone()[0]  # table names: constants
            for e in ENDPOINTS
        )
        ledger = db.execute(
            "select coalesce(sum(accepted), 0), coalesce(sum(duplicates), 0), coalesce(sum(rejected), 0)"
            " from quality.ingest_batches where source <> 'accounts_created'"
        ).fetchone()
        rejects = db.execute(
            "select count(*), count(*) filter (where reason = '' or reason is null) from raw.rejects"
        ).fetchone()
        fallback = db.execute("select count(*) from raw.rejects where reason like 'refused by the database: %'")
        invalid_hosts = db.execute(
            """
            select count(*) from raw.host_minutes
            where not (cpu_percent between 0 and 100 and memory_percent between 0 and 100
                       and cpu_percent_max between 0 and 100 and memory_percent_max between 0 and 100)
               or 'NaN'::float8 in (cpu_percent, load_average_1m, disk_read_bytes_per_s, net_sent_packets_per_s)
               or 'Infinity'::float8 in (cpu_percent, load_average_1m, disk_read_bytes_per_s, net_sent_packets_per_s)
               or samples < 0 or memory_total_bytes < 0
               or coalesce(packet_loss_percent, 0) not between 0 and 100
            """
        ).fetchone()[0]
        invalid_snapshots = db.execute(
            "select count(*) from raw.minute_snapshots where server_id = '' or not (total @> player"
            " and total @> spectator and total @> lobby and total @> menu)"
            " or battles_lobby + battles_in_progress > battles_total or battles_lobby < 0"
        ).fetchone()[0]
        invalid_events = db.execute(
            "select count(*) from raw.product_events where jsonb_typeof(payload) <> 'object' or event_id = ''"
            " or user_id = '' or schema_version <> %s",
            (rules.SCHEMA_VERSION,),
        ).fetchone()[0]
        future = db.execute(
            "select count(*) from raw.message_samples where sent_at > now() + interval '10 minutes'"
        ).fetchone()[0]
        fallback_rows = fallback.fetchone()[0]
    assert landed == ledger[0] == fuzzed.accepted
    assert ledger[1] == fuzzed.duplicates
    # the ledger counts every call's rejects; raw.rejects holds a resent batch's rejects once
    assert ledger[2] == fuzzed.rejected and rejects[0] == fuzzed.rejected - fuzzed.rejected_again and rejects[1] == 0
    assert (invalid_hosts, invalid_snapshots, invalid_events, future) == (0, 0, 0, 0)
    assert fallback_rows == fuzzed.refused_by_db - fuzzed.refused_by_db_again > 0
    assert set(fuzzed.codes) <= {c.name for c in ALLOWED_CODES}, fuzzed.codes
    report_figures(
        "fuzz.receiver",
        examples_per_test=EXAMPLES,
        calls=sum(fuzzed.codes.values()),
        status_codes=dict(fuzzed.codes),
        records_sent=fuzzed.sent,
        accepted=fuzzed.accepted,
        duplicates=fuzzed.duplicates,
        rejected=fuzzed.rejected,
        refused_by_the_database=fuzzed.refused_by_db,
    )
