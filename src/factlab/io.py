"""Files in and out: reading inputs with one-line errors, and writing outputs so that no work is lost.

Reading: `read_text` takes a whole UTF-8 file (`read_json`, `read_jsonl` parse one); a missing, unreadable,
non-UTF-8 or (unless allowed) empty file is a FactlabError naming the file and the problem, never a traceback.

Writing: every checkpoint, training state, predictions file, results file, report and synthetic corpus goes
through `atomic_path`: the new content is written to a temporary file beside the target, flushed to disk (the
file and then its folder), and renamed over the target, so a crash or a full disk leaves either the old file or
the new one, never half of one. Folders are created as needed.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from . import FactlabError


def read_text(path: str | Path, allow_empty: bool = False) -> str:
    """A whole UTF-8 file, its line endings as they are; a missing, unreadable or (unless `allow_empty`) empty
    file raises FactlabError naming it."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise FactlabError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise FactlabError(f"{path}: is a directory, expected a text file") from None
    except UnicodeDecodeError as err:
        raise FactlabError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise FactlabError(f"{path}: cannot read ({err.strerror})") from None
    if not allow_empty and not text.strip():
        raise FactlabError(f"{path}: file is empty")
    return text


def read_json(path: str | Path):
    """A JSON file's value; a file that is not JSON is an error naming the line and column."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise FactlabError(f"{path}: not valid JSON (line {err.lineno} column {err.colno}: {err.msg})") from None


def read_jsonl(path: str | Path) -> list[dict]:
    """The objects of a JSON-lines file, one a line (blank lines skipped); an empty file has none."""
    records = []
    for number, line in enumerate(read_text(path, allow_empty=True).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise FactlabError(f"{path}:{number}: not valid JSON ({err.msg})") from None
        if not isinstance(record, dict):
            raise FactlabError(f"{path}:{number}: expected a JSON object")
        records.append(record)
    return records


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
    """`text` as UTF-8, its newlines written as they are (no translation to the platform's)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(text.encode("utf-8"))
