"""Property tests: every payload a fuzzer makes ends landed or dead-lettered with a reason, never a crash."""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from models.project import KIT_VARS

from ingest.landing import MAX_EVENT_BYTES, REASONS, UNKNOWN_SOURCE, check_line, handle_http, route, stored_line

from .conftest import REPO, TOKEN

SOURCES = ["orders", "page_views", "ad_clicks", "inventory", "user_activity"]
NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
events = st.fixed_dictionaries(
    {"source": st.sampled_from(SOURCES) | st.sampled_from(["refunds", "", "ORDERS"]) | json_values},
    optional={"event_id": st.text(max_size=12), "order_id": json_values, "quantity": json_values},
).map(orjson.dumps)
lines = st.one_of(
    events,
    events.map(lambda b: b[: len(b) // 2]),
    events.map(lambda b: b[:-1] + b',"x":"\xe9"}'),
    events.map(lambda b: b.replace(b',"', b',\r\t"').replace(b":", b" :\r")),
    json_values.map(orjson.dumps),
    st.binary(max_size=60),
    st.text(max_size=60).map(str.encode),
).filter(lambda b: b"\n" not in b)
bodies = st.lists(lines, max_size=12).map(lambda items: b"\n".join(items))


# google-cloud-storage refreshes bucket metadata in a background thread whose retries (left running by
# the storage-outage tests) draw jitter from `random`; Hypothesis would otherwise flag that as ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module:hypothesis.errors.HypothesisDeprecationWarning"
)


def _non_blank(body: bytes, config=None, declared: str | None = None) -> list[bytes]:
    """The body's non-blank lines; with `config`, accepted ones as the landing function stores them."""
    out = []
    for line in body.split(b"\n"):
        line = line[:-1] if line.endswith(b"\r") else line
        if not line.strip():
            continue
        if config is not None and check_line(line, declared, config)[1] is None and stored_line(line) != line:
            # Only JSON whitespace changed: the stored line parses to the very same value.
            assert orjson.loads(stored_line(line)) == orjson.loads(line)
            line = stored_line(line)
        out.append(line)
    return out


@settings(max_examples=150, deadline=None)
@given(body=bodies | st.binary(max_size=300), declared=st.none() | st.sampled_from(SOURCES + ["refunds"]))
def test_route_puts_every_line_in_exactly_one_place(config_for_fuzz, body, declared):
    routed = route(body, declared, config_for_fuzz)
    placed = [line for group in routed.accepted.values() for line in group] + [r.payload for r in routed.rejects]
    assert sorted(placed) == sorted(_non_blank(body, config_for_fuzz, declared))
    for source, group in routed.accepted.items():
        for line in group:
            assert orjson.loads(line)["source"] == source
            assert b"\r" not in line and b"\t" not in line
    for reject in routed.rejects:
        assert reject.reason in REASONS and reject.detail
        assert reject.source in set(SOURCES) | {UNKNOWN_SOURCE}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies)
def test_http_never_fails_on_bad_input_and_keeps_everything(fake_gcs, config, store, body):
    stream = io.BytesIO(body)
    status, answer = handle_http(
        "POST",
        {"Authorization": f"Bearer {TOKEN}"},
        {},
        lambda n: stream.read(n) if n else stream.read(),
        len(body),
        config,
        store,
        NOW,
    )
    expected = _non_blank(body, config)
    if not expected:
        assert status == 400
        return
    assert status in (200, 422)
    found: list[bytes] = []
    for uri in answer["objects"]:
        bucket, _, name = uri.removeprefix("gs://").partition("/")
        content = (fake_gcs.root / bucket / name).read_bytes()
        if bucket == config.landing_bucket:
            assert name.startswith("source=") and "/ingest_date=2026-11-22/hour=08/" in name
            found.extend(content.splitlines())
        else:
            for record in content.splitlines():
                record = orjson.loads(record)
                assert record["reason"] in REASONS and f"/reason={record['reason']}/" in name
                payload = record.get("payload")
                found.append(payload.encode() if payload is not None else base64.b64decode(record["payload_base64"]))
    # Objects are content-addressed, so lines repeated across examples may share an object; each line of
    # this body must be in one of the objects the answer names, as many times as the body holds it.
    for line in set(expected):
        assert found.count(line) >= expected.count(line)
    assert answer["accepted"] + answer["rejected"] == len(expected)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    envelope=st.none()
    | json_values
    | st.fixed_dictionaries(
        {
            "message": st.fixed_dictionaries(
                {"data": st.binary(max_size=80).map(lambda b: base64.b64encode(b).decode()) | st.text(max_size=20)},
                optional={
                    "attributes": st.dictionaries(st.sampled_from(["source", "x"]), st.text(max_size=12)),
                    "publishTime": st.text(max_size=30),
                    "messageId": st.text(max_size=8),
                },
            )
        }
    )
)
def test_push_envelopes_never_crash(fake_gcs, config, store, envelope):
    from ingest.landing import handle_pubsub_push

    result = handle_pubsub_push(envelope, config, store, NOW)
    assert sum(result.accepted.values()) + sum(result.rejected.values()) >= 1
    assert set(result.rejected) <= set(REASONS)


# Landed-but-hostile lines: JSON whose whitespace or strings hold what breaks line readers, and bytes
# that are not JSON at all. Each is (text, whether the landing function accepts it).
WHITESPACE = st.sampled_from([b" ", b"\t", b"\r", b"\r\r", b" \r\t "])
HOSTILE_TEXT = st.text(
    st.sampled_from(["\x00", "\x01", "\x1f", "\x7f", "\x85", "\u2028", "\u2029", "\ufeff", "\r", "\n", "é", "💥", ","])
    | st.characters(),
    max_size=12,
)


@st.composite
def hostile_lines(draw) -> bytes:
    """One line (no \n) a client may send: a JSON event with hostile spacing and strings, or raw bytes."""
    kind = draw(st.sampled_from(["spaced", "padded", "raw"]))
    event = {"source": draw(st.sampled_from(SOURCES)), "event_id": draw(HOSTILE_TEXT), "note": draw(HOSTILE_TEXT)}
    # Escaped (\\u0000, \\ud800) or raw UTF-8 (a lone surrogate raw is not UTF-8).
    escape = draw(st.booleans())
    if kind == "padded":
        # Lines of about 64 KiB, either side of the landing function's limit.
        event["note"] = "x" * draw(st.integers(MAX_EVENT_BYTES - 120, MAX_EVENT_BYTES - 40))
    text = json.dumps(event, ensure_ascii=escape, separators=(",", ":")).encode("utf-8", "surrogatepass")
    if kind == "raw":
        prefix = draw(st.sampled_from([b"", b"\xef\xbb\xbf", b"\x00", b"\xed\xa0\x80", b"\r", b"\xc3"]))
        return prefix + draw(st.binary(max_size=40)).replace(b"\n", b"") + text
    for token in (b"{", b",", b":"):
        text = text.replace(token, token + draw(WHITESPACE), 1)
    return draw(WHITESPACE) + text + draw(WHITESPACE)


@pytest.fixture(scope="module")
def landing_ddl(tmp_path_factory) -> str:
    """The compiled DDL of bronze.orders_landing (definitions/sources/bronze.js)."""
    from lakehouse.engine.compile import compile_project

    graph = compile_project(REPO, home_dir=tmp_path_factory.mktemp("home"), use_cache=False).graph
    [ddl] = [a["queries"][0] for a in graph["operations"] if a["target"]["name"] == "orders_landing"]
    return ddl


def bronze_rows(fake_gcs, ddl: str, bucket: str, source: str) -> list[tuple[str, str]]:
    """Return (line, _FILE_NAME) of every row the engine reads from bronze.<source>_landing of `bucket`."""
    import duckdb

    from lakehouse.engine.translate import register_functions, translate_script

    ddl = ddl.replace(KIT_VARS["landing_bucket"], bucket).replace("source=orders", f"source={source}")
    ddl = ddl.replace("orders_landing", f"{source}_landing")

    def resolve(uri: str) -> str:
        name, _, path = uri.removeprefix("gs://").partition("/")
        return str(fake_gcs.root / name / path)

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        register_functions(con)
        con.execute("ATTACH ':memory:' AS \"lakehouse-dev\"")
        con.execute('CREATE SCHEMA "lakehouse-dev".bronze')
        for statement in translate_script(ddl, default_project="lakehouse-dev", gcs_resolver=resolve):
            con.execute(statement)
        return con.execute(
            f'SELECT line, "_FILE_NAME" FROM "lakehouse-dev".bronze.{source}_landing WHERE line IS NOT NULL'
        ).fetchall()
    finally:
        con.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.lists(hostile_lines(), min_size=1, max_size=8).map(lambda items: b"\n".join(items)))
def test_every_accepted_line_is_read_back_by_bronze_exactly_once(fake_gcs, config, store, landing_ddl, body):
    status, answer = handle_http(
        "POST", {"Authorization": f"Bearer {TOKEN}"}, {}, lambda n: body, len(body), config, store, NOW
    )
    assert status in (200, 422)
    for source in SOURCES:
        rows = bronze_rows(fake_gcs, landing_ddl, config.landing_bucket, source)
        mine = [u for u in answer["objects"] if u.startswith(f"gs://{config.landing_bucket}/source={source}/")]
        read = sorted(line.encode() for line, file_name in rows if file_name in mine)
        expected = []
        for uri in mine:
            _, _, name = uri.removeprefix("gs://").partition("/")
            expected.extend((fake_gcs.root / config.landing_bucket / name).read_bytes().split(b"\n")[:-1])
        assert read == sorted(expected)
        assert len(read) == answer["accepted_by_source"].get(source, 0)
        for line in read:
            assert orjson.loads(line)["source"] == source


def test_a_carriage_return_between_tokens_lands_as_a_space_and_bronze_reads_it(fake_gcs, config, store, landing_ddl):
    sent = b'{"source":"orders",\r"event_id":"e1",\t"quantity":\r\r2}\n{"source":"orders","event_id":"e2"}\r\n'
    status, answer = handle_http(
        "POST", {"Authorization": f"Bearer {TOKEN}"}, {}, lambda n: sent, len(sent), config, store, NOW
    )
    assert (status, answer["accepted"]) == (200, 2)
    rows = bronze_rows(fake_gcs, landing_ddl, config.landing_bucket, "orders")
    assert sorted(line for line, _ in rows) == [
        '{"source":"orders", "event_id":"e1", "quantity":  2}',
        '{"source":"orders","event_id":"e2"}',
    ]
    assert {file_name for _, file_name in rows} == set(answer["objects"])


def test_a_file_the_landing_function_did_not_write_is_read_not_failed(fake_gcs, config, landing_ddl):
    folder = fake_gcs.root / config.landing_bucket / "source=orders" / "ingest_date=2026-11-22" / "hour=08"
    folder.mkdir(parents=True)
    long_line = b'{"note":"' + b"x" * (3 * 1024 * 1024) + b'"}'
    (folder / "foreign.jsonl").write_bytes(
        b'\xef\xbb\xbf{"a":1}\n{"a":\r2}\nnul\x00 and \x02 and \x1f\n' + long_line + b'\r\n{"b":3}'
    )
    rows = bronze_rows(fake_gcs, landing_ddl, config.landing_bucket, "orders")
    uri = f"gs://{config.landing_bucket}/source=orders/ingest_date=2026-11-22/hour=08/foreign.jsonl"
    assert {file_name for _, file_name in rows} == {uri}
    # The BOM is dropped, as BigQuery drops it; the lone CR ends a row (docs/parity.md).
    assert [line for line, _ in rows] == [
        '{"a":1}',
        '{"a":',
        "2}",
        "nul\x00 and \x02 and \x1f",
        long_line.decode(),
        '{"b":3}',
    ]
    # A file that is not UTF-8 is read too, U+FFFD for each invalid sequence, as BigQuery reads it.
    (folder / "latin1.jsonl").write_bytes(b'{"a":"caf\xe9"}\n')
    rows = bronze_rows(fake_gcs, landing_ddl, config.landing_bucket, "orders")
    assert [(line, name) for line, name in rows if name.endswith("latin1.jsonl")] == [
        ('{"a":"caf\ufffd"}', uri.replace("foreign.jsonl", "latin1.jsonl"))
    ]


VALID_ORDER = {
    "source": "orders",
    "order_id": "ORD-00000000F00D",
    "customer_id": "CUST-00001",
    "customer_email": "hostile@example.com",
    "customer_name": "Hostile Tester",
    "shipping_address": "1 Test Road",
    "product_id": "PROD-0001",
    "quantity": 2,
    "price": 9.5,
    "currency": "USD",
    "status": "placed",
    "event_ts": "2026-11-22T07:00:00Z",
}


def _hostile_orders(template: dict) -> list[bytes]:
    """Lines for the landing function: hostile spacing, escapes, line ends and sizes around one valid order."""

    def event(event_id: str, **extra) -> dict:
        return {**template, "event_id": event_id, **extra}

    def dumps(value: dict, ascii_only: bool = True) -> bytes:
        return json.dumps(value, ensure_ascii=ascii_only, separators=(",", ":")).encode("utf-8", "surrogatepass")

    valid = dumps(event("hostile-1"))
    return [
        valid,
        valid,  # the same line twice in one request: one is a duplicate
        dumps(event("hostile-2", note="\x00\x01\x1f\x7f\u2028\u2029\ufeff")),  # escaped control characters
        dumps(event("hostile-3", note="\ud800 and \udfff")),  # lone surrogates, escaped
        dumps(event("hostile-4", note="caf\u00e9 \U0001f600"), ascii_only=False),  # raw UTF-8
        valid.replace(b',"', b',\r"').replace(b"hostile-1", b"hostile-5"),  # CR as whitespace
        b"\t \r" + valid.replace(b"hostile-1", b"hostile-6") + b" \r",  # padded with CR, and CRLF end
        b"\xef\xbb\xbf" + valid.replace(b"hostile-1", b"hostile-7"),  # a BOM before the line
        dumps(event("hostile-8", note="x" * (MAX_EVENT_BYTES - len(valid) - 40))),  # about 64 KiB
        dumps(event("hostile-9", note="x" * MAX_EVENT_BYTES)),  # over the limit: dead-lettered
        valid.replace(b"hostile-1", b"hostile-10").replace(b'"event_id"', b'"event_id"\x00'),  # raw NUL
        b'{"source":"orders","event_id":"hostile-11","quantity":"\xc3"}',  # invalid UTF-8 sent
        b'{"source":"orders","event_id":"hostile-12"',  # cut short
        b"[1, 2, 3]",
        b"\x00\x00\x00",
    ]


# A file put in the landing bucket by something else (name -> bytes, and the rows bronze reads from
# it locally): Latin-1 and a truncated multi-byte sequence; NUL, a lone CR and CRLF in one file (the
# local reader then ends a row at each CR and each LF: one empty row more, docs/parity.md) and a line
# a 0x01 cuts to nothing (NULL); UTF-16 with its BOM (read as UTF-8: two rows, split at its 0x0A byte).
FOREIGN_FILES = {
    "latin1.jsonl": (b'{"source":"orders","event_id":"f1","customer_name":"Jos\xe9"}\r\n{"a":"\xe2\x82"}\r\n', 2),
    "control.jsonl": (b'{"source":"orders","event_id":"f2"}\rnul\x00byte\r\n\x01\x02\n', 4),
    "utf16.jsonl": ('{"source":"orders"}\n'.encode("utf-16"), 2),
}


def land_hostile_orders(home: Path, fake_gcs, config, store) -> tuple[dict[str, int], int]:
    """Send the hostile orders through the landing function and move its objects into the home's landing
    bucket under the same names; return {gs:// uri in the kit's bucket: lines}, and the lines it accepted."""
    bucket = home / "gcs" / KIT_VARS["landing_bucket"]
    body = b"\n".join(_hostile_orders(VALID_ORDER)) + b"\r\n"
    status, answer = handle_http(
        "POST", {"Authorization": f"Bearer {TOKEN}"}, {}, lambda n: body, len(body), config, store, NOW
    )
    assert status == 200
    landed = {}
    # lines not of a known source and not JSON are the landing function's to dead-letter (tests above)
    for uri in [u for u in answer["objects"] if u.startswith(f"gs://{config.landing_bucket}/source=orders/")]:
        _, _, name = uri.removeprefix("gs://").partition("/")
        data = (fake_gcs.root / config.landing_bucket / name).read_bytes()
        (bucket / name).parent.mkdir(parents=True, exist_ok=True)
        (bucket / name).write_bytes(data)
        landed[f"gs://{KIT_VARS['landing_bucket']}/{name}"] = data.count(b"\n")
    return landed, answer["accepted_by_source"]["orders"]


@pytest.mark.slow
def test_hostile_lines_reach_silver_quarantine_or_duplicates_each_exactly_once(fake_gcs, config, store, tmp_path):
    from models.test_models_end_to_end import conservation, lakehouse, query

    home = tmp_path / "home"
    lakehouse(
        home, "generate", "--events", "300", "--seed", "5", "--pubsub-share", "0.3",
        "--batch-size", "100", "--in-process-bus",
    )  # fmt: skip
    bucket = home / "gcs" / KIT_VARS["landing_bucket"]
    expected, accepted = land_hostile_orders(home, fake_gcs, config, store)
    assert sum(expected.values()) == accepted
    foreign = bucket / "source=orders" / "ingest_date=2026-11-22" / "hour=09"
    foreign.mkdir(parents=True)
    for name, (data, rows) in FOREIGN_FILES.items():
        (foreign / name).write_bytes(data)
        expected[f"gs://{KIT_VARS['landing_bucket']}/source=orders/ingest_date=2026-11-22/hour=09/{name}"] = rows

    lakehouse(home, "run")

    record = json.loads(max((home / "runs").glob("2*.json")).read_text())
    checks = {a["name"].rsplit(".", 1)[1]: a["status"] for a in record["actions"] if a["type"] == "assertion"}
    for source in SOURCES:
        assert (checks[f"{source}_conservation"], checks[f"{source}_ledger"]) == ("success", "success")
    for source, (bronze, silver, quarantine, duplicates) in conservation(home).items():
        assert bronze == silver + quarantine + duplicates, source
    origins = ", ".join(f"'{uri}'" for uri in expected)
    rows = query(
        home,
        f"""
        select
          staged.origin,
          staged.record_id,
          (select count(*) from silver.orders as s where s.record_id = staged.record_id) as in_silver,
          (
            select count(*) from silver_restricted.orders_quarantine as q where q.record_id = staged.record_id
          ) as in_quarantine,
          (select count(*) from silver.orders_duplicates as d where d.record_id = staged.record_id) as in_duplicates,
          (
            select any_value(array_to_string(q.failed_rules, ','))
            from silver_restricted.orders_quarantine as q
            where q.record_id = staged.record_id
          ) as rules,
        from silver_restricted.orders_staged as staged
        where staged.origin in ({origins})
        """,
    )
    read = {}
    for row in rows:
        read[row["origin"]] = read.get(row["origin"], 0) + 1
        assert row["in_silver"] + row["in_quarantine"] + row["in_duplicates"] == 1, row
        assert row["in_quarantine"] == 0 or row["rules"], row
    assert read == expected
    places = {(r["in_silver"], r["in_quarantine"], r["in_duplicates"]) for r in rows}
    assert places == {(1, 0, 0), (0, 1, 0), (0, 0, 1)}
    not_utf8 = sorted(r["origin"].rsplit("/", 1)[1] for r in rows if "record_not_utf8" in (r["rules"] or ""))
    assert not_utf8 == ["latin1.jsonl", "latin1.jsonl", "utf16.jsonl"]
