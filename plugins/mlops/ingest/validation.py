"""Validation of incoming batches with Great Expectations 1.x, and the row policy.

The expectation suite is a JSON file under include/expectations/ (reviewed like code). It is
generated from dataset.columns of the configuration: `python -m mlops.ingest.validation` rewrites it,
and a unit test fails when the committed file is out of date.

Every expectation carries a `meta.on_failure` that says what the pipeline does with it:

* ``quarantine`` (batch level: column set, row count): the batch is quarantined;
* ``drop_row``: rows breaking it are dropped and reported;
* ``set_null``: the value is nulled and the row kept (a broken sensor, not a broken observation);
* ``drop_conflicting_duplicates`` (time column unique): exact duplicate rows collapse to one;
  rows sharing a timestamp with different values are all dropped (no way to tell which is right).

GX validates each parsed chunk (ephemeral context, pandas data source, a validation definition
on the suite); its results name the failing expectations, columns and example values. The same
rules are then applied row by row with vectorised pandas masks read from the suite's kwargs,
so the suite file stays the single source of the rules.
"""

from __future__ import annotations

import functools
import html
import json
import logging
from pathlib import Path

from mlops.config import PROJECT_ROOT, DatasetConfig, ValidationConfig, get_config

EXPECTATIONS_DIR = PROJECT_ROOT / "include" / "expectations"
EXAMPLES = 10

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- the suite


def build_suite(dataset: DatasetConfig, validation: ValidationConfig) -> dict:
    """The expectation suite (GX 1.x JSON) derived from the data set's column rules."""
    expectations: list[dict] = [
        {
            "type": "expect_table_columns_to_match_set",
            "kwargs": {"column_set": list(dataset.columns), "exact_match": True},
            "meta": {"on_failure": "quarantine", "why": "a missing, extra or renamed column"},
        },
        {
            "type": "expect_table_row_count_to_be_between",
            "kwargs": {"min_value": validation.min_rows},
            "meta": {"on_failure": "quarantine", "why": "a batch needs data rows"},
        },
    ]
    for name, spec in dataset.columns.items():
        if spec.required:
            expectations.append(
                {
                    "type": "expect_column_values_to_not_be_null",
                    "kwargs": {"column": name},
                    "meta": {"on_failure": "drop_row", "why": "required value missing or unparseable"},
                }
            )
        if spec.min is not None or spec.max is not None:
            expectations.append(
                {
                    "type": "expect_column_values_to_be_between",
                    "kwargs": {"column": name, "min_value": spec.min, "max_value": spec.max},
                    "meta": {"on_failure": spec.on_out_of_range, "why": "physical range"},
                }
            )
        if spec.allowed is not None:
            expectations.append(
                {
                    "type": "expect_column_values_to_be_in_set",
                    "kwargs": {"column": name, "value_set": list(spec.allowed)},
                    "meta": {"on_failure": "drop_row", "why": "allowed values"},
                }
            )
    expectations.append(
        {
            "type": "expect_column_values_to_be_unique",
            "kwargs": {"column": dataset.time_column},
            "meta": {"on_failure": "drop_conflicting_duplicates", "why": "one observation per timestamp"},
        }
    )
    return {
        "name": dataset.name,
        "expectations": expectations,
        "meta": {
            "generated_from": "include/config/pipeline.yaml (dataset.columns, validation.min_rows)",
            "regenerate_with": "python -m mlops.ingest.validation",
        },
    }


def suite_path(validation: ValidationConfig | None = None) -> Path:
    validation = validation or get_config().validation
    return EXPECTATIONS_DIR / validation.suite_file


def write_suite() -> Path:
    """Regenerate the suite file from the configuration."""
    cfg = get_config()
    path = suite_path(cfg.validation)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(build_suite(cfg.dataset, cfg.validation), indent=2) + "\n")
    return path


def load_suite(path: Path | None = None) -> dict:
    path = path or suite_path()
    suite = json.loads(path.read_text())
    for exp in suite["expectations"]:
        if exp.get("meta", {}).get("on_failure") not in {
            "quarantine",
            "drop_row",
            "set_null",
            "drop_conflicting_duplicates",
        }:
            raise ValueError(f"{path.name}: expectation {exp['type']} has no valid meta.on_failure")
    return suite


# ---------------------------------------------------------------- GX


def _quiet_gx() -> None:
    for name in ("great_expectations", "great_expectations._docs_decorators"):
        logging.getLogger(name).setLevel(logging.WARNING)


class SuiteRunner:
    """A GX ephemeral context holding the suite and a validation definition on a pandas asset."""

    def __init__(self, suite: dict):
        _quiet_gx()
        import great_expectations as gx

        self.suite_dict = suite
        self.context = gx.get_context(mode="ephemeral")
        try:  # progress bars would flood the task log
            from great_expectations.data_context.types.base import ProgressBarsConfig

            self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        except Exception:  # noqa: BLE001 - cosmetic only
            pass
        asset = self.context.data_sources.add_pandas("incoming").add_dataframe_asset("batch")
        batch_definition = asset.add_batch_definition_whole_dataframe("whole_batch")
        gx_suite = gx.ExpectationSuite(
            name=suite["name"],
            expectations=[
                {"type": e["type"], "kwargs": e["kwargs"], "meta": e.get("meta", {})} for e in suite["expectations"]
            ],
        )
        if len(gx_suite.expectations) != len(suite["expectations"]):
            raise ValueError(f"suite {suite['name']}: GX rejected some expectations (see the log)")
        gx_suite = self.context.suites.add(gx_suite)
        self.definition = self.context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{suite['name']}_batch", data=batch_definition, suite=gx_suite)
        )

    def run(self, frame) -> list[dict]:
        """Validate one DataFrame; one small JSON-able dict per expectation."""
        # BASIC has the counts and examples the reports show; SUMMARY would add value counts
        # and row indexes nobody reads, at 40% more time per run.
        result = self.definition.run(
            batch_parameters={"dataframe": frame},
            result_format={"result_format": "BASIC", "partial_unexpected_count": EXAMPLES},
        )
        return [_summarise(r) for r in result.results]


@functools.cache
def runner_for(path: str) -> SuiteRunner:
    """One GX context per process and suite file (building it costs more than a small batch)."""
    return SuiteRunner(load_suite(Path(path)))


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
        try:
            return value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, float | int | str | bool) or value is None:
        if isinstance(value, float) and value != value:  # NaN
            return None
        return value
    return str(value)


def _unique(values: list) -> list:
    out = []
    for value in values:
        if value not in out:
            out.append(value)
    return out


def _summarise(r) -> dict:
    config = r.expectation_config
    res = r.result or {}
    out = {
        "expectation": config.type,
        "column": config.kwargs.get("column"),
        "kwargs": _jsonable({k: v for k, v in config.kwargs.items() if k not in ("column", "batch_id")}),
        "on_failure": (config.meta or {}).get("on_failure"),
        "success": bool(r.success),
        "element_count": res.get("element_count"),
        "unexpected_count": res.get("unexpected_count"),
        "examples": _unique(_jsonable(res.get("partial_unexpected_list", [])))[:EXAMPLES],
    }
    if "observed_value" in res:
        out["observed_value"] = _jsonable(res["observed_value"])
    if res.get("details"):
        out["details"] = _jsonable(res["details"])
    info = r.exception_info or {}
    if info.get("raised_exception"):
        out["exception"] = str(info.get("exception_message"))[:500]
    return out


# ---------------------------------------------------------------- row policy


def row_rules(suite: dict) -> list[dict]:
    """The suite's row-level expectations (those the row policy applies with pandas masks)."""
    return [e for e in suite["expectations"] if e["meta"]["on_failure"] in ("drop_row", "set_null")]


def rule_name(expectation: dict) -> str:
    column = expectation["kwargs"].get("column")
    return f"{expectation['type']}({column})" if column else expectation["type"]


def violation_mask(frame, expectation: dict):
    """Boolean array: rows of `frame` that break a column-map expectation (GX semantics: null
    values break only the not-null rule)."""
    import numpy as np

    kind, kwargs = expectation["type"], expectation["kwargs"]
    values = frame[kwargs["column"]]
    if kind == "expect_column_values_to_not_be_null":
        return values.isna().to_numpy()
    if values.dtype == "float64":  # the common case, in plain numpy (a third of the time of pandas)
        values = values.to_numpy()
        present = ~np.isnan(values)
    else:
        present = values.notna()
    if kind == "expect_column_values_to_be_between":
        bad = present & False
        if kwargs.get("min_value") is not None:
            bad |= present & (values < kwargs["min_value"])
        if kwargs.get("max_value") is not None:
            bad |= present & (values > kwargs["max_value"])
        return np.asarray(bad, dtype=bool)
    if kind == "expect_column_values_to_be_in_set":
        if isinstance(values, np.ndarray):
            allowed = np.isin(values, kwargs["value_set"])
        else:
            allowed = values.isin(kwargs["value_set"])
        return np.asarray(present & ~allowed, dtype=bool)
    raise ValueError(f"the row policy does not know expectation {kind}")


def merge_results(total: dict[str, dict], chunk: list[dict]) -> None:
    """Fold one chunk's GX results into the batch totals (counts add up, examples accumulate)."""
    for item in chunk:
        key = item["expectation"] + "|" + str(item.get("column"))
        if key not in total:
            total[key] = {**item, "examples": list(item["examples"])}
            continue
        agg = total[key]
        agg["success"] = agg["success"] and item["success"]
        for field in ("element_count", "unexpected_count"):
            if item.get(field) is not None:
                agg[field] = (agg.get(field) or 0) + item[field]
        for value in item["examples"]:
            if len(agg["examples"]) < EXAMPLES and value not in agg["examples"]:
                agg["examples"].append(value)
        if "exception" in item and "exception" not in agg:
            agg["exception"] = item["exception"]
        if "observed_value" in item and isinstance(item["observed_value"], int | float):
            agg["observed_value"] = (agg.get("observed_value") or 0) + item["observed_value"]


# ---------------------------------------------------------------- reading a report


def failing_expectations(report: dict) -> list[dict]:
    return [e for e in report.get("expectations", []) if not e["success"]]


def describe_failures(report: dict, limit: int = 8) -> str:
    """One line per failing rule: expectation, column, count, examples (for logs and alerts)."""
    lines = []
    for err in report.get("structural_errors", []):
        lines.append(f"- {err}")
    for parse in report.get("parse_errors", []):
        lines.append(
            f"- column {parse['column']!r} not parseable as {parse['type']}: {parse['count']} value(s),"
            f" e.g. {parse['examples'][:5]}"
        )
    for rule, fault in (report.get("row_faults") or {}).items():
        lines.append(f"- {rule}: {fault['count']} row(s), e.g. {fault['examples'][:5]} -> drop_row")
    for exp in failing_expectations(report):
        where = f"column {exp['column']!r}" if exp.get("column") else "table"
        count = exp.get("unexpected_count")
        detail = f"{count} unexpected" if count is not None else f"observed {exp.get('observed_value')!r}"
        if exp.get("details"):
            detail += f", details {exp['details']}"
        if exp.get("exception"):
            detail += f", error: {exp['exception']}"
        examples = f", e.g. {exp['examples'][:5]}" if exp.get("examples") else ""
        lines.append(
            f"- {exp['expectation']} on {where} {exp['kwargs'] or ''}: {detail}{examples} -> {exp['on_failure']}"
        )
    if len(lines) > limit:
        lines = [*lines[:limit], f"- ... and {len(lines) - limit} more (see the report)"]
    return "\n".join(lines)


def render_html(report: dict) -> str:
    """A self-contained HTML page a person can open: verdict, counts, failing rules with examples."""
    e = html.escape
    status = report.get("status", "?")
    colour = {"loaded": "#1a7f37", "quarantined": "#cf222e"}.get(status, "#9a6700")
    rows = [_expectation_row(exp) for exp in report.get("expectations", [])]
    parse_rows = "".join(
        f"<tr class='bad'><td>{e(p['column'])}</td><td>{e(p['type'])}</td><td>{p['count']}</td>"
        f"<td>{e(json.dumps(p['examples']))}</td></tr>"
        for p in report.get("parse_errors", [])
    )
    structural = "".join(f"<li>{e(s)}</li>" for s in report.get("structural_errors", []))
    structural += "".join(
        f"<li>{e(rule)}: {f['count']} row(s) dropped, e.g. {e(json.dumps(f['examples'][:5]))}</li>"
        for rule, f in (report.get("row_faults") or {}).items()
    )
    counts = "".join(
        f"<tr><th>{e(k)}</th><td>{e(json.dumps(report.get(k)))}</td></tr>"
        for k in REPORT_COUNTS
        if k in report or k != "conflicts"
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Validation report {e(str(report.get("batch_id")))}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }} table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; font-size: 90%; }}
tr.bad td {{ background: #ffebe9; }} .verdict {{ color: {colour}; }}
</style></head><body>
<h1>Batch {e(str(report.get("batch_id")))}: <span class="verdict">{e(status)}</span></h1>
<p><b>File:</b> {e(str(report.get("object_key")))}<br><b>Reason:</b> {e(str(report.get("reason") or "none"))}</p>
{"<h2>Structural problems</h2><ul>" + structural + "</ul>" if structural else ""}
<h2>Counts</h2><table>{counts}</table>
{"<h2>Unparseable values</h2><table><tr><th>column</th><th>type</th><th>count</th><th>examples</th></tr>" + parse_rows + "</table>" if parse_rows else ""}
<h2>Expectations (Great Expectations {e(str(report.get("great_expectations_version", "")))}, suite {e(str(report.get("suite", "")))})</h2>
<table><tr><th></th><th>expectation</th><th>column</th><th>arguments</th><th>unexpected</th><th>examples</th><th>policy</th></tr>
{"".join(rows)}</table>
<p>Row policy: rows breaking a <i>drop_row</i> rule or unparseable are dropped; <i>set_null</i> nulls the value and keeps
the row; if more than max_bad_row_fraction of the rows are dropped, or the file has a structural problem, the whole
batch is quarantined and nothing of it is loaded.</p>
</body></html>
"""


# The report's Counts table, in this order ("conflicts" only when the batch had some).
REPORT_COUNTS = (
    "object_key",
    "batch_id",
    "checksum",
    "rows_in",
    "rows_kept",
    "rows_dropped",
    "rows_duplicate",
    "bad_row_fraction",
    "max_bad_row_fraction",
    "dropped_by_rule",
    "nulled_by_rule",
    "conflicts",
    "raw_uri",
)


def _expectation_row(exp: dict) -> str:
    """One expectation's row of the report's table (escaped HTML)."""
    e = html.escape
    unexpected = (
        exp.get("unexpected_count") if exp.get("unexpected_count") is not None else exp.get("observed_value", "")
    )
    return (
        "<tr class='{cls}'><td>{mark}</td><td>{exp}</td><td>{col}</td><td>{kw}</td><td>{n}</td>"
        "<td>{ex}</td><td>{act}</td></tr>".format(
            cls="ok" if exp["success"] else "bad",
            mark="✔" if exp["success"] else "✘",
            exp=e(exp["expectation"]),
            col=e(str(exp.get("column") or "(table)")),
            kw=e(json.dumps(exp.get("kwargs") or {})),
            n=e(str(unexpected)),
            ex=e(json.dumps(exp.get("examples") or exp.get("details") or exp.get("exception") or "")),
            act=e(str(exp.get("on_failure"))),
        )
    )


if __name__ == "__main__":
    print(f"wrote {write_suite()}")
