"""ML-1M download without a network: a tiny synthetic zip served by fake openers or a file:// URL, checked for
verification, cleanup after every kind of failure, and reuse of a verified file."""

from __future__ import annotations

import io
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from data_processing import DataError
from data_processing.download import ML1M_RATINGS_BLOB_ID, ML1M_URL, fetch_ml1m_ratings, git_blob_id
from data_processing.readers import read_interactions

RATINGS = b"1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n"


def make_zip(members: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return buffer.getvalue()


ZIP = make_zip({"ml-1m/README": b"synthetic", "ml-1m/ratings.dat": RATINGS, "ml-1m/movies.dat": b"1::x::y\n"})


class Opener:
    """Serves `payload` for any URL and records the calls."""

    def __init__(self, payload: bytes):
        self.payload = payload
        self.calls = []

    def __call__(self, url, timeout=None):
        self.calls.append((url, timeout))
        return io.BytesIO(self.payload)


class Interrupted(io.RawIOBase):
    """A response that delivers part of the zip and then loses the connection."""

    def __init__(self, payload: bytes):
        self.payload = payload[: len(payload) // 2]
        self.sent = False

    def readable(self):
        return True

    def readinto(self, buffer):
        if self.sent:
            raise ConnectionResetError("connection reset by peer")
        self.sent = True
        buffer[: len(self.payload)] = self.payload
        return len(self.payload)


def no_network(url, timeout=None):
    raise AssertionError("the network must not be used")


def leftovers(cache: Path) -> list:
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file())


@pytest.fixture
def blob_id() -> str:
    """The synthetic ratings.dat's git blob id, from git itself when it is installed."""
    if shutil.which("git"):
        result = subprocess.run(["git", "hash-object", "--stdin"], input=RATINGS, capture_output=True, check=True)
        return result.stdout.decode().strip()
    return pytest.skip("git is not installed: no independent blob id")


def test_git_blob_id_matches_git(tmp_path, blob_id):
    path = tmp_path / "ratings.dat"
    path.write_bytes(RATINGS)
    assert git_blob_id(path) == blob_id
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert git_blob_id(empty) == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"  # git's well-known empty blob


def test_download_verify_and_read(tmp_path, blob_id):
    opener = Opener(ZIP)
    path = fetch_ml1m_ratings(cache_dir=tmp_path, expected_blob_id=blob_id, opener=opener)
    assert path == tmp_path / "ml-1m" / "ratings.dat"
    assert path.read_bytes() == RATINGS
    assert opener.calls == [(ML1M_URL, 60)]
    assert leftovers(tmp_path) == ["ml-1m/ratings.dat"]
    frame = read_interactions(path, "ml1m_dat")
    assert frame.to_dict("list") == {
        "user_id": [1, 1, 2],
        "item_id": [1193, 661, 1193],
        "timestamp": [978300760, 978302109, 978298413],
    }
    # Second call: the verified file is reused and the network is not touched.
    assert fetch_ml1m_ratings(cache_dir=tmp_path, expected_blob_id=blob_id, opener=no_network) == path


def test_file_url_with_the_default_opener(tmp_path, blob_id):
    archive = tmp_path / "mirror" / "ml-1m.zip"
    archive.parent.mkdir()
    archive.write_bytes(ZIP)
    path = fetch_ml1m_ratings(cache_dir=tmp_path / "cache", url=archive.as_uri(), expected_blob_id=blob_id)
    assert path.read_bytes() == RATINGS


def test_mismatch_leaves_nothing(tmp_path):
    message = r"has git blob id \w{40}, expected " + ML1M_RATINGS_BLOB_ID + ".*nothing was saved"
    with pytest.raises(DataError, match=message):
        fetch_ml1m_ratings(cache_dir=tmp_path, opener=Opener(ZIP))
    assert leftovers(tmp_path) == []


def test_interrupted_download_leaves_nothing_that_is_used_later(tmp_path, blob_id):
    with pytest.raises(DataError, match=r"download of MovieLens-1M failed \(connection reset by peer\)"):
        fetch_ml1m_ratings(cache_dir=tmp_path, expected_blob_id=blob_id, opener=lambda url, timeout: Interrupted(ZIP))
    assert leftovers(tmp_path) == []
    with pytest.raises(AssertionError, match="network"):
        fetch_ml1m_ratings(cache_dir=tmp_path, expected_blob_id=blob_id, opener=no_network)
    path = fetch_ml1m_ratings(cache_dir=tmp_path, expected_blob_id=blob_id, opener=Opener(ZIP))
    assert path.read_bytes() == RATINGS


def test_network_error_is_a_data_error(tmp_path, blob_id):
    def refused(url, timeout=None):
        raise OSError("name resolution failed")

    message = r"name resolution failed.*--data_path .*ml-1m/ratings\.dat --data_format ml1m_dat"
    with pytest.raises(DataError, match=message):
        fetch_ml1m_ratings(cache_dir=tmp_path, expected_blob_id=blob_id, opener=refused)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"<html>not found</html>", r"download of MovieLens-1M failed"),
        (ZIP[: len(ZIP) // 2], r"download of MovieLens-1M failed"),
        (make_zip({"ml-1m/users.dat": b"1::F::1::10::48067\n"}), r"the zip has no ml-1m/ratings\.dat"),
    ],
)
def test_bad_archives(tmp_path, blob_id, payload, message):
    with pytest.raises(DataError, match=message):
        fetch_ml1m_ratings(cache_dir=tmp_path, expected_blob_id=blob_id, opener=Opener(payload))
    assert leftovers(tmp_path) == []


def test_damaged_cached_file_is_downloaded_again(tmp_path, blob_id):
    target = tmp_path / "ml-1m" / "ratings.dat"
    target.parent.mkdir(parents=True)
    target.write_bytes(RATINGS[:-5])
    opener = Opener(ZIP)
    assert fetch_ml1m_ratings(cache_dir=tmp_path, expected_blob_id=blob_id, opener=opener).read_bytes() == RATINGS
    assert len(opener.calls) == 1
