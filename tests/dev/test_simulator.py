"""The simulator: reproducible from its seed, valid for the receiver, and its ground truth matches the rows."""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import psycopg
import pytest

from collectors.dev.simulator.cli import main
from collectors.dev.simulator.config import SimulationConfig
from collectors.dev.simulator.histogram import GAMMA, bucket_index, log_histogram
from collectors.dev.simulator.run import BufferedSender, play
from collectors.senders.client import IngestClient
from tests.support.receivers import TOKEN

END = dt.datetime(2026, 3, 2, 6, 0, tzinfo=dt.UTC)


def small(seed: int = 7, **changes: object) -> SimulationConfig:
    values: dict[str, object] = {
        "start": END - dt.timedelta(hours=6),
        "end": END,
        "seed": seed,
        "users": 60,
        "new_accounts_per_day": 40,
    }
    values.update(changes)
    return SimulationConfig(**values)  # type: ignore[arg-type]


def read_dir(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_the_same_seed_gives_the_same_records_and_truth(tmp_path: Path) -> None:
    first, second, other = (play(small(seed), None) for seed in (7, 7, 8))
    for truth, name in ((first, "a"), (second, "b"), (other, "c")):
        truth.write(tmp_path / name)
    assert read_dir(tmp_path / "a") == read_dir(tmp_path / "b")
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["records"] == {
        "host_minutes": 3 * 360,
        "message_samples": manifest["records"]["message_samples"],
        "minute_snapshots": 3 * 360,
        "product_events": manifest["records"]["product_events"],
    }
    assert manifest["records"]["message_samples"] > 500 and manifest["records"]["product_events"] > 50
    assert first.manifest()["sha256"] != other.manifest()["sha256"]


def test_loss_rate_and_drop_off_shape_the_truth() -> None:
    lossless = play(small(loss_rate=0.0, drop_off=0.0, host_minutes=False), None)
    lossy = play(small(loss_rate=0.5, drop_off=1.0, host_minutes=False), None)
    assert lossless.overall_reliability() == 1.0
    assert 0.4 < lossy.overall_reliability() < 0.6
    steps_lossless = {step for (_, _, step) in lossless.funnel_attempts}
    steps_lossy = {step for (_, _, step) in lossy.funnel_attempts}
    assert steps_lossless == {1, 2, 3, 4} and steps_lossy == {1}
    assert lossless.sent["host_minutes"] == 0


def test_histograms_use_the_wire_buckets() -> None:
    for value in (0.001, 1.0, 16.6, GAMMA**5, 12345.0):
        i = bucket_index(value)
        assert GAMMA ** (i - 1) < value <= GAMMA**i * (1 + 1e-12)
    h = log_histogram([16.0, 16.0, 0.0, 40.0])
    assert sum(h.bucket_count) == 3 and h.zero_count == 1 and h.max == 40.0 and h.sum == 72.0
    assert list(h.bucket_index) == sorted(h.bucket_index)
    assert math.isclose(GAMMA ** h.bucket_index[-1], 40.0, rel_tol=0.011)


def test_a_small_run_through_the_receiver_lands_with_zero_rejects_and_matches_its_truth(
    receiver, db: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    end = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) - dt.timedelta(minutes=1)
    monkeypatch.setenv("TELEMETRY_TOKEN", TOKEN)
    argv = [
        "--target",
        f"127.0.0.1:{receiver.port}",
        "--end",
        end.isoformat(),
        "--hours",
        "2",
        "--users",
        "50",
        "--new-accounts-per-day",
        "60",
        "--seed",
        "3",
        "--truth-dir",
        str(tmp_path / "truth"),
    ]
    assert main(argv) == 0
    manifest = json.loads((tmp_path / "truth" / "manifest.json").read_text())
    assert db.execute("select count(*) from raw.rejects").fetchone()[0] == 0
    for kind, sent in manifest["records"].items():
        assert db.execute(f"select count(*) from raw.{kind}").fetchone()[0] == sent, kind
    accounts = db.execute("select count(*) from raw.accounts_created").fetchone()[0]
    assert accounts == sum(
        day["accounts_created"] for day in json.loads((tmp_path / "truth" / "day_summary.json").read_text()).values()
    )
    assert accounts > 0

    # the ground truth is what the warehouse holds: minutes per user and state ...
    with open(tmp_path / "truth" / "minutes_per_user.csv") as handle:
        expected = {(r["day"], int(r["user_id"]), r["state"]): int(r["minutes"]) for r in csv.DictReader(handle)}
    rows = db.execute(
        """
        select minute::date::text, uid, state, count(distinct minute)
        from raw.minute_snapshots,
             lateral (values ('player', player), ('spectator', spectator), ('lobby', lobby), ('menu', menu),
                             ('total', total)) as s(state, ids),
             unnest(ids) as uid
        group by 1, 2, 3
        """
    ).fetchall()
    assert {(d, u, s): n for d, u, s, n in rows} == expected
    # ... and deliveries per channel (received samples = delivered; messages = distinct message ids)
    with open(tmp_path / "truth" / "channel_reliability.csv") as handle:
        truth = {(r["day"], r["channel_id"]): (int(r["messages"]), int(r["delivered"])) for r in csv.DictReader(handle)}
    stored = db.execute(
        "select sent_at::date::text, channel_id, count(distinct message_id), count(*) from raw.message_samples"
        " group by 1, 2"
    ).fetchall()
    assert {(d, c): (m, n) for d, c, m, n in stored} == truth

    # sending the same run again adds nothing
    config = small(3, start=end - dt.timedelta(hours=2), end=end, users=50, new_accounts_per_day=60)
    with IngestClient(f"127.0.0.1:{receiver.port}", TOKEN) as client:
        sender = BufferedSender(client)
        play(config, sender.add)
        sender.flush()
    assert sum(r.accepted for r in sender.results.values()) == 0
    assert sum(r.duplicates for r in sender.results.values()) == sum(manifest["records"].values())


def test_cli_help_and_bad_ranges(tmp_path: Path) -> None:
    helped = subprocess.run(
        [sys.executable, "-m", "collectors.dev.simulator", "--help"], capture_output=True, text=True, timeout=30
    )
    assert helped.returncode == 0 and "--loss-rate" in helped.stdout
    assert main(["--no-send", "--start", "2026-03-02T00:00", "--end", "2026-03-01T00:00"]) == 2
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    assert main(["--no-send", "--end", future]) == 2


def test_exact_percentiles_in_the_truth_agree_with_the_merged_histograms(tmp_path: Path) -> None:
    config = small(seed=5, start=END - dt.timedelta(hours=2), users=30, new_accounts_per_day=0, channels=0)
    merged: dict[tuple[str, str], Counter[int]] = defaultdict(Counter)

    def merge(kind: str, record) -> None:
        if kind == "host_minutes" and record.minute.ToDatetime(dt.UTC).hour == END.hour - 1:
            for metric in ("tick_duration_ms", "player_ping_ms"):
                h = getattr(record.server, metric)
                merged[(record.host_id, metric)].update(dict(zip(h.bucket_index, h.bucket_count, strict=True)))

    play(config, merge).write(tmp_path)
    with open(tmp_path / "host_percentiles.csv") as handle:
        rows = [r for r in csv.DictReader(handle) if r["period"] == "hour" and r["start"].endswith("T05:00:00Z")]
    assert len(rows) == 3 * 3  # 3 hosts x 3 metrics
    checked = 0
    for row in rows:
        buckets = merged.get((row["host_id"], row["metric"]))
        if buckets is None:
            continue
        n = sum(buckets.values())
        assert n == int(row["count"])
        for q, column in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
            rank, seen = math.ceil(q * n), 0
            for index in sorted(buckets):
                seen += buckets[index]
                if seen >= rank:
                    estimate = 2 * GAMMA**index / (GAMMA + 1)
                    break
            assert estimate == pytest.approx(float(row[column]), rel=0.005)
            checked += 1
    assert checked == 3 * 2 * 3
