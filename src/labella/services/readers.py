"""Streaming readers for import files: CSV, TSV, JSONL and plain text (one item per line).

A reader takes a binary file object and yields one :class:`Record` per data row, never holding more
than the current row. Bytes are split into physical lines first and each line is decoded on its
own, so a decoding error names the exact line; CSV/TSV rows that span lines (quoted newlines) are
assembled by the ``csv`` module from those decoded lines.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import IO, Any, Protocol

from labella.errors import ImportFailed, PayloadTooLarge

SUPPORTED_FORMATS = ("csv", "tsv", "jsonl", "txt")
EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".txt": "txt",
}
FORMAT_ALIASES = {"ndjson": "jsonl", "text": "txt", "tab": "tsv"}

TEXT_CANDIDATES = ("text", "sentence", "content", "body", "review")
LABEL_CANDIDATES = ("label", "labels", "class", "category")
# `external_id` first: an exported file carries both our item id and the original external id,
# and it is the original one that should survive a round trip.
ID_CANDIDATES = ("external_id", "id")

MAX_EXTERNAL_ID = 200  # the width of item.external_id

# Python's csv module refuses fields over 128 KiB by default; a long document in one cell is
# legitimate. The upload size limit already bounds memory, so the csv limit only has to be roomy.
CSV_FIELD_LIMIT = 64 * 1024 * 1024

_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


@dataclass(frozen=True, slots=True)
class Record:
    """One data row. ``line`` is the (1-based, physical) line where the row starts; ``labels`` is
    None when the row carries no label; ``meta`` holds the columns that are neither text, label
    nor id (None when there are none)."""

    line: int
    text: str
    labels: list[str] | None
    external_id: str | None
    meta: dict[str, Any] | None


def supported_formats_text() -> str:
    return "csv, tsv, jsonl (or .ndjson), txt (one item per line)"


def detect_format(filename: str | None, fmt: str | None = None) -> str:
    """The format named explicitly, else the one the filename's extension implies."""
    if fmt:
        name = fmt.strip().lower().lstrip(".")
        name = FORMAT_ALIASES.get(name, name)
        if name not in SUPPORTED_FORMATS:
            raise ImportFailed(
                f"unknown format {fmt!r}; supported formats: {supported_formats_text()}"
            )
        return name
    suffix = PurePath(filename or "").suffix.lower()
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    shown = f"extension {suffix!r}" if suffix else "no extension"
    raise ImportFailed(
        f"cannot tell the format of {filename or 'the file'!r} ({shown}); supported formats: "
        f"{supported_formats_text()}; or name the format explicitly"
    )


class ByteSource(Protocol):
    """Anything with a binary ``read``: an open file, an upload's spooled file, a socket."""

    def read(self, size: int = -1, /) -> bytes | None: ...


class CountingReader(io.RawIOBase):
    """A read-only wrapper that counts the bytes read through it, refuses to go past ``limit``
    (PayloadTooLarge) and reports each read to ``on_read`` (a progress bar)."""

    def __init__(
        self,
        raw: ByteSource,
        *,
        limit: int | None = None,
        on_read: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__()
        self._raw = raw
        self.limit = limit
        self.on_read = on_read
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._raw.read(len(view)) or b""
        n = len(data)
        view[:n] = data
        self.bytes_read += n
        if self.limit is not None and self.bytes_read > self.limit:
            raise PayloadTooLarge(
                f"the file is larger than the upload limit of {format_bytes(self.limit)}; "
                "split it into smaller files",
                details={"limit_bytes": self.limit},
            )
        if self.on_read is not None and n:
            self.on_read(n)
        return n


def format_bytes(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            text = f"{int(size)} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
            return text if unit == "bytes" else f"{text} ({n:,} bytes)"
        size /= 1024
    raise AssertionError("unreachable")


def decoded_lines(stream: IO[bytes]) -> Iterator[str]:
    """Lines of a UTF-8 file, decoded one at a time, line endings kept (as csv wants them).

    Splitting on ``\\n`` before decoding is safe for UTF-8: that byte never occurs inside a
    multi-byte character.
    """
    for number, raw_line in enumerate(stream, start=1):
        raw = raw_line
        if number == 1:
            if raw.startswith(_UTF8_BOM):
                raw = raw[len(_UTF8_BOM) :]
            elif raw.startswith(_UTF16_BOMS):
                raise ImportFailed(
                    "file is not valid UTF-8 near line 1: it looks like UTF-16; "
                    "save it as UTF-8 and import again"
                )
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ImportFailed(
                f"file is not valid UTF-8 near line {number} (byte {exc.start} of that line); "
                "save it as UTF-8 and import again",
                details={"line": number},
            ) from exc


class RecordReader:
    """Iterates the records of one file. Construction reads nothing; the first iteration step
    reads the header (or first object) and resolves which fields hold text, label and id, which
    are then available as ``text_field`` / ``label_field`` / ``id_field``."""

    def __init__(
        self,
        stream: IO[bytes],
        *,
        fmt: str,
        text_field: str | None = None,
        label_field: str | None = None,
        id_field: str | None = None,
        has_header: bool = True,
        label_separator: str = "|",
        text_candidates: Sequence[str] = TEXT_CANDIDATES,
    ) -> None:
        """``text_candidates``: column names taken as the text column when ``text_field`` is
        not given (an image listing looks for its path column this way)."""
        if fmt not in SUPPORTED_FORMATS:
            raise ImportFailed(
                f"unknown format {fmt!r}; supported formats: {supported_formats_text()}"
            )
        self.stream = stream
        self.fmt = fmt
        self.text_field = _blank_to_none(text_field)
        self.label_field = _blank_to_none(label_field)
        self.id_field = _blank_to_none(id_field)
        self.has_header = has_header
        self.label_separator = label_separator
        self.text_candidates = tuple(text_candidates)
        self.columns: list[str] = []

    def __iter__(self) -> Iterator[Record]:
        if self.fmt == "txt":
            return self._read_text()
        if self.fmt == "jsonl":
            return self._read_jsonl()
        return self._read_delimited()

    # -- plain text --------------------------------------------------------------------------
    def _read_text(self) -> Iterator[Record]:
        self.text_field = "line"
        self.columns = ["line"]
        number = 0
        for number, line in enumerate(decoded_lines(self.stream), start=1):
            yield Record(number, line.rstrip("\r\n"), None, None, None)
        if number == 0:
            raise ImportFailed("the file is empty: it has no lines")

    # -- CSV / TSV ---------------------------------------------------------------------------
    def _read_delimited(self) -> Iterator[Record]:
        if csv.field_size_limit() < CSV_FIELD_LIMIT:
            csv.field_size_limit(CSV_FIELD_LIMIT)
        lines = _PeekableLines(decoded_lines(self.stream))
        delimiter = "\t" if self.fmt == "tsv" else _csv_delimiter(lines.peek())
        reader = csv.reader(lines, delimiter=delimiter)
        header: list[str] | None = None
        text_i = label_i = id_i = -1
        extra: list[tuple[int, str]] = []
        width = 0
        start = 1
        data_rows = 0
        separator = self.label_separator
        try:
            for row in reader:
                line = start
                start = reader.line_num + 1
                if not row:  # a blank line is not a row
                    continue
                if header is None:
                    if self.has_header:
                        header = [name.strip() for name in row]
                        self._check_header(header)
                        text_i, label_i, id_i = self._resolve_columns(header)
                        width = len(header)
                        extra = _extra_columns(header, text_i, label_i, id_i)
                        continue
                    header = [str(i) for i in range(1, len(row) + 1)]
                    text_i, label_i, id_i = self._resolve_columns(header)
                    width = len(header)
                    extra = _extra_columns(header, text_i, label_i, id_i)
                if len(row) == 1 and width > 1 and not row[0].strip():
                    # a line of only spaces: an empty row (reported), not a malformed one
                    data_rows += 1
                    yield Record(line, "", None, None, None)
                    continue
                if len(row) != width:
                    source = "the header has" if self.has_header else "the first row has"
                    raise ImportFailed(
                        f"line {line} has {len(row)} column{'s' if len(row) != 1 else ''}, "
                        f"expected {width} ({source} {width}: {_list(header)})",
                        details={"line": line},
                    )
                labels = None
                if label_i >= 0:
                    value = row[label_i].strip()
                    if value:
                        labels = _split_labels(value, separator)
                external_id = None
                if id_i >= 0:
                    external_id = _check_id(row[id_i].strip(), line)
                meta = {name: row[i] for i, name in extra} if extra else None
                data_rows += 1
                yield Record(line, row[text_i], labels, external_id, meta)
        except csv.Error as exc:
            raise ImportFailed(
                f"line {reader.line_num}: malformed {self.fmt.upper()} ({exc})",
                details={"line": reader.line_num},
            ) from exc
        if header is None:
            raise ImportFailed("the file is empty: it has no rows")
        if data_rows == 0:
            raise ImportFailed("the file is empty: it has a header row but no data rows")

    def _check_header(self, header: list[str]) -> None:
        blank = [str(i + 1) for i, name in enumerate(header) if not name]
        if blank and len(header) > 1:
            raise ImportFailed(
                f"the header row has empty column names (column {', '.join(blank)}); "
                "name every column, or import with has_header off / --no-header"
            )
        repeated = sorted({n for n in header if header.count(n) > 1})
        if repeated:
            raise ImportFailed(f"the header row repeats column names: {', '.join(repeated)}")

    def _resolve_columns(self, header: list[str]) -> tuple[int, int, int]:
        self.columns = list(header)
        id_i = self._find_optional(header, self.id_field, ID_CANDIDATES, kind="id")
        label_i = self._find_optional(header, self.label_field, LABEL_CANDIDATES, kind="label")
        if self.text_field is not None:
            text_i = _find_column(
                header, self.text_field, kind="text", headerless=not self.has_header
            )
        else:
            text_i = _auto_column(header, self.text_candidates)
            if text_i < 0:
                text_i = self._only_remaining(header, {label_i, id_i})
        # An explicitly named text column wins over a column merely guessed to be label or id.
        if text_i == label_i and self.label_field is None:
            label_i = -1
        if text_i == id_i and self.id_field is None:
            id_i = -1
        if text_i in (label_i, id_i):
            raise ImportFailed(
                f"the text column {header[text_i]!r} cannot also be the label or id column"
            )
        self.text_field = header[text_i]
        self.label_field = header[label_i] if label_i >= 0 else None
        self.id_field = header[id_i] if id_i >= 0 else None
        return text_i, label_i, id_i

    def _find_optional(
        self, header: list[str], named: str | None, candidates: Sequence[str], *, kind: str
    ) -> int:
        if named is not None:
            return _find_column(header, named, kind=kind, headerless=not self.has_header)
        if not self.has_header:
            # Headerless files: column 1 is the text and, with exactly two columns, column 2 the
            # label (AG News style `text<TAB>label`); ids must be named.
            if candidates is LABEL_CANDIDATES and len(header) == 2:
                return 1
            return -1
        return _auto_column(header, candidates)

    def _only_remaining(self, header: list[str], taken: set[int]) -> int:
        remaining = [i for i in range(len(header)) if i not in taken]
        if remaining and (len(remaining) == 1 or not self.has_header):
            return remaining[0]  # headerless: the first free column
        raise ImportFailed(
            f"cannot tell which column holds the text; columns found: {_list(header)}. "
            f"Name one {', '.join(self.text_candidates)}, or choose it with text_field / "
            "--text-field"
        )

    # -- JSON lines --------------------------------------------------------------------------
    def _read_jsonl(self) -> Iterator[Record]:
        resolved = False
        text_key = label_key = id_key = ""
        seen_any = False
        for number, line in enumerate(decoded_lines(self.stream), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ImportFailed(
                    f"line {number} is not valid JSON ({exc.msg} at column {exc.colno})",
                    details={"line": number},
                ) from exc
            if not isinstance(obj, dict):
                raise ImportFailed(
                    f"line {number}: expected a JSON object per line, got {type(obj).__name__}",
                    details={"line": number},
                )
            seen_any = True
            if not resolved:
                text_key, label_key, id_key = self._resolve_keys(list(obj))
                resolved = True
            if text_key not in obj:
                raise ImportFailed(
                    f"line {number} has no field {text_key!r} (fields found: {_list(list(obj))})",
                    details={"line": number},
                )
            text = _json_text(obj[text_key], text_key, number)
            labels = _json_labels(obj.get(label_key), number) if label_key else None
            external_id = None
            if id_key and obj.get(id_key) is not None:
                value = obj[id_key]
                if isinstance(value, dict | list):
                    raise ImportFailed(
                        f"line {number}: field {id_key!r} must be a string or number"
                    )
                external_id = _check_id(str(value).strip(), number)
            used = (text_key, label_key, id_key)
            meta = {k: v for k, v in obj.items() if k not in used} or None
            yield Record(number, text, labels, external_id, meta)
        if not seen_any:
            raise ImportFailed("the file is empty: it has no rows")

    def _resolve_keys(self, keys: list[str]) -> tuple[str, str, str]:
        self.columns = list(keys)

        def named(field: str | None, kind: str) -> str | None:
            if field is None:
                return None
            if field in keys:
                return field
            folded = {k.lower(): k for k in keys}
            if field.lower() in folded:
                return folded[field.lower()]
            raise ImportFailed(
                f"the {kind} field {field!r} is missing from the first row; "
                f"fields found: {_list(keys)}"
            )

        id_key = named(self.id_field, "id") or _auto_key(keys, ID_CANDIDATES)
        label_key = named(self.label_field, "label") or _auto_key(keys, LABEL_CANDIDATES)
        text_key = named(self.text_field, "text") or _auto_key(keys, self.text_candidates)
        if not text_key:
            remaining = [k for k in keys if k not in (label_key, id_key)]
            if len(remaining) != 1:
                raise ImportFailed(
                    f"cannot tell which field holds the text; fields found: {_list(keys)}. "
                    f"Name one {', '.join(self.text_candidates)}, "
                    "or choose it with text_field / --text-field"
                )
            text_key = remaining[0]
        if text_key in (label_key, id_key):
            raise ImportFailed(f"the text field {text_key!r} cannot also be the label or id field")
        self.text_field = text_key
        self.label_field = label_key or None
        self.id_field = id_key or None
        return text_key, label_key or "", id_key or ""


class _PeekableLines:
    """An iterator of lines whose first line can be looked at before csv consumes it."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self._first: str | None = None
        self._peeked = False

    def peek(self) -> str:
        if not self._peeked:
            self._first = next(self._lines, None)
            self._peeked = True
        return self._first or ""

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if self._peeked:
            self._peeked = False
            first, self._first = self._first, None
            if first is None:
                raise StopIteration
            return first
        return next(self._lines)


def _csv_delimiter(first_line: str) -> str:
    # Spreadsheets in many locales save "CSV" with semicolons; a first line with semicolons and no
    # commas is taken as such rather than as one column named "text;label".
    if "," not in first_line and ";" in first_line:
        return ";"
    return ","


def _blank_to_none(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def _list(names: Sequence[str]) -> str:
    if not names:
        return "(none)"
    shown = ", ".join(repr(n) for n in names[:30])
    return shown + (f", … ({len(names)} in all)" if len(names) > 30 else "")


def _auto_column(header: list[str], candidates: Sequence[str]) -> int:
    folded = [name.lower() for name in header]
    for candidate in candidates:
        if candidate in folded:
            return folded.index(candidate)
    return -1


def _auto_key(keys: list[str], candidates: Sequence[str]) -> str:
    index = _auto_column(keys, candidates)
    return keys[index] if index >= 0 else ""


def _find_column(header: list[str], name: str, *, kind: str, headerless: bool) -> int:
    if name in header:
        return header.index(name)
    folded = [h.lower() for h in header]
    if name.lower() in folded:
        return folded.index(name.lower())
    if headerless:
        raise ImportFailed(
            f"no {kind} column {name!r}: a file without a header has columns numbered "
            f"1 to {len(header)}"
        )
    raise ImportFailed(f"missing {kind} column {name!r}; columns found: {_list(header)}")


def _extra_columns(header: list[str], *used: int) -> list[tuple[int, str]]:
    return [(i, name) for i, name in enumerate(header) if i not in used]


def _split_labels(value: str, separator: str) -> list[str]:
    if not separator or separator not in value:
        return [value]
    return [part.strip() for part in value.split(separator) if part.strip()]


def _check_id(value: str, line: int) -> str | None:
    if not value:
        return None
    if len(value) > MAX_EXTERNAL_ID:
        raise ImportFailed(
            f"line {line}: the id is {len(value)} characters long; ids may have at most "
            f"{MAX_EXTERNAL_ID}",
            details={"line": line},
        )
    if "\x00" in value:
        raise ImportFailed(f"line {line}: the id contains a NUL character", details={"line": line})
    return value


def _json_text(value: Any, key: str, line: int) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value)
    raise ImportFailed(
        f"line {line}: field {key!r} must be a string, got {type(value).__name__}",
        details={"line": line},
    )


def _json_labels(value: Any, line: int) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        return [value] if value else None
    if isinstance(value, bool):
        raise ImportFailed(f"line {line}: a label must be a class name, got {value!r}")
    if isinstance(value, int | float):
        return [str(value)]
    if isinstance(value, list):
        labels = []
        for part in value:
            if not isinstance(part, str | int) or isinstance(part, bool):
                raise ImportFailed(
                    f"line {line}: a label list must hold class names, got {part!r}",
                    details={"line": line},
                )
            text = str(part).strip()
            if text:
                labels.append(text)
        return labels or None
    raise ImportFailed(
        f"line {line}: the label must be a class name or a list of class names, "
        f"got {type(value).__name__}",
        details={"line": line},
    )


def scan_labels(
    stream: ByteSource,
    *,
    filename: str,
    fmt: str | None = None,
    text_field: str | None = None,
    label_field: str | None = None,
    has_header: bool = True,
    label_separator: str = "|",
) -> list[str]:
    """The distinct labels a file uses, in order of first appearance (to set up a project's
    classes from a labelled file before importing it). Streams the file like an import does."""
    reader = RecordReader(
        io.BufferedReader(CountingReader(stream)),
        fmt=detect_format(filename, fmt),
        text_field=text_field,
        label_field=label_field,
        has_header=has_header,
        label_separator=label_separator,
    )
    seen: dict[str, None] = {}
    for record in reader:
        for label in record.labels or ():
            seen.setdefault(label, None)
    return list(seen)
