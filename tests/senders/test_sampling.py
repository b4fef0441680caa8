"""Sampling by user and Do Not Track, in the client and at the receiver, against a real receiver and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from pathlib import Path

import grpc
import psycopg
import pytest
from pydantic import ValidationError

from collectors.config import Settings
from collectors.proto.telemetry.v1 import ingest_pb2 as pb
from collectors.proto.telemetry.v1 import ingest_pb2_grpc
from collectors.receiver.server import Receiver
from collectors.senders.client import IngestClient, Sampling
from collectors.senders.loader.cli import main as load_events
from tests.support.receivers import TOKEN

AUTH = (("authorization", f"Bearer {TOKEN}"),)


def event(event_id: str, user: str, name: str = "open", channel: str = "app", **fields: object) -> pb.ProductEvent:
    message = pb.ProductEvent(event_id=event_id, channel=channel, event=name, user_id=user, **fields)
    message.timestamp.FromDatetime(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    return message


def test_a_user_is_kept_or_dropped_as_a_whole_and_the_share_kept_is_the_rate() -> None:
    sampling = Sampling(rates={"app/purchase": 0.5, "app": 0.1}, salt="a-deployment-salt")
    users = [f"user-{i}" for i in range(10_000)]
    kept_open = {u for u in users if sampling.position(u) < sampling.rate("app", "open")}
    kept_purchase = {u for u in users if sampling.position(u) < sampling.rate("app", "purchase")}
    # binomial: within 3 standard errors of the rate
    assert abs(len(kept_open) / len(users) - 0.1) < 3 * math.sqrt(0.1 * 0.9 / len(users))
    assert abs(len(kept_purchase) / len(users) - 0.5) < 3 * math.sqrt(0.5 * 0.5 / len(users))
    assert kept_open <= kept_purchase  # kept at the lower rate: kept at every higher one
    assert sampling.rate("other", "open") == 1.0
    again = Sampling(rates={"app": 0.1}, salt="a-deployment-salt")
    assert {u for u in users if again.position(u) < 0.1} == kept_open  # the same users on every sender
    other_salt = Sampling(rates={"app": 0.1}, salt="another-salt")
    assert {u for u in users if other_salt.position(u) < 0.1} != kept_open
    with pytest.raises(ValueError, match="must be in"):
        Sampling(rates={"app": 0.0})


def test_the_client_sends_kept_users_whole_journeys_with_their_rate_and_never_opted_out_ones(
    receiver: Receiver, warehouse_url: str, tmp_path: Path
) -> None:
    sampling = Sampling(rates={"app": 0.3}, salt="test-salt", opted_out={"user-7"})
    events = [event(f"e{u}-{step}", f"user-{u}", name) for u in range(60) for step, name in enumerate(("a", "b", "c"))]
    events.append(event("flagged", "user-8", dnt=True))
    kept_users = {f"user-{u}" for u in range(60) if sampling.position(f"user-{u}") < 0.3} - {"user-7"}
    with IngestClient(f"127.0.0.1:{receiver.port}", TOKEN, spool_dir=tmp_path / "spool", sampling=sampling) as client:
        result = client.push_product_events(events)
    assert result.accepted == 3 * len(kept_users) and result.rejected == 0
    assert result.accepted + result.sampled_out + result.opted_out == len(events)
    assert result.opted_out == 3 + 1  # user-7 (listed) and the flagged event, before any sampling
    with psycopg.connect(warehouse_url) as conn:
        rows = conn.execute("select user_id, event, sample_rate from raw.product_events").fetchall()
    assert {u for u, _, _ in rows} == kept_users
    assert sorted(rows) == sorted((u, name, 0.3) for u in kept_users for name in ("a", "b", "c"))


def test_the_receiver_refuses_dnt_events_and_rates_outside_0_1(receiver: Receiver, warehouse_url: str) -> None:
    stub = ingest_pb2_grpc.TelemetryIngestStub(grpc.insecure_channel(f"127.0.0.1:{receiver.port}"))
    request = pb.PushProductEventsRequest(
        events=[
            event("unsampled", "u1"),
            event("sampled", "u2", sample_rate=0.25),
            event("zero", "u3", sample_rate=0.0),
            event("above", "u4", sample_rate=1.5),
            event("nan", "u5", sample_rate=float("nan")),
            event("opted-out", "u6", dnt=True),
        ]
    )
    ack = stub.PushProductEvents(request, metadata=AUTH, timeout=10).ack
    assert (ack.accepted, ack.rejected) == (2, 4)
    assert {r.index: r.reason for r in ack.rejects} == {
        2: "sample_rate must be in (0, 1], not 0.0",
        3: "sample_rate must be in (0, 1], not 1.5",
        4: "sample_rate must be in (0, 1], not nan",
        5: "the user opted out of tracking (dnt): the event is not stored",
    }
    with psycopg.connect(warehouse_url) as conn:
        stored = dict(conn.execute("select event_id, sample_rate from raw.product_events").fetchall())
        reasons = [r for (r,) in conn.execute("select reason from raw.rejects order by record_index")]
    assert stored == {"unsampled": 1.0, "sampled": 0.25}
    assert reasons[-1].startswith("the user opted out")


def test_the_loader_keeps_a_lines_sample_rate_and_refuses_dnt_lines(warehouse_url: str, tmp_path: Path) -> None:
    at = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)).isoformat()
    base = {"schema_version": "telemetry_event_v1", "channel": "app", "event": "open", "timestamp": at}
    lines = [
        base | {"event_id": "l1", "user_id": "u1", "sample_rate": 0.25},
        base | {"event_id": "l2", "user_id": "u2"},
        base | {"event_id": "l3", "user_id": "u3", "dnt": True},
        base | {"event_id": "l4", "user_id": "u4", "sample_rate": 0},
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert load_events([str(path), "--database-url", warehouse_url, "--no-progress", "-q"]) == 0
    with psycopg.connect(warehouse_url) as conn:
        stored = dict(conn.execute("select event_id, sample_rate from raw.product_events").fetchall())
        rejected = dict(conn.execute("select line_number, reason from raw.rejects").fetchall())
    assert stored == {"l1": 0.25, "l2": 1.0}
    assert rejected == {
        3: "the user opted out of tracking (dnt): the event is not stored",
        4: "sample_rate must be in (0, 1], not 0.0",
    }


def sampling_lines(users: int) -> list[dict]:
    """Two lines per user: an app event (sampled at the configured rate) and a store event (rate 1)."""
    at = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)).isoformat()
    base = {"schema_version": "telemetry_event_v1", "timestamp": at}
    return [
        base | {"event_id": f"{kind}-{u}", "user_id": f"user-{u}", "channel": kind, "event": "open"}
        for u in range(users)
        for kind in ("app", "store")
    ]


@pytest.mark.parametrize("path", ["copy", "receiver"])
def test_the_loader_samples_the_users_the_senders_keep_from_the_settings(
    path: str,
    receiver: Receiver,
    warehouse_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.setenv("TELEMETRY_SAMPLING_RATES", '{"app": 0.3, "*": 1}')
    monkeypatch.setenv("TELEMETRY_SAMPLING_SALT", "loader-salt")
    monkeypatch.setenv("TELEMETRY_TOKEN", TOKEN)
    lines = sampling_lines(200)
    own = lines[0] | {"event_id": "own-rate", "user_id": "upstream", "sample_rate": 0.5}  # sampled upstream
    dnt = lines[0] | {"event_id": "flagged", "user_id": "user-0", "dnt": True}
    file = tmp_path / "events.jsonl"
    file.write_text("".join(json.dumps(line) + "\n" for line in [*lines, own, dnt]))
    args = [str(file), "--database-url", warehouse_url, "--no-progress", "-q"]
    if path == "receiver":
        args += ["--target", f"127.0.0.1:{receiver.port}"]
    assert load_events(args) == 0

    sampling = Sampling(rates={"app": 0.3}, salt="loader-salt")  # what any sender with these settings keeps
    kept = {f"user-{u}" for u in range(200) if sampling.position(f"user-{u}") < 0.3}
    assert 30 < len(kept) < 90
    with psycopg.connect(warehouse_url) as conn:
        stored = conn.execute("select channel, user_id, sample_rate from raw.product_events").fetchall()
        rejected = conn.execute("select reason from raw.rejects").fetchall()
    assert sorted(stored) == sorted(
        [("app", u, 0.3) for u in kept] + [("store", f"user-{u}", 1.0) for u in range(200)] + [("app", "upstream", 0.5)]
    )
    assert rejected == [("the user opted out of tracking (dnt): the event is not stored",)]
    summary = capsys.readouterr().err
    assert f"{len(lines) + 2} lines, {len(kept) + 201} landed" in summary
    assert f"sampled out {200 - len(kept)}" in summary


def test_sampling_settings_are_checked_and_build_the_senders_sampling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEMETRY_SAMPLING_RATES", '{"app": 0.1, "app/purchase": 1, "*": 0.5}')
    monkeypatch.setenv("TELEMETRY_SAMPLING_SALT", "s3cret")
    sampling = Sampling.from_settings(Settings())
    assert (sampling.rate("app", "open"), sampling.rate("app", "purchase"), sampling.rate("game", "x")) == (0.1, 1, 0.5)
    assert "s3cret" not in repr(sampling)
    for rates, message in (('{"app": 0}', "must be in (0, 1]"), ('{"a/b/c": 0.5}', "is not 'channel/event'")):
        monkeypatch.setenv("TELEMETRY_SAMPLING_RATES", rates)
        with pytest.raises(ValidationError, match=re.escape(message)):
            Settings()


def test_an_event_that_carries_its_rate_is_kept_as_it_is() -> None:
    sampling = Sampling(rates={"*": 0.01}, salt="x")
    events = [event(f"e{i}", f"user-{i}", sample_rate=0.5) for i in range(50)]
    kept, sampled_out, opted_out = sampling.select(events)
    assert (len(kept), sampled_out, opted_out) == (50, 0, 0)
    assert {e.sample_rate for e in events} == {0.5}
