"""Property tests of the readers over random bytes, encodings, delimiters, line endings and id types.

The property, for every text format: `read_interactions` never raises anything but `DataError`; its message is one
line naming the file (and, for a bad row, a line that is bad); and when it returns a table, that table equals an
independent reading of the same bytes (Python's csv module for delimited files, bytes.split for the whitespace
layouts) typed by the rule the readers document. When the independent reading finds the input malformed, the reader
must refuse it rather than return a table.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import re
import tempfile
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from data_processing import DataError
from data_processing.readers import read_interactions

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

CANONICAL_INT = re.compile(r"(?:0|-?[1-9][0-9]{0,17})")  # the readers' documented id rule
ANY_INT = re.compile(r"[+-]?[0-9]+")
DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
INT64 = (-(2**63), 2**63 - 1)
# pandas' default NA strings: in a delimited file an id or time written so is a missing value, refused.
MISSING = {"#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA"}
MISSING |= {"NULL", "NaN", "None", "n/a", "nan", "null"}
ASCII_WHITESPACE = " \t\n\v\f\r"


class Refused(Exception):
    """The independent reading says the input is malformed; `lines` are the lines at fault (empty: the file)."""

    def __init__(self, lines=()):
        super().__init__(sorted(lines))
        self.lines = set(lines)


# ---------------------------------------------------------------------------------------------------------------------
# The independent reading
# ---------------------------------------------------------------------------------------------------------------------


def gunzip(raw: bytes) -> bytes:
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise Refused() from err


def decode(raw: bytes) -> str:
    raw = gunzip(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise Refused() from err
    return text[1:] if text.startswith("\ufeff") else text


def type_ids(cells: list[str], lines: list[int]) -> tuple[str, list]:
    bad = {line for cell, line in zip(cells, lines) if not cell.strip() or "\x00" in cell or cell.strip() != cell}
    if bad:
        raise Refused(bad)
    if all(CANONICAL_INT.fullmatch(cell) for cell in cells):
        return "int64", [int(cell) for cell in cells]
    return "object", list(cells)


def type_times(cells: list[str], lines: list[int]) -> tuple[str, list]:
    cells = [cell.strip() for cell in cells]
    missing = {line for cell, line in zip(cells, lines) if not cell}
    if missing:
        raise Refused(missing)
    if all(ANY_INT.fullmatch(cell) for cell in cells):
        beyond = {line for cell, line in zip(cells, lines) if not INT64[0] <= int(cell) <= INT64[1]}
        if beyond:
            raise Refused(beyond)
        return "int64", [int(cell) for cell in cells]
    bad = {line for cell, line in zip(cells, lines) if not DECIMAL.fullmatch(cell) or not math.isfinite(float(cell))}
    if bad:
        raise Refused(bad)
    return "float64", [float(cell) for cell in cells]


def read_delimited(raw: bytes, sep: str, names: tuple[str, str, str | None], time_required: bool) -> dict:
    """`{column: (dtype, values)}` of a delimited file with a header, read with the csv module."""
    text = decode(raw)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    records, starts, previous = [], [], 0
    try:
        for record in reader:
            starts.append(previous + 1)  # the line the record starts on (a quoted field may hold line breaks)
            previous = reader.line_num
            records.append(record)
    except csv.Error as err:
        raise Refused() from err
    if not records or not any(cell.strip() for cell in records[0]):
        raise Refused()
    header = records[0]
    user, item, time = names
    if len(set(header)) != len(header) or user not in header or item not in header:
        raise Refused()
    if time is not None and time not in header:
        if time_required:
            raise Refused()
        time = None
    wanted = {"user_id": user, "item_id": item, **({"timestamp": time} if time else {})}
    width = len(header)
    too_long = {line for record, line in zip(records[1:], starts[1:]) if len(record) > width}
    if too_long:
        raise Refused(too_long)
    rows, lines = [], []
    for record, line in zip(records[1:], starts[1:]):
        padded = record + [""] * (width - len(record))
        if any(cell.strip() for cell in padded):
            rows.append(padded)
            lines.append(line)
    if not rows:
        raise Refused()
    out, bad = {}, set()
    for contract, column in wanted.items():
        cells = [row[header.index(column)] for row in rows]
        bad |= {line for cell, line in zip(cells, lines) if cell in MISSING}
        try:
            out[contract] = (type_times if contract == "timestamp" else type_ids)(cells, lines)
        except Refused as refused:
            bad |= refused.lines
    if bad:
        raise Refused(bad)
    return out


def read_whitespace(raw: bytes, data_format: str) -> dict:
    """The headerless whitespace layouts, split with bytes.split (ASCII whitespace) line by line."""
    raw = gunzip(raw)
    if data_format == "ml1m_dat":
        raw = raw.replace(b"::", b" ")
    text = decode(raw)
    width = {"sasrec": 2, "ml1m_dat": 4, "ml100k_udata": 4, "s3rec": None}[data_format]
    users, items, times, lines, bad = [], [], [], [], set()
    for number, line in enumerate(re.split(r"\r\n|\r|\n", text), start=1):
        fields = [token.decode("utf-8") for token in line.encode("utf-8").split()]
        if not fields:
            continue
        if (width is None and len(fields) < 2) or (width is not None and len(fields) != width):
            bad.add(number)
            continue
        for item in fields[1:] if width is None else fields[1:2]:
            users.append(fields[0])
            items.append(item)
            times.append(fields[3] if width == 4 else None)
            lines.append(number)
    if bad:
        raise Refused(bad)
    if not lines:
        raise Refused()
    out, bad = {}, set()
    columns = {"user_id": users, "item_id": items, **({"timestamp": times} if width == 4 else {})}
    for contract, cells in columns.items():
        try:
            out[contract] = (type_times if contract == "timestamp" else type_ids)(cells, lines)
        except Refused as refused:
            bad |= refused.lines
    if bad:
        raise Refused(bad)
    return out


# ---------------------------------------------------------------------------------------------------------------------
# The property
# ---------------------------------------------------------------------------------------------------------------------

TEXT_FORMATS = {
    "csv": ("x.csv", lambda raw: read_delimited(raw, ",", ("user_id", "item_id", "timestamp"), False)),
    "tsv": ("x.tsv", lambda raw: read_delimited(raw, "\t", ("user_id", "item_id", "timestamp"), False)),
    "movielens_csv": ("ratings.csv", lambda raw: read_delimited(raw, ",", ("userId", "movieId", "timestamp"), True)),
    "sasrec": ("x.txt", lambda raw: read_whitespace(raw, "sasrec")),
    "s3rec": ("x.txt", lambda raw: read_whitespace(raw, "s3rec")),
    "ml1m_dat": ("ratings.dat", lambda raw: read_whitespace(raw, "ml1m_dat")),
    "ml100k_udata": ("u.data", lambda raw: read_whitespace(raw, "ml100k_udata")),
}


def check_against_independent_reading(raw: bytes, data_format: str) -> None:
    name, independent = TEXT_FORMATS[data_format]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(raw)
        try:
            expected = independent(raw)
        except Refused as refused:
            expected = refused
        try:
            frame = read_interactions(path, data_format)
        except DataError as error:
            message = str(error)
            assert "\n" not in message and message.startswith(f"{path}: "), message
            assert isinstance(expected, Refused), f"refused a well-formed file: {message}\n{raw!r}"
            event("refused")
            named = re.search(r"\bline (\d+)", message)
            if named and expected.lines:
                assert int(named.group(1)) in expected.lines, (message, sorted(expected.lines), raw)
            return
    assert not isinstance(expected, Refused), f"accepted a malformed file (bad lines {expected.lines}): {raw!r}"
    event("read")
    assert list(frame.columns) == list(expected), (frame.columns, raw)
    assert list(frame.index) == list(range(len(frame)))
    for column, (dtype, values) in expected.items():
        assert str(frame[column].dtype) == dtype, (column, frame[column].dtype, dtype, raw)
        assert frame[column].tolist() == values, (column, frame[column].tolist(), values, raw)
        if dtype == "object":
            assert all(type(value) is str for value in frame[column])


# Small alphabets make random input that is mostly valid UTF-8 and mostly structured: delimiters, quotes, line
# endings, signs, NUL, a BOM, non-ASCII letters and Unicode whitespace.
NOISE = '0123456789-+.eab ,\t"\n\r\x00\ufeff\u00e9\u00a0:'


@SETTINGS
@given(st.sampled_from(sorted(TEXT_FORMATS)), st.binary(max_size=120))
def test_random_bytes_are_read_or_refused_in_one_line(data_format, raw):
    check_against_independent_reading(raw, data_format)


@SETTINGS
@given(
    st.sampled_from(sorted(TEXT_FORMATS)),
    st.sampled_from(["", "user_id,item_id,timestamp\n", "user_id\titem_id\n", "userId,movieId,rating,timestamp\n"]),
    st.text(NOISE, max_size=120),
    st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16", "gzip"]),
)
def test_structured_noise_is_read_or_refused_in_one_line(data_format, header, body, encoding):
    text = header + body
    if encoding == "gzip":
        raw = gzip.compress(text.encode("utf-8"))
    else:
        raw = text.encode(encoding, errors="replace")
    check_against_independent_reading(raw, data_format)


SPECIAL_IDS = ["NA", "N/A", "nan", "NaN", "None", "null", "NULL", "#N/A", "-0", "007", "+5", "1.0", "1e3", "True"]
clean_ids = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.integers(10**17, 10**20).map(str),
    st.sampled_from(SPECIAL_IDS),
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1, max_size=6)
    .map(str.strip)
    .filter(bool),
    st.text('ab,\t"\n\r \u00e9', min_size=1, max_size=5).map(lambda text: f"a{text}b"),
)
clean_times = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(str),
    st.integers(0, 2**40).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from([" 5 ", "+7", "1e3", ".5"]),
)
# One cell of these, put anywhere, makes the table malformed: the reader must refuse it, naming that cell's line.
hostile_cells = st.sampled_from(["", " ", " x", "x ", "a\x00b", "\u00a0", "1e999", "nan", "x", "1,5", str(2**63)])
encodings = st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "gzip", "latin-1", "utf-16"])


def encode(text: str, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.compress(text.encode("utf-8"))
    try:
        return text.encode(encoding)
    except UnicodeEncodeError:
        assume(False)


@SETTINGS
@given(
    st.sampled_from([("csv", ","), ("tsv", "\t"), ("movielens_csv", ",")]),
    st.lists(st.tuples(clean_ids, clean_ids, clean_times), min_size=1, max_size=8),
    st.one_of(st.none(), st.tuples(st.integers(0, 7), st.integers(0, 2), hostile_cells)),
    st.integers(0, 8),
    st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]),
    st.sampled_from(["\n", "\r\n", "\r"]),
    encodings,
    st.booleans(),
    st.booleans(),
)
def test_delimited_tables_read_as_the_csv_module_reads_them(
    fmt_sep, rows, hostile, blank_at, quoting, terminator, encoding, with_times, with_rating
):
    data_format, sep = fmt_sep
    rows = [list(row) for row in rows]
    if hostile is not None:
        row, cell, value = hostile
        rows[row % len(rows)][cell] = value
    names = ["userId", "movieId"] if data_format == "movielens_csv" else ["user_id", "item_id"]
    header = [*names, *(["rating"] if with_rating else []), *(["timestamp"] if with_times else [])]
    buffer = io.StringIO(newline="")
    csv.writer(buffer, delimiter=sep, lineterminator=terminator).writerow(header)
    writer = csv.writer(buffer, delimiter=sep, quoting=quoting, lineterminator=terminator)
    for index, (user, item, time) in enumerate(rows):
        if index == blank_at:
            buffer.write(terminator)  # a blank line: skipped, and the lines after it keep their true numbers
        writer.writerow([user, item, *(["4"] if with_rating else []), *([time] if with_times else [])])
    check_against_independent_reading(encode(buffer.getvalue(), encoding), data_format)


WIDTHS = {"sasrec": (2, 2), "s3rec": (2, 5), "ml1m_dat": (4, 4), "ml100k_udata": (4, 4)}
tokens = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.text("0123456789-ab\u00e9", min_size=1, max_size=4),
    st.sampled_from(["NA", "-0", "007", "1.5"]),
)


@SETTINGS
@given(
    st.sampled_from(sorted(WIDTHS)),
    st.lists(st.lists(tokens, min_size=5, max_size=5), min_size=1, max_size=8),
    st.lists(st.integers(1, 5), min_size=8, max_size=8),
    st.one_of(st.none(), st.tuples(st.integers(0, 7), st.integers(0, 4), st.sampled_from(["", "a\x00b", "\u00a0"]))),
    st.sampled_from(["\n", "\r\n", "\r"]),
    st.sampled_from([" ", "\t", "  "]),
    st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "gzip"]),
    st.booleans(),
)
def test_whitespace_layouts_read_as_bytes_split_reads_them(
    data_format, lines, widths, hostile, terminator, space, encoding, wrong_width
):
    low, high = WIDTHS[data_format]
    lines = [fields[: min(max(width, low), high)] for fields, width in zip(lines, widths)]
    if wrong_width:  # one line with a field too many (or, for s3rec, a user with no item)
        lines[-1] = lines[-1][:1] if data_format == "s3rec" else [*lines[-1], "9"]
    if hostile is not None:
        line, field, value = hostile
        fields = lines[line % len(lines)]
        fields[field % len(fields)] = value
    separator = "::" if data_format == "ml1m_dat" else space
    text = terminator.join(separator.join(fields) for fields in lines) + terminator
    check_against_independent_reading(encode(text, encoding), data_format)


@SETTINGS
@given(st.binary(max_size=200), st.booleans())
def test_random_parquet_bytes_are_read_or_refused_in_one_line(tmp_path, body, framed):
    path = tmp_path / "x.parquet"
    path.write_bytes(b"PAR1" + body + b"PAR1" if framed else body)
    try:
        frame = read_interactions(path, "parquet")
    except DataError as error:
        assert "\n" not in str(error) and str(error).startswith(f"{path}: ")
    else:  # pragma: no cover - random bytes are never a valid parquet file in practice
        assert {"user_id", "item_id"} <= set(frame.columns)


def expected_parquet_ids(values: list) -> tuple[str, list]:
    """The typing rule for one parquet column of Python values, or Refused naming the 1-based rows at fault."""
    rows = list(range(1, len(values) + 1))
    if all(isinstance(value, str) for value in values):
        return type_ids(values, rows)
    missing = {row for value, row in zip(values, rows) if value is None or value != value}  # None, NaN
    inexact = {
        row
        for value, row in zip(values, rows)
        if isinstance(value, float) and value == value and (value != int(value) or abs(value) > 2**53)
    }
    if missing or inexact:
        raise Refused(missing | inexact)
    return "int64", [int(value) for value in values]


parquet_columns = st.one_of(
    st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=8),
    st.lists(st.one_of(clean_ids, hostile_cells), min_size=1, max_size=8),
    st.lists(
        st.one_of(st.integers(-(2**60), 2**60).map(float), st.floats(allow_infinity=False), st.none()),
        min_size=1,
        max_size=8,
    ),
    st.lists(st.one_of(st.integers(-100, 100), st.none()), min_size=1, max_size=8),
)


@SETTINGS
@given(parquet_columns, st.booleans())
def test_parquet_columns_follow_the_typing_rule(tmp_path, users, as_category):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "x.parquet"
    array = pa.array(users)
    if as_category and pa.types.is_string(array.type):
        array = array.dictionary_encode()
    pq.write_table(pa.table({"user_id": array, "item_id": pa.array(range(len(users)))}), path)
    try:
        expected = expected_parquet_ids(users)
    except Refused as refused:
        expected = refused
    try:
        frame = read_interactions(path, "parquet")
    except DataError as error:
        message = str(error)
        assert "\n" not in message and message.startswith(f"{path}: "), message
        assert isinstance(expected, Refused), f"refused a well-formed column: {message}\n{users!r}"
        named = re.search(r"\brow (\d+)", message)
        assert named and int(named.group(1)) in expected.lines, (message, sorted(expected.lines), users)
        event("refused")
        return
    assert not isinstance(expected, Refused), f"accepted a malformed column (rows {expected.lines}): {users!r}"
    dtype, values = expected
    assert str(frame["user_id"].dtype) == dtype and frame["user_id"].tolist() == values, (frame, users)
    event("read")


@pytest.mark.parametrize(
    "raw, data_format, expected",
    [
        # Each found by the properties above; before the fix: a _csv.Error traceback, a user '\ufeff1'
        # besides user 1, one user 1 holding items 2, 3, 4, 5, users -0 and 0 merged, an IndexError.
        (b"user_id,item_id\r1,2\r3,4\r", "csv", {"user_id": [1, 3], "item_id": [2, 4]}),  # _csv.Error traceback
        (b"\xef\xbb\xbf1 2\n1 3\n", "sasrec", {"user_id": [1, 1], "item_id": [2, 3]}),  # user '\ufeff1' != 1
        (b"1 2 3\r4 5\r", "s3rec", {"user_id": [1, 1, 4], "item_id": [2, 3, 5]}),  # one user 1 with 2, 3, 4, 5
        (b"user_id,item_id\n-0,1\n0,2\n", "csv", {"user_id": ["-0", "0"], "item_id": [1, 2]}),  # both user 0
        (
            b"user_id,item_id,timestamp\n1,2,+7\n1,3,8\n",
            "csv",
            {"user_id": [1, 1], "item_id": [2, 3], "timestamp": [7, 8]},
        ),
    ],
)
def test_found_by_the_properties(tmp_path, raw, data_format, expected):
    path = tmp_path / ("x.csv" if data_format == "csv" else "x.txt")
    path.write_bytes(raw)
    assert read_interactions(path, data_format).to_dict("list") == expected


@pytest.mark.parametrize(
    "raw, message",
    [
        (b'user_id,item_id\n1,"a\nb"\n2,\n', r"column 'item_id' line 4: missing value"),  # was 'line 3'
        ("user_id,item_id\n1,2\n".encode("utf-16"), r"line 1: the file is UTF-16; save it as UTF-8"),
        (b"user_id,item_id\n1,2\nNone,3\n", r"column 'user_id' line 3: missing value \('None' is how"),
    ],
)
def test_refusals_found_by_the_properties(tmp_path, raw, message):
    path = tmp_path / "x.csv"
    path.write_bytes(raw)
    with pytest.raises(DataError, match=message):
        read_interactions(path, "csv")
