"""Writing outputs so that no work is lost: atomic replacement with ordinary permissions, made durable.

Every checkpoint, training state, predictions file, results file and report goes through `atomic_path`: the
new content is written to a temporary file beside the target, flushed to disk (the file and then its folder),
and renamed over the target, so a crash or a full disk leaves either the old file or the new one, never half
of one. Folders are created as needed. Reading text files with clear errors lives in data.read_text.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from . import FactlabError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_parent(path: Path) -> None:
    """Create the folder `path` goes into; a path that cannot hold a file is a one-line error naming it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FactlabError(f"{path}: cannot create its folder {path.parent} ({err.strerror})") from None


def fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some filesystems do not open folders; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside `path`; on success it replaces `path`, on failure it is removed, so an
    existing output is never left half-written or destroyed. The result has the mode a plain `open` would
    give it (0666 & ~umask), not mkstemp's 0600, and is fsynced with its folder before and after the rename."""
    path = Path(path)
    if path.is_dir():
        raise FactlabError(f"{path}: is a directory; give a file path to write")
    make_parent(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise FactlabError(f"{path}: cannot write there ({err.strerror})") from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_folder(path.parent)
    except OSError as err:
        raise FactlabError(f"{path}: cannot write ({err.strerror or err})") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
