"""Output rules: atomic files, one table writer, one CSV dialect, one JSON form.

A crash, a kill or an error never leaves a half-written output, and an earlier file
at the same path stays intact until the new one is complete (write to a temporary
name beside the target, then rename).

This module owns three rules every writer follows:

- **Tables** go through :func:`write_table` (``.parquet`` or ``.csv``). There is one
  CSV dialect: UTF-8, a header row, comma separated, CRLF line ends (RFC 4180; a cell
  holding a bare CR or LF is quoted), no index. Lists meant for people (at-risk lists)
  pass ``spreadsheet_safe=True`` so formula-like text cells are neutralised.
- **JSON values** go through :func:`json_ready` (and :func:`frame_records` for
  frames): strict JSON, ``None`` for NaN/NA/infinity, Python numbers, ISO dates.
- **Paths** are checked by :func:`check_output_path` before any work is done.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import glob
import io
import json
import math
import os
import re
import stat
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churnlens.exceptions import ChurnlensError

__all__ = [
    "atomic_path",
    "check_output_folder",
    "check_output_path",
    "file_signature",
    "frame_records",
    "json_ready",
    "neutralize_formulas",
    "parquet_table",
    "read_table",
    "read_table_file",
    "read_table_metadata",
    "write_json",
    "write_safe_csv",
    "write_table",
]

TABLE_SUFFIXES = (".csv", ".parquet")
# Where write_table keeps churnlens' metadata in a Parquet schema.
_METADATA_KEY = b"churnlens"


def check_output_path(path: str | os.PathLike[str], *, suffixes: tuple[str, ...],
                      inputs: Mapping[str, str | os.PathLike[str] | None] | None = None
                      ) -> Path:
    """Check an output file path before any work is done.

    The suffix is known, the path is not a folder, and its folder exists and takes a
    new file (a temporary file is created and removed there, which also catches
    read-only file systems and folders without write permission). ``inputs`` maps the
    option of each file the command reads (``--transactions``...) to its path or glob
    pattern (``None``: not given): the output must not be one of them, or the run would
    replace its own input.

    Raises
    ------
    ChurnlensError
        Any of these fails; the message names the path and what to do.
    """
    out = Path(path)
    if out.suffix.lower() not in suffixes:
        raise ChurnlensError(
            f"{out}: unsupported output type {out.suffix or '(no extension)'!r}. "
            f"Suggestion: end the file name with one of {list(suffixes)}."
        )
    if out.is_dir():
        raise ChurnlensError(f"{out} is a directory. Suggestion: give a file name.")
    parent = out.parent
    if not parent.exists():
        raise ChurnlensError(
            f"{out}: the folder {parent} does not exist. Suggestion: create it first."
        )
    if not parent.is_dir():
        raise ChurnlensError(
            f"{out}: {parent} is a file, not a folder. Suggestion: choose another path."
        )
    _require_writable_folder(parent, what=str(out))
    _require_not_an_input(out, inputs or {})
    return out


def _require_not_an_input(out: Path, inputs: Mapping[str, str | os.PathLike[str] | None]
                          ) -> None:
    """Refuse an output that is one of the command's input files (the same file, by any
    path: a link, ``./``, a glob pattern that matches it)."""
    if not out.exists():
        return
    for flag, given in inputs.items():
        if given is None:
            continue
        text = os.fspath(given)
        matches = glob.glob(text) if glob.has_magic(text) else [text]
        for candidate in matches:
            try:
                same = os.path.samefile(out, candidate)
            except OSError:  # a missing input: its reader says so
                continue
            if same:
                raise ChurnlensError(
                    f"{out} is also the input file of {flag} ({candidate}): writing the "
                    "output there would replace what the command reads. Suggestion: "
                    "choose another output file name."
                )


def check_output_folder(path: str | os.PathLike[str]) -> Path:
    """Check a folder that will be created or filled with outputs, before any work is done.

    The path is not a file, and it (or, when missing, its nearest existing parent,
    where it will be created) takes new files.

    Raises
    ------
    ChurnlensError
        The path is a file, or no file can be created there.
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ChurnlensError(
            f"{out} is a file, not a folder. Suggestion: give a folder name (it is "
            "created if missing), or remove the file."
        )
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ChurnlensError(
            f"{out}: {existing} is a file, not a folder. Suggestion: choose another path."
        )
    _require_writable_folder(existing, what=str(out))
    return out


def _require_writable_folder(folder: Path, *, what: str) -> None:
    try:
        fd, probe = tempfile.mkstemp(prefix=".churnlens-write-check-", dir=folder)
    except OSError as exc:
        raise ChurnlensError(
            f"{what}: cannot write in the folder {folder} ({exc.strerror or exc}). "
            "Suggestion: choose a folder you can write to, or fix its permissions."
        ) from None
    os.close(fd)
    os.unlink(probe)


# The latest outputs atomic_path renamed into place, in order (read by the CLI to say
# which outputs are complete when a command is interrupted; it clears them per command).
# Bounded, so a long-lived process that writes many files does not grow it forever.
COMMITTED: collections.deque[Path] = collections.deque(maxlen=64)


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
        COMMITTED.append(target)
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
    metadata: dict[str, Any] | None = None,
    spreadsheet_safe: bool = False,
) -> Path:
    """Write a frame to ``.parquet`` or ``.csv``, atomically and kill-safe.

    The one table writer of churnlens. The whole file is first encoded in memory (an
    unencodable frame fails before anything touches the disk), then written to a hidden
    temporary ``.NAME.tmp-*`` beside the target, under an exclusive lock, and renamed
    over the target (see :func:`atomic_path`). A crash or a kill at any point leaves the
    previous file intact.

    Parameters
    ----------
    frame
        The table; its index is not written.
    path
        Target ``.parquet`` or ``.csv`` file; its folder must exist.
    metadata
        Stored in the Parquet schema (key ``churnlens``, JSON; read back by
        :func:`read_table_metadata`). CSV has no place for it.
    spreadsheet_safe
        For CSV lists meant for people: text cells that a spreadsheet would run as a
        formula are prefixed with ``'`` (see :func:`neutralize_formulas`).

    Returns
    -------
    pathlib.Path
        The file written.

    Notes
    -----
    The CSV dialect is the same for every table: UTF-8, header row, ``,`` separated,
    CRLF line ends (RFC 4180: a cell holding a bare CR or LF is then quoted, so an id
    such as ``"\\rCR"`` stays one cell instead of breaking the row), no index.
    """
    out = check_output_path(path, suffixes=TABLE_SUFFIXES)
    if out.suffix.lower() == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        sink = pa.BufferOutputStream()
        pq.write_table(parquet_table(frame, metadata), sink)
        payload = memoryview(sink.getvalue())
    else:
        payload = memoryview(csv_bytes(frame, spreadsheet_safe=spreadsheet_safe))
    with atomic_path(out) as tmp:
        tmp.write_bytes(payload)
    return out


def csv_bytes(frame: pd.DataFrame, *, spreadsheet_safe: bool = False,
              header: bool = True) -> bytes:
    """``frame`` in churnlens' one CSV dialect, as UTF-8 bytes (see :func:`write_table`).

    Examples
    --------
    >>> csv_bytes(pd.DataFrame({"id": ["=1", "a"]}), spreadsheet_safe=True)
    b"id\\r\\n'=1\\r\\na\\r\\n"
    """
    return csv_text(frame, spreadsheet_safe=spreadsheet_safe, header=header).encode("utf-8")


def csv_text(frame: pd.DataFrame, *, spreadsheet_safe: bool = False,
             header: bool = True) -> str:
    """``frame`` in churnlens' one CSV dialect, as text (see :func:`write_table`)."""
    text = io.StringIO()
    (neutralize_formulas(frame) if spreadsheet_safe else frame).to_csv(
        text, index=False, header=header, lineterminator="\r\n")
    return text.getvalue()


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


def read_table(path: str | os.PathLike[str], *, text_columns: tuple[str, ...] = ("customer_id",)
               ) -> pd.DataFrame:
    """A table :func:`write_table` wrote (scores, lists): Parquet, or CSV with
    ``text_columns`` read as text exactly ("NA", "" and "007" are ids, not missing
    values or numbers). Read errors (``OSError``, ``ValueError``) are the caller's to
    word."""
    import pandas as pd

    if Path(path).suffix.lower() == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype=dict.fromkeys(text_columns, str), keep_default_na=False)


# What the files most often handed over instead of a table or CSV text are, by their
# first bytes (file_signature): the loader's and read_table_file's messages name them.
GZIP, ZIP, UTF16 = "gzip-compressed", "a ZIP archive", "UTF-16 text"
_SIGNATURES = ((b"\x1f\x8b", GZIP), (b"PK\x03\x04", ZIP), (b"\xff\xfe", UTF16),
               (b"\xfe\xff", UTF16))


def file_signature(first: bytes) -> str | None:
    """What a file is from its first bytes: :data:`GZIP`, :data:`ZIP` or :data:`UTF16`
    (a byte-order mark); ``None`` for anything else.

    >>> file_signature(bytes([0x50, 0x4B, 3, 4])), file_signature(b"customer_id,")
    ('a ZIP archive', None)
    """
    return next((kind for magic, kind in _SIGNATURES if first.startswith(magic)), None)


def read_table_file(path: str | os.PathLike[str], *, option: str, what: str,
                    written_by: str, text_columns: tuple[str, ...] = ("customer_id",)
                    ) -> pd.DataFrame:
    """Read a table a churnlens command wrote (scores, a campaign list) given as an option.

    :func:`read_table`, with every failure worded for the person who gave the path:
    no such file, a folder, an empty file, a compressed file, or a file that does not
    read as its name says.

    Parameters
    ----------
    path
        The file, ``.parquet`` or ``.csv`` (a ``.gz`` CSV reads too).
    option
        The option that gave it (``--scores``), named first in every message.
    what
        What the file should be (``a scores file``).
    written_by
        The command that writes such a file (``churnlens score``), for the suggestion.
    text_columns
        As in :func:`read_table`.

    Raises
    ------
    ChurnlensError
        Saying what the path is and what to pass instead.
    """
    file = Path(path)
    where = f"{option} {file}"
    if file.is_dir():
        raise ChurnlensError(f"{where}: is a folder, not {what}. Suggestion: pass the .parquet "
                             f"or .csv file itself{_tables_in(file)}.")
    if not file.is_file():
        raise ChurnlensError(f"{where}: no such file. Suggestion: check the path, or run "
                             f"{written_by} first.")
    try:
        size = file.stat().st_size
        with file.open("rb") as fh:
            first = fh.read(4)
    except OSError as exc:
        raise ChurnlensError(f"{where}: cannot open ({exc.strerror or exc}). Suggestion: "
                             "check the file's permissions.") from exc
    if size == 0:
        raise ChurnlensError(f"{where}: is an empty file (0 bytes), not {what}: a copy or "
                             "a write that was cut off leaves one. Suggestion: write it "
                             f"again with {written_by}.")
    packed = file_signature(first)
    if packed in (GZIP, ZIP) and not (packed == GZIP and file.suffix.lower() == ".gz"):
        raise ChurnlensError(f"{where}: is {packed}, not {what} (churnlens reads the plain "
                             f".parquet or .csv file {written_by} writes). Suggestion: "
                             f"{_unpack(file, packed)}.")
    try:
        return read_table(file, text_columns=text_columns)
    except (OSError, ValueError) as exc:
        kind = "Parquet" if file.suffix.lower() == ".parquet" else "CSV"
        detail = " ".join(str(exc).split())[:300]
        raise ChurnlensError(f"{where}: cannot read it as {kind} ({detail}), so it is not "
                             f"{what}. Suggestion: pass the .parquet or .csv file "
                             f"{written_by} wrote; if it was cut off or edited, write it "
                             f"again with {written_by}.") from exc


def _unpack(file: Path, packed: str) -> str:
    """What to do with a compressed file given for a table, as a suggestion."""
    import shlex

    if packed != GZIP:
        return (f"list what it holds with unzip -l {shlex.quote(str(file))}, unzip it and "
                "pass the .parquet or .csv file inside")
    plain = file.with_name(f"{file.stem}-plain{file.suffix}")
    hint = (f"decompress it, for example gunzip -c {shlex.quote(str(file))} > "
            f"{shlex.quote(str(plain))}, and pass {shlex.quote(str(plain))}")
    if file.suffix.lower() == ".csv":
        hint += f", or name it {file.name}.gz (a gzip-compressed CSV reads as it is)"
    return hint


def _tables_in(folder: Path) -> str:
    """`` (in it: a.parquet, b.csv)``: the first table files in a folder, for a message."""
    import itertools

    try:
        names = sorted(p.name for p in itertools.islice(folder.iterdir(), 10_000)
                       if p.suffix.lower() in TABLE_SUFFIXES and p.is_file())
    except OSError:
        return ""
    if not names:
        return f", not a folder ({folder} holds no .parquet or .csv file)"
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return f" (in it: {', '.join(names[:3])}{more})"


def read_table_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``churnlens`` metadata stored by :func:`write_table` in a Parquet file."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(_METADATA_KEY)
    return json.loads(raw) if raw else {}


# Cells a spreadsheet would run as a formula (OWASP "CSV injection").
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n")


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
        The file written. Text cells starting with ``=``, ``+``, ``-``, ``@``, a tab, a
        carriage return or a line feed are prefixed with ``'`` (see
        :func:`neutralize_formulas`), so a spreadsheet shows them instead of running
        them. Same dialect as :func:`write_table` with ``spreadsheet_safe=True``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> out = write_safe_csv(pd.DataFrame({"customer_id": ["=1+1"]}), folder / "list.csv")
    >>> out.read_text().splitlines()
    ['customer_id', "'=1+1"]
    """
    check_output_path(path, suffixes=(".csv",))
    return write_table(frame, path, spreadsheet_safe=True)


# --- JSON ---------------------------------------------------------------------------


def json_ready(value: Any) -> Any:
    """``value`` as strict JSON-ready Python data; the one JSON form of churnlens.

    Dictionaries (keys as text), lists and tuples are converted item by item. NaN,
    infinity, ``None``, ``pd.NA`` and ``pd.NaT`` become ``None``; numpy scalars become
    Python numbers and booleans; dates become ISO text, and a datetime (or pandas
    Timestamp) at midnight becomes a date (``"2024-03-31"``), any other one its full
    ISO text. numpy arrays become lists. Anything else is returned as it is.

    Examples
    --------
    >>> json_ready({"auc": np.float64("nan"), "n": np.int64(3),
    ...             "as_of": pd.Timestamp("2024-03-31"), "ok": np.bool_(True)})
    {'auc': None, 'n': 3, 'as_of': '2024-03-31', 'ok': True}
    """
    if value is None or isinstance(value, str | bool | int):
        return value  # the common case first: nothing to do (a bool is an int)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else json_ready(pd.Timestamp(value))
    if isinstance(value, dt.datetime):  # pandas Timestamps included
        midnight = value.hour == value.minute == value.second == value.microsecond == 0
        return value.date().isoformat() if midnight else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, np.ndarray):
        return [json_ready(v) for v in value.tolist()]
    return value


def frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of a frame as JSON-ready dictionaries (values as :func:`json_ready`).

    Converted column by column, many times faster than row by row.

    Examples
    --------
    >>> frame_records(pd.DataFrame({"x": [1.5, float("nan")], "n": [1, 2]}))
    [{'x': 1.5, 'n': 1}, {'x': None, 'n': 2}]
    """
    columns: dict[str, list[Any]] = {}
    for name in frame.columns:
        column = frame[name]
        numpy_kind = column.dtype.kind if isinstance(column.dtype, np.dtype) else ""
        if numpy_kind == "f":
            values = [v if math.isfinite(v) else None for v in column.tolist()]
        elif numpy_kind in ("i", "u"):
            values = column.tolist()  # plain numpy integers: never missing
        else:
            values = column.tolist()
            if not all(type(v) is str for v in values):
                values = [json_ready(v) for v in values]
        columns[str(name)] = values
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]
