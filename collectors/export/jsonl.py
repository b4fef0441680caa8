"""JSON for the export: exact numbers, RFC 3339 timestamps, and json/jsonb columns as the server sent them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import psycopg
from psycopg.abc import Buffer
from psycopg.adapt import Loader

JSON_ENCODER = msgspec.json.Encoder(decimal_format="number")


class JsonText(Loader):
    """json and jsonb as their text, not parsed: most of an export's time would go to parsing payloads only to
    encode them again. A JSON line embeds the text as it is (``msgspec.Raw``); Parquet stores it."""

    def load(self, data: Buffer) -> msgspec.Raw:
        return msgspec.Raw(bytes(data))


def load_json_as_text(conn: psycopg.Connection) -> None:
    for name in ("json", "jsonb"):
        conn.adapters.register_loader(name, JsonText)


def json_line(names: Sequence[str], row: tuple[Any, ...]) -> bytes:
    return JSON_ENCODER.encode(dict(zip(names, row, strict=True))) + b"\n"
