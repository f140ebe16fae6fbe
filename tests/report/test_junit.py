"""JUnit XML: every outcome kind, validated against the XSD and by the count checks."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest
import xmlschema

from lakehouse.engine import records
from lakehouse.report.failures import AssertionOutcome, Sample
from lakehouse.report.junit import JUNIT_XSD, JUnitInvalid, build, validate, write
from lakehouse.report.runs import Run, Streak

T0 = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)


def outcome(name, status, severity="error", rows=None, file="definitions/silver/orders.sqlx", **kw):
    return AssertionOutcome(
        name=f"p.assertions.{name}",
        status=status,
        severity=severity,
        file_name=file,
        failing_rows=rows,
        error=kw.pop("error", None),
        duration_s=0.25,
        kind="file",
        checks=["p.silver.orders"],
        **kw,
    )


OUTCOMES = [
    outcome("dup", "failing", rows=3, sample=Sample(["id", "n"], [("A", 2), (None, 3)]), streak=Streak("r0", T0, 2)),
    outcome("late", "failing", "warn", rows=1, file="definitions/assertions/late.sqlx"),
    outcome("broken", "error", error="definitions/silver/orders.sqlx: action failed: Binder Error"),
    outcome("skipped_one", "not run", error="skipped: upstream p.silver.orders did not succeed"),
    outcome("fine", "passed", rows=0),
]
FAILED_TABLE = records.ActionResult(
    "p.gold.daily",
    "table",
    "failed",
    "definitions/gold/daily.sqlx",
    0.5,
    error="definitions/gold/daily.sqlx: boom\nsecond line",
)


def test_every_outcome_kind_validates_against_the_xsd(tmp_path):
    run = Run("r1", T0, T0, "failed", [], "json")
    path = write(build(run, OUTCOMES, [FAILED_TABLE]), tmp_path / "junit.xml")
    xmlschema.XMLSchema(JUNIT_XSD).validate(str(path))
    root = ET.parse(path).getroot()
    assert {k: root.get(k) for k in ("name", "tests", "failures", "errors", "skipped", "time", "timestamp")} == {
        "name": "lakehouse run r1",
        "tests": "6",
        "failures": "1",
        "errors": "2",
        "skipped": "1",
        "time": "1.750",
        "timestamp": "2026-03-01T06:00:00",
    }
    assert [s.get("name") for s in root.findall("testsuite")] == [
        "definitions/assertions/late.sqlx",
        "definitions/silver/orders.sqlx",
        "actions",
    ]
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert cases["dup"].find("failure").attrib == {"message": "3 failing row(s)", "type": "assertion.error"}
    assert cases["dup"].find("failure").text == "id | n\nA | 2\nNULL | 3"
    assert cases["dup"].get("classname") == "definitions.silver.orders"
    props = {p.get("name"): p.get("value") for p in cases["dup"].iter("property")}
    assert props == {
        "assertion": "p.assertions.dup",
        "severity": "error",
        "failing_rows": "3",
        "failing_since": "2026-03-01T06:00:00+00:00",
        "failing_runs": "2",
    }
    assert cases["late"].find("failure") is None and cases["late"].find("system-out").text.startswith("WARN: 1")
    assert cases["broken"].find("error").get("type") == "assertion.error"
    assert cases["skipped_one"].find("skipped").get("message").startswith("skipped: upstream")
    assert list(cases["fine"]) == [cases["fine"].find("properties")]
    assert cases["daily"].find("error").attrib == {
        "message": "definitions/gold/daily.sqlx: boom",
        "type": "action.table",
    }
    assert (tmp_path / "junit.xsd").read_text() == JUNIT_XSD


def test_validate_rejects_counts_that_do_not_match():
    root = build(Run("r1", T0, T0, "failed", [], "json"), OUTCOMES, [])
    root.find("testsuite").set("failures", "7")
    with pytest.raises(JUnitInvalid, match="failures='7' but it holds"):
        validate(root)
    with pytest.raises(JUnitInvalid, match="not <testsuites>"):
        validate(ET.Element("testsuite"))


def test_the_xsd_rejects_a_testcase_without_classname(tmp_path):
    path = write(build(Run("r1", T0, T0, "success", [], "json"), OUTCOMES[-1:], []), tmp_path / "junit.xml")
    tree = ET.parse(path)
    del tree.getroot().find("testsuite/testcase").attrib["classname"]
    tree.write(path)
    with pytest.raises(xmlschema.XMLSchemaValidationError, match="classname"):
        xmlschema.XMLSchema(JUNIT_XSD).validate(str(path))


def test_control_characters_in_an_error_are_written_visible_and_the_file_parses(tmp_path):
    """DuckDB puts data values in its messages: '\x01' must not make the XML ill-formed."""
    failed = dataclasses.replace(FAILED_TABLE, error="Conversion Error: could not convert string '\x01\x02abc'")
    path = write(build(Run("r1", T0, T0, "failed", [], "json"), OUTCOMES, [failed]), tmp_path / "junit.xml")

    cases = {c.get("name"): c for c in ET.parse(path).getroot().iter("testcase")}

    assert cases["daily"].find("error").text == "Conversion Error: could not convert string '\\x01\\x02abc'"
