"""Bodies drawn from the receiver's own ``/openapi.json``, and garbage beside them, posted
over loopback HTTP: never a 5xx, every answer accounts for every element, and nothing lands that the record rules
refuse (each element is judged here again, by the same decoders and rules, and compared with the answer).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from collectors.config import Settings
from collectors.dev import local_postgres
from collectors.ingest import rules
from collectors.receiver.http import ENDPOINT_OF
from collectors.receiver.json_records import ROUTES, BodyRefused, Route, json_elements
from collectors.receiver.server import Receiver
from tests.support.fuzzing import EXAMPLES, FUZZ
from tests.support.receivers import TOKEN, report_figures

pytestmark = pytest.mark.fuzz


HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
NOW = dt.datetime.now(dt.UTC)
# the schemas' date-times, mostly inside the retention so that records land too
RECENT = st.one_of(
    st.integers(60, 6 * 86400).map(lambda s: (NOW - dt.timedelta(seconds=s)).isoformat()),
    st.datetimes(timezones=st.just(dt.UTC)).map(dt.datetime.isoformat),
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


class Served:
    def __init__(self, url: str, receiver: Receiver) -> None:
        self.url = url
        self.receiver = receiver
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{receiver.http_port}", headers=HEADERS, timeout=60)
        self.openapi = self.client.get("/openapi.json").json()
        self.statuses: Counter[int] = Counter()
        self.accepted = self.elements = self.rejected = 0


@pytest.fixture(scope="module")
def served(pg_server: local_postgres.PostgresServer, template_url: str) -> Iterator[Served]:
    name = f"telemetry_http_fuzz_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    url = local_postgres.create_database(pg_server.url, name, template=local_postgres.database_name(template_url))
    receiver = Receiver(
        Settings(
            database_url=url,
            listen="127.0.0.1:0",
            http_listen="127.0.0.1:0",
            metrics_port=0,
            ingest_tokens=TOKEN,
            workers=2,
        )
    ).start()
    state = Served(url, receiver)
    try:
        yield state
    finally:
        state.client.close()
        receiver.stop(grace=5)
        local_postgres.drop_database(pg_server.url, name)


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values a JSON Schema admits, for the keywords the receiver's document uses (hypothesis-jsonschema does not
    work with this hypothesis). Objects get their required properties, some optional ones, and, where the schema
    allows them, a few unknown ones; date-times are mostly inside the retention, so that records land too."""
    if "anyOf" in schema:
        return st.one_of([from_schema(option) for option in schema["anyOf"]])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([from_schema(schema | {"type": k}) for k in kind])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if kind == "object":
        properties = schema.get("properties", {})
        required = set(schema.get("required", ()))
        fixed = st.fixed_dictionaries(
            {name: from_schema(sub) for name, sub in properties.items() if name in required},
            optional={name: from_schema(sub) for name, sub in properties.items() if name not in required},
        )
        extra = schema.get("additionalProperties", True)
        if extra is False:
            return fixed
        values = JSON if extra is True else from_schema(extra)
        names = st.text(min_size=1, max_size=8).filter(lambda k: k not in properties)
        unknown = st.dictionaries(names, values, max_size=2)
        return st.builds(lambda known, more: more | known, fixed, unknown)
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {})), min_size=schema.get("minItems", 0), max_size=4)
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "string":
        if schema.get("format") == "date-time":
            return RECENT
        return st.text(min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 40), 40))
    return JSON


def bodies(served: Served, route: Route) -> st.SearchStrategy[bytes]:
    schema = served.openapi["paths"][route.path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    drawn = from_schema(schema).map(lambda body: json.dumps(body).encode())
    garbage = st.lists(JSON, max_size=4).map(lambda body: json.dumps(body).encode()) | st.binary(max_size=64)
    return st.one_of(drawn, drawn, drawn, garbage)


def expected_refusals(served: Served, route: Route, body: bytes) -> tuple[int, set[int]]:
    """How many elements the body holds, and which of them the decoder or the record rules refuse."""
    decoded = route.decode(json_elements(body, single_object=route.single_object))
    endpoint = ENDPOINT_OF[route.table.name]
    limits = served.receiver.service.limits(route.table.name, dt.datetime.now(dt.UTC))
    refused = set(decoded.refused)
    for index, item in enumerate(decoded.items):
        if item is None:
            continue
        try:
            endpoint.to_row(item, limits, uuid.uuid4())
        except rules.RecordRefused:
            refused.add(index)
    return len(decoded.items), refused


@FUZZ
@given(data=st.data(), path=st.sampled_from([route.path for route in ROUTES]))
def test_bodies_from_the_openapi_document_never_fail_the_receiver_and_land_only_valid_records(
    served: Served, data: st.DataObject, path: str
) -> None:
    route = next(r for r in ROUTES if r.path == path)
    body = data.draw(bodies(served, route))
    response = served.client.post(path, content=body)
    served.statuses[response.status_code] += 1
    assert response.status_code < 500, response.text
    try:
        elements, refused = expected_refusals(served, route, body)
    except BodyRefused:
        assert response.status_code == 400, response.text
        return
    if not elements:
        assert response.status_code == 400 and "empty" in response.text
        return
    assert response.status_code == (201 if route.status_im else 200), response.text
    if route.status_im:
        accepted, duplicates, rejected = (
            int(response.headers[f"X-Telemetry-{k}"]) for k in ("Accepted", "Duplicates", "Rejected")
        )
        rejected_at = None
    else:
        ack = response.json()
        accepted, duplicates, rejected = ack["accepted"], ack["duplicates"], ack["rejected"]
        rejected_at = {r["index"] for r in ack["rejects"]}
        assert not ack["retry_indexes"]
    assert accepted + duplicates + rejected == elements
    # what the rules refuse is refused; the database or a conflicting duplicate in the batch may refuse more
    assert rejected >= len(refused)
    if rejected_at is not None:
        assert refused <= rejected_at
    served.elements += elements
    served.accepted += accepted
    served.rejected += rejected


def test_zz_the_warehouse_holds_exactly_what_was_accepted(served: Served) -> None:
    if not served.statuses:
        pytest.skip("checks what the fuzz test of this module sent: run it with it")
    with psycopg.connect(served.url) as db:
        landed = sum(
            db.execute(f"select count(*) from raw.{name}").fetchone()[0]
            for name in {route.table.name for route in ROUTES}
        )
    assert landed == served.accepted
    assert served.statuses[200] + served.statuses[201] > 0 and served.accepted > 0
    report_figures(
        "fuzz.http_receiver",
        examples=EXAMPLES,
        statuses=dict(served.statuses),
        elements=served.elements,
        accepted=served.accepted,
        rejected=served.rejected,
    )
