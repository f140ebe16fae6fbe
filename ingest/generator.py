"""Synthetic e-commerce events with injected faults, driven by the contracts' generator profiles."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
from faker import Faker

from ingest.contracts import FIELD_FAULTS, REPLACING_FAULTS, Contract, Fault, check_fault_rates

POISON_KINDS = ("not_json", "truncated_json", "missing_event_time", "wrong_types")
EXTRA_FIELDS = (
    ',"coupon_code":"SAVE10"',
    ',"client_version":"2.7.1"',
    ',"utm_source":"newsletter"',
    ',"experiment":{"id":"exp-42","arm":"b"}',
)
OVERSIZED_BYTES = 80 * 1024
# Each stripe of events draws from its own generator (see _StripedRng); chunks are whole stripes.
STRIPE_EVENTS = 1000
CHUNK_EVENTS = 50_000
DUPLICATE_LOOKBACK = 200
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


@dataclass(frozen=True)
class Pools:
    """Entities drawn once per seed with faker; events pick from them with numpy."""

    customers: list[dict]
    products: list[dict]
    sessions: list[int]
    campaigns: list[dict]
    warehouses: list[str]
    pages: list[tuple[str, int]]
    customer_weights: np.ndarray
    product_weights: np.ndarray
    # Pre-encoded `,"field":value` cells per (field, kind), filled on first use.
    cells: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)


@dataclass
class SourceEvents:
    """What the generator made for one source: the lines and how many of each fault went in.

    `lines` holds `events` generated events plus the redelivered copies; `traces` (when asked for)
    names the faults of each line, in the same order.
    """

    source: str
    lines: list[bytes]
    events: int
    fault_counts: dict[str, int]
    traces: list[tuple[str, ...]] | None = None


def _zipf_weights(size: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, size + 1) ** exponent
    return weights / weights.sum()


@functools.lru_cache(maxsize=8)
def build_pools(
    seed: int,
    customers: int = 5000,
    products: int = 500,
    sessions: int = 20000,
    campaigns: int = 40,
    warehouses: int = 12,
) -> Pools:
    """Return the entity pools for `seed`: customers, products, sessions, campaigns, warehouses, pages.

    Faker draws small lists of names, streets and cities once; entities combine them with numpy, so
    building the pools takes a fraction of a second and the same seed always gives the same pools.
    """
    fake = Faker("en_US")
    fake.seed_instance(seed)
    rng = np.random.default_rng([seed, 1])
    first = [fake.first_name() for _ in range(300)]
    last = [fake.last_name() for _ in range(300)]
    streets = [fake.street_name() for _ in range(200)]
    cities = [(fake.city(), fake.state_abbr(), fake.zipcode()) for _ in range(150)]
    domains = sorted({fake.free_email_domain() for _ in range(30)})
    words = [fake.word() for _ in range(120)]

    people = []
    picks = rng.integers(0, [300, 300, 200, 150, len(domains), 9999, 99], size=(customers, 7))
    for number, (f, la, st, ci, do, building, suffix) in enumerate(picks.tolist(), start=1):
        city, state, zipcode = cities[ci]
        people.append(
            {
                "id": f"CUST-{number:05d}",
                "name": f"{first[f]} {last[la]}",
                "email": f"{first[f].lower()}.{last[la].lower()}{suffix}@{domains[do]}",
                "address": f"{building + 1} {streets[st]}, {city}, {state} {zipcode}",
            }
        )
    prices = np.round(np.exp(rng.normal(3.2, 0.9, products)), 2).clip(0.99, 2500)
    catalogue = [
        {"id": f"PROD-{number:04d}", "price": float(price), "slug": f"{words[number % 120]}-{number:04d}"}
        for number, price in enumerate(prices.tolist(), start=1)
    ]
    signed_in = rng.random(sessions) < 0.6
    owners = rng.integers(0, customers, sessions)
    session_owner = np.where(signed_in, owners, -1).tolist()
    networks = ["google_ads", "meta_ads", "microsoft_ads", "tiktok_ads"]
    network_picks = rng.choice(4, size=campaigns, p=[0.5, 0.3, 0.1, 0.1]).tolist()
    campaign_list = [
        {"id": f"CMP-{number:03d}", "ad_network": networks[pick]} for number, pick in enumerate(network_picks, start=1)
    ]
    generic = ["/", "/cart", "/checkout", "/account", "/help/shipping"]
    generic += [f"/category/{word}" for word in words[:20]] + [f"/search?q={word}" for word in words[20:60]]
    pages = [(f"/products/{product['slug']}", index) for index, product in enumerate(catalogue)]
    pages += [(url, -1) for url in generic]
    return Pools(
        customers=people,
        products=catalogue,
        sessions=session_owner,
        campaigns=campaign_list,
        warehouses=[f"WH-{number:02d}" for number in range(1, warehouses + 1)],
        pages=pages,
        customer_weights=_zipf_weights(customers, 0.5),
        product_weights=_zipf_weights(products, 0.8),
    )


def resolve_faults(contract: Contract, overrides: Mapping[str, float] | None) -> tuple[Fault, ...]:
    """Return the contract's faults with rates overridden by fault name, fault kind, or `all`.

    Raises ValueError for a rate outside [0, 1] or rates of exclusive faults adding up to more than 1.
    """
    if not overrides:
        return contract.faults
    for key, rate in overrides.items():
        if not 0 <= rate <= 1:
            raise ValueError(f"fault rate {key}={rate} is not between 0 and 1")
    faults = []
    for fault in contract.faults:
        rate = fault.rate
        for key in ("all", fault.kind, fault.name):
            if key in overrides:
                rate = overrides[key]
        faults.append(replace(fault, rate=float(rate)))
    try:
        check_fault_rates(contract.path, faults)
    except ValueError as error:
        raise ValueError(f"fault rates for {contract.name}: {error}") from None
    return tuple(faults)


def known_fault_keys(contracts: Iterable[Contract]) -> set[str]:
    """Return every key `--fault-rate` accepts: fault names, fault kinds, and `all`."""
    keys = {"all"}
    for contract in contracts:
        for fault in contract.faults:
            keys.update((fault.name, fault.kind))
    return keys


def allocate(total: int, shares: Mapping[str, float]) -> dict[str, int]:
    """Return `total` split by `shares` (largest remainder), in the mapping's order; sums to `total`."""
    weight = sum(shares.values())
    if total <= 0 or weight <= 0:
        return {name: 0 for name in shares}
    exact = {name: total * share / weight for name, share in shares.items()}
    counts = {name: int(value) for name, value in exact.items()}
    by_remainder = sorted(shares, key=lambda name: (counts[name] - exact[name], name))
    for name in by_remainder[: total - sum(counts.values())]:
        counts[name] += 1
    return counts


def _cells(name: str, values: Iterable) -> np.ndarray:
    """Return `,"name":<json value>` for each value, as an object array ready for fancy indexing."""
    prefix = f',"{name}":'
    return np.array([prefix + orjson.dumps(value).decode() for value in values], dtype=object)


class _Builder:
    """Builds the columns of one chunk of a source's events."""

    def __init__(self, contract: Contract, count: int, rng: _StripedRng, pools: Pools) -> None:
        self.contract = contract
        self.count = count
        self.rng = rng
        self.pools = pools
        self._entities: dict[str, np.ndarray] = {}

    def entity(self, name: str) -> np.ndarray:
        if name not in self._entities:
            pools, rng, n = self.pools, self.rng, self.count
            if name == "customer":
                picks = rng.choice(len(pools.customers), size=n, p=pools.customer_weights)
            elif name == "product":
                picks = rng.choice(len(pools.products), size=n, p=pools.product_weights)
            elif name == "session":
                picks = rng.integers(0, len(pools.sessions), n)
            elif name == "page":
                product_pages = len(pools.products)
                on_product = rng.random(n) < 0.6
                product = rng.choice(product_pages, size=n, p=pools.product_weights)
                other = rng.integers(product_pages, len(pools.pages), n)
                picks = np.where(on_product, product, other)
            elif name == "campaign":
                picks = rng.integers(0, len(pools.campaigns), n)
            else:
                picks = rng.integers(0, len(pools.warehouses), n)
            self._entities[name] = picks
        return self._entities[name]

    def column(self, field: str, spec: dict, times: np.ndarray) -> np.ndarray:
        kind, rng, n, pools = spec["kind"], self.rng, self.count, self.pools
        if kind == "id":
            digits = rng.bytes(6 * n).hex().upper()
            prefix = f',"{field}":"{spec["prefix"]}'
            return np.array([f'{prefix}{digits[12 * i : 12 * i + 12]}"' for i in range(n)], dtype=object)
        if kind == "event_time":
            stamps = np.datetime_as_string(times.astype("datetime64[ms]"), unit="ms").tolist()
            prefix = f',"{field}":"'
            return np.array([f'{prefix}{stamp}Z"' for stamp in stamps], dtype=object)
        if kind == "int":
            low, high = int(spec["min"]), int(spec["max"])
            return _cells(field, range(low, high + 1))[rng.integers(0, high - low + 1, n)]
        if kind == "money":
            low, high = round(spec["min"] * 100), round(spec["max"] * 100)
            values = [round(cents / 100, 2) for cents in range(low, high + 1)]
            return _cells(field, values)[rng.integers(0, len(values), n)]
        if kind == "choice":
            values = spec["values"]
            weights = np.asarray(spec.get("weights") or [1] * len(values), dtype=float)
            picks = rng.choice(len(values), size=n, p=weights / weights.sum())
            return _cells(field, values)[picks]
        entity, attribute = kind.split(".")
        key = (field, kind)
        cells = pools.cells.get(key)
        if cells is None:
            cells = pools.cells[key] = _cells(field, _entity_values(pools, entity, attribute))
        return cells[self.entity(entity)]


def _entity_values(pools: Pools, entity: str, attribute: str) -> list:
    """Return the value of `attribute` for every entity in the pool, in pool order."""
    if entity == "customer":
        return [c[attribute] for c in pools.customers]
    if entity == "product":
        return [p[attribute] for p in pools.products]
    if entity == "campaign":
        return [c[attribute] for c in pools.campaigns]
    if entity == "warehouse":
        return list(pools.warehouses)
    if entity == "session":
        if attribute == "id":
            return [f"SESS-{number:06d}" for number in range(1, len(pools.sessions) + 1)]
        return [pools.customers[owner]["id"] if owner >= 0 else None for owner in pools.sessions]
    if attribute == "url":
        return [url for url, _ in pools.pages]
    return [pools.products[index]["id"] if index >= 0 else None for _, index in pools.pages]


def _value_of(cell: str) -> str:
    return cell.split(":", 1)[1]


def _fault_picks(fault: Fault, rng: _StripedRng, size: int) -> np.ndarray | None:
    """Return one random pick per event for the faults whose replacement values vary, else None."""
    if fault.kind == "wrong_format":
        return rng.integers(0, 10000, size)
    if fault.kind == "unknown_value":
        return rng.integers(0, len(fault.params["values"]), size)
    return None


def _field_fault(fault: Fault, cells: np.ndarray, field_type: str, picks: np.ndarray | None) -> np.ndarray:
    """Return the replacement cells for `fault` applied to `cells` (one field, masked rows)."""
    name = fault.field
    prefix = f',"{name}":'
    size = len(cells)
    if fault.kind == "null":
        return np.full(size, prefix + "null", dtype=object)
    if fault.kind == "zero":
        return np.full(size, prefix + ("0" if field_type == "INT64" else "0.0"), dtype=object)
    if fault.kind == "wrong_format":
        template = fault.params["format"]
        return np.array([prefix + orjson.dumps(template.format(n=n)).decode() for n in picks.tolist()], dtype=object)
    if fault.kind == "unknown_value":
        values = fault.params["values"]
        return np.array([prefix + orjson.dumps(values[i]).decode() for i in picks.tolist()], dtype=object)
    out = []
    for cell in cells.tolist():
        raw = _value_of(cell)
        value = orjson.loads(raw) if raw != "null" else 0
        if fault.kind == "negative":
            if field_type == "INT64":
                out.append(prefix + str(-max(abs(int(value)), 1)))
            else:
                out.append(prefix + orjson.dumps(-(abs(float(value)) or 1.0)).decode())
        else:  # as_string: a string a SAFE_CAST cannot read as a number
            if field_type == "INT64" and 0 <= value < len(NUMBER_WORDS):
                text = NUMBER_WORDS[int(value)]
            elif field_type == "INT64":
                text = f"{value} units"
            else:
                text = f"${value}"
            out.append(prefix + orjson.dumps(text).decode())
    return np.array(out, dtype=object)


def _draw_exclusive(rng: _StripedRng, faults: list[Fault], size: int) -> list[np.ndarray]:
    """Return one mask per fault; the faults exclude each other (one uniform draw per row)."""
    draw = rng.random(size)
    masks, low = [], 0.0
    for fault in faults:
        high = low + fault.rate
        masks.append((draw >= low) & (draw < high))
        low = high
    return masks


class _StripedRng:
    """numpy-style draws for the events [start, start + size) of one source, one generator per stripe.

    Every stripe of STRIPE_EVENTS events has its own generator, seeded by (seed, source, stream,
    stripe), and every draw takes one value per event: an event's values depend on its stripe alone,
    so the same events come out however the source is cut into chunks.
    """

    def __init__(self, seed: int, source_key: int, stream: int, start: int, size: int) -> None:
        self.size = size
        self._parts: list[tuple[np.random.Generator, int]] = []
        position, end = start, start + size
        while position < end:
            stripe = position // STRIPE_EVENTS
            stop = min((stripe + 1) * STRIPE_EVENTS, end)
            self._parts.append((np.random.default_rng([seed, source_key, stream, stripe]), stop - position))
            position = stop

    def _each(self, size: int, draw: Callable[[np.random.Generator, int], np.ndarray]) -> np.ndarray:
        if size != self.size:
            raise ValueError(f"a striped draw takes one value per event ({self.size}), not {size}")
        return np.concatenate([draw(generator, count) for generator, count in self._parts])

    def random(self, size: int) -> np.ndarray:
        return self._each(size, lambda generator, count: generator.random(count))

    def integers(self, low: int, high: int, size: int) -> np.ndarray:
        return self._each(size, lambda generator, count: generator.integers(low, high, count))

    def choice(self, a: int, size: int, p: np.ndarray | None = None) -> np.ndarray:
        return self._each(size, lambda generator, count: generator.choice(a, size=count, p=p))

    def bytes(self, length: int) -> bytes:
        width = length // self.size
        return b"".join(generator.bytes(width * count) for generator, count in self._parts)


@dataclass
class Chunk:
    """Consecutive lines of one source's line stream, from position `start`, with their fault counts."""

    start: int
    lines: list[bytes]
    fault_counts: dict[str, int]
    traces: list[tuple[str, ...]] | None = None


@dataclass(frozen=True)
class SourcePlan:
    """One source's part of a generate call: its counts up front, its lines drawn chunk by chunk.

    `lines` is exact before anything is drawn (events plus redelivered copies), so a progress bar
    can show it; `record_prefix` names the generated line stream in record keys.
    """

    contract: Contract
    events: int
    seed: int
    as_of: datetime
    span: timedelta
    faults: tuple[Fault, ...]
    pools: Pools
    lines: int
    record_prefix: str

    @property
    def source(self) -> str:
        """Return the source name."""
        return self.contract.name

    def record_key(self, position: int) -> str:
        """Return the stable id of the line at `position` of this source's line stream."""
        return f"{self.record_prefix}-{position}"

    def chunks(self, chunk_events: int = CHUNK_EVENTS, *, trace: bool = False) -> Iterator[Chunk]:
        """Yield the source's lines, `chunk_events` events (plus their redelivered copies) at a time.

        The lines do not depend on `chunk_events`. Raises ValueError when it is not a positive
        multiple of STRIPE_EVENTS.
        """
        if chunk_events <= 0 or chunk_events % STRIPE_EVENTS:
            raise ValueError(f"chunk_events must be a positive multiple of {STRIPE_EVENTS}, not {chunk_events}")
        return _chunks(self, chunk_events, trace)


def _source_key(contract: Contract) -> int:
    return zlib.crc32(contract.name.encode())


def _redeliveries(plan: SourcePlan, start: int, size: int) -> list[tuple[Fault, np.ndarray, np.ndarray]]:
    """Return (fault, redelivered mask, how many lines later the copy comes) per redelivery fault.

    Drawn from their own stream so the copies can be counted before any event is built.
    """
    rng = _StripedRng(plan.seed, _source_key(plan.contract), 1, start, size)
    return [
        (fault, rng.random(size) < fault.rate, rng.integers(1, 50, size))
        for fault in plan.faults
        if fault.kind == "redelivery"
    ]


def plan_source(
    contract: Contract,
    count: int,
    seed: int,
    *,
    as_of: datetime,
    span: timedelta = timedelta(hours=24),
    fault_rates: Mapping[str, float] | None = None,
    pools: Pools | None = None,
) -> SourcePlan:
    """Return the plan of `count` events of `contract`, deterministic for (seed, as_of).

    Counts the redelivered copies (a pass over small masks, no event is built). The record prefix
    depends on the source, seed, count, span and fault rates, not on as_of: a rerun of the same
    command an hour later names its lines as the first run did. Raises ValueError for bad fault rates.
    """
    faults = resolve_faults(contract, fault_rates)
    identity = [
        contract.name,
        seed,
        count,
        round(span.total_seconds() * 1000),
        sorted((f.name, f.rate) for f in faults),
    ]
    made = SourcePlan(
        contract=contract,
        events=count,
        seed=seed,
        as_of=as_of,
        span=span,
        faults=faults,
        pools=pools or build_pools(seed),
        lines=count,
        record_prefix=hashlib.sha256(orjson.dumps(identity)).hexdigest()[:16],
    )
    copies = 0
    for start in range(0, count, CHUNK_EVENTS):
        size = min(CHUNK_EVENTS, count - start)
        copies += sum(int(mask.sum()) for _, mask, _ in _redeliveries(made, start, size))
    return replace(made, lines=count + copies)


def _chunks(plan: SourcePlan, chunk_events: int, trace: bool) -> Iterator[Chunk]:
    # State carried across chunks: the last events' keys (duplicate keys repeat one of the 199
    # events before them) and redelivered copies due after the chunk's last event.
    tails: dict[str, dict[str, np.ndarray]] = {}
    pending: list[tuple[float, bytes, tuple[str, ...] | None]] = []
    emitted = 0
    for start in range(0, plan.events, chunk_events):
        size = min(chunk_events, plan.events - start)
        lines, traces, counts, copies = _build_chunk(plan, start, size, tails, trace)
        last = start + size >= plan.events
        copies = sorted(pending + copies, key=lambda copy: copy[0])
        limit = start + size
        due = copies if last else [copy for copy in copies if copy[0] < limit]
        pending = [] if last else [copy for copy in copies if copy[0] >= limit]
        positions = np.concatenate([np.arange(start, limit, dtype=float), [copy[0] for copy in due]])
        order = np.argsort(positions, kind="stable").tolist()
        all_lines = lines + [copy[1] for copy in due]
        out_traces = None
        if traces is not None:
            all_traces = [tuple(t) for t in traces] + [copy[2] for copy in due]
            out_traces = [all_traces[k] for k in order]
        chunk = Chunk(emitted, [all_lines[k] for k in order], counts, out_traces)
        emitted += len(chunk.lines)
        yield chunk


def _build_chunk(
    plan: SourcePlan,
    start: int,
    n: int,
    tails: dict[str, dict[str, np.ndarray]],
    trace: bool,
) -> tuple[list[bytes], list[list[str]] | None, dict[str, int], list]:
    """Return (lines, traces, fault counts, redelivered copies) of events [start, start + n)."""
    contract, faults, pools = plan.contract, plan.faults, plan.pools
    rng = _StripedRng(plan.seed, _source_key(contract), 0, start, n)
    fired: dict[str, np.ndarray] = {}

    # Event times spread evenly over the span: event i falls at a random point of the i-th of
    # `events` equal slots, so times rise with the position whatever the chunk.
    end_ms = int(plan.as_of.timestamp() * 1000)
    span_ms = int(plan.span.total_seconds() * 1000)
    slots = (np.arange(start, start + n) + rng.random(n)) * (span_ms / plan.events)
    times = end_ms - span_ms + slots.astype(np.int64)
    for fault in faults:
        if fault.kind == "late_event":
            mask = rng.random(n) < fault.rate
            days = rng.integers(1, int(fault.params["max_days"]) + 1, n)
            times = np.where(mask, times - days * 86_400_000 - rng.integers(0, 3_600_000, n), times)
            fired[fault.name] = mask

    builder = _Builder(contract, n, rng, pools)
    columns = {name: builder.column(name, contract.value_specs[name], times) for name in contract.field_names}

    copied_fields = [
        name
        for name in contract.field_names
        if name != contract.event_time and contract.value_specs[name]["kind"] != "choice"
    ]
    for fault in faults:
        if fault.kind == "duplicate_key":
            mask = rng.random(n) < fault.rate
            back = rng.integers(1, DUPLICATE_LOOKBACK, n)
            if start == 0:
                mask[0] = False
            tail = tails.get(fault.name, {})
            kept = len(tail[copied_fields[0]]) if tail and copied_fields else 0
            rows = np.flatnonzero(mask)
            # Indices into (the previous events kept from earlier chunks, then this chunk's); copies
            # resolve in row order so every copy (even a copy of a copy) repeats a key that exists.
            originals = np.maximum(rows + kept - back[rows], 0)
            resolved = np.arange(kept + n)
            for row, original in zip((rows + kept).tolist(), originals.tolist(), strict=True):
                resolved[row] = resolved[original]
            new_tail = {}
            for name in copied_fields:
                combined = np.concatenate([tail[name], columns[name]]) if kept else columns[name].copy()
                columns[name][rows] = combined[resolved[rows + kept]]
                combined[kept:] = columns[name]
                new_tail[name] = combined[-(DUPLICATE_LOOKBACK - 1) :].copy()
            tails[fault.name] = new_tail
            fired[fault.name] = mask

    by_field: dict[str, list[Fault]] = {}
    for fault in faults:
        if fault.kind in FIELD_FAULTS:
            by_field.setdefault(fault.field, []).append(fault)
    for name, group in by_field.items():
        field_type = contract.field(name).type
        for fault, mask in zip(group, _draw_exclusive(rng, group, n), strict=True):
            picks = _fault_picks(fault, rng, n)
            if mask.any():
                masked_picks = picks[mask] if picks is not None else None
                columns[name][mask] = _field_fault(fault, columns[name][mask], field_type, masked_picks)
            fired[fault.name] = mask

    for fault in faults:
        if fault.kind == "renamed_field":
            mask = rng.random(n) < fault.rate
            old, new = f',"{fault.field}":', f',"{fault.params["rename_to"]}":'
            column = columns[fault.field]
            column[mask] = [new + cell[len(old) :] for cell in column[mask].tolist()]
            fired[fault.name] = mask

    extra = np.full(n, "}", dtype=object)
    for fault in faults:
        if fault.kind == "extra_field":
            mask = rng.random(n) < fault.rate
            picks = rng.integers(0, len(EXTRA_FIELDS), n)
            extra[mask] = [EXTRA_FIELDS[i] + "}" for i in picks[mask].tolist()]
            fired[fault.name] = mask

    replacing = [fault for fault in faults if fault.kind in REPLACING_FAULTS]
    replacing_masks = dict(zip((f.name for f in replacing), _draw_exclusive(rng, replacing, n), strict=True))
    poison_kind = rng.integers(0, len(POISON_KINDS), n)
    event_time = columns[contract.event_time]
    for fault in replacing:
        mask = replacing_masks[fault.name]
        fired[fault.name] = mask
        if fault.kind == "poison_pill":
            missing = mask & (poison_kind == POISON_KINDS.index("missing_event_time"))
            event_time[missing] = ""
            wrong = mask & (poison_kind == POISON_KINDS.index("wrong_types"))
            event_time[wrong] = [f',"{contract.event_time}":{ms // 1000}' for ms in times[wrong].tolist()]

    ids = rng.bytes(16 * n).hex()
    head = f'{{"source":"{contract.name}","event_id":"'
    prefix = [f'{head}{ids[32 * i : 32 * i + 32]}"' for i in range(n)]
    text = list(
        map(
            "".join,
            zip(
                prefix,
                *(columns[name].tolist() for name in contract.field_names),
                extra.tolist(),
                strict=True,
            ),
        )
    )
    # One encode and one split in C instead of a call per line (no line holds a newline yet).
    lines = "\n".join(text).encode().split(b"\n")

    for fault in replacing:
        rows = np.flatnonzero(replacing_masks[fault.name]).tolist()
        for row in rows:
            line = text[row]
            if fault.kind == "non_utf8":
                # A producer that wrote Latin-1: "café" as the single byte 0xE9.
                lines[row] = line[:-1].encode() + b',"note":"caf\xe9"}'
            elif fault.kind == "oversized":
                filler = ("lorem ipsum dolor sit amet " * (OVERSIZED_BYTES // 27 + 1))[:OVERSIZED_BYTES]
                lines[row] = (line[:-1] + f',"notes":"{filler}"}}').encode()
            elif POISON_KINDS[poison_kind[row]] == "not_json":
                event_id = ids[32 * row : 32 * row + 32]
                lines[row] = f"{contract.name};{event_id};<html>502 Bad Gateway</html>".encode()
            elif POISON_KINDS[poison_kind[row]] == "truncated_json":
                lines[row] = line[: len(line) // 2].encode()

    traces = None
    if trace:
        traces = [[] for _ in range(n)]
        for name, mask in fired.items():
            for row in np.flatnonzero(mask).tolist():
                traces[row].append(name)
        for fault in replacing:
            if fault.kind == "poison_pill":
                for row in np.flatnonzero(replacing_masks[fault.name]).tolist():
                    traces[row].append(f"poison_pill:{POISON_KINDS[poison_kind[row]]}")

    counts = {fault.name: int(fired[fault.name].sum()) if fault.name in fired else 0 for fault in faults}
    copies = []
    for fault, mask, later in _redeliveries(plan, start, n):
        rows = np.flatnonzero(mask).tolist()
        counts[fault.name] = len(rows)
        for row in rows:
            if traces is not None:
                traces[row].append(fault.name)
            # A copy comes 1 to 49 lines after its original, possibly in a later chunk.
            copied_trace = tuple(traces[row]) if traces is not None else None
            copies.append((start + row + int(later[row]) + 0.5, lines[row], copied_trace))
    return lines, traces, counts, copies


def _collect(plan: SourcePlan, trace: bool, chunk_events: int) -> SourceEvents:
    lines: list[bytes] = []
    traces: list[tuple[str, ...]] | None = [] if trace else None
    counts = {fault.name: 0 for fault in plan.faults}
    for chunk in plan.chunks(chunk_events, trace=trace):
        lines.extend(chunk.lines)
        if traces is not None:
            traces.extend(chunk.traces)
        for name, count in chunk.fault_counts.items():
            counts[name] += count
    return SourceEvents(plan.source, lines, plan.events, counts, traces)


def generate_source(
    contract: Contract,
    count: int,
    seed: int,
    *,
    as_of: datetime,
    span: timedelta = timedelta(hours=24),
    fault_rates: Mapping[str, float] | None = None,
    trace: bool = False,
    pools: Pools | None = None,
    chunk_events: int = CHUNK_EVENTS,
) -> SourceEvents:
    """Return `count` events of `contract` with its faults injected, deterministic for (seed, as_of),
    held in memory (plan_source streams them instead).

    Event times spread evenly over the `span` before `as_of`. Raises ValueError for bad fault rates.
    """
    plan = plan_source(contract, count, seed, as_of=as_of, span=span, fault_rates=fault_rates, pools=pools)
    return _collect(plan, trace, chunk_events)


def plan(
    contracts: Mapping[str, Contract],
    events: int,
    seed: int,
    *,
    as_of: datetime | None = None,
    span: timedelta = timedelta(hours=24),
    sources: Iterable[str] | None = None,
    fault_rates: Mapping[str, float] | None = None,
) -> dict[str, SourcePlan]:
    """Return the plan of `events` events split over the sources by their generator share, per source.

    Nothing is drawn until a plan's chunks are read. Deterministic for (seed, as_of); as_of defaults
    to now. Raises ValueError for an unknown source, an unknown fault key or a bad rate.
    """
    chosen = list(sources) if sources else sorted(contracts)
    unknown = [name for name in chosen if name not in contracts]
    if unknown:
        raise ValueError(f"unknown source(s) {', '.join(unknown)}; known: {', '.join(sorted(contracts))}")
    if fault_rates:
        keys = known_fault_keys(contracts[name] for name in chosen)
        bad = sorted(set(fault_rates) - keys)
        if bad:
            raise ValueError(f"unknown fault(s) {', '.join(bad)}; known: {', '.join(sorted(keys))}")
    as_of = (as_of or datetime.now(UTC)).astimezone(UTC)
    counts = allocate(events, {name: contracts[name].share for name in chosen})
    pools = build_pools(seed)
    return {
        name: plan_source(
            contracts[name], counts[name], seed, as_of=as_of, span=span, fault_rates=fault_rates, pools=pools
        )
        for name in chosen
    }


def generate(
    contracts: Mapping[str, Contract],
    events: int,
    seed: int,
    *,
    as_of: datetime | None = None,
    span: timedelta = timedelta(hours=24),
    sources: Iterable[str] | None = None,
    fault_rates: Mapping[str, float] | None = None,
    trace: bool = False,
    chunk_events: int = CHUNK_EVENTS,
) -> dict[str, SourceEvents]:
    """Return `events` events split over the sources by their generator share, per source, in memory.

    Deterministic for (seed, as_of) whatever `chunk_events`; as_of defaults to now. Raises
    ValueError for an unknown source, an unknown fault key or a bad rate.
    """
    plans = plan(contracts, events, seed, as_of=as_of, span=span, sources=sources, fault_rates=fault_rates)
    return {name: _collect(source_plan, trace, chunk_events) for name, source_plan in plans.items()}


@dataclass(frozen=True)
class Piece:
    """Consecutive lines of one source bound for one place: `post` (an HTTP batch) or `publish`."""

    kind: str
    start: int
    lines: list[bytes]


def route(
    source_plan: SourcePlan, batch_size: int, pubsub_share: float, *, chunk_events: int = CHUNK_EVENTS
) -> Iterator[Piece]:
    """Yield a source's lines in order as split_share cuts them, without holding them all: HTTP
    batches of `batch_size` lines, then the last round(pubsub_share × lines) lines to publish (in
    pieces of at most one chunk)."""
    total = source_plan.lines
    published = min(total, round(pubsub_share * total)) if pubsub_share > 0 else 0
    cut = total - published
    batch: list[bytes] = []
    batch_start = 0
    for chunk in source_plan.chunks(chunk_events):
        lines = chunk.lines
        posted = max(0, min(len(lines), cut - chunk.start))
        index = 0
        while index < posted:
            if not batch:
                batch_start = chunk.start + index
            take = min(batch_size - len(batch), posted - index)
            batch.extend(lines[index : index + take])
            index += take
            if len(batch) == batch_size:
                yield Piece("post", batch_start, batch)
                batch = []
        if posted < len(lines):
            if batch:
                yield Piece("post", batch_start, batch)
                batch = []
            yield Piece("publish", chunk.start + posted, lines[posted:])
    if batch:
        yield Piece("post", batch_start, batch)


def batches(lines: list[bytes], size: int) -> Iterator[list[bytes]]:
    """Yield consecutive slices of `lines` holding at most `size` lines each."""
    for start in range(0, len(lines), size):
        yield lines[start : start + size]


def split_share(lines: list[bytes], batch_size: int, share: float) -> tuple[list[list[bytes]], list[bytes]]:
    """Return (batches to POST, lines to publish): the last round(share × lines) lines are published,
    the others are cut into batches of `batch_size`."""
    published = min(len(lines), round(share * len(lines))) if share > 0 else 0
    cut = len(lines) - published
    return list(batches(lines[:cut], batch_size)), lines[cut:]


def default_as_of() -> datetime:
    """Return now in UTC, truncated to the second."""
    return datetime.now(UTC).replace(microsecond=0)
