"""Land a simulation through a real, in-process receiver: shared by the dbt acceptance tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from google.protobuf.message import Message

from collectors.client import IngestClient
from collectors.config import Settings
from collectors.receiver.server import Receiver
from collectors.simulator.config import SimulationConfig
from collectors.simulator.run import BufferedSender, play
from collectors.simulator.truth import GroundTruth
from tests.collectors.conftest import TOKEN


def land_simulation(
    url: str,
    config: SimulationConfig,
    spool_dir: Path,
    on_record: Callable[[str, Message], None] | None = None,
) -> tuple[GroundTruth, dict[str, int]]:
    """Play ``config`` through a receiver writing to ``url``; returns the ground truth and records accepted per kind.

    ``on_record`` sees every record before it is sent (e.g. to tally an independent oracle).
    """
    settings = Settings(database_url=url, listen="127.0.0.1:0", metrics_port=0, ingest_tokens=TOKEN)
    receiver = Receiver(settings).start()
    try:
        with IngestClient(f"127.0.0.1:{receiver.port}", TOKEN, spool_dir=spool_dir, attempts=2) as client:
            sender = BufferedSender(client)

            def send(kind: str, record: Message) -> None:
                if on_record is not None:
                    on_record(kind, record)
                sender.add(kind, record)

            truth = play(config, send)
            sender.flush()
    finally:
        receiver.stop(grace=5)
    return truth, {kind: result.accepted for kind, result in sender.results.items()}
