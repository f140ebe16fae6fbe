"""JUnit XML of a run's assertions (one testsuite per SQLX file) and the XSD it is written to."""

from __future__ import annotations

import re
import socket
import xml.etree.ElementTree as ET
from pathlib import Path

from lakehouse.engine import records
from lakehouse.report.failures import AssertionOutcome, Sample
from lakehouse.report.quality import Quality, SourceQuality
from lakehouse.report.runs import Run

# The structure CI systems read (Jenkins, GitLab, GitHub test reporters, pytest's xunit2): testsuites >
# testsuite > testcase with at most one failure | error | skipped, plus properties and system-out.
# Every count attribute is required and must equal the children it counts (checked by validate()).
JUNIT_XSD = """<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" elementFormDefault="qualified">
  <xs:simpleType name="count"><xs:restriction base="xs:nonNegativeInteger"/></xs:simpleType>
  <xs:simpleType name="seconds">
    <xs:restriction base="xs:decimal"><xs:minInclusive value="0"/></xs:restriction>
  </xs:simpleType>
  <xs:simpleType name="name">
    <xs:restriction base="xs:string"><xs:minLength value="1"/></xs:restriction>
  </xs:simpleType>
  <xs:complexType name="outcome">
    <xs:simpleContent>
      <xs:extension base="xs:string">
        <xs:attribute name="message" type="xs:string" use="required"/>
        <xs:attribute name="type" type="xs:string" use="required"/>
      </xs:extension>
    </xs:simpleContent>
  </xs:complexType>
  <xs:complexType name="skipped">
    <xs:simpleContent>
      <xs:extension base="xs:string">
        <xs:attribute name="message" type="xs:string" use="required"/>
      </xs:extension>
    </xs:simpleContent>
  </xs:complexType>
  <xs:complexType name="properties">
    <xs:sequence>
      <xs:element name="property" maxOccurs="unbounded">
        <xs:complexType>
          <xs:attribute name="name" type="name" use="required"/>
          <xs:attribute name="value" type="xs:string" use="required"/>
        </xs:complexType>
      </xs:element>
    </xs:sequence>
  </xs:complexType>
  <xs:element name="testsuites">
    <xs:complexType>
      <xs:sequence>
        <xs:element name="testsuite" minOccurs="0" maxOccurs="unbounded">
          <xs:complexType>
            <xs:sequence>
              <xs:element name="properties" type="properties" minOccurs="0"/>
              <xs:element name="testcase" minOccurs="0" maxOccurs="unbounded">
                <xs:complexType>
                  <xs:sequence>
                    <xs:element name="properties" type="properties" minOccurs="0"/>
                    <xs:choice minOccurs="0">
                      <xs:element name="failure" type="outcome"/>
                      <xs:element name="error" type="outcome"/>
                      <xs:element name="skipped" type="skipped"/>
                    </xs:choice>
                    <xs:element name="system-out" type="xs:string" minOccurs="0"/>
                  </xs:sequence>
                  <xs:attribute name="name" type="name" use="required"/>
                  <xs:attribute name="classname" type="name" use="required"/>
                  <xs:attribute name="time" type="seconds" use="required"/>
                  <xs:attribute name="file" type="xs:string"/>
                </xs:complexType>
              </xs:element>
              <xs:element name="system-out" type="xs:string" minOccurs="0"/>
            </xs:sequence>
            <xs:attribute name="name" type="name" use="required"/>
            <xs:attribute name="tests" type="count" use="required"/>
            <xs:attribute name="failures" type="count" use="required"/>
            <xs:attribute name="errors" type="count" use="required"/>
            <xs:attribute name="skipped" type="count" use="required"/>
            <xs:attribute name="time" type="seconds" use="required"/>
            <xs:attribute name="timestamp" type="xs:dateTime" use="required"/>
            <xs:attribute name="hostname" type="xs:string"/>
            <xs:attribute name="file" type="xs:string"/>
          </xs:complexType>
        </xs:element>
      </xs:sequence>
      <xs:attribute name="name" type="name" use="required"/>
      <xs:attribute name="tests" type="count" use="required"/>
      <xs:attribute name="failures" type="count" use="required"/>
      <xs:attribute name="errors" type="count" use="required"/>
      <xs:attribute name="skipped" type="count" use="required"/>
      <xs:attribute name="time" type="seconds" use="required"/>
      <xs:attribute name="timestamp" type="xs:dateTime" use="required"/>
    </xs:complexType>
  </xs:element>
</xs:schema>
"""


class JUnitInvalid(ValueError):
    """A JUnit document breaks the structure (names the element and what is wrong)."""


def _sample_text(sample: Sample | None) -> str:
    if sample is None:
        return ""
    lines = []
    if sample.columns:
        lines.append(" | ".join(sample.columns))
        lines.extend(" | ".join("NULL" if v is None else str(v) for v in row) for row in sample.rows)
    if sample.note:
        lines.append(sample.note)
    return "\n".join(lines)


def _testcase(suite: ET.Element, outcome: AssertionOutcome) -> str:
    """Add the testcase of one assertion; return failure | error | skipped | passed."""
    case = ET.SubElement(
        suite,
        "testcase",
        name=outcome.short_name,
        classname=outcome.file_name.removesuffix(".sqlx").replace("/", ".") or "assertions",
        time=f"{outcome.duration_s:.3f}",
        file=outcome.file_name,
    )
    props = ET.SubElement(case, "properties")
    ET.SubElement(props, "property", name="assertion", value=outcome.name)
    ET.SubElement(props, "property", name="severity", value=outcome.severity)
    ET.SubElement(props, "property", name="failing_rows", value=str(outcome.failing_rows or 0))
    if outcome.streak:
        ET.SubElement(props, "property", name="failing_since", value=outcome.streak.since.isoformat())
        ET.SubElement(props, "property", name="failing_runs", value=str(outcome.streak.runs))
    if outcome.flaky:
        ET.SubElement(props, "property", name="flaky", value=" ".join(outcome.sequence))
    text = _sample_text(outcome.sample)
    if outcome.status == "failing" and outcome.severity == "error":
        failure = ET.SubElement(
            case, "failure", message=f"{outcome.failing_rows} failing row(s)", type="assertion.error"
        )
        failure.text = text
        return "failure"
    if outcome.status == "error":
        error = ET.SubElement(
            case, "error", message=outcome.error or "the assertion could not run", type="assertion.error"
        )
        error.text = outcome.error or ""
        return "error"
    if outcome.status in ("not run", "disabled"):
        ET.SubElement(case, "skipped", message=outcome.error or f"assertion {outcome.status}")
        return "skipped"
    if outcome.status == "failing":  # warn severity: reported, never fails the build
        out = ET.SubElement(case, "system-out")
        out.text = f"WARN: {outcome.failing_rows} failing row(s) (severity warn)\n{text}"
    return "passed"


def _action_case(suite: ET.Element, action: records.ActionResult) -> None:
    case = ET.SubElement(
        suite,
        "testcase",
        name=action.name.rsplit(".", 1)[-1],
        classname=(action.file_name or "actions").removesuffix(".sqlx").replace("/", "."),
        time=f"{action.duration_s:.3f}",
        file=action.file_name or "",
    )
    error = ET.SubElement(
        case, "error", message=(action.error or "failed").splitlines()[0], type=f"action.{action.type}"
    )
    error.text = action.error or ""


def _source_case(suite: ET.Element, source: SourceQuality) -> str:
    """Add the testcase of one source's incoming quality; return passed | skipped.

    A crossed threshold fails the source's `<source>_quality_thresholds` assertion (its own testcase), so
    the source's case carries the numbers and says WARN/ERROR in system-out without failing a second time.
    """
    case = ET.SubElement(suite, "testcase", name=source.name, classname="ops.source_quality", time="0.000")
    props = ET.SubElement(case, "properties")
    values = {
        "score": "" if source.score is None else f"{source.score:.1f}",
        "lines_taken": source.lines_taken,
        "silver_rows": source.silver_rows,
        "quarantined_rows": source.quarantined_rows,
        "quarantined_pct": "" if source.quarantined_pct is None else f"{source.quarantined_pct:.1f}",
        "duplicate_rows": source.duplicate_rows,
        "dead_lettered_rows": source.dead_lettered_rows,
        "late_rows": source.late_rows,
    }
    values.update({f"dead_letter.{reason}": n for reason, n in source.dead_letters.items()})
    values.update({f"rule.{r.rule}": r.quarantined_rows for r in source.rules if r.quarantined_rows})
    if source.run is not None:
        run = source.run
        values.update(
            {
                "run.lines_taken": run.lines_taken,
                "run.silver_rows": run.silver_rows,
                "run.quarantined_rows": run.quarantined_rows,
                "run.duplicate_rows": run.duplicate_rows,
                "run.late_rows": run.late_rows,
            }
        )
        values.update({f"run.rule.{r.rule}": r.quarantined_rows for r in run.rules if r.quarantined_rows})
    for name, value in values.items():
        ET.SubElement(props, "property", name=name, value=str(value))
    if not source.lines_taken:
        ET.SubElement(case, "skipped", message=f"{source.name}: no line has arrived yet")
        return "skipped"
    out = ET.SubElement(case, "system-out")
    lines = [
        *(
            [
                f"this run: {source.run.quarantined_rows} of {source.run.lines_taken} lines quarantined "
                f"({source.run.quarantined_pct}%)"
            ]
            if source.run is not None
            else []
        ),
        f"all time: {source.quarantined_rows} of {source.lines_taken} lines quarantined ({source.quarantined_pct}%)",
        *(f"{r.rule}: {r.quarantined_rows}" for r in source.rules if r.quarantined_rows),
    ]
    if source.thresholds is None:
        lines.append("no quality thresholds in the contract")
    for threshold in source.crossed:
        lines.append(
            f"{threshold.severity.upper()}: {threshold.name} {threshold.max_rate} crossed "
            f"(measured {threshold.observed_rate:.4f})"
        )
    out.text = "\n".join(lines)
    return "passed"


def build(
    run: Run,
    found: list[AssertionOutcome],
    failed_actions: list[records.ActionResult],
    quality: Quality | None = None,
) -> ET.Element:
    """Return the <testsuites> of a run: a suite per SQLX file of assertions, one for failed actions, and
    one `incoming data quality` suite with a testcase per source."""
    stamp = run.started_at.replace(tzinfo=None, microsecond=0).isoformat()
    root = ET.Element("testsuites", name=f"lakehouse run {run.run_id}")
    by_file: dict[str, list[AssertionOutcome]] = {}
    for outcome in found:
        by_file.setdefault(outcome.file_name or "(no file)", []).append(outcome)
    host = socket.gethostname()
    suites: list[tuple[ET.Element, dict[str, int], float]] = []
    for file_name in sorted(by_file):
        suite = ET.SubElement(root, "testsuite", name=file_name, timestamp=stamp, hostname=host, file=file_name)
        counts = {"failure": 0, "error": 0, "skipped": 0, "passed": 0}
        for outcome in by_file[file_name]:
            counts[_testcase(suite, outcome)] += 1
        suites.append((suite, counts, sum(o.duration_s for o in by_file[file_name])))
    if failed_actions:
        suite = ET.SubElement(root, "testsuite", name="actions", timestamp=stamp, hostname=host)
        for action in failed_actions:
            _action_case(suite, action)
        counts = {"failure": 0, "error": len(failed_actions), "skipped": 0, "passed": 0}
        suites.append((suite, counts, sum(a.duration_s for a in failed_actions)))
    if quality is not None and quality.sources:
        suite = ET.SubElement(root, "testsuite", name="incoming data quality", timestamp=stamp, hostname=host)
        counts = {"failure": 0, "error": 0, "skipped": 0, "passed": 0}
        for source in quality.sources:
            counts[_source_case(suite, source)] += 1
        suites.append((suite, counts, 0.0))
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    total_time = 0.0
    for suite, counts, seconds in suites:
        tests = sum(counts.values())
        suite.set("tests", str(tests))
        suite.set("failures", str(counts["failure"]))
        suite.set("errors", str(counts["error"]))
        suite.set("skipped", str(counts["skipped"]))
        suite.set("time", f"{seconds:.3f}")
        totals["tests"] += tests
        totals["failures"] += counts["failure"]
        totals["errors"] += counts["error"]
        totals["skipped"] += counts["skipped"]
        total_time += seconds
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", f"{total_time:.3f}")
    root.set("timestamp", stamp)
    return root


def validate(root: ET.Element) -> None:
    """Check the counts and required attributes the XSD cannot: every count equals the children it counts.

    Raises JUnitInvalid naming the element.
    """
    if root.tag != "testsuites":
        raise JUnitInvalid(f"the root element is <{root.tag}>, not <testsuites>")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in root.findall("testsuite"):
        cases = suite.findall("testcase")
        found = {
            "tests": len(cases),
            "failures": sum(1 for c in cases if c.find("failure") is not None),
            "errors": sum(1 for c in cases if c.find("error") is not None),
            "skipped": sum(1 for c in cases if c.find("skipped") is not None),
        }
        for key, value in found.items():
            if suite.get(key) != str(value):
                raise JUnitInvalid(f"testsuite {suite.get('name')!r}: {key}={suite.get(key)!r} but it holds {value}")
            totals[key] += value
        for case in cases:
            for attribute in ("name", "classname", "time"):
                if not case.get(attribute):
                    raise JUnitInvalid(f"testcase in {suite.get('name')!r} has no {attribute}")
    for key, value in totals.items():
        if root.get(key) != str(value):
            raise JUnitInvalid(f"testsuites: {key}={root.get(key)!r} but its suites hold {value}")


# Characters XML 1.0 cannot carry at all, escaped or not (DuckDB puts data values, control characters
# included, in its error messages): written as \xNN so the file stays well-formed and shows them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(text: str | None) -> str | None:
    return None if text is None else _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def write(root: ET.Element, path: Path) -> Path:
    """Validate `root`, write it to `path` (UTF-8, XML declaration) with junit.xsd beside it; return path."""
    validate(root)
    ET.indent(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    for element in root.iter():
        element.text, element.tail = _xml_text(element.text), _xml_text(element.tail)
        for key, value in element.attrib.items():
            element.set(key, _xml_text(value))
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    (path.parent / "junit.xsd").write_text(JUNIT_XSD)
    return path
