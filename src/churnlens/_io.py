"""Atomic output: write to a temporary name beside the target, then rename.

A crash, a kill or an error never leaves a half-written output, and an earlier file
at the same path stays intact until the new one is complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from churnlens.exceptions import ChurnlensError

__all__ = [
    "atomic_path",
    "check_output_path",
    "parquet_table",
    "read_table_metadata",
    "write_json",
    "write_table",
]

TABLE_SUFFIXES = (".csv", ".parquet")
# Where write_table and write_output keep churnlens' metadata in a Parquet schema.
_METADATA_KEY = b"churnlens"


def check_output_path(path: str | os.PathLike[str], *, suffixes: tuple[str, ...]) -> Path:
    """Check an output path before any work is done: known suffix, existing folder."""
    out = Path(path)
    if out.suffix.lower() not in suffixes:
        raise ChurnlensError(
            f"{out}: unsupported output type {out.suffix or '(no extension)'!r}. "
            f"Suggestion: end the file name with one of {list(suffixes)}."
        )
    if out.is_dir():
        raise ChurnlensError(f"{out} is a directory. Suggestion: give a file name.")
    if not out.parent.exists():
        raise ChurnlensError(
            f"{out}: the folder {out.parent} does not exist. Suggestion: create it first."
        )
    return out


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    On an exception or Ctrl-C the temporary file is removed and ``path`` is untouched.
    The writer holds an exclusive lock on the temporary ``.NAME.tmp-*`` file until the
    rename; a ``SIGKILL`` can leave one behind, and the next successful write to the
    same target removes every temporary whose lock is free (its writer is gone).
    """
    target = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        _lock(fd, blocking=True)
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        # mkstemp makes the file private (0600); give it the mode a plain open() would
        # (or the mode of the file it replaces), so other users and jobs can read it.
        os.chmod(tmp, _mode_for(target))
        os.replace(tmp, target)
    finally:
        os.close(fd)  # releases the lock
        if tmp.exists():
            tmp.unlink()
    remove_stale_temporaries(target)


def _lock(fd: int, *, blocking: bool) -> bool:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no locks, no stale-file cleaning
        return blocking
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except OSError:
        return False
    return True


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Remove ``.NAME.tmp-*`` files beside ``target`` left by killed writers.

    A writer holds an exclusive lock on its temporary file until it is renamed; a
    temporary whose lock can be taken belongs to no live writer.
    """
    removed = []
    for candidate in target.parent.glob(f".{glob_escape(target.name)}.tmp-*"):
        try:
            fd = os.open(candidate, os.O_RDONLY)
        except OSError:
            continue
        try:
            if _lock(fd, blocking=False):
                candidate.unlink(missing_ok=True)
                removed.append(candidate)
        finally:
            os.close(fd)
    return removed


def glob_escape(name: str) -> str:
    """``name`` with glob wildcards escaped."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def _mode_for(target: Path) -> int:
    """Permission bits for a new output: the replaced file's, else 0666 minus umask."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        umask = os.umask(0)  # reading the umask means setting it; put it back at once
        os.umask(umask)
        return 0o666 & ~umask


def write_table(
    frame: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    metadata: dict[str, str] | None = None,
    csv_writer: Callable[[pd.DataFrame, Path], None] | None = None,
) -> Path:
    """Write a frame to ``.csv`` or ``.parquet`` atomically.

    ``metadata`` is stored in the Parquet schema (key ``churnlens``, JSON); CSV has no
    place for it.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    out = check_output_path(path, suffixes=TABLE_SUFFIXES)
    with atomic_path(out) as tmp:
        if out.suffix.lower() == ".parquet":
            pq.write_table(parquet_table(frame, metadata), tmp)
        elif csv_writer is not None:
            csv_writer(frame, tmp)
        else:
            pacsv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), tmp)
    return out


def parquet_table(frame: pd.DataFrame, metadata: dict[str, Any] | None = None) -> Any:
    """``frame`` as an Arrow table, ``metadata`` stored in its schema as JSON.

    The key is ``churnlens``; :func:`read_table_metadata` reads it back.
    """
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False)
    if metadata:
        meta = dict(table.schema.metadata or {})
        meta[_METADATA_KEY] = json.dumps(metadata, sort_keys=True).encode()
        table = table.replace_schema_metadata(meta)
    return table


def write_json(payload: Any, path: str | os.PathLike[str]) -> Path:
    """Write JSON atomically."""
    out = Path(path)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    return out


def read_table_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``churnlens`` metadata stored by :func:`write_table` in a Parquet file."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(_METADATA_KEY)
    return json.loads(raw) if raw else {}


# Cells a spreadsheet would run as a formula (OWASP "CSV injection").
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralize_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Prefix text cells that start like a formula with ``'`` so spreadsheets show them as text.

    Only text columns change; numbers stay numbers.

    Examples
    --------
    >>> neutralize_formulas(pd.DataFrame({"id": ['=HYPERLINK("x")', "A1"]}))["id"].tolist()
    ['\\'=HYPERLINK("x")', 'A1']
    """
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if pd.api.types.is_string_dtype(values) or values.dtype == object:
            text = values.astype("string")
            risky = text.str.startswith(FORMULA_PREFIXES).fillna(False).astype(bool)
            if risky.any():
                out[column] = values.astype(object).where(~risky, "'" + text.astype(object))
    return out


def write_safe_csv(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a CSV for spreadsheets, atomically, with formula-like cells neutralised.

    Parameters
    ----------
    frame
        The table, for example an at-risk list.
    path
        Target ``.csv`` file; its folder must exist.

    Returns
    -------
    pathlib.Path
        The file written. Text cells starting with ``=``, ``+``, ``-``, ``@``, a tab or
        a carriage return are prefixed with ``'`` (see :func:`neutralize_formulas`), so
        a spreadsheet shows them instead of running them.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> out = write_safe_csv(pd.DataFrame({"customer_id": ["=1+1"]}), folder / "list.csv")
    >>> out.read_text().splitlines()
    ['customer_id', "'=1+1"]
    """
    out = check_output_path(path, suffixes=(".csv",))
    with atomic_path(out) as tmp:
        # CRLF line ends (RFC 4180): a cell holding a bare CR or LF is then quoted, so
        # an id such as "\rCR" stays one cell instead of breaking the row.
        neutralize_formulas(frame).to_csv(tmp, index=False, lineterminator="\r\n")
    return out
