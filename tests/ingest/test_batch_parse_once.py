"""Every <source>_batch holds the same rows whether the translator parses each line once or per path."""

from __future__ import annotations

import json

import pytest
from models.project import KIT_VARS

from lakehouse import warehouse
from lakehouse.engine import translate
from lakehouse.engine.compile import compile_project

from .conftest import REPO
from .test_landing_fuzz import FOREIGN_FILES, SOURCES, land_hostile_orders

PROJECT = "lakehouse-dev"


def _odd_lines(line: bytes) -> list[bytes]:
    """Lines made from one valid event: duplicate keys, escaped key names, object and array values,
    JSON that is not an object, and a line cut short."""
    event = json.loads(line)
    text = json.dumps(event, separators=(",", ":"))
    duplicated = text[:-1] + "," + ",".join(f'{json.dumps(k)}:"second"' for k in event) + "}"
    escaped = text
    for key in event:
        escaped = escaped.replace(f'"{key}":', f'"\\u{ord(key[0]):04x}{key[1:]}":', 1)
    nested = json.dumps({k: ({"v": v} if i % 2 else [v, None]) for i, (k, v) in enumerate(event.items())})
    as_text = json.dumps({k: json.dumps(v) for k, v in event.items()})
    quoted = text[:-1] + ',"a \\"b\\"":1,"c.d":{"e":[1,{"f":"g"}]},"":""}'
    return [
        line.encode() if isinstance(line, str) else line
        for line in (duplicated, escaped, nested, as_text, quoted, f"[{text}]", '"text"', "null", "0", text[:-3])
    ]


def _batches(home, parse_once: bool, monkeypatch) -> dict[str, tuple[str, list]]:
    """Return each source's batch query, translated with or without the rewrite, and its rows."""
    graph = compile_project(REPO, home_dir=home, use_cache=False).graph
    queries = {t["target"]["name"]: t["query"] for t in graph["tables"] if t["target"]["name"].endswith("_batch")}
    rewrites = [r for r in translate._EXPRESSION_REWRITES if parse_once or r is not translate._parse_json_once]
    con = warehouse.connect(home, [PROJECT], read_only=True)
    try:
        translate.register_functions(con)
        con.execute("SET TimeZone = 'UTC'")
        out = {}
        with monkeypatch.context() as patch:
            patch.delenv("LAKEHOUSE_HOME", raising=False)
            patch.setattr(translate, "_EXPRESSION_REWRITES", rewrites)
            translate.set_cache_dir(None)
            translate._compile.cache_clear()
            for name, sql in sorted(queries.items()):
                [statement] = translate.translate_script(sql, default_project=PROJECT)
                out[name] = (statement, con.execute(statement).fetchall())
            translate._compile.cache_clear()
        return out
    finally:
        con.close()


@pytest.mark.slow
def test_every_batch_is_the_same_parsed_once_or_per_path(fake_gcs, config, store, tmp_path, monkeypatch):
    from models.test_models_end_to_end import lakehouse

    home = tmp_path / "home"
    lakehouse(
        home, "generate", "--events", "3000", "--seed", "7", "--pubsub-share", "0.3",
        "--batch-size", "300", "--in-process-bus", "--fault-rate", "all=0.04",
    )  # fmt: skip
    bucket = home / "gcs" / KIT_VARS["landing_bucket"]
    land_hostile_orders(home, fake_gcs, config, store)
    for source in SOURCES:
        folder = bucket / f"source={source}" / "ingest_date=2026-11-22" / "hour=09"
        folder.mkdir(parents=True, exist_ok=True)
        landed = next((bucket / f"source={source}").glob("ingest_date=*/hour=*/*.jsonl"))
        (folder / "odd.jsonl").write_bytes(b"\n".join(_odd_lines(landed.read_bytes().split(b"\n")[0])) + b"\n")
    for name, (data, _) in FOREIGN_FILES.items():
        (bucket / "source=orders" / "ingest_date=2026-11-22" / "hour=09" / name).write_bytes(data)

    lakehouse(home, "run")

    plain = _batches(home, False, monkeypatch)
    once = _batches(home, True, monkeypatch)
    assert sorted(once) == [f"{source}_batch" for source in sorted(SOURCES)]
    con = warehouse.connect(home, [PROJECT], read_only=True)
    try:
        for name, (statement, rows) in once.items():
            assert "TRY(JSON_EXTRACT(raw_record, [" in statement, name
            assert "TRY(JSON_EXTRACT(" not in plain[name][0], name
            stored = con.execute(f'SELECT * FROM "{PROJECT}".silver_restricted.{name}').fetchall()
            assert len(rows) > 200 and len(rows) == len(stored), name
            assert sorted(rows, key=repr) == sorted(plain[name][1], key=repr), name
            assert sorted(rows, key=repr) == sorted(stored, key=repr), name
            odd = [row for row in rows if row[2].endswith("/odd.jsonl")]
            assert len(odd) == 10, name
    finally:
        con.close()
