"""Regenerate the bad-input corpus in tests/data/bad/ from the example data.

    python tests/data/make_bad_corpus.py

Each file is small and cut from a different slice of the Turku data, so that the files that
are loaded (per the row policy) do not overlap. manifest.json says what ingest must do with
each file: "quarantined" (with words the reason must contain) or "loaded" (rows dropped).
The very large file is not here: tests generate it at run time.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parents[1] / "include" / "data" / "port_of_turku_weather.csv.gz"
OUT = HERE / "bad"
# Rule names of mlops.ingest's own row rules (kept as text: this script runs without plugins/).
FIELD_COUNT = "field count differs from the header"
FUTURE = "timestamp later than ingest time + validation.future_tolerance_hours"
EARLY = "timestamp earlier than validation.earliest_timestamp"


def _rows() -> tuple[list[str], list[list[str]]]:
    with gzip.open(SOURCE, "rt", encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = sorted(reader)  # by timestamp: slices below are disjoint hours
    return header, rows[-12000:]  # the hourly 2015-2016 part


def _csv(header, rows, delimiter=",", line_end="\n") -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator=line_end)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode()


def build() -> dict:
    header, rows = _rows()
    rng = random.Random(7)
    col = {name: i for i, name in enumerate(header)}
    slices = iter(range(0, len(rows), 100))

    def take(n=100):
        start = next(slices)
        return [list(r) for r in rows[start : start + n]]

    files: dict[str, bytes] = {}
    manifest: dict[str, dict] = {}

    def bad(name, content, *reason):
        files[name] = content
        manifest[name] = {"status": "quarantined", "reason_contains": list(reason)}

    def good(name, content, rows_dropped=0, **extra):
        files[name] = content
        manifest[name] = {"status": "loaded", "rows_dropped": rows_dropped, **extra}

    bad("empty.csv", b"", "empty file")
    bad("header_only.csv", _csv(header, []), "data row")
    bad("semicolon_delimiter.csv", _csv(header, take(), delimiter=";"), "wrong delimiter")
    latin = _csv(header, take()).decode().replace("Port of Turku, Finland", "Åbo hamn, Finland")
    bad("latin1_encoding.csv", latin.encode("latin-1"), "not UTF-8")
    bad("binary_junk.csv", bytes(rng.randrange(256) for _ in range(4096)), "")
    full_gz = gzip.compress(_csv(header, take(400)))
    bad("truncated.csv.gz", full_gz[: len(full_gz) // 2], "gzip")
    rows_ = take()
    drop = col["Humidity"]
    bad(
        "missing_column.csv",
        _csv([h for h in header if h != "Humidity"], [r[:drop] + r[drop + 1 :] for r in rows_]),
        "missing column",
        "Humidity",
    )
    bad(
        "extra_column.csv",
        _csv([*header, "Dew_point_C"], [[*r, "3.5"] for r in take()]),
        "unexpected column",
        "Dew_point_C",
    )
    bad(
        "renamed_column.csv",
        _csv([("Temp_C" if h == "Temperature_C" else h) for h in header], take()),
        "Temperature_C",
        "Temp_C",
    )
    rows_ = take()
    for r in rows_[::3]:
        r[col["Temperature_C"]] = rng.choice(["warm", "n/a", "12,5", "--"])
    bad("text_in_numeric.csv", _csv(header, rows_), "max_bad_row_fraction", "unparseable")
    rows_ = take()
    for r in rows_[::4]:
        r[col["Humidity"]] = "7.5"
    bad("out_of_range.csv", _csv(header, rows_), "max_bad_row_fraction", "Humidity")
    rows_ = take()
    for r in rows_:
        r[col["Temperature_C"]] = ""
    bad("all_null_column.csv", _csv(header, rows_), "no valid rows")
    rows_ = take()
    conflicts = [list(r) for r in rows_[:30]]
    for r in conflicts:
        r[col["Temperature_C"]] = str(float(r[col["Temperature_C"]]) + 5)
    bad("conflicting_duplicates.csv", _csv(header, rows_ + conflicts), "max_bad_row_fraction", "unique")
    rows_ = take()
    for r in rows_:
        y, m, rest = r[0][:4], r[0][5:7], r[0][8:]
        r[0] = f"{rest[:2]}/{m}/{y} {rest[3:8]}"  # 08/08/2015 13:00
    bad("other_time_format.csv", _csv(header, rows_), "no valid rows")
    rows_ = take()
    for r in rows_[::2]:
        r[col["Current_weather_condition"]] = "2"
    bad("disallowed_values.csv", _csv(header, rows_), "max_bad_row_fraction", "Current_weather_condition")
    # Field counts: a row with a field too many or too few is dropped by its own rule, never
    # loaded shifted; too many such rows quarantine the batch.
    text = _csv(header, take()).decode().splitlines()
    text[5] += ",oops,extra"
    good("ragged_rows.csv", ("\n".join(text) + "\n").encode(), rows_dropped=1, dropped_rules=[FIELD_COUNT])
    text = _csv(header, take()).decode().splitlines()
    text[7] = text[7].rsplit(",", 1)[0]  # the trailing empty value left out
    good("short_row.csv", ("\n".join(text) + "\n").encode(), rows_dropped=1, dropped_rules=[FIELD_COUNT])
    text = _csv(header, take()).decode().splitlines()
    text[1] += ",1"  # the first data row: pandas would take the first column as the index
    text[50] = text[50].rsplit(",", 2)[0]
    good("first_row_long.csv", ("\n".join(text) + "\n").encode(), rows_dropped=2, dropped_rules=[FIELD_COUNT])
    text = _csv(header, take()).decode().splitlines()
    for i in range(1, len(text), 5):
        text[i] = text[i].rsplit(",", 1)[0]
    bad("many_short_rows.csv", ("\n".join(text) + "\n").encode(), "max_bad_row_fraction", FIELD_COUNT)
    text = _csv(header, take()).decode().splitlines()
    text[3] = text[3].replace('"Port of Turku, Finland"', '"Port of ""Turku"", Finland\nharbour"')
    good("quoted_newline_and_quotes.csv", ("\n".join(text) + "\n").encode())
    # Strings are read verbatim; only configured markers (dataset.missing_values) mean missing.
    rows_ = take()
    for r, code in zip(rows_, ["02980", "NA", "null", "None", "n/a", "0", "00", "1e5", " x "], strict=False):
        r[col["Location"]] = code
    good("verbatim_strings.csv", _csv(header, rows_))
    # Implausible time: one mistyped year must not become the newest observation.
    rows_ = take()
    rows_[40][0] = "2401" + rows_[40][0][4:]
    rows_[41][0] = "1850" + rows_[41][0][4:]
    good("mistyped_years.csv", _csv(header, rows_), rows_dropped=2, dropped_rules=[FUTURE, EARLY])
    # Other formats named from their first bytes.
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("weather.csv", _csv(header, take(5)))
    bad("zip_archive.csv", zipped.getvalue(), "zip archive")
    xlsx = io.BytesIO()
    with zipfile.ZipFile(xlsx, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
    bad("excel_workbook.csv", xlsx.getvalue(), "Excel workbook")
    bad("gzip_in_gzip.csv.gz", gzip.compress(gzip.compress(_csv(header, take(5)))), "gzip file inside a gzip")
    bad("utf16_bom.csv", _csv(header, take(5)).decode().encode("utf-16"), "UTF-16")
    bad("parquet_named_csv.csv", b"PAR1\x15\x04\x15" + bytes(64), "Parquet")
    bad("pdf_named_csv.csv", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "PDF")
    # Header problems reported as what they are, and bounded.
    bad("duplicated_header.csv", _csv([*header[:-1], "Humidity"], take()), "duplicated column name", "Humidity")
    wide = [*header, *(f"extra_{i}" for i in range(10_000))]
    bad("ten_thousand_extra_columns.csv", _csv(wide, [[*r, *([""] * 10_000)] for r in take(3)]), "and 9995 more")
    bad(
        "html_error_page.csv",
        b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>\n",
        "columns do not match",
    )
    bad(
        "json_named_csv.csv",
        json.dumps([dict(zip(header, r, strict=True)) for r in take(5)]).encode(),
        "columns do not match",
    )
    bad("header_with_spaces.csv", _csv([f" {h}" for h in header], take()), "columns do not match")
    rows_ = take()
    for r in rows_:
        r[col["Wind_speed_kmph"]] = "-5"
    bad("negative_wind_speed.csv", _csv(header, rows_), "no valid rows")
    rows_ = take()
    for r in rows_[::2]:
        r[col["Timestamp"]] = ""
    bad("missing_timestamps.csv", _csv(header, rows_), "max_bad_row_fraction", "Timestamp")

    # Loaded per the row policy: a few bad rows dropped, sensor faults nulled, exact copies collapsed.
    rows_ = take()
    rows_[10][col["Temperature_C"]] = "hot"
    rows_[20][col["Humidity"]] = "3"
    good("few_bad_rows.csv", _csv(header, rows_), rows_dropped=2)
    rows_ = take()
    for r in rows_[::10]:
        r[col["Pressure_millibars"]] = "0"
    good("pressure_zero.csv", _csv(header, rows_), nulled=10)
    rows_ = take()
    good("exact_duplicates.csv", _csv(header, rows_ + rows_[:20]), duplicates=20)
    good("crlf_with_bom.csv", b"\xef\xbb\xbf" + _csv(header, take(), line_end="\r\n"))
    return {"files": files, "manifest": manifest}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    built = build()
    for name, content in built["files"].items():
        (OUT / name).write_bytes(content)
    (OUT / "manifest.json").write_text(json.dumps(built["manifest"], indent=2) + "\n")
    print(f"wrote {len(built['files'])} files to {OUT}")


if __name__ == "__main__":
    main()
