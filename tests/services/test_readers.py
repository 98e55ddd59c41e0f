"""The streaming readers, on in-memory files: formats, column detection, and the errors that name
what is wrong with a file."""

from __future__ import annotations

import io
import json

import pytest

from labella.errors import ImportFailed, PayloadTooLarge
from labella.services.readers import (
    CountingReader,
    Record,
    RecordReader,
    detect_format,
    format_bytes,
    scan_labels,
)


def read(data: str | bytes, fmt: str, **options: object) -> tuple[RecordReader, list[Record]]:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    reader = RecordReader(io.BytesIO(raw), fmt=fmt, **options)  # type: ignore[arg-type]
    return reader, list(reader)


def failure(data: str | bytes, fmt: str, **options: object) -> str:
    with pytest.raises(ImportFailed) as caught:
        read(data, fmt, **options)
    return caught.value.message


# -- formats -------------------------------------------------------------------------------------
def test_csv_with_text_label_id_and_extra_columns() -> None:
    reader, records = read(
        'id,review,label,stars\nr1,Great film,positive,5\nr2,"Dull, long",negative,1\n', "csv"
    )
    assert (reader.text_field, reader.label_field, reader.id_field) == ("review", "label", "id")
    assert records == [
        Record(2, "Great film", ["positive"], "r1", {"stars": "5"}),
        Record(3, "Dull, long", ["negative"], "r2", {"stars": "1"}),
    ]


def test_csv_quoted_newlines_keep_the_starting_line_number() -> None:
    _, records = read('text\n"first\nsecond"\nthird\n', "csv")
    assert [(r.line, r.text) for r in records] == [(2, "first\nsecond"), (4, "third")]


def test_tsv_with_header_like_sst2() -> None:
    reader, records = read(
        "sentence\tlabel\nwhen are bears bears and \t1\nkids , spirit \t1\n", "tsv"
    )
    assert reader.text_field == "sentence"
    assert records[0] == Record(2, "when are bears bears and ", ["1"], None, None)


def test_headerless_tsv_two_columns_is_text_then_label_like_ag_news() -> None:
    data = (
        "Toshiba Corp. announced a hard drive.\tSci/Tech\n"
        '"Allawi said ""major neglect"" by forces."\tWorld\n'
    )
    reader, records = read(data, "tsv", has_header=False)
    assert (reader.text_field, reader.label_field) == ("1", "2")
    assert [(r.text, r.labels) for r in records] == [
        ("Toshiba Corp. announced a hard drive.", ["Sci/Tech"]),
        ('Allawi said "major neglect" by forces.', ["World"]),
    ]


def test_headerless_columns_can_be_chosen_by_number() -> None:
    _, records = read(
        "World\tsome headline\n", "tsv", has_header=False, text_field="2", label_field="1"
    )
    assert (records[0].text, records[0].labels) == ("some headline", ["World"])


def test_semicolon_csv_from_a_spreadsheet() -> None:
    reader, records = read("text;label\nbonjour;positive\n", "csv")
    assert (reader.text_field, records[0].text, records[0].labels) == (
        "text",
        "bonjour",
        ["positive"],
    )


def test_jsonl_with_label_list_id_and_meta() -> None:
    lines = [
        {"id": 7, "text": "Storm warning", "labels": ["urgent", "weather"], "source": "sms"},
        {"id": "x", "text": "All fine", "labels": []},
        {"text": "Numbers", "labels": "weather"},
    ]
    data = "\n".join(json.dumps(x) for x in lines) + "\n\n"
    reader, records = read(data, "jsonl")
    assert (reader.text_field, reader.label_field, reader.id_field) == ("text", "labels", "id")
    assert records == [
        Record(1, "Storm warning", ["urgent", "weather"], "7", {"source": "sms"}),
        Record(2, "All fine", None, "x", None),
        Record(3, "Numbers", ["weather"], None, None),
    ]


def test_plain_text_is_one_item_per_line() -> None:
    reader, records = read("first line\r\n\nthird line", "txt")
    assert reader.text_field == "line"
    assert [(r.line, r.text) for r in records] == [(1, "first line"), (2, ""), (3, "third line")]


def test_utf8_bom_is_accepted_and_unicode_kept() -> None:
    _, records = read("\ufefftext,label\nnaïve café ☕,positive\n".encode(), "csv")
    assert records[0].text == "naïve café ☕"


def test_multi_label_separator_in_csv_is_configurable() -> None:
    _, records = read("text,labels\na,x|y\nb,x; y\n", "csv")
    assert [r.labels for r in records] == [["x", "y"], ["x; y"]]
    _, records = read("text,labels\na,x;y\n", "csv", label_separator=";")
    assert records[0].labels == ["x", "y"]


def test_auto_detection_prefers_the_named_columns_and_falls_back_to_the_only_column() -> None:
    reader, _ = read("body,category,external_id,id\nhi,a,e1,9\n", "csv")
    assert (reader.text_field, reader.label_field, reader.id_field) == (
        "body",
        "category",
        "external_id",
    )
    reader, records = read("comment\nhello\n", "csv")
    assert reader.text_field == "comment" and records[0].labels is None
    reader, _ = read("comment,label\nhello,a\n", "csv")
    assert reader.text_field == "comment"


def test_large_csv_field_is_read() -> None:
    big = "word " * 60_000  # 300 kB, over csv's default 128 KiB field limit
    _, records = read(f'text\n"{big}"\n', "csv")
    assert records[0].text == big


def test_format_from_extension_or_explicit_name() -> None:
    assert detect_format("data.CSV") == "csv"
    assert detect_format("data.ndjson") == "jsonl"
    assert detect_format("data.tsv") == "tsv"
    assert detect_format("notes.txt") == "txt"
    assert detect_format("export.dat", "TSV") == "tsv"
    with pytest.raises(ImportFailed, match=r"'\.xlsx'.*supported formats: csv, tsv, jsonl"):
        detect_format("book.xlsx")
    with pytest.raises(ImportFailed, match="unknown format 'xml'"):
        detect_format("a.csv", "xml")


def test_scan_labels_lists_distinct_labels_in_order() -> None:
    data = b"text,label\na,pos\nb,neg\nc,pos\nd,\n"
    assert scan_labels(io.BytesIO(data), filename="x.csv") == ["pos", "neg"]


# -- errors that name the problem ----------------------------------------------------------------
def test_missing_named_column_lists_the_columns_found() -> None:
    message = failure("text,label\na,b\n", "csv", label_field="sentiment")
    assert "missing label column 'sentiment'" in message
    assert "'text', 'label'" in message


def test_text_column_that_cannot_be_guessed() -> None:
    message = failure("title,summary\na,b\n", "csv")
    assert "cannot tell which column holds the text" in message and "'title', 'summary'" in message


def test_wrong_column_count_names_the_line() -> None:
    message = failure("text,label\nok,a\ntoo,many,cells\n", "csv")
    assert message.startswith("line 3 has 3 columns, expected 2")


def test_bad_json_names_the_line() -> None:
    message = failure('{"text": "ok"}\n{"text": "broken"\n', "jsonl")
    assert message.startswith("line 2 is not valid JSON")
    assert "line 1: expected a JSON object" in failure('["a list"]\n', "jsonl")


def test_jsonl_row_without_the_text_field() -> None:
    assert "line 2 has no field 'text'" in failure('{"text": "a"}\n{"body": "b"}\n', "jsonl")


def test_bad_encoding_names_the_line() -> None:
    data = b"text\nfine\n" + "caf\xe9 latin-1\n".encode("latin-1")
    assert "not valid UTF-8 near line 3" in failure(data, "csv")
    assert "UTF-16" in failure("text\nhi\n".encode("utf-16"), "csv")


def test_empty_files() -> None:
    for fmt in ("csv", "tsv", "jsonl", "txt"):
        assert "empty" in failure(b"", fmt), fmt
    assert "header row but no data rows" in failure("text,label\n", "csv")
    assert "empty" in failure("\n\n", "jsonl")


def test_overlong_id_is_refused() -> None:
    assert "line 2: the id is 201 characters" in failure(f"id,text\n{'x' * 201},hi\n", "csv")


def test_counting_reader_enforces_the_limit_and_reports_progress() -> None:
    seen: list[int] = []
    reader = CountingReader(io.BytesIO(b"x" * 100), limit=100, on_read=seen.append)
    assert reader.read() == b"x" * 100
    assert sum(seen) == 100 and reader.bytes_read == 100
    with pytest.raises(PayloadTooLarge, match=r"limit of 99 bytes"):
        CountingReader(io.BytesIO(b"x" * 100), limit=99).read()
    assert format_bytes(512 * 1024 * 1024) == "512.0 MiB (536,870,912 bytes)"
