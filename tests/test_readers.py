"""Readers: every format on tiny hand-written files with exact expected tables, the id typing rule, every user
mistake with its one-line message, named datasets, and the real files in ../shared/data when they are there."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_processing import DataError
from data_processing.readers import (
    DATA_FORMATS,
    guess_data_format,
    interactions_from_dataset,
    load_dataset_by_name,
    read_interactions,
)
from tests.helpers import REPO_ROOT as REPO
from tests.helpers import require

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def write(path: Path, text: str | bytes, compress: bool = False) -> Path:
    data = text.encode() if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def expect(frame: pd.DataFrame, columns: dict) -> None:
    """`frame` has exactly these columns, in this order, with these values (order of rows included)."""
    assert list(frame.columns) == list(columns)
    assert list(frame.index) == list(range(len(frame)))
    for name, values in columns.items():
        assert frame[name].tolist() == values, name


def assert_dtypes(frame: pd.DataFrame, **dtypes: str) -> None:
    for name, dtype in dtypes.items():
        assert str(frame[name].dtype) == dtype, (name, frame[name].dtype)
        if dtype == "object":
            assert all(type(value) is str for value in frame[name]), name


def data_error(match: str):
    """pytest.raises for a DataError whose one-line message matches the regex `match`."""
    return pytest.raises(DataError, match=match)


# ---------------------------------------------------------------------------------------------------------------------
# csv / tsv
# ---------------------------------------------------------------------------------------------------------------------

CSV = "user_id,item_id,timestamp,rating\n3,30,300,4.0\n1,10,100,5\n3,31,200,1\n2,10,150,3\n"
EXPECTED_CSV = {"user_id": [3, 1, 3, 2], "item_id": [30, 10, 31, 10], "timestamp": [300, 100, 200, 150]}


@pytest.mark.parametrize("compress", [False, True])
def test_csv_exact_contents_in_file_order(tmp_path, compress):
    path = write(tmp_path / ("x.csv.gz" if compress else "x.csv"), CSV, compress)
    frame = read_interactions(path)
    expect(frame, EXPECTED_CSV)
    assert_dtypes(frame, user_id="int64", item_id="int64", timestamp="int64")


def test_gzip_is_detected_from_content_not_name(tmp_path):
    path = write(tmp_path / "x.csv", CSV, compress=True)
    expect(read_interactions(path, "csv"), EXPECTED_CSV)


@pytest.mark.parametrize("compress", [False, True])
def test_tsv(tmp_path, compress):
    path = write(tmp_path / ("x.tsv.gz" if compress else "x.tsv"), CSV.replace(",", "\t"), compress)
    assert guess_data_format(path) == "tsv"
    expect(read_interactions(path), EXPECTED_CSV)


def test_string_ids_stay_strings(tmp_path):
    path = write(tmp_path / "x.csv", "user_id,item_id\n007,A1\n7,b\n007,A1\n")
    frame = read_interactions(path)
    expect(frame, {"user_id": ["007", "7", "007"], "item_id": ["A1", "b", "A1"]})
    assert_dtypes(frame, user_id="object", item_id="object")


def test_each_column_is_typed_on_its_own(tmp_path):
    path = write(tmp_path / "x.csv", "user_id,item_id\n1,x1\n2,x2\n")
    frame = read_interactions(path)
    expect(frame, {"user_id": [1, 2], "item_id": ["x1", "x2"]})
    assert_dtypes(frame, user_id="int64", item_id="object")


@pytest.mark.parametrize(
    "ids, expected",
    [
        (["0", "-3", "42"], [0, -3, 42]),
        (["1", "+2"], ["1", "+2"]),
        (["1", "00"], ["1", "00"]),
        (["1", "-0x"], ["1", "-0x"]),
        (["1", "1.0"], ["1", "1.0"]),
        (["1", "1e3"], ["1", "1e3"]),
        (["123456789012345678", "1"], [123456789012345678, 1]),
        # 19 digits may not fit in int64, so such a column is left as text rather than risk an overflow.
        (["1234567890123456789", "1"], ["1234567890123456789", "1"]),
    ],
)
def test_only_canonical_integer_ids_become_int64(tmp_path, ids, expected):
    path = write(tmp_path / "x.csv", "user_id,item_id\n" + "".join(f"{i},1\n" for i in ids))
    assert read_interactions(path)["user_id"].tolist() == expected


_CANONICAL = re.compile(r"-?(0|[1-9][0-9]{0,17})")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.one_of(st.integers(-(10**6), 10**6).map(str), st.text("0123456789abc-", min_size=1, max_size=6)),
        min_size=1,
        max_size=30,
    )
)
def test_ids_round_trip_property(tmp_path, ids):
    path = write(tmp_path / "p.csv", "user_id,item_id\n" + "".join(f"{i},{i}\n" for i in ids))
    frame = read_interactions(path)
    if all(_CANONICAL.fullmatch(i) for i in ids):
        assert frame["user_id"].tolist() == [int(i) for i in ids]
        assert frame["user_id"].dtype == np.int64
    else:
        assert frame["item_id"].tolist() == ids
        assert frame["item_id"].dtype == object


def test_configured_columns_are_renamed(tmp_path):
    path = write(tmp_path / "x.csv", "ts,who,what\n5,u1,i1\n4,u2,i1\n")
    frame = read_interactions(path, user_col="who", item_col="what", time_col="ts")
    expect(frame, {"user_id": ["u1", "u2"], "item_id": ["i1", "i1"], "timestamp": [5, 4]})


def test_time_column_is_optional(tmp_path):
    path = write(tmp_path / "x.csv", "user_id,item_id\n1,2\n")
    expect(read_interactions(path), {"user_id": [1], "item_id": [2]})
    with_time = write(tmp_path / "y.csv", "user_id,item_id,timestamp\n1,2,3\n")
    expect(read_interactions(with_time, time_col=None), {"user_id": [1], "item_id": [2]})


def test_float_timestamps_stay_numbers(tmp_path):
    path = write(tmp_path / "x.csv", "user_id,item_id,timestamp\n1,2,1.5\n1,3, 2e3\n")
    frame = read_interactions(path)
    expect(frame, {"user_id": [1, 1], "item_id": [2, 3], "timestamp": [1.5, 2000.0]})
    assert_dtypes(frame, timestamp="float64")


def test_blank_lines_are_skipped_and_line_numbers_stay_true(tmp_path):
    path = write(tmp_path / "x.csv", "user_id,item_id,timestamp\n1,2,3\n\n1,3,4\n,,\n1,4,abc\n")
    with data_error(r"x\.csv: column 'timestamp' line 6: cannot parse 'abc' as a number"):
        read_interactions(path)
    path = write(tmp_path / "y.csv", "user_id,item_id,timestamp\n1,2,3\n\n1,3,4\n\n")
    expect(read_interactions(path), {"user_id": [1, 1], "item_id": [2, 3], "timestamp": [3, 4]})


def test_utf8_bom_is_not_part_of_the_first_column_name(tmp_path):
    path = write(tmp_path / "x.csv", b"\xef\xbb\xbfuser_id,item_id\n1,2\n")
    expect(read_interactions(path), {"user_id": [1], "item_id": [2]})


def test_non_ascii_string_ids(tmp_path):
    path = write(tmp_path / "x.csv", "user_id,item_id\nzoë,café\n")
    expect(read_interactions(path), {"user_id": ["zoë"], "item_id": ["café"]})


# ---------------------------------------------------------------------------------------------------------------------
# user mistakes: one line naming the file and the column / line
# ---------------------------------------------------------------------------------------------------------------------


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_missing_column_lists_the_columns(tmp_path):
    path = write(tmp_path / "x.csv", "userid,item_id,timestamp\n1,2,3\n")
    with data_error(r"x\.csv: no column 'user_id' .*\['userid', 'item_id', 'timestamp'\]") as err:
        read_interactions(path)
    one_line(err)


def test_misnamed_configured_column(tmp_path):
    path = write(tmp_path / "x.csv", "user_id,item_id,timestamp\n1,2,3\n")
    with data_error(r"x\.csv: no column 'movie' .*\['user_id', 'item_id', 'timestamp'\]"):
        read_interactions(path, item_col="movie")
    with data_error(r"x\.csv: no column 'ts' for timestamps"):
        read_interactions(path, time_col="ts")


def test_same_user_and_item_column(tmp_path):
    path = write(tmp_path / "x.csv", "a,b\n1,2\n")
    with data_error("x.csv: user_col and item_col are both 'a'"):
        read_interactions(path, user_col="a", item_col="a")


@pytest.mark.parametrize(
    "body, message",
    [
        ("1,2,3\n1,,4\n", r"column 'item_id' line 3: missing value"),
        ("1,2,3\n1,2,\n", r"column 'timestamp' line 3: missing value"),
        ("1,2,3\nNaN,2,4\n", r"column 'user_id' line 3: missing value"),
        ("1,2,3\n  ,2,4\n", r"column 'user_id' line 3: missing value"),
        ("1,2,3\n1,2,abc\n", r"column 'timestamp' line 3: cannot parse 'abc' as a number"),
        ("1,2,3\n1,2,2020-01-01\n", r"column 'timestamp' line 3: cannot parse '2020-01-01' as a number"),
        ("1,2,3\n1,2,inf\n", r"column 'timestamp' line 3: inf is not a finite number"),
        ("1,2,3\n1, 2,4\n", r"column 'item_id' line 3: id ' 2' has leading or trailing whitespace"),
        ("1,2,3\n1,2,3,4\n", r"line 3 has 4 fields, but the header has 3"),
        ("1,2,3,4\n1,2,3\n", r"line 2 has more fields than the header"),
    ],
)
def test_bad_values_name_file_column_and_line(tmp_path, body, message):
    path = write(tmp_path / "bad.csv", "user_id,item_id,timestamp\n" + body)
    with data_error(r"^" + re.escape(str(path)) + ": " + message) as err:
        read_interactions(path)
    one_line(err)


def test_empty_and_header_only_files(tmp_path):
    with data_error(r"empty\.csv: the file is empty"):
        read_interactions(write(tmp_path / "empty.csv", ""))
    with data_error(r"head\.csv: the file has a header line but no rows"):
        read_interactions(write(tmp_path / "head.csv", "user_id,item_id,timestamp\n"))
    with data_error(r"blank\.csv: the file has a header line but no rows"):
        read_interactions(write(tmp_path / "blank.csv", "user_id,item_id\n\n\n"))
    with data_error(r"lead\.csv: line 1 is blank"):
        read_interactions(write(tmp_path / "lead.csv", "\nuser_id,item_id\n1,2\n"))
    for fmt in ("sasrec", "s3rec", "ml1m_dat", "ml100k_udata"):
        with data_error(r"empty\.txt: the file is empty"):
            read_interactions(write(tmp_path / "empty.txt", "\n  \n"), fmt)


@pytest.mark.parametrize("fmt, name", [("csv", "x.csv"), ("sasrec", "x.txt"), ("s3rec", "x.txt"), ("tsv", "x.tsv")])
def test_non_utf8_bytes_name_file_and_line(tmp_path, fmt, name):
    good = "user_id,item_id\n1,2\n" if fmt == "csv" else "user_id\titem_id\n1\t2\n" if fmt == "tsv" else "1 2\n"
    path = write(tmp_path / name, good.encode() + b"3 \xe9t\xe9\n", compress=True)
    line = 3 if fmt in ("csv", "tsv") else 2
    with data_error(rf"{re.escape(name)}: line {line}: byte b'\\xe9' is not valid UTF-8") as err:
        read_interactions(path, fmt)
    one_line(err)


def test_broken_gzip(tmp_path):
    path = write(tmp_path / "x.csv.gz", gzip.compress(CSV.encode())[:-12])
    with data_error(r"x\.csv\.gz: is not a valid gzip file"):
        read_interactions(path)


def test_missing_file_and_unknown_format(tmp_path):
    with data_error(r"nope\.csv: no such file"):
        read_interactions(tmp_path / "nope.csv")
    with data_error(r"x\.csv: unknown data format 'excel'; use one of csv, tsv"):
        read_interactions(write(tmp_path / "x.csv", CSV), "excel")


# ---------------------------------------------------------------------------------------------------------------------
# format guessing
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, fmt",
    [
        ("ratings.csv", "movielens_csv"),
        ("Ratings.csv.gz", "movielens_csv"),
        ("ratings.dat", "ml1m_dat"),
        ("u.data", "ml100k_udata"),
        ("x.parquet", "parquet"),
        ("x.tsv", "tsv"),
        ("x.tsv.gz", "tsv"),
        ("interactions.csv.gz", "csv"),
        ("my_ratings.csv", "csv"),
    ],
)
def test_guess_data_format(name, fmt):
    assert guess_data_format(f"/nowhere/{name}") == fmt


@pytest.mark.parametrize("name", ["ml-1m.txt", "Beauty.txt.gz"])
def test_txt_is_ambiguous(name):
    with data_error(rf"{re.escape(name)}: cannot tell .* --data_format sasrec .* --data_format s3rec"):
        guess_data_format(f"/nowhere/{name}")


def test_unknown_extension(tmp_path):
    with data_error(r"x\.json: cannot guess the data format .* pass --data_format"):
        guess_data_format("x.json")
    with data_error(r"not one written by datasets' save_to_disk"):
        guess_data_format(tmp_path)


# ---------------------------------------------------------------------------------------------------------------------
# MovieLens layouts
# ---------------------------------------------------------------------------------------------------------------------


def test_movielens_csv_fixture():
    frame = read_interactions(FIXTURES / "ratings.csv")
    expect(
        frame,
        {
            "user_id": [1, 1, 2, 1],
            "item_id": [31, 1029, 10, 1061],
            "timestamp": [1000000100, 1000000200, 900000000, 1000000300],
        },
    )
    assert_dtypes(frame, user_id="int64", item_id="int64", timestamp="int64")


def test_movielens_csv_needs_its_timestamp(tmp_path):
    path = write(tmp_path / "ratings.csv", "userId,movieId,rating\n1,2,3\n")
    with data_error(r"ratings\.csv: no column 'timestamp' for timestamps"):
        read_interactions(path)


def test_ml_latest_small_counts():
    frame = read_interactions(REPO / "data" / "ml-latest-small" / "ratings.csv")
    assert (len(frame), frame["user_id"].nunique(), frame["item_id"].nunique()) == (100_836, 610, 9_724)
    assert frame.iloc[0].tolist() == [1, 1, 964982703]
    assert frame.iloc[-1].tolist() == [610, 170875, 1493846415]
    assert_dtypes(frame, user_id="int64", item_id="int64", timestamp="int64")


@pytest.mark.parametrize("compress", [False, True])
def test_ml1m_dat(tmp_path, compress):
    text = "1::1193::5::978300760\n1::661::3::978302109\r\n2::1193::4::978298413\n"
    frame = read_interactions(write(tmp_path / "ratings.dat", text, compress))
    expect(frame, {"user_id": [1, 1, 2], "item_id": [1193, 661, 1193], "timestamp": [978300760, 978302109, 978298413]})
    assert_dtypes(frame, user_id="int64", item_id="int64", timestamp="int64")


def test_ml1m_dat_malformed_line(tmp_path):
    path = write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3\n")
    with data_error(r"ratings\.dat: line 2 has 3 fields, expected 4 \(user_id item_id rating timestamp\)"):
        read_interactions(path)
    path = write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3::x\n")
    with data_error(r"ratings\.dat: column 'timestamp' line 2: cannot parse 'x' as a number"):
        read_interactions(path)


def test_ml100k_udata(tmp_path):
    path = write(tmp_path / "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n")
    expect(
        read_interactions(path),
        {"user_id": [196, 186, 22], "item_id": [242, 302, 377], "timestamp": [881250949, 891717742, 878887116]},
    )
    bad = write(tmp_path / "u.data", "196\t242\t3\t881250949\n186\t302\t3\n")
    with data_error(r"u\.data: line 2 has 3 fields, expected 4"):
        read_interactions(bad)


# ---------------------------------------------------------------------------------------------------------------------
# SASRec and S3-Rec layouts
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
def test_sasrec(tmp_path, compress):
    path = write(tmp_path / "seq.txt", "2 5\n2 3\n\n1 007\t \n1 5\n", compress)
    frame = read_interactions(path, "sasrec")
    expect(frame, {"user_id": [2, 2, 1, 1], "item_id": ["5", "3", "007", "5"]})
    assert_dtypes(frame, user_id="int64", item_id="object")


def test_sasrec_fixture():
    frame = read_interactions(FIXTURES / "sasrec.txt", "sasrec")
    expect(frame, {"user_id": [1, 1, 1, 2, 2], "item_id": [1, 2, 3, 2, 4]})


@pytest.mark.parametrize("line", ["1 2 3", "1"])
def test_sasrec_needs_exactly_two_fields(tmp_path, line):
    path = write(tmp_path / "seq.txt", f"1 2\n\n{line}\n1 4\n")
    with data_error(rf"seq\.txt: line 3 has {len(line.split())} fields, expected 2 \(user_id item_id\)"):
        read_interactions(path, "sasrec")


@pytest.mark.parametrize("compress", [False, True])
def test_s3rec(tmp_path, compress):
    path = write(tmp_path / "Beauty.txt", "1 1 2 3\n\n2 4 1\nu3 9\n", compress)
    frame = read_interactions(path, "s3rec")
    expect(frame, {"user_id": ["1", "1", "1", "2", "2", "u3"], "item_id": [1, 2, 3, 4, 1, 9]})
    assert_dtypes(frame, user_id="object", item_id="int64")


def test_s3rec_fixture():
    frame = read_interactions(FIXTURES / "s3rec.txt", "s3rec")
    expect(frame, {"user_id": [1, 1, 1, 2, 2, 3, 3, 3, 3], "item_id": [1, 2, 3, 4, 2, 1, 5, 2, 6]})


def test_s3rec_user_without_items(tmp_path):
    path = write(tmp_path / "Beauty.txt", "1 1 2\n2 3\n3 \n4 5\n")
    with data_error(r"Beauty\.txt: line 3 has a user but no items"):
        read_interactions(path, "s3rec")


# ---------------------------------------------------------------------------------------------------------------------
# parquet and datasets
# ---------------------------------------------------------------------------------------------------------------------


def test_parquet_via_pandas(tmp_path):
    source = pd.DataFrame(
        {
            "user_id": pd.Series(["007", "7", "007"], dtype=object),
            "item_id": np.array([10, 20, 10], dtype=np.int32),
            "timestamp": [3.5, 1.0, 2.0],
            "rating": [1, 2, 3],
        }
    )
    path = tmp_path / "x.parquet"
    source.to_parquet(path)
    frame = read_interactions(path)
    expect(frame, {"user_id": ["007", "7", "007"], "item_id": [10, 20, 10], "timestamp": [3.5, 1.0, 2.0]})
    assert_dtypes(frame, user_id="object", item_id="int64", timestamp="float64")


def test_parquet_datetimes_categoricals_and_integer_text(tmp_path):
    source = pd.DataFrame(
        {
            "user": pd.Categorical(["b", "a", "b"]),
            "item": ["1", "2", "3"],
            "when": pd.to_datetime(["1970-01-01 00:00:10", "1970-01-01 00:01:00", "2001-09-09 01:46:40"], utc=True),
        }
    )
    path = tmp_path / "x.parquet"
    source.to_parquet(path)
    frame = read_interactions(path, user_col="user", item_col="item", time_col="when")
    expect(frame, {"user_id": ["b", "a", "b"], "item_id": [1, 2, 3], "timestamp": [10, 60, 1_000_000_000]})
    assert_dtypes(frame, user_id="object", item_id="int64", timestamp="int64")


def test_parquet_errors(tmp_path):
    path = tmp_path / "x.parquet"
    pd.DataFrame({"user_id": [1.0, np.nan], "item_id": [1, 2]}).to_parquet(path)
    with data_error(r"x\.parquet: column 'user_id' row 2: missing value"):
        read_interactions(path)
    pd.DataFrame({"user_id": [1.0, 2.5], "item_id": [1, 2]}).to_parquet(path)
    with data_error(r"x\.parquet: column 'user_id' row 2: id 2.5 is not a whole number"):
        read_interactions(path)
    pd.DataFrame({"user_id": [True], "item_id": [1]}).to_parquet(path)
    with data_error(r"x\.parquet: column 'user_id': ids must be integers or strings, not bool"):
        read_interactions(path)
    pd.DataFrame({"uid": [1], "item_id": [1]}).to_parquet(path)
    with data_error(r"x\.parquet: no column 'user_id' .*\['uid', 'item_id'\]"):
        read_interactions(path)
    pd.DataFrame({"user_id": pd.Series([], dtype="int64"), "item_id": pd.Series([], dtype="int64")}).to_parquet(path)
    with data_error(r"x\.parquet: has no rows"):
        read_interactions(path)
    with data_error(r"fake\.parquet: cannot read it as parquet"):
        read_interactions(write(tmp_path / "fake.parquet", CSV))


def test_integral_float_ids_become_int64(tmp_path):
    path = tmp_path / "x.parquet"
    pd.DataFrame({"user_id": [1.0, 2.0], "item_id": [3, 4]}).to_parquet(path)
    frame = read_interactions(path)
    expect(frame, {"user_id": [1, 2], "item_id": [3, 4]})
    assert_dtypes(frame, user_id="int64")


def test_hf_dataset():
    import datasets

    ds = datasets.Dataset.from_dict(
        {"user_id": ["u2", "u1", "u2"], "item_id": [5, 6, 7], "timestamp": [30, 10, 20], "extra": ["a", "b", "c"]}
    )
    frame = interactions_from_dataset(ds)
    expect(frame, {"user_id": ["u2", "u1", "u2"], "item_id": [5, 6, 7], "timestamp": [30, 10, 20]})
    assert_dtypes(frame, user_id="object", item_id="int64", timestamp="int64")
    # A select() keeps an indices mapping: the visible order is what counts.
    selected = interactions_from_dataset(ds.select([2, 0]))
    expect(selected, {"user_id": ["u2", "u2"], "item_id": [7, 5], "timestamp": [20, 30]})


def test_hf_dataset_errors():
    import datasets

    ds = datasets.Dataset.from_dict({"user": [1, None], "item_id": [5, 6]})
    with data_error(r"my-ds: no column 'user_id' .*\['user', 'item_id'\]"):
        interactions_from_dataset(ds, name="my-ds")
    with data_error(r"my-ds: column 'user' row 2: missing value"):
        interactions_from_dataset(ds, user_col="user", name="my-ds")
    with data_error(r"<dataset>: is a DatasetDict with splits \['test', 'train'\]"):
        interactions_from_dataset(datasets.DatasetDict({"train": ds, "test": ds}))


def test_hf_dataset_saved_to_disk(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"user_id": [3, 1], "item_id": ["a", "b"]}).save_to_disk(str(tmp_path / "ds"))
    assert guess_data_format(tmp_path / "ds") == "hf_dataset"
    expect(read_interactions(tmp_path / "ds"), {"user_id": [3, 1], "item_id": ["a", "b"]})


# ---------------------------------------------------------------------------------------------------------------------
# named datasets
# ---------------------------------------------------------------------------------------------------------------------


def test_load_embedded_dataset():
    frame, info = load_dataset_by_name("ml-latest-small", data_root="/nowhere")
    assert (len(frame), frame["user_id"].nunique(), frame["item_id"].nunique()) == (100_836, 610, 9_724)
    assert info["name"] == "ml-latest-small"
    assert info["data_format"] == "movielens_csv"
    assert info["has_timestamps"] is True
    assert Path(info["path"]) == REPO / "data" / "ml-latest-small" / "ratings.csv"
    assert "redistribute" in info["license_note"]


def test_load_by_name_from_data_root(tmp_path, monkeypatch):
    write((tmp_path / "beauty").mkdir() or tmp_path / "beauty" / "Beauty.txt.gz", "1 1 2\n2 2 3 1\n", compress=True)
    frame, info = load_dataset_by_name("beauty", data_root=tmp_path)
    expect(frame, {"user_id": [1, 1, 2, 2, 2], "item_id": [1, 2, 2, 3, 1]})
    assert info["data_format"] == "s3rec" and info["has_timestamps"] is False
    assert info["path"] == str(tmp_path / "beauty" / "Beauty.txt.gz")
    monkeypatch.setenv("BTSR_DATA_ROOT", str(tmp_path))
    assert load_dataset_by_name("beauty")[1]["path"] == info["path"]


def test_ml1m_raw_is_found_in_the_cache_a_download_used(tmp_path, monkeypatch):
    """`--dataset ml-1m-raw --cache_dir D` reads what `--download --cache_dir D` fetched, not only the default."""
    monkeypatch.setenv("BTSR_DATA_ROOT", str(tmp_path / "root"))
    write(
        (tmp_path / "cache" / "ml-1m").mkdir(parents=True) or tmp_path / "cache" / "ml-1m" / "ratings.dat",
        "1::5::4::7\n",
    )
    frame, info = load_dataset_by_name("ml-1m-raw", cache_dir=tmp_path / "cache")
    assert info["path"] == str(tmp_path / "cache" / "ml-1m" / "ratings.dat") and len(frame) == 1
    with data_error(r"no file at .*root.*ratings\.dat or .*ratings\.dat"):
        load_dataset_by_name("ml-1m-raw", cache_dir=tmp_path / "elsewhere")


def test_load_by_name_missing_file_says_where_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv("BTSR_DATA_ROOT", str(tmp_path))
    with data_error(r"ml-1m: no file at .*ml-1m\.txt\.gz\. .*licence.* BTSR_DATA_ROOT .* --data_path") as err:
        load_dataset_by_name("ml-1m")
    assert str(tmp_path / "ml-1m" / "ml-1m.txt.gz") in one_line(err)


def test_load_by_name_unknown():
    with data_error(r"unknown dataset 'ml-10m'; use one of ml-latest-small, ml-100k, ml-1m"):
        load_dataset_by_name("ml-10m")


# ---------------------------------------------------------------------------------------------------------------------
# the real files, when ../shared/data is there (the `shared_data` fixture skips otherwise)
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, users, items, rows, has_time",
    [
        ("ml-1m", 6_040, 3_416, 999_611, False),
        ("ml-100k", 943, 1_682, 100_000, True),
        ("beauty", 22_363, 12_101, 198_502, False),
        ("sports", 35_598, 18_357, 296_337, False),
        ("lastfm", 1_090, 3_646, 52_551, False),
    ],
)
def test_shared_datasets(shared_data, name, users, items, rows, has_time):
    frame, info = load_dataset_by_name(name, data_root=shared_data)
    assert (frame["user_id"].nunique(), frame["item_id"].nunique(), len(frame)) == (users, items, rows)
    assert info["has_timestamps"] is has_time
    assert_dtypes(frame, user_id="int64", item_id="int64")


def test_shared_ml1m_order(shared_data):
    # How long the read takes is benchmarks/preprocess.py's figure, not a test's.
    path = require(shared_data / "ml-1m" / "ml-1m.txt.gz")
    frame = read_interactions(path, "sasrec")
    with gzip.open(path, "rt") as handle:
        first = [tuple(map(int, next(handle).split())) for _ in range(3)]
    assert list(zip(frame["user_id"][:3], frame["item_id"][:3])) == first
    assert frame["user_id"].is_monotonic_increasing


def test_shared_beauty_matches_a_plain_python_read(shared_data):
    path = require(shared_data / "beauty" / "Beauty.txt.gz")
    with gzip.open(path, "rt") as handle:
        pairs = [(int(parts[0]), int(item)) for parts in map(str.split, handle) for item in parts[1:]]
    frame = read_interactions(path, "s3rec")
    assert list(zip(frame["user_id"].tolist(), frame["item_id"].tolist())) == pairs


def _frame_file(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_parquet(path)
    return path


def _saved_dataset(path: Path, frame: pd.DataFrame) -> Path:
    import datasets

    datasets.Dataset.from_pandas(frame, preserve_index=False).save_to_disk(str(path))
    return path


# One table, users 1 and 2 with items 5, 6 | 7 at times 10, 20 | 30, written in each format that can hold it.
ONE_TABLE = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [5, 6, 7], "timestamp": [10, 20, 30]})
ONE_TABLE_WRITERS = {
    "csv": lambda folder: write(folder / "x.csv", "user_id,item_id,timestamp\n1,5,10\n1,6,20\n2,7,30\n"),
    "tsv": lambda folder: write(folder / "x.tsv", "user_id\titem_id\ttimestamp\n1\t5\t10\n1\t6\t20\n2\t7\t30\n"),
    "parquet": lambda folder: _frame_file(folder / "x.parquet", ONE_TABLE),
    "movielens_csv": lambda folder: write(
        folder / "x.csv", "userId,movieId,rating,timestamp\n1,5,4,10\n1,6,4,20\n2,7,4,30\n"
    ),
    "ml1m_dat": lambda folder: write(folder / "x.dat", "1::5::4::10\n1::6::4::20\n2::7::4::30\n"),
    "ml100k_udata": lambda folder: write(folder / "x.data", "1\t5\t4\t10\n1\t6\t4\t20\n2\t7\t4\t30\n"),
    "sasrec": lambda folder: write(folder / "x.txt", "1 5\n1 6\n2 7\n"),
    "s3rec": lambda folder: write(folder / "x.txt", "1 5 6\n2 7\n"),
    "hf_dataset": lambda folder: _saved_dataset(folder / "ds", ONE_TABLE),
}


@pytest.mark.parametrize("data_format", sorted(set(DATA_FORMATS) | set(ONE_TABLE_WRITERS)))
def test_every_format_reads_back_the_table_written_in_it(tmp_path, data_format):
    """Each format `read_interactions` accepts has its own reader (none falls through to another's) and a
    writer here: a format added to DATA_FORMATS without one fails, as does a writer for a format it lacks."""
    frame = read_interactions(ONE_TABLE_WRITERS[data_format](tmp_path), data_format)
    expected = ONE_TABLE[["user_id", "item_id"]] if data_format in ("sasrec", "s3rec") else ONE_TABLE  # no times
    assert list(frame.columns) == list(expected.columns)
    assert frame.to_dict("list") == expected.to_dict("list")


# ---------------------------------------------------------------------------------------------------------------------
# Input whose meaning would change silently
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["user_id,item_id,item_id", "user_id,item_id,user_id", "user_id,x,item_id,x"])
def test_a_column_named_twice_is_refused(tmp_path, header):
    path = write(tmp_path / "dup.csv", header + "\n" + ",".join(["1"] * len(header.split(","))) + "\n")
    with pytest.raises(DataError, match=r"dup.csv: the header names column '\w+' twice \(columns \d and \d\)"):
        read_interactions(path, "csv")


def test_a_parquet_column_named_twice_is_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_arrays([pa.array([1]), pa.array([2]), pa.array([3])], names=["user_id", "item_id", "item_id"])
    pq.write_table(table, tmp_path / "dup.parquet")
    with pytest.raises(DataError, match="names column 'item_id' twice"):
        read_interactions(tmp_path / "dup.parquet", "parquet")


def test_nanosecond_timestamps_stay_exact_and_keep_their_order(tmp_path):
    # Distinct 19-digit times, 1 ns apart: through float64 they would collapse and the order within the user is lost.
    times = [1_700_000_000_000_000_003, 1_700_000_000_000_000_001, 1_700_000_000_000_000_002]
    lines = "".join(f"1,{item},{t}\n" for item, t in zip((10, 20, 30), times))
    frame = read_interactions(write(tmp_path / "ns.csv", "user_id,item_id,timestamp\n" + lines), "csv")
    assert frame["timestamp"].dtype == np.int64 and frame["timestamp"].tolist() == times
    from data_processing import leave_one_out_split

    split = leave_one_out_split(frame, max_len=5)
    assert [split.item_vocab.item_ids[i - 1] for i in split.test.contexts[0]] == [20, 30]  # ordered by exact time
    assert split.item_vocab.item_ids[split.test.targets[0] - 1] == 10


def test_a_timestamp_beyond_int64_names_its_line(tmp_path):
    path = write(tmp_path / "big.csv", "user_id,item_id,timestamp\n1,2,5\n1,3,99999999999999999999\n")
    with data_error(r"big.csv: column 'timestamp' line 3: 99999999999999999999 does not fit in int64"):
        read_interactions(path, "csv")


def test_a_nul_byte_in_an_id_is_refused_not_read_as_text(tmp_path):
    path = write(tmp_path / "nul.csv", b"user_id,item_id\n1,2\n1,3\x00\n")
    with pytest.raises(DataError, match=r"nul.csv: column 'item_id' line 3: id contains a NUL byte"):
        read_interactions(path, "csv")


@pytest.mark.parametrize(
    ("data_format", "text", "kwargs", "flag"),
    [
        ("movielens_csv", "userId,movieId,rating,timestamp\n1,2,5,10\n", {"user_col": "uid"}, "user_column"),
        ("sasrec", "1 2\n1 3\n", {"item_col": "movieId"}, "item_column"),
        ("s3rec", "1 2 3\n", {"time_col": "ts"}, "timestamp_column"),
    ],
)
def test_a_column_named_for_a_fixed_layout_is_refused_not_ignored(tmp_path, data_format, text, kwargs, flag):
    path = tmp_path / "log.txt"
    path.write_text(text)
    with pytest.raises(DataError, match=rf"^{path}: --{flag} '\w+' does not apply to {data_format}, whose columns"):
        read_interactions(path, data_format, **kwargs)
    assert len(read_interactions(path, data_format)) > 0  # the defaults still read it


def test_movielens_csv_accepts_its_own_column_names(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("userId,movieId,rating,timestamp\n1,2,5,10\n1,3,4,11\n")
    named = read_interactions(path, user_col="userId", item_col="movieId", time_col="timestamp")
    assert named.equals(read_interactions(path))
