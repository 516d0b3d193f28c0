"""Opt-in download of the raw MovieLens-1M ``ratings.dat`` (with timestamps) from GroupLens.

ML-1M may not be redistributed, so BT-SR never ships it and never fetches it on its own: this runs only when the user
asks (``--dataset ml-1m-raw --download``), and by doing so accepts the GroupLens terms (research use only). The
extracted file is checked against the git blob id of the official ``ratings.dat`` before it is used, and it only
appears under its final name once verified, so an interrupted or corrupt download can never be picked up later.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from .errors import DataError

__all__ = ["ML1M_URL", "ML1M_RATINGS_BLOB_ID", "default_cache_dir", "git_blob_id", "fetch_ml1m_ratings"]

logger = logging.getLogger(__name__)

ML1M_URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
# `git hash-object` of the official extracted ml-1m/ratings.dat, as GroupLens distributes it.
ML1M_RATINGS_BLOB_ID = "77a7c4b150f588c23bb9e1f068aa996c0b413695"
ML1M_MEMBER = "ml-1m/ratings.dat"

_CHUNK = 1 << 20
_TIMEOUT_S = 60


def default_cache_dir() -> Path:
    """``~/.cache/btsr``, where downloads are kept."""
    return Path("~/.cache/btsr").expanduser()


def git_blob_id(path: str | os.PathLike) -> str:
    """The id ``git hash-object`` gives the file: sha1 of ``b"blob <size>\\0"`` and the content, read in chunks.

    Example:

    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = pathlib.Path(folder) / "hello.txt"
    ...     _ = path.write_bytes(b"hello\\n")
    ...     git_blob_id(path)
    'ce013625030ba8dba906f756967f9e9ca394464a'
    """
    path = Path(path)
    digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_ml1m_ratings(
    cache_dir: str | os.PathLike | None = None,
    url: str = ML1M_URL,
    expected_blob_id: str = ML1M_RATINGS_BLOB_ID,
    opener: Callable = urllib.request.urlopen,
) -> Path:
    """Return ``<cache_dir>/ml-1m/ratings.dat``, downloading and verifying it first when it is not there yet.

    The zip goes to ``<cache_dir>/ml-1m.zip.partial-<pid>``; ``ml-1m/ratings.dat`` is extracted to a temporary name
    next to its final place, its git blob id is checked, and only then is it moved into place with
    :func:`os.replace`. Temporaries are removed whatever happens. A file already in place is reused without any
    network access once its blob id checks out (a damaged one is downloaded again).

    Args:
        cache_dir: where to keep the file; default :func:`default_cache_dir`.
        url: where to download the zip from (any URL ``opener`` understands, ``file://`` included).
        expected_blob_id: git blob id the extracted ``ratings.dat`` must have.
        opener: called as ``opener(url, timeout=...)``; must return a readable, closable response.

    Raises:
        DataError: when the download, the zip or the verification fails; nothing is left under the final name.
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = cache / ML1M_MEMBER
    if target.is_file():
        if git_blob_id(target) == expected_blob_id:
            return target
        logger.warning("%s does not match git blob id %s; downloading it again", target, expected_blob_id)

    logger.warning(
        "Downloading MovieLens-1M from %s. By using it you accept the GroupLens terms: research use only, no "
        "redistribution, no commercial use, cite Harper & Konstan (ACM TiiS 2015).",
        url,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    archive = cache / f"ml-1m.zip.partial-{os.getpid()}"
    extracted = target.parent / f"ratings.dat.partial-{os.getpid()}"
    try:
        with opener(url, timeout=_TIMEOUT_S) as response, open(archive, "wb") as out:
            shutil.copyfileobj(response, out, _CHUNK)
        with zipfile.ZipFile(archive) as bundle:
            if ML1M_MEMBER not in bundle.namelist():
                raise DataError(f"{url}: the zip has no {ML1M_MEMBER}; nothing was saved")
            with bundle.open(ML1M_MEMBER) as member, open(extracted, "wb") as out:
                shutil.copyfileobj(member, out, _CHUNK)
        blob_id = git_blob_id(extracted)
        if blob_id != expected_blob_id:
            raise DataError(
                f"{url}: the extracted {ML1M_MEMBER} has git blob id {blob_id}, expected {expected_blob_id}; the "
                "download is corrupt or upstream changed the file, nothing was saved"
            )
        os.replace(extracted, target)
    except (OSError, zipfile.BadZipFile, EOFError, zlib.error) as err:
        raise DataError(
            f"{url}: download of MovieLens-1M failed ({' '.join(str(err).split()) or type(err).__name__}); nothing "
            f"was saved. Download and unzip it yourself and pass --data_path <folder>/{ML1M_MEMBER} --data_format "
            "ml1m_dat"
        ) from err
    finally:
        for temporary in (archive, extracted):
            temporary.unlink(missing_ok=True)
    return target
