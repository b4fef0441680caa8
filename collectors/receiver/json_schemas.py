"""JSON Schemas of the HTTP receiver's bodies, for ``/openapi.json``, derived from what reads them.

A game server's report from the registry's document fields (bounds included), the gRPC records' JSON form from
their protobuf descriptors; the status-im and ``telemetry_event_v1`` shapes are written out once here. A schema
says what a body may be; the record rules still decide each record (retention, lengths, ids), so a body the
schema admits may have records refused, and one it does not admit is never landed.
"""

from __future__ import annotations

import math
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from collectors.ingest import registry
from collectors.ingest.registry import INT64_MAX, Document, Text

Schema = dict[str, Any]

_INTEGER = (
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED32,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_SFIXED64,
)
TIME = {"type": "string", "format": "date-time", "description": "ISO 8601 (RFC 3339), e.g. 2025-01-15T14:30:45Z"}


def _scalar(field: FieldDescriptor) -> Schema:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        if field.message_type.full_name == "google.protobuf.Timestamp":
            return dict(TIME)
        return message_schema(field.message_type)
    if field.type in _INTEGER:
        return {"type": "integer"}
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return {"type": "number"}
    if field.type == FieldDescriptor.TYPE_BOOL:
        return {"type": "boolean"}
    if field.type == FieldDescriptor.TYPE_BYTES:
        return {"type": "string", "contentEncoding": "base64"}
    if field.type == FieldDescriptor.TYPE_ENUM:
        return {"type": "string", "enum": [value.name for value in field.enum_type.values]}
    return {"type": "string"}


def message_schema(descriptor: Descriptor) -> Schema:
    """A protobuf message's JSON form (proto3 JSON mapping, field names as in ``ingest.proto``)."""
    properties: Schema = {}
    for field in descriptor.fields:
        single = _scalar(field)
        is_list = field.is_repeated
        properties[field.name] = {"type": "array", "items": single} if is_list else single
    return {"type": "object", "properties": properties, "additionalProperties": False}


def record_schema(record: type[Message], table: registry.RawTable) -> Schema:
    """A gRPC record's JSON form; the fields the table's rules require are required."""
    schema = message_schema(record.DESCRIPTOR)
    required = [
        column.spec.field
        for column in table.columns
        if isinstance(column.spec, Text | registry.Time)
        and column.spec.required
        and column.spec.within is None
        and column.spec.field in schema["properties"]
    ]
    if required:
        schema["required"] = required
    return schema


def document_schema(table: registry.RawTable) -> Schema:
    """A table's JSON document (its :class:`Document` column) with each known field where its path puts it."""
    (document,) = [c.spec for c in table.columns if isinstance(c.spec, Document)]
    root: Schema = {"type": "object", "properties": {}, "additionalProperties": True}
    for field in document.fields:
        *parents, leaf = field.path.removesuffix("[]").removesuffix("{}").split(".")
        node = root
        for name in parents:
            node = node["properties"].setdefault(name, {"type": "object", "properties": {}})
        value: Schema = {"type": "integer" if field.whole else "number", "minimum": field.low}
        if math.isfinite(field.high):
            value["maximum"] = min(int(field.high), INT64_MAX) if field.whole else field.high
        if field.path.endswith("[]"):
            value = {"type": "array", "items": value}
        elif field.path.endswith("{}"):
            value = {"type": "object", "additionalProperties": value}
        node["properties"][leaf] = value
    for column in table.columns:
        spec = column.spec
        if isinstance(spec, Text) and spec.field in document.matches:
            root["properties"][spec.field] = {"type": "string", "minLength": 1, "maxLength": spec.max_len}
        elif isinstance(spec, registry.Time):
            root["properties"][spec.field] = dict(TIME)
    root["required"] = [name for name in ("server_id", "timestamp") if name in root["properties"]]
    return root


SERVER_REPORT = document_schema(registry.SERVER_REPORTS)

RECEIVED_MESSAGE: Schema = {
    "type": "object",
    "description": "status-im telemetry's received message",
    "properties": {
        "chatId": {"type": "string"},
        "messageHash": {"type": "string"},
        "messageId": {"type": "string"},
        "receiverKeyUID": {"type": "string"},
        "nodeName": {"type": "string"},
        "sentAt": {"type": "integer", "description": "unix seconds"},
        "topic": {"type": "string"},
    },
    "required": ["chatId", "messageId", "receiverKeyUID", "sentAt"],
}

EVENT: Schema = {
    "type": "object",
    "description": "telemetry_event_v1 (unknown keys are ignored)",
    "properties": {
        "schema_version": {"type": "string", "enum": [registry.SCHEMA_VERSION]},
        "channel": {"type": "string", "minLength": 1},
        "event": {"type": "string", "minLength": 1},
        "timestamp": dict(TIME),
        "payload": {"type": "object"},
        "event_id": {"type": ["string", "integer"]},
        "user_id": {"type": ["string", "integer"], "minLength": 1},
        "session_id": {"type": ["string", "integer", "null"]},
        "sample_rate": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "dnt": {"type": "boolean", "description": "the user opted out of tracking: refused, never stored"},
    },
    "required": ["schema_version", "channel", "event", "timestamp", "user_id"],
}

ACK: Schema = {
    "type": "object",
    "properties": {
        "accepted": {"type": "integer", "description": "records newly stored"},
        "duplicates": {"type": "integer", "description": "records already stored (same natural key)"},
        "rejected": {"type": "integer", "description": "records refused, each kept in raw.rejects"},
        "rejects": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"index": {"type": "integer"}, "reason": {"type": "string"}},
                "required": ["index", "reason"],
            },
        },
        "retry_indexes": {
            "type": "array",
            "items": {"type": "integer"},
            "description": "positions neither stored nor refused (the batch ran out of time): send them again",
        },
        "batch_id": {"type": "string"},
    },
    "required": ["accepted", "duplicates", "rejected", "rejects", "retry_indexes", "batch_id"],
}

ERROR: Schema = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
