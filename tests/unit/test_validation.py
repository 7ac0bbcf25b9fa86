"""The expectation suite and the row policy, on local files (no services needed)."""

import json
import logging
from pathlib import Path

import pytest
from helpers import set_config

from mlops.config import get_config
from mlops.ingest import chunks, validation
from mlops.ingest import pipeline as ingest

BAD = Path(__file__).resolve().parents[1] / "data" / "bad"
MANIFEST = json.loads((BAD / "manifest.json").read_text())
TURKU = Path(__file__).resolve().parents[2] / "include" / "data" / "port_of_turku_weather.csv.gz"


def test_committed_suite_matches_the_configuration():
    cfg = get_config()
    committed = json.loads(validation.suite_path().read_text())
    assert committed == validation.build_suite(cfg.dataset, cfg.validation), (
        "include/expectations is out of date: run `python -m mlops.ingest.validation`"
    )


def test_suite_has_a_rule_for_each_configured_constraint():
    suite = validation.load_suite()
    kinds = {(e["type"], e["kwargs"].get("column")) for e in suite["expectations"]}
    assert ("expect_column_values_to_be_between", "Pressure_millibars") in kinds
    assert ("expect_column_values_to_be_in_set", "Current_weather_condition") in kinds
    assert ("expect_column_values_to_not_be_null", "Timestamp") in kinds
    assert ("expect_column_values_to_be_unique", "Timestamp") in kinds
    pressure = next(e for e in suite["expectations"] if e["kwargs"].get("column") == "Pressure_millibars")
    assert pressure["meta"]["on_failure"] == "set_null"


def test_corpus_has_at_least_twenty_bad_files():
    assert sum(1 for v in MANIFEST.values() if v["status"] == "quarantined") >= 20


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_bad_corpus_file(name, tmp_path):
    expected = MANIFEST[name]
    result = ingest.validate_file(BAD / name, tmp_path / "staged.parquet", f"landing/{name}")
    if expected["status"] == "quarantined":
        assert result["status"] == "quarantined", result
        for word in expected["reason_contains"]:
            assert word in result["reason"] + validation.describe_failures(result), (word, result["reason"])
    else:
        assert result["status"] == "passed", result["reason"]
        assert result["rows_dropped"] == expected["rows_dropped"], result["dropped_by_rule"]
        if "duplicates" in expected:
            assert result["rows_duplicate"] == expected["duplicates"]
        if "nulled" in expected:
            assert sum(result["nulled_by_rule"].values()) == expected["nulled"]
        for rule in expected.get("dropped_rules", []):
            assert result["dropped_by_rule"].get(rule), (rule, result["dropped_by_rule"])
    # Reasons stay readable whatever the file (a 10,000-column header included).
    assert len(result["reason"] or "") < 2000
    assert len(validation.describe_failures(result)) < 4000


def test_turku_file_policy(tmp_path):
    """The example data: 14 exact duplicate rows collapse, 335 pressure zeros are nulled, nothing dropped."""
    import pandas as pd

    staged = tmp_path / "staged.parquet"
    result = ingest.validate_file(TURKU, staged, "landing/turku.csv.gz")
    raw = pd.read_csv(TURKU)
    assert result["status"] == "passed"
    assert result["rows_in"] == len(raw)
    assert result["rows_duplicate"] == raw.duplicated().sum()
    assert result["nulled_by_rule"] == {
        "expect_column_values_to_be_between(Pressure_millibars)": int((raw.Pressure_millibars == 0).sum())
    }
    staged_frame = pd.read_parquet(staged)
    assert staged_frame["Timestamp"].is_unique
    assert set(staged_frame["Timestamp"]) == set(raw["Timestamp"])
    failing = validation.failing_expectations(result)
    assert [(e["expectation"], e["column"]) for e in failing] == [
        ("expect_column_values_to_be_between", "Pressure_millibars")
    ]
    assert failing[0]["examples"] == [0.0]


def test_streaming_across_chunks_finds_duplicates(tmp_path, monkeypatch, caplog):
    """With small chunks, duplicates in different chunks are still found: exact copies collapse,
    a timestamp repeated with other values drops every copy."""
    import pandas as pd

    set_config(monkeypatch, MLOPS__VALIDATION__CHUNK_ROWS="1000")
    base = pd.read_csv(TURKU).drop_duplicates("Timestamp").head(1200)
    changed = base.iloc[100:150].copy()
    changed["Temperature_C"] += 5
    frame = pd.concat([base, base.iloc[:100], changed])  # copies land in the second chunk
    path = tmp_path / "dups.csv"
    frame.to_csv(path, index=False)
    staged = tmp_path / "s.parquet"
    with caplog.at_level(logging.INFO, logger="mlops.ingest.chunks"):
        result = ingest.validate_file(path, staged, "landing/dups.csv")
    assert "chunks overlap in time; validating again" in caplog.text  # the second chunk repeats the first's hours
    assert result["rows_in"] == 1350
    assert result["rows_duplicate"] == 100
    assert result["dropped_by_rule"] == {"expect_column_values_to_be_unique(Timestamp) conflicting values": 100}
    kept = pd.read_parquet(staged)
    assert len(kept) == 1150 and kept["Timestamp"].is_unique
    assert not set(changed["Timestamp"]) & set(kept["Timestamp"])


def test_file_in_time_order_needs_no_hash_of_every_row(tmp_path, monkeypatch, caplog):
    """Chunks that do not overlap in time are checked for duplicates chunk by chunk, in one
    pass, with the same result as the pass that keeps every row's hash."""
    import pandas as pd

    set_config(monkeypatch, MLOPS__VALIDATION__CHUNK_ROWS="1000")
    base = pd.read_csv(TURKU).drop_duplicates("Timestamp").head(3000)
    base["Timestamp"] = pd.to_datetime(base["Timestamp"])
    base = base.sort_values("Timestamp", ascending=False)  # reverse time order overlaps nothing either
    base["Timestamp"] = base["Timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S")
    changed = base.iloc[[10, 1500]].assign(Temperature_C=lambda f: f.Temperature_C + 5)
    # An exact copy and a conflicting copy next to their originals, in the first and second chunk.
    frame = pd.concat(
        [
            base.iloc[:5],
            base.iloc[[3]],
            base.iloc[5:11],
            changed.iloc[[0]],
            base.iloc[11:1501],
            changed.iloc[[1]],
            base.iloc[1501:],
        ]
    )
    path = tmp_path / "ordered.csv"
    frame.to_csv(path, index=False)
    with caplog.at_level(logging.INFO, logger="mlops.ingest.chunks"):
        one_pass = ingest.validate_file(path, tmp_path / "one.parquet", "landing/ordered.csv")
    assert "chunks overlap in time" not in caplog.text
    timings = {"parse": 0.0, "validate": 0.0, "stage": 0.0}
    every_row = chunks._validate_pass(path, tmp_path / "every.parquet", "landing/ordered.csv", timings, True)
    assert one_pass["rows_in"] == 3003 and one_pass["rows_duplicate"] == 1
    assert one_pass["dropped_by_rule"]["expect_column_values_to_be_unique(Timestamp) conflicting values"] == 4
    assert {k: v for k, v in one_pass.items() if k != "gx_note"} == {
        k: v for k, v in every_row.items() if k != "gx_note"
    }
    one, every = pd.read_parquet(tmp_path / "one.parquet"), pd.read_parquet(tmp_path / "every.parquet")
    assert len(one) == 2998 and one.equals(every)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("landing/plain.csv", "plain.csv"),
        ("landing/with space.csv", "with_space.csv"),
        ("landing/säätila 2016 ☂.csv", "saatila_2016_.csv"),
        ("landing/../../etc/passwd", "passwd"),
        ("landing/..", "file"),
        ("landing/a..b...csv", "a.b.csv"),
    ],
)
def test_safe_name_never_escapes(key, expected):
    name = ingest.safe_name(key)
    assert name == expected
    assert "/" not in name and ".." not in name


def test_html_report_escapes_values():
    page = validation.render_html({"batch_id": "b", "object_key": "<script>x</script>", "status": "quarantined"})
    assert "<script>x" not in page and "&lt;script&gt;" in page


@pytest.mark.parametrize("name", sorted(n for n, v in MANIFEST.items() if v["status"] == "loaded"))
def test_every_staged_row_is_a_file_row_under_the_declared_types(name, tmp_path):
    """No row is staged with a value from another column, a guessed type or a guessed null."""
    import csv_oracle

    dataset = get_config().dataset
    staged = tmp_path / "staged.parquet"
    result = ingest.validate_file(BAD / name, staged, f"landing/{name}")
    assert result["status"] == "passed", result["reason"]
    expected = csv_oracle.file_rows(BAD / name, dataset)
    rows = csv_oracle.staged_rows(staged, dataset)
    assert len(rows) == result["rows_kept"]
    strays = [row for row in rows if row not in expected]
    assert not strays, strays[:3]
    assert result["rows_in"] == result["rows_kept"] + result["rows_dropped"] + result["rows_duplicate"]


def test_strings_are_verbatim_and_only_configured_markers_are_missing(tmp_path):
    import pyarrow.parquet as pq

    staged = tmp_path / "staged.parquet"
    ingest.validate_file(BAD / "verbatim_strings.csv", staged, "landing/verbatim_strings.csv")
    locations = pq.read_table(staged, columns=["Location"]).column(0).to_pylist()
    assert locations[:9] == ["02980", "NA", "null", "None", "n/a", "0", "00", "1e5", " x "]


def test_field_count_violations_name_row_line_and_counts(tmp_path):
    result = ingest.validate_file(BAD / "short_row.csv", tmp_path / "s.parquet", "landing/short_row.csv")
    fault = result["row_faults"][chunks.FIELD_COUNT_RULE]
    assert fault["count"] == 1
    assert fault["examples"] == [{"row": 7, "line": 8, "expected": 10, "found": 9}]
    assert chunks.FIELD_COUNT_RULE in validation.describe_failures(result)


@pytest.fixture()
def configure(monkeypatch):
    """Override configuration keys (MLOPS__ environment) for one test."""

    def apply(**keys):
        set_config(monkeypatch, **{f"MLOPS__{name.upper()}": value for name, value in keys.items()})

    return apply


def _file_with_times(path: Path, times: list[str]) -> Path:
    import csv

    with open(BAD / "crlf_with_bom.csv", encoding="utf-8-sig", newline="") as source:
        reader = csv.reader(source)
        header, rows = next(reader), list(reader)
    with open(path, "w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows([[stamp, *row[1:]] for stamp, row in zip(times, rows, strict=False)])
    return path


def _staged_times(staged: Path) -> list[str]:
    import pyarrow.parquet as pq

    return pq.read_table(staged, columns=["Timestamp"]).column(0).to_pylist()


def test_offsets_are_honoured_across_a_daylight_saving_change(configure, tmp_path):
    """Helsinki went from +02:00 to +03:00 on 2021-03-28: one file holds both offsets."""
    configure(dataset__time_format="'%Y-%m-%d %H:%M:%S%z'")
    times = [f"2021-03-28 0{h}:00:00+02:00" for h in range(3)] + [f"2021-03-28 0{h}:00:00+03:00" for h in range(4, 8)]
    path = _file_with_times(tmp_path / "offsets.csv", times)
    result = ingest.validate_file(path, tmp_path / "s.parquet", "landing/offsets.csv")
    assert result["status"] == "passed", result["reason"]
    assert _staged_times(tmp_path / "s.parquet") == [
        "2021-03-27 22:00:00",
        "2021-03-27 23:00:00",
        "2021-03-28 00:00:00",
        "2021-03-28 01:00:00",
        "2021-03-28 02:00:00",
        "2021-03-28 03:00:00",
        "2021-03-28 04:00:00",
    ]


def test_naive_local_times_use_the_zone_and_ambiguous_or_missing_hours_are_row_faults(configure, tmp_path):
    configure(dataset__time_zone="Europe/Helsinki", validation__max_bad_row_fraction="0.1")
    spring = [f"2021-03-28 {h:02d}:00:00" for h in range(24)]  # 03:00 does not exist
    autumn = [f"2021-10-31 {h:02d}:00:00" for h in range(24)]  # 03:00 happens twice
    path = _file_with_times(tmp_path / "local.csv", spring + autumn)
    result = ingest.validate_file(path, tmp_path / "s.parquet", "landing/local.csv")
    assert result["status"] == "passed", result["reason"]
    assert result["dropped_by_rule"] == {chunks.ZONE_RULE: 2}
    assert result["row_faults"][chunks.ZONE_RULE]["examples"] == ["2021-03-28 03:00:00", "2021-10-31 03:00:00"]
    staged = _staged_times(tmp_path / "s.parquet")
    assert staged[:3] == ["2021-03-27 22:00:00", "2021-03-27 23:00:00", "2021-03-28 00:00:00"]
    assert staged[3] == "2021-03-28 01:00:00"  # 04:00 EEST, right after the skipped hour
    assert "2021-10-30 23:00:00" in staged and "2021-10-31 02:00:00" in staged  # 02:00 EEST, 04:00 EET
    assert "2021-10-31 00:00:00" not in staged and "2021-10-31 01:00:00" not in staged  # 03:00, either one


def test_implausible_years_are_dropped_by_their_own_rules(tmp_path):
    result = ingest.validate_file(BAD / "mistyped_years.csv", tmp_path / "s.parquet", "landing/m.csv")
    assert result["row_faults"][chunks.FUTURE_RULE]["examples"][0].startswith("2401-")
    assert result["row_faults"][chunks.EARLY_RULE]["examples"][0].startswith("1850-")
    assert max(_staged_times(tmp_path / "s.parquet")) < "2100"


@pytest.mark.parametrize("key", ["landing/a.csv", "landing/" + "x" * 1000 + ".csv", "landing/" + "ä☂" * 400])
def test_task_labels_from_long_keys_fit_airflow(key):
    label = ingest.task_label(key, " (+7 more)")
    assert len(label) <= 200 and label.endswith(" (+7 more)")
    assert label.startswith(key[:20]) and (len(key) < 190 or "…" in label)
