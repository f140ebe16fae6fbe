"""Tests for the event generator: determinism, shares, and every fault kind at its rate."""

from __future__ import annotations

import math
import re
from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from ingest import generator
from ingest.generator import allocate, batches, build_pools, generate, generate_source, split_share

AS_OF = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SPAN = timedelta(hours=1)
ENVELOPE = {"source", "event_id"}


@pytest.fixture(scope="module")
def traced(contracts):
    return generate(contracts, 20_000, 12, as_of=AS_OF, span=SPAN, trace=True)


def _parse(line: bytes):
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return None


def test_same_seed_same_events_and_other_seed_other_events(contracts):
    first = generate(contracts, 3000, 5, as_of=AS_OF)
    again = generate(contracts, 3000, 5, as_of=AS_OF)
    other = generate(contracts, 3000, 6, as_of=AS_OF)
    assert all(first[s].lines == again[s].lines for s in first)
    assert all(first[s].lines != other[s].lines for s in first)


def test_events_are_split_by_contract_share(contracts):
    out = generate(contracts, 1000, 1, as_of=AS_OF)
    assert {s: e.events for s, e in out.items()} == {
        "ad_clicks": 150,
        "inventory": 100,
        "orders": 300,
        "page_views": 350,
        "user_activity": 100,
    }
    assert allocate(10, {"a": 1, "b": 1, "c": 1}) == {"a": 4, "b": 3, "c": 3}
    assert sum(allocate(999_999, {c: contracts[c].share for c in contracts}).values()) == 999_999


def test_only_the_chosen_sources_and_unknown_ones_refused(contracts):
    assert list(generate(contracts, 10, 1, as_of=AS_OF, sources=["orders"])) == ["orders"]
    with pytest.raises(ValueError, match="unknown source"):
        generate(contracts, 10, 1, as_of=AS_OF, sources=["refunds"])
    with pytest.raises(ValueError, match="unknown fault"):
        generate(contracts, 10, 1, as_of=AS_OF, fault_rates={"gremlins": 0.5})


def test_clean_events_follow_the_contracts(contracts):
    out = generate(contracts, 5000, 2, as_of=AS_OF, span=SPAN, fault_rates={"all": 0})
    for source, events in out.items():
        contract = contracts[source]
        assert len(events.lines) == events.events
        ids = set()
        for line in events.lines:
            event = orjson.loads(line)
            assert set(event) == ENVELOPE | set(contract.field_names)
            assert event["source"] == source
            ids.add(event["event_id"])
            for field in contract.fields:
                value = event[field.name]
                if field.required:
                    assert value is not None, (source, field.name)
                if value is None:
                    continue
                if field.pattern:
                    assert re.search(field.pattern, value), (source, field.name, value)
                if field.accepted_values:
                    assert value in field.accepted_values
                if field.min is not None:
                    assert value >= field.min
                if field.min_exclusive is not None:
                    assert value > field.min_exclusive
                if field.type == "INT64":
                    assert type(value) is int
                if field.type == "TIMESTAMP":
                    stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
                    assert AS_OF - SPAN <= stamp <= AS_OF
        assert len(ids) == events.events
    orders = [orjson.loads(line) for line in out["orders"].lines]
    by_customer = {(o["customer_id"], o["customer_email"]) for o in orders}
    assert len({c for c, _ in by_customer}) == len(by_customer)  # one email per customer


def _fault_lines(events, name):
    return [line for line, trace in zip(events.lines, events.traces, strict=True) if name in trace]


def test_every_fault_kind_is_injected_as_described(contracts, traced):
    window_start = AS_OF - SPAN
    for source, events in traced.items():
        contract = contracts[source]
        for fault in contract.faults:
            lines = _fault_lines(events, fault.name)
            assert fault.rate == 0 or lines, (source, fault.name)
            # Value checks on the lines that are still JSON objects and carry no poison pill.
            json_ok = []
            if fault.kind not in ("redelivery", "duplicate_key", "poison_pill"):
                for line, trace in zip(events.lines, events.traces, strict=True):
                    if fault.name in trace and not any(t.startswith("poison_pill:") for t in trace):
                        event = _parse(line)
                        if isinstance(event, dict):
                            json_ok.append((line, event))
            target = fault.field
            renamed = {f.params.get("rename_to") for f in contract.faults if f.kind == "renamed_field"}
            for _, event in json_ok:
                if fault.kind in ("non_utf8", "oversized"):
                    continue
                value = event.get(target) if target else None
                if fault.kind == "null" and target in event:
                    assert value is None
                elif fault.kind == "wrong_format" and target in event:
                    assert re.fullmatch(r"sku_\d{4}", value)
                elif fault.kind == "as_string" and target in event:
                    assert isinstance(value, str)
                    with pytest.raises(ValueError):
                        float(value)
                elif fault.kind == "negative" and target in event:
                    assert value < 0
                elif fault.kind == "zero" and target in event:
                    assert value == 0
                elif fault.kind == "unknown_value" and target in event:
                    assert value not in contract.field(target).accepted_values
                elif fault.kind == "renamed_field":
                    assert target not in event and fault.params["rename_to"] in event
                elif fault.kind == "extra_field":
                    assert set(event) - ENVELOPE - set(contract.field_names) - renamed
                elif fault.kind == "late_event" and isinstance(event.get(contract.event_time), str):
                    stamp = datetime.fromisoformat(event[contract.event_time].replace("Z", "+00:00"))
                    assert stamp <= AS_OF - timedelta(days=1)
                    assert stamp >= window_start - timedelta(days=fault.params["max_days"], hours=1)
            if fault.kind == "non_utf8":
                for line in lines:
                    with pytest.raises(UnicodeDecodeError):
                        line.decode("utf-8")
            if fault.kind == "oversized":
                assert all(len(line) > 64 * 1024 for line in lines)
            if fault.kind == "redelivery":
                counts = Counter(events.lines)
                assert all(counts[line] >= 2 for line in lines)
            if fault.kind == "duplicate_key":
                # The earlier event may since have become a poison pill: look for the key in the raw text.
                # A not-JSON poison pill loses its key: then one is among the lines before the copy.
                everything = b"\n".join(events.lines)
                for position, (line, trace) in enumerate(zip(events.lines, events.traces, strict=True)):
                    event = _parse(line) if fault.name in trace else None
                    if isinstance(event, dict) and all(k in event for k in contract.key):
                        key = orjson.dumps({contract.key[0]: event[contract.key[0]]})[1:-1]
                        before = events.traces[max(0, position - 250) : position]
                        assert everything.count(key) >= 2 or any("poison_pill:not_json" in t for t in before)


def test_poison_pills_come_in_four_kinds(contracts, traced):
    events = traced["orders"]
    kinds = Counter(t for trace in events.traces for t in trace if t.startswith("poison_pill:"))
    assert set(kinds) == {
        "poison_pill:not_json",
        "poison_pill:truncated_json",
        "poison_pill:missing_event_time",
        "poison_pill:wrong_types",
    }
    for line, trace in zip(events.lines, events.traces, strict=True):
        kind = next((t for t in trace if t.startswith("poison_pill:")), None)
        if kind in ("poison_pill:not_json", "poison_pill:truncated_json"):
            assert _parse(line) is None
            line.decode("utf-8")
        elif kind == "poison_pill:missing_event_time":
            assert "event_ts" not in orjson.loads(line)
        elif kind == "poison_pill:wrong_types":
            assert type(orjson.loads(line)["event_ts"]) is int


def test_fault_counts_match_the_rates(contracts, traced):
    for source, events in traced.items():
        for fault in contracts[source].faults:
            expected = events.events * fault.rate
            sigma = math.sqrt(events.events * fault.rate * (1 - fault.rate))
            assert abs(events.fault_counts[fault.name] - expected) <= 5 * sigma + 1, (source, fault.name)
            if fault.kind != "redelivery":
                lines = _fault_lines(events, fault.name)
                assert events.fault_counts[fault.name] == len(lines) - _copies(lines)
            else:
                assert len(events.lines) == events.events + events.fault_counts[fault.name]


def _copies(lines):
    """Redelivered copies repeat their original byte for byte; count the repeats."""
    return len(lines) - len(set(lines))


def test_fault_rate_overrides_by_name_and_kind(contracts):
    out = generate_source(contracts["orders"], 500, 3, as_of=AS_OF, fault_rates={"all": 0, "quantity_negative": 1})
    quantities = [orjson.loads(line)["quantity"] for line in out.lines]
    assert len(out.lines) == 500 and all(q < 0 for q in quantities)
    out = generate_source(contracts["orders"], 500, 3, as_of=AS_OF, fault_rates={"all": 0, "null": 1})
    events = [orjson.loads(line) for line in out.lines]
    assert all(e["customer_id"] is None and e["price"] is None for e in events)
    with pytest.raises(ValueError, match="add up to"):
        generate_source(contracts["orders"], 10, 3, as_of=AS_OF, fault_rates={"price_null": 0.99})


def test_pools_are_deterministic_and_realistic():
    pools = build_pools(9)
    assert pools.customers[0]["id"] == "CUST-00001" and pools.products[-1]["id"] == "PROD-0500"
    assert build_pools(9) is pools
    assert all("@" in c["email"] and "," in c["address"] for c in pools.customers[:50])


def test_batches_cut_in_order():
    assert list(batches([b"a", b"b", b"c"], 2)) == [[b"a", b"b"], [b"c"]]


def test_the_same_events_whatever_the_chunk_size(contracts, traced):
    for chunk_events in (1000, 7000):
        again = generate(contracts, 20_000, 12, as_of=AS_OF, span=SPAN, trace=True, chunk_events=chunk_events)
        for source, events in traced.items():
            assert again[source].lines == events.lines, (source, chunk_events)
            assert again[source].traces == events.traces
            assert again[source].fault_counts == events.fault_counts
    with pytest.raises(ValueError, match="multiple of 1000"):
        generate(contracts, 10, 1, as_of=AS_OF, chunk_events=1500)


def test_faults_with_state_cross_chunk_boundaries(contracts):
    plan = generator.plan(contracts, 20_000, 12, as_of=AS_OF, span=SPAN, sources=["orders"])["orders"]
    seen_lines: set[bytes] = set()
    seen_keys: set[bytes] = set()
    copies_from_earlier_chunks = duplicates_of_earlier_chunks = 0
    total = 0
    for chunk in plan.chunks(1000, trace=True):
        assert chunk.start == total
        chunk_keys = set()
        for line, trace in zip(chunk.lines, chunk.traces, strict=True):
            event = _parse(line)
            key = orjson.dumps(event["order_id"]) if isinstance(event, dict) and "order_id" in event else None
            if "redelivery" in trace and line in seen_lines:
                copies_from_earlier_chunks += 1
            if "order_id_duplicate" in trace and key in seen_keys and key not in chunk_keys:
                duplicates_of_earlier_chunks += 1
            chunk_keys.add(key)
        seen_lines.update(chunk.lines)
        seen_keys.update(chunk_keys)
        total += len(chunk.lines)
    # The plan knows the exact line count before any line is drawn.
    collected = generate(contracts, 20_000, 12, as_of=AS_OF, span=SPAN, sources=["orders"])["orders"]
    assert total == plan.lines == plan.events + collected.fault_counts["redelivery"]
    assert copies_from_earlier_chunks > 0 and duplicates_of_earlier_chunks > 0


def test_times_rise_with_the_position_and_stay_in_the_window(contracts):
    events = generate_source(contracts["orders"], 3000, 4, as_of=AS_OF, span=SPAN, fault_rates={"all": 0})
    stamps = [orjson.loads(line)["event_ts"] for line in events.lines]
    assert stamps == sorted(stamps)
    assert stamps[0] >= "2026-11-22T11:00:00.000Z" and stamps[-1] < "2026-11-22T12:00:00.000Z"


def test_record_keys_name_the_generated_stream_not_the_clock(contracts):
    def prefix(**changes):
        arguments = {"as_of": AS_OF, "span": SPAN, **changes}
        return generator.plan(contracts, 1000, arguments.pop("seed", 3), sources=["orders"], **arguments)[
            "orders"
        ].record_prefix

    first = generator.plan(contracts, 1000, 3, as_of=AS_OF, span=SPAN, sources=["orders"])["orders"]
    assert first.record_key(7) == f"{first.record_prefix}-7"
    assert prefix(as_of=AS_OF + timedelta(hours=5)) == first.record_prefix
    assert prefix(seed=4) != first.record_prefix
    assert prefix(span=timedelta(hours=2)) != first.record_prefix
    assert prefix(fault_rates={"all": 0}) != first.record_prefix
    assert generator.plan(contracts, 2000, 3, as_of=AS_OF, span=SPAN, sources=["orders"])["orders"].record_prefix != (
        first.record_prefix
    )


def test_route_cuts_like_split_share(contracts):
    plan = generator.plan(contracts, 5000, 8, as_of=AS_OF, span=SPAN, sources=["orders"])["orders"]
    lines = generate(contracts, 5000, 8, as_of=AS_OF, span=SPAN, sources=["orders"])["orders"].lines
    posted, published = split_share(lines, 70, 0.3)
    pieces = list(generator.route(plan, 70, 0.3, chunk_events=1000))
    assert [p.lines for p in pieces if p.kind == "post"] == posted
    assert [line for p in pieces if p.kind == "publish" for line in p.lines] == published
    assert [p.start for p in pieces] == [sum(len(p.lines) for p in pieces[:i]) for i in range(len(pieces))]
