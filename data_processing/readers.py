"""Readers that turn interaction files of every common layout into one table.

Every reader returns a :class:`pandas.DataFrame` with the columns ``user_id``, ``item_id`` and, when the source has
them, ``timestamp`` (int64 or float64). The contract the rest of the pipeline relies on:

* rows stay in the order of the file (index ``0..n-1``). Row order breaks timestamp ties in the temporal split, and
  for files without timestamps it *is* the chronological order within each user;
* raw ids keep their type: a column whose values are all canonical integer literals (``0``, ``-3``, ``42``, no
  leading zeros, no ``-0``, at most 18 digits) becomes int64, any other column stays Python ``str`` (object dtype), so
  ``"007"`` never turns into ``7`` and ``"-0"`` never merges with ``"0"``; text such as ``NA`` or ``None`` is an id
  like any other, not a missing value;
* text is UTF-8 (a byte-order mark is dropped; UTF-16 and UTF-32 files are refused naming their encoding), and
  ``\n``, ``\r\n`` and ``\r`` all end a line;
* every user mistake raises :class:`~data_processing.errors.DataError` with a one-line message naming the file and
  the column and line (text files, 1-based line of the file) or row (parquet and datasets, 1-based) at fault;
* nothing is dropped except blank lines, which hold no interaction.

Parsing is vectorised (Arrow's CSV parser for plain delimited files, else pandas' C parser; numpy and pyarrow
compute for the checks), with no Python object per cell for integer columns, so that time and memory grow linearly
with the file (``benchmarks/preprocess.py --synthetic`` measures it).
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import re
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .errors import DataError

if TYPE_CHECKING:
    import datasets

__all__ = [
    "DATA_FORMATS",
    "KNOWN_DATASETS",
    "guess_data_format",
    "read_interactions",
    "interactions_from_dataset",
    "load_dataset_by_name",
]

DATA_FORMATS = ("csv", "tsv", "parquet", "movielens_csv", "ml1m_dat", "ml100k_udata", "sasrec", "s3rec", "hf_dataset")

PathLike = str | os.PathLike

USER, ITEM, TIME = "user_id", "item_id", "timestamp"

# 18 digits always fit in int64; longer integer-looking ids stay strings rather than risk an overflow.
_CANONICAL_INT = r"^(?:0|-?[1-9][0-9]{0,17})$"
_ANY_INT = r"^[+-]?[0-9]+$"

# How a missing value is written in delimited text (pandas' default NA strings, R's NA, SQL's NULL). Refused by name
# in an id or time column: read as an id, every row missing its user would silently become one user "NA".
_MISSING_SPELLINGS = frozenset(
    ["#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA"]
    + ["NULL", "NaN", "None", "n/a", "nan", "null"]
)

_TXT_HINT = (
    "pass --data_format sasrec (one 'user item' pair per line) or --data_format s3rec (one 'user item1 item2 ...' "
    "line per user)"
)


# --------------------------------------------------------------------------------------------------------------------
# Format guessing
# --------------------------------------------------------------------------------------------------------------------


def guess_data_format(path: PathLike) -> str:
    """Guess the data format from the file name, only where the name leaves no doubt.

    ``ratings.csv`` is MovieLens' own layout, ``ratings.dat`` ML-1M's, ``u.data`` ML-100K's; other ``.csv``,
    ``.tsv`` and ``.parquet`` files (optionally ``.gz``) are generic tables and a folder written by
    :meth:`datasets.Dataset.save_to_disk` is ``hf_dataset``. ``.txt`` files are either SASRec or S3-Rec layout and
    cannot be told apart from the name, so they raise.

    Example:

    >>> guess_data_format("data/ml-latest-small/ratings.csv")
    'movielens_csv'
    >>> guess_data_format("interactions.csv.gz")
    'csv'

    Raises:
        DataError: when the name is ambiguous or unknown.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
            return "hf_dataset"
        raise DataError(f"{path}: is a folder but not one written by datasets' save_to_disk; pass a file")
    name = path.name.lower()
    stem = name[: -len(".gz")] if name.endswith(".gz") else name
    if stem == "ratings.csv":
        return "movielens_csv"
    if stem == "ratings.dat":
        return "ml1m_dat"
    if stem == "u.data":
        return "ml100k_udata"
    if stem.endswith(".parquet"):
        return "parquet"
    if stem.endswith(".tsv"):
        return "tsv"
    if stem.endswith(".csv"):
        return "csv"
    if stem.endswith(".txt"):
        raise DataError(f"{path}: cannot tell the layout of a .txt file from its name; {_TXT_HINT}")
    raise DataError(
        f"{path}: cannot guess the data format from the file name; pass --data_format, one of {', '.join(DATA_FORMATS)}"
    )


# --------------------------------------------------------------------------------------------------------------------
# Public readers
# --------------------------------------------------------------------------------------------------------------------


# Formats whose columns are fixed by their layout: the column names each accepts besides the defaults.
_FIXED_COLUMNS = {
    "movielens_csv": ("userId", "movieId", "timestamp"),
    "ml1m_dat": (USER, ITEM, TIME),
    "ml100k_udata": (USER, ITEM, TIME),
    "sasrec": (USER, ITEM, TIME),
    "s3rec": (USER, ITEM, TIME),
}


def _check_fixed_columns(source: str, data_format: str, user_col, item_col, time_col) -> None:
    """A column named for a fixed-layout format must be the layout's own: it cannot be chosen, so it is refused
    rather than ignored."""
    own = _FIXED_COLUMNS.get(data_format)
    if own is None:
        return
    for flag, given, default, layout in zip(
        ("user_column", "item_column", "timestamp_column"), (user_col, item_col, time_col), (USER, ITEM, TIME), own
    ):
        if given not in (None, default, layout):
            raise DataError(
                f"{source}: --{flag} {given!r} does not apply to {data_format}, whose columns are fixed "
                f"({', '.join(own)}); pass --data_format csv, tsv or parquet to read named columns"
            )


def read_interactions(
    path: PathLike,
    data_format: str | None = None,
    user_col: str = USER,
    item_col: str = ITEM,
    time_col: str | None = TIME,
) -> pd.DataFrame:
    """Read an interaction file into a ``user_id, item_id[, timestamp]`` table in file order.

    Args:
        path: the file (plain or gzip-compressed; compression is detected from the content), or for
            ``hf_dataset`` a folder written by :meth:`datasets.Dataset.save_to_disk`.
        data_format: one of :data:`DATA_FORMATS`; guessed from the file name by :func:`guess_data_format` when
            ``None``.
        user_col, item_col, time_col: column names in ``csv``, ``tsv``, ``parquet`` and ``hf_dataset`` sources. The
            time column is optional: when the default ``"timestamp"`` is absent the table has no ``timestamp``
            column, but a time column named explicitly must exist. ``time_col=None`` ignores timestamps. The other
            formats fix their own columns: naming another column there is an error, not ignored
            (``movielens_csv`` accepts its own names ``userId``, ``movieId``, ``timestamp``).

    Returns:
        A DataFrame with ``user_id``, ``item_id`` and, when the source has timestamps, ``timestamp``.

    Raises:
        DataError: for a missing file, an unknown format, a missing column, an empty file, a blank or unparsable
            value, a malformed line or bytes that are not UTF-8; the message names the file and the line or column.
    """
    path = Path(path)
    if data_format is None:
        data_format = guess_data_format(path)
    if data_format not in DATA_FORMATS:
        raise DataError(f"{path}: unknown data format {data_format!r}; use one of {', '.join(DATA_FORMATS)}")
    if not path.exists():
        raise DataError(f"{path}: no such file")
    source = str(path)
    _check_fixed_columns(source, data_format, user_col, item_col, time_col)

    if data_format == "hf_dataset":
        return _read_saved_dataset(path, user_col, item_col, time_col)

    raw = _read_bytes(path, source)
    if data_format == "parquet":
        return _read_parquet(raw, source, user_col, item_col, time_col)

    raw = _utf8_text(raw, source)
    if data_format in ("csv", "tsv"):
        sep = "," if data_format == "csv" else "\t"
        return _read_table(raw, source, sep, user_col, item_col, time_col, time_required=time_col not in (None, TIME))
    if data_format == "movielens_csv":
        return _read_table(raw, source, ",", "userId", "movieId", "timestamp", time_required=True)
    if data_format == "ml1m_dat":
        # "::" never occurs inside a numeric field, so turning it into a space keeps fields and line numbers intact.
        return _read_fixed_fields(raw.replace(b"::", b" "), source, (USER, ITEM, "rating", TIME))
    if data_format == "ml100k_udata":
        return _read_fixed_fields(raw, source, (USER, ITEM, "rating", TIME))
    if data_format == "sasrec":
        return _read_fixed_fields(raw, source, (USER, ITEM))
    return _read_s3rec(raw, source)


def interactions_from_dataset(
    ds: datasets.Dataset,
    user_col: str = USER,
    item_col: str = ITEM,
    time_col: str | None = TIME,
    name: str = "<dataset>",
) -> pd.DataFrame:
    """Turn a :class:`datasets.Dataset` with user, item and optional time columns into the interaction table.

    Rows keep the dataset's order (its indices mapping included, so a ``select``-ed or ``shuffle``-d dataset is read
    in its visible order). Column rules are those of :func:`read_interactions`; ``name`` is used in error messages.

    Raises:
        DataError: for a ``DatasetDict`` or streaming dataset, a missing column, an empty dataset or a missing or
            unusable value (the message names the 1-based row).
    """
    import datasets

    if isinstance(ds, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        raise DataError(f"{name}: is a DatasetDict with splits {sorted(ds)}; pass one split, e.g. ds['train']")
    if not isinstance(ds, datasets.Dataset):
        raise DataError(f"{name}: expected a datasets.Dataset, got {type(ds).__name__}")
    columns = _select_columns(
        list(ds.column_names), name, user_col, item_col, time_col, time_required=time_col not in (None, TIME)
    )
    table = ds.select_columns(list(columns.values())).with_format("arrow")[:]
    return _frame_from_arrow(table, columns, name)


@dataclass(frozen=True)
class KnownDataset:
    """A named dataset: where it lives, how to read it, what to call it and its terms of use.

    The one registry of the named datasets: `train.py --dataset` (and its presets), the model cards' names and
    terms, and the benchmark grids all read it.
    """

    relative_path: str
    data_format: str
    display_name: str
    license_note: str
    in_repo: bool = False


_MOVIELENS_TERMS = (
    "MovieLens data (GroupLens Research, University of Minnesota) may be used for research purposes only: no "
    "commercial use without permission, no redistribution of the data without separate permission, no claim of "
    'endorsement, and publications using it must cite F. M. Harper and J. A. Konstan, "The MovieLens Datasets: '
    'History and Context", ACM TiiS 5(4), 2015.'
)
_AMAZON_TERMS = (
    "Amazon review data 2014 (McAuley lab, UCSD), S3-Rec preprocessing: a research release with no separate data "
    "license; treat it as research-only, do not redistribute it, and cite R. He and J. McAuley (WWW 2016) and "
    "J. McAuley et al. (SIGIR 2015)."
)

KNOWN_DATASETS = {
    "ml-latest-small": KnownDataset(
        "data/ml-latest-small/ratings.csv",
        "movielens_csv",
        "ml-latest-small",
        "MovieLens latest-small (GroupLens Research, University of Minnesota): research use; the data set, including "
        "transformations, may be redistributed only under these same license conditions; no commercial use without "
        'permission; no claim of endorsement; publications using it must cite F. M. Harper and J. A. Konstan, "The '
        'MovieLens Datasets: History and Context", ACM TiiS 5(4), 2015.',
        in_repo=True,
    ),
    "ml-100k": KnownDataset("ml-100k/interactions.csv.gz", "csv", "MovieLens-100K", _MOVIELENS_TERMS),
    "ml-1m": KnownDataset(
        "ml-1m/ml-1m.txt.gz", "sasrec", "MovieLens-1M", _MOVIELENS_TERMS + " SASRec preprocessing (Kang & McAuley)."
    ),
    "ml-1m-raw": KnownDataset("ml-1m/ratings.dat", "ml1m_dat", "MovieLens-1M", _MOVIELENS_TERMS),
    "beauty": KnownDataset("beauty/Beauty.txt.gz", "s3rec", "Amazon Beauty", _AMAZON_TERMS),
    "sports": KnownDataset(
        "sports_and_outdoors/Sports_and_Outdoors.txt.gz", "s3rec", "Amazon Sports and Outdoors", _AMAZON_TERMS
    ),
    "lastfm": KnownDataset(
        "lastfm/LastFM.txt.gz",
        "s3rec",
        "LastFM",
        "Last.fm 2k (HetRec 2011), S3-Rec preprocessing: no stated license; treat it as research-only and do not "
        "redistribute it.",
    ),
}

_REPO_ROOT = Path(__file__).resolve().parent.parent


def default_data_root() -> Path:
    """``$BTSR_DATA_ROOT`` when set, else ``<repo>/../shared/data``."""
    env = os.environ.get("BTSR_DATA_ROOT")
    return Path(env).expanduser() if env else _REPO_ROOT.parent / "shared" / "data"


def known_dataset_path(name: str, data_root: PathLike | None = None) -> Path:
    """Where the file of one of the :data:`KNOWN_DATASETS` is expected: under ``data_root`` (default
    :func:`default_data_root`), or in the repository for the embedded one. It may not exist."""
    known = KNOWN_DATASETS[name]
    if known.in_repo:
        return _REPO_ROOT / known.relative_path
    return (Path(data_root).expanduser() if data_root is not None else default_data_root()) / known.relative_path


def load_dataset_by_name(
    name: str, data_root: PathLike | None = None, cache_dir: PathLike | None = None
) -> tuple[pd.DataFrame, dict]:
    """Read one of the :data:`KNOWN_DATASETS` by name.

    ``ml-latest-small`` ships with the repository. The others are not redistributable and are looked up under
    ``data_root`` (default :func:`default_data_root`); ``ml-1m-raw`` (GroupLens ``ratings.dat`` with timestamps) is
    looked up there and then in the download cache of :func:`data_processing.download.fetch_ml1m_ratings`
    (``cache_dir``, default :func:`~data_processing.download.default_cache_dir`: where ``--download`` put it).

    Returns:
        ``(interactions, info)`` where ``info`` holds ``name``, ``path``, ``data_format``, ``has_timestamps`` and
        ``license_note``.

    Raises:
        DataError: for an unknown name or a file that is not where it should be (the message says where it looked
            and how to point at the file).
    """
    known = KNOWN_DATASETS.get(name)
    if known is None:
        raise DataError(f"unknown dataset {name!r}; use one of {', '.join(KNOWN_DATASETS)} or pass --data_path FILE")
    if known.in_repo:
        candidates = [_REPO_ROOT / known.relative_path]
    else:
        root = Path(data_root).expanduser() if data_root is not None else default_data_root()
        candidates = [root / known.relative_path]
        if name == "ml-1m-raw":
            from .download import default_cache_dir

            cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
            candidates.append(cache / known.relative_path)
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        looked = " or ".join(str(p) for p in candidates)
        if known.in_repo:
            raise DataError(f"{name}: {looked} is missing from the repository checkout; restore it with git")
        how = "run with --dataset ml-1m-raw --download to fetch it from GroupLens, " if name == "ml-1m-raw" else ""
        raise DataError(
            f"{name}: no file at {looked}. Only ml-latest-small ships with BT-SR; {name} is not shipped because its "
            f"licence forbids redistribution. {how}set BTSR_DATA_ROOT (or data_root) to the folder that holds "
            f"'{known.relative_path}', or pass --data_path FILE --data_format {known.data_format}"
        )
    frame = read_interactions(path, known.data_format)
    info = {
        "name": name,
        "path": str(path),
        "data_format": known.data_format,
        "has_timestamps": TIME in frame.columns,
        "license_note": known.license_note,
    }
    return frame, info


# --------------------------------------------------------------------------------------------------------------------
# Bytes and text
# --------------------------------------------------------------------------------------------------------------------


def _read_bytes(path: Path, source: str) -> bytes:
    """The file's content, gunzipped when it starts with the gzip magic number (the name may not say so)."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"{source}: cannot read the file ({err.strerror or err})") from err
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(f"{source}: is not a valid gzip file ({err})") from err
    return raw


_UNICODE_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)


def _utf8_text(raw: bytes, source: str) -> bytes:
    """The encoding check of every text format: ``raw`` without its UTF-8 byte-order mark (invisible, it would
    otherwise become part of the first id or column name); a UTF-16/32 file, or the line of the first byte that is
    not UTF-8, fails in one line instead of a decoder traceback later."""
    for bom, encoding in _UNICODE_BOMS:
        if raw.startswith(bom):
            raise DataError(f"{source}: line 1: the file is {encoding}; save it as UTF-8")
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if raw.isascii():  # ASCII is UTF-8, and the check allocates nothing, unlike a decode of the whole file
        return raw
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise DataError(
            f"{source}: line {line}: byte {raw[err.start : err.start + 1]!r} is not valid UTF-8; save the file as UTF-8"
        ) from err
    return raw


def _read_table(
    raw: bytes,
    source: str,
    sep: str,
    user_col: str,
    item_col: str,
    time_col: str | None,
    time_required: bool,
) -> pd.DataFrame:
    """A delimited file with a header line; every value is read as text and typed afterwards.

    pandas parses the values; the csv module reads the header as written (pandas renames a repeated name) and, when
    a quoted field may hold a line break, the line each row starts on, so messages name true lines of the file.
    A plain file that reads without a mistake takes Arrow's parser instead (:func:`_read_plain_table`).
    """
    frame = _read_plain_table(raw, source, sep, user_col, item_col, time_col, time_required)
    if frame is not None:
        return frame
    text = raw.decode("utf-8")  # checked by _utf8_text
    records = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    try:
        header = next(records, None)
    except csv.Error as err:
        raise DataError(f"{source}: line 1: cannot parse the header line ({err})") from err
    if header is not None and not any(name.strip() for name in header):
        raise DataError(f"{source}: line 1 is blank; the first line must be the header")
    # ParserWarning is what pandas emits when a data line has more fields than the header and it drops the extras.
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        try:
            frame = pd.read_csv(
                io.BytesIO(raw),
                sep=sep,
                dtype=str,
                # Without it a first data line with one extra field silently turns the first column into the index.
                index_col=False,
                # Kept so that row i is line i + 2 of the file; blank rows are dropped below.
                skip_blank_lines=False,
                # Cells stay as written ("" when empty): the missing-value spellings are refused below, by name.
                keep_default_na=False,
                encoding="utf-8",
            )
        except pd.errors.EmptyDataError as err:
            raise DataError(f"{source}: the file is empty") from err
        except pd.errors.ParserWarning as err:
            raise DataError(f"{source}: line 2 has more fields than the header line") from err
        except pd.errors.ParserError as err:
            raise DataError(f"{source}: {_describe_parser_error(err)}") from err
    # pandas renames a repeated header name ("a", "a.1"): check the header as written.
    _check_unique_columns(header, source)
    columns = _select_columns(list(frame.columns), source, user_col, item_col, time_col, time_required)
    if frame.empty:
        raise DataError(f"{source}: the file has a header line but no rows")
    lines = _record_lines(text, records, len(frame))
    blank = _blank_rows(frame, columns[USER])
    if blank.any():
        frame, lines = frame.loc[~blank], lines[~blank]
        if frame.empty:
            raise DataError(f"{source}: the file has a header line but no rows")
    for column in columns.values():
        spelled = frame[column].isin(_MISSING_SPELLINGS).to_numpy()
        if spelled.any():
            first = int(np.flatnonzero(spelled)[0])
            raise DataError(
                f"{source}: column {column!r} line {lines[first]}: missing value ({frame[column].iloc[first]!r} is "
                "how spreadsheets and pandas write one)"
            )
    table = pa.table({column: pa.array(frame[column]) for column in columns.values()})
    return _frame_from_arrow(table, columns, source, lines=lines, unit="line")


def _read_plain_table(
    raw: bytes,
    source: str,
    sep: str,
    user_col: str,
    item_col: str,
    time_col: str | None,
    time_required: bool,
) -> pd.DataFrame | None:
    """:func:`_read_table`'s result read by Arrow's CSV parser, or ``None`` to leave the file to the pandas path.

    pandas' parser makes a Python string of every cell, which dominates time and memory on a large log. Arrow's
    yields the same cells as long as the file is plain: no quote, carriage return or NUL byte, no blank line and a
    header of distinct, non-blank names, so that both parsers split lines at ``\n`` and fields at ``sep`` alone.
    Any mistake (a row with the wrong field count, a missing spelling, a value that does not type) returns ``None``
    too: the pandas path then fails with the message that names the line, so messages stay as they were.
    """
    import pyarrow.csv as pa_csv

    if any(mark in raw for mark in (b'"', b"\r", b"\x00", b"\n\n")):
        return None
    end = raw.find(b"\n")
    header = (raw if end < 0 else raw[:end]).decode("utf-8").split(sep)
    if len(header) < 2 or len(set(header)) != len(header) or any(not name.strip() for name in header):
        return None
    try:
        columns = _select_columns(header, source, user_col, item_col, time_col, time_required)
        table = pa_csv.read_csv(
            pa.BufferReader(raw),
            parse_options=pa_csv.ParseOptions(
                delimiter=sep, quote_char=False, escape_char=False, ignore_empty_lines=False
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                include_columns=list(columns.values()),
                strings_can_be_null=False,
                check_utf8=False,  # _utf8_text has checked the whole file
            ),
        )
    except (DataError, pa.ArrowException):
        return None
    if table.num_rows == 0:
        return None
    rows = table.num_rows
    # One column's text beyond 2 GiB overflows the 32-bit offsets of `string` once its chunks are combined.
    pending = {
        contract: table.column(column).cast(pa.large_string())
        if table.column(column).nbytes >= 2**31
        else table.column(column)
        for contract, column in columns.items()
    }
    del table  # `pending` holds the only reference, so each text column is freed once typed
    try:
        frame = _typed_frame(pending, columns, source, range(2, rows + 2), "line")
    except DataError:
        return None
    finally:
        # Arrow's allocator keeps the freed text for reuse; the rest of the pipeline allocates with numpy.
        pa.default_memory_pool().release_unused()
    # A missing spelling types as text among ids (a number column refuses it): only those columns are checked.
    for contract in columns:
        if frame[contract].dtype == object and frame[contract].isin(_MISSING_SPELLINGS).any():
            return None
    return frame


def _record_lines(text: str, records, count: int) -> np.ndarray:
    """The 1-based line of the file on which each of the ``count`` data rows starts.

    Row i is on line i + 2 unless a quoted field holds a line break, which only a file with a quote character can
    have; only then are the records walked (``records`` is the csv reader past the header).
    """
    if '"' not in text:
        return np.arange(2, count + 2)
    starts, previous = [], records.line_num
    try:
        for _ in records:
            starts.append(previous + 1)
            previous = records.line_num
    except csv.Error:
        starts = []
    if len(starts) != count:  # the two parsers disagree on where rows end: fall back to counting rows
        return np.arange(2, count + 2)
    return np.asarray(starts)


def _describe_parser_error(err: Exception) -> str:
    """Rephrase pandas' "C error: Expected 2 fields in line 5, saw 3" as a one-line message."""
    match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(err))
    if match:
        expected, line, seen = match.groups()
        return f"line {line} has {seen} fields, but the header has {expected}"
    return f"cannot parse the file ({' '.join(str(err).split())})"


def _blank_rows(frame: pd.DataFrame, user_column: str) -> np.ndarray:
    """Rows whose every cell is empty or whitespace: blank lines, which hold no interaction."""
    user = frame[user_column]
    candidate = (user.isna() | user.str.strip().eq("")).to_numpy(dtype=bool, copy=True)
    if not candidate.any():
        return candidate
    rest = frame.loc[candidate]
    empty = rest.isna() | rest.apply(lambda column: column.str.strip().eq(""))
    candidate[candidate] = empty.all(axis=1).to_numpy(dtype=bool)
    return candidate


def _split_lines(raw: bytes) -> tuple[pa.ListArray, np.ndarray]:
    """The whitespace-separated fields of every non-blank line of ``raw`` and that line's 1-based number.

    Done in arrow compute rather than Python so that a million lines take a fraction of a second. ``raw`` must be
    valid UTF-8 (see :func:`_utf8_text`). ``\r\n`` and a lone ``\r`` end a line as ``\n`` does: otherwise a file
    with old Mac line endings would be one long line, and in the s3rec layout one user holding every item.
    """
    if b"\r" in raw:
        raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    text = pa.Array.from_buffers(
        pa.large_string(), 1, [None, pa.py_buffer(np.array([0, len(raw)], dtype=np.int64)), pa.py_buffer(raw)]
    )
    # Trimming first because arrow's split keeps an empty field for leading or trailing whitespace.
    lines = pc.ascii_trim_whitespace(pc.split_pattern(text, "\n").flatten())
    filled = np.flatnonzero(pc.not_equal(lines, "").to_numpy(zero_copy_only=False))
    return pc.ascii_split_whitespace(lines.take(filled)), filled + 1


def _read_fixed_fields(raw: bytes, source: str, names: tuple) -> pd.DataFrame:
    """Headerless whitespace-separated lines with exactly ``len(names)`` fields; blank lines are skipped."""
    fields, line_numbers = _split_lines(raw)
    if len(fields) == 0:
        raise DataError(f"{source}: the file is empty")
    counts = pc.list_value_length(fields).to_numpy()
    bad = np.flatnonzero(counts != len(names))
    if len(bad):
        first = bad[0]
        raise DataError(
            f"{source}: line {line_numbers[first]} has {counts[first]} fields, expected {len(names)} "
            f"({' '.join(names)})"
        )
    tokens = fields.flatten()
    offsets = np.arange(0, len(tokens), len(names))
    wanted = {name: name for name in (USER, ITEM, TIME) if name in names}
    table = pa.table({name: tokens.take(offsets + names.index(name)) for name in wanted})
    return _frame_from_arrow(table, wanted, source, lines=line_numbers, unit="line")


def _read_s3rec(raw: bytes, source: str) -> pd.DataFrame:
    """``user item1 item2 ...`` lines, one row per item in line order; blank lines are skipped."""
    fields, line_numbers = _split_lines(raw)
    if len(fields) == 0:
        raise DataError(f"{source}: the file is empty")
    counts = pc.list_value_length(fields).to_numpy()
    lonely = np.flatnonzero(counts < 2)
    if len(lonely):
        raise DataError(
            f"{source}: line {line_numbers[lonely[0]]} has a user but no items; s3rec lines are 'user item1 item2 ...'"
        )
    tokens = fields.flatten()
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    is_item = np.ones(len(tokens), dtype=bool)
    is_item[starts] = False
    table = pa.table({USER: tokens.take(np.repeat(starts, counts - 1)), ITEM: tokens.filter(pa.array(is_item))})
    lines = np.repeat(line_numbers, counts - 1)
    return _frame_from_arrow(table, {USER: USER, ITEM: ITEM}, source, lines=lines, unit="line")


# --------------------------------------------------------------------------------------------------------------------
# Parquet and datasets
# --------------------------------------------------------------------------------------------------------------------


def _read_parquet(raw: bytes, source: str, user_col: str, item_col: str, time_col: str | None) -> pd.DataFrame:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(pa.BufferReader(raw))
        names = list(parquet.schema_arrow.names)
        required = time_col not in (None, TIME)
        columns = _select_columns(names, source, user_col, item_col, time_col, time_required=required)
        table = parquet.read(columns=list(columns.values()))
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"{source}: cannot read it as parquet ({' '.join(str(err).split())})") from err
    return _frame_from_arrow(table, columns, source)


def _read_saved_dataset(path: Path, user_col: str, item_col: str, time_col: str | None) -> pd.DataFrame:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as err:
        raise DataError(f"{path}: cannot load it with datasets.load_from_disk ({' '.join(str(err).split())})") from err
    if isinstance(loaded, datasets.DatasetDict):
        if len(loaded) != 1:
            raise DataError(f"{path}: holds the splits {sorted(loaded)}; save the one split to read on its own")
        loaded = next(iter(loaded.values()))
    return interactions_from_dataset(loaded, user_col, item_col, time_col, name=str(path))


# --------------------------------------------------------------------------------------------------------------------
# Typing the columns
# --------------------------------------------------------------------------------------------------------------------


def _select_columns(
    available: list,
    source: str,
    user_col: str,
    item_col: str,
    time_col: str | None,
    time_required: bool,
) -> dict:
    """Map contract names to the source's column names, or say which columns the source has."""
    _check_unique_columns(available, source)
    if user_col == item_col:
        raise DataError(f"{source}: user_col and item_col are both {user_col!r}; they must be different columns")
    columns = {}
    for contract, column in ((USER, user_col), (ITEM, item_col)):
        if column not in available:
            raise DataError(f"{source}: no column {column!r} for {contract}; the columns are {available}")
        columns[contract] = column
    if time_col is not None:
        if time_col in available:
            columns[TIME] = time_col
        elif time_required:
            raise DataError(f"{source}: no column {time_col!r} for timestamps; the columns are {available}")
    return columns


def _check_unique_columns(names: list, source: str) -> None:
    """A column named twice is ambiguous (which one holds the ids?): refused, naming both positions."""
    seen: dict = {}
    for position, name in enumerate(names, start=1):
        if name in seen:
            raise DataError(f"{source}: the header names column {name!r} twice (columns {seen[name]} and {position})")
        seen[name] = position


def _frame_from_arrow(
    table: pa.Table,
    columns: dict,
    source: str,
    lines: np.ndarray | None = None,
    unit: str = "row",
) -> pd.DataFrame:
    """Type the selected columns of ``table`` and build the contract DataFrame.

    ``lines[i]`` is the number reported for row ``i`` in messages (file line for text, else 1-based row).
    """
    if table.num_rows == 0:
        raise DataError(f"{source}: has no rows")
    if lines is None:
        lines = np.arange(1, table.num_rows + 1)
    return _typed_frame(
        {contract: table.column(column) for contract, column in columns.items()}, columns, source, lines, unit
    )


def _typed_frame(pending: dict, columns: dict, source: str, lines, unit: str) -> pd.DataFrame:
    """:func:`_frame_from_arrow` of the columns in ``pending`` (contract name -> arrow column), which it empties.

    A caller that hands over its only references frees each text column as soon as it is typed. When every column
    is int64 they are written straight into the DataFrame's one block, instead of into Series that the DataFrame
    then copies, so the table is held once rather than twice.
    """
    rows = len(lines)
    out: dict = {}
    block = None
    for k, (contract, column) in enumerate(columns.items()):
        values = pending.pop(contract).combine_chunks()
        where = _Where(source, column, lines, unit)
        typed = _timestamps(values, where) if contract == TIME else _ids(values, where)
        del values
        if typed.dtype == np.int64 and (block is not None or k == 0):
            if block is None:
                block = np.empty((len(columns), rows), dtype=np.int64)
            block[k] = typed.to_numpy()
            out[contract] = block[k]
        else:
            block = None
            out[contract] = typed
    if block is not None:
        return pd.DataFrame(block.T, columns=list(out), copy=False)
    return pd.DataFrame(out)


@dataclass
class _Where:
    """Formats the location prefix of an error: ``<file>: column 'x' line 17``."""

    source: str
    column: str
    lines: np.ndarray
    unit: str

    def error(self, mask, message: str) -> DataError:
        """Error at the first row where ``mask`` is true; ``{value}`` in ``message`` becomes that row's value."""
        index = int(np.flatnonzero(np.asarray(mask))[0])
        return DataError(f"{self.source}: column {self.column!r} {self.unit} {self.lines[index]}: {message}")

    def column_error(self, message: str) -> DataError:
        """Error about the column as a whole (its type), not one row."""
        return DataError(f"{self.source}: column {self.column!r}: {message}")

    def error_with_value(self, values: pa.Array, mask, message: str) -> DataError:
        """Like :meth:`error`; ``{value}`` in ``message`` becomes the offending value."""
        index = int(np.flatnonzero(np.asarray(mask))[0])
        value = values[index].as_py()
        return DataError(
            f"{self.source}: column {self.column!r} {self.unit} {self.lines[index]}: {message.format(value=value)}"
        )


def _as_mask(values: pa.Array) -> np.ndarray:
    """A boolean arrow array as numpy, null counting as false."""
    return pc.fill_null(values, False).to_numpy(zero_copy_only=False).astype(bool, copy=False)


def _decode(values: pa.Array) -> pa.Array:
    """Undo dictionary encoding (pandas categoricals in parquet) so the value type decides the parsing."""
    if pa.types.is_dictionary(values.type):
        return values.dictionary_decode()
    return values


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)


def _text_layout(values: pa.Array) -> tuple[np.ndarray, np.ndarray] | None:
    """The offsets (from 0, shape ``(n + 1,)``) and the bytes of a ``string``/``large_string`` array, as numpy views;
    ``None`` for other layouts."""
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return None
    _, offsets, data = values.buffers()
    width = np.int32 if pa.types.is_string(values.type) else np.int64
    offsets = np.frombuffer(offsets, dtype=width)[values.offset : values.offset + len(values) + 1]
    if data is None or len(offsets) == 0:
        return offsets - offsets[:1], np.zeros(0, dtype=np.uint8)
    data = np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]]
    return (offsets - offsets[0] if offsets[0] else offsets), data


def _plain_ascii(values: pa.Array) -> bool:
    """Whether the text holds only printable ASCII other than space: then no value has whitespace to trim (every
    Unicode space is a byte up to 0x20 or part of a multi-byte character) and none holds a NUL, so those checks,
    each a pass over every value, can be skipped."""
    layout = _text_layout(values)
    return layout is not None and (len(layout[1]) == 0 or (layout[1].min() > 0x20 and layout[1].max() < 0x80))


_DIGIT_OR_SIGN = np.zeros(256, dtype=bool)
_DIGIT_OR_SIGN[list(b"0123456789+-")] = True
_PLUS, _MINUS, _ZERO = ord("+"), ord("-"), ord("0")


def _all_integer_text(values: pa.Array, canonical: bool) -> bool:
    """``pc.all(pc.match_substring_regex(values, _CANONICAL_INT if canonical else _ANY_INT))`` for text without
    nulls, computed on the bytes with numpy (a regular expression per value is the slowest step of a large read)."""
    layout = _text_layout(values)
    if layout is None or len(values) == 0:
        return pc.all(pc.match_substring_regex(values, _CANONICAL_INT if canonical else _ANY_INT)).as_py()
    offsets, data = layout
    starts, lengths = offsets[:-1], np.diff(offsets)
    if lengths.min() < 1:
        return False
    first = data[starts]
    if data.min() >= ord("0") and data.max() <= ord("9"):  # digits alone, the usual case: no sign to place
        signed = np.zeros(len(starts), dtype=bool)
    else:
        if not _DIGIT_OR_SIGN[data].all():
            return False
        signed = (first == _MINUS) if canonical else (first == _MINUS) | (first == _PLUS)
        # Every sign byte must open its value: as many sign bytes in the text as values opened by one.
        signs = np.count_nonzero(data == _MINUS) + np.count_nonzero(data == _PLUS)
        if signs != np.count_nonzero(signed) or (canonical and np.count_nonzero(first == _PLUS)):
            return False
    digits = lengths - signed
    if digits.min() < 1:
        return False
    if not canonical:
        return True
    leading_zero = data[starts + signed] == _ZERO
    return bool(digits.max() <= 18 and not (leading_zero & ((digits > 1) | signed)).any())


def _ids(values: pa.Array, where: _Where) -> pd.Series:
    """int64 when every id is an integer (or canonical integer text), else Python str in an object column."""
    values = _decode(values)
    kind = values.type
    plain = _is_text(kind) and _plain_ascii(values)
    missing = pc.is_null(values, nan_is_null=True)
    if _is_text(kind):
        blank = pc.equal(pc.binary_length(values), 0) if plain else pc.equal(pc.utf8_trim_whitespace(values), "")
        missing = pc.or_(missing, pc.fill_null(blank, True))
    if pc.any(missing).as_py():
        raise where.error(_as_mask(missing), "missing value")

    if pa.types.is_integer(kind):
        if pa.types.is_uint64(kind) and pc.any(pc.greater(values, np.iinfo(np.int64).max)).as_py():
            big = _as_mask(pc.greater(values, np.iinfo(np.int64).max))
            raise where.error_with_value(values, big, "id {value} does not fit in int64")
        return pd.Series(values.cast(pa.int64()).to_numpy(), dtype="int64")
    if pa.types.is_floating(kind):
        fractional = pc.not_equal(pc.floor(values), values)
        if pc.any(fractional).as_py():
            raise where.error_with_value(values, _as_mask(fractional), "id {value} is not a whole number")
        too_big = pc.greater(pc.abs(values), 2.0**53)
        if pc.any(too_big).as_py():
            raise where.error_with_value(values, _as_mask(too_big), "id {value} is too large to be exact as a float")
        return pd.Series(values.cast(pa.int64()).to_numpy(), dtype="int64")
    if not _is_text(kind):
        raise where.column_error(f"ids must be integers or strings, not {kind}")

    if not plain:
        nul = pc.fill_null(pc.match_substring(values, "\x00"), False)
        if pc.any(nul).as_py():
            raise where.error(_as_mask(nul), "id contains a NUL byte (a damaged file?)")
        padded = pc.not_equal(pc.utf8_trim_whitespace(values), values)
        if pc.any(padded).as_py():
            raise where.error_with_value(values, _as_mask(padded), "id {value!r} has leading or trailing whitespace")
    if _all_integer_text(values, canonical=True):
        return _int64_series(values)
    return pd.Series(values.to_numpy(zero_copy_only=False), dtype=object, copy=False)


def _int64_series(values: pa.Array) -> pd.Series:
    """The values cast to int64, without the copy a Series makes of an array by default: the DataFrame built from
    the Series copies once more anyway."""
    return pd.Series(values.cast(pa.int64()).to_numpy(), dtype="int64", copy=False)


def _timestamps(values: pa.Array, where: _Where) -> pd.Series:
    """Numeric timestamps: int64 when every value is an integer, else float64; datetimes become unix seconds."""
    values = _decode(values)
    kind = values.type
    if _is_text(kind):
        values = values if _plain_ascii(values) else pc.utf8_trim_whitespace(values)
        missing = pc.or_(pc.is_null(values), pc.fill_null(pc.equal(pc.binary_length(values), 0), True))
    else:
        missing = pc.is_null(values, nan_is_null=True)
    if pc.any(missing).as_py():
        raise where.error(_as_mask(missing), "missing value")

    if pa.types.is_integer(kind):
        return pd.Series(values.cast(pa.int64()).to_numpy(), dtype="int64")
    if pa.types.is_timestamp(kind):
        return _unix_seconds(values)
    if pa.types.is_floating(kind):
        numbers = values.cast(pa.float64()).to_numpy()
    elif _is_text(kind):
        if _all_integer_text(values, canonical=False):
            return _exact_int64(values, where)  # never through float64: 19-digit times stay distinct
        text = pd.Series(values.to_numpy(zero_copy_only=False), dtype=object)
        numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
        unparsed = np.isnan(numbers) & ~text.str.lower().isin(["nan", "+nan", "-nan"]).to_numpy()
        if unparsed.any():
            raise where.error_with_value(
                values, unparsed, "cannot parse {value!r} as a number (timestamps must be numeric, e.g. unix seconds)"
            )
    else:
        raise where.column_error(f"timestamps must be numbers or datetimes, not {kind}")
    infinite = ~np.isfinite(numbers)
    if infinite.any():
        raise where.error_with_value(values, infinite, "{value} is not a finite number")
    return pd.Series(numbers, dtype="float64")


def _exact_int64(values: pa.Array, where: _Where) -> pd.Series:
    """Integer text (an optional sign, digits) as exact int64; a value beyond int64 is an error naming its row, not a
    rounded float."""
    if pc.any(pc.starts_with(values, "+")).as_py():
        values = pc.replace_substring_regex(values, r"^\+", "")  # arrow's cast takes "-7" but not "+7"
    try:
        return _int64_series(values)
    except (pa.ArrowInvalid, OverflowError):
        text = values.to_numpy(zero_copy_only=False)
        beyond = np.fromiter((not -(2**63) <= int(t) < 2**63 for t in text), dtype=bool, count=len(text))
        raise where.error_with_value(values, beyond, "{value} does not fit in int64") from None


def _unix_seconds(values: pa.Array) -> pd.Series:
    """Seconds since the epoch (UTC) of an arrow timestamp column: int64 when all whole seconds, else float64."""
    per_second = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[values.type.unit]
    ticks = values.cast(pa.int64()).to_numpy()
    if per_second == 1:
        return pd.Series(ticks, dtype="int64")
    if not (ticks % per_second).any():
        return pd.Series(ticks // per_second, dtype="int64")
    return pd.Series(ticks / per_second, dtype="float64")
