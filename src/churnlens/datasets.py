"""Real purchase data bundled with optional packages.

The CDNOW data (Fader and Hardie): every purchase of the 23,570 customers who first
bought a CD from CDNOW in the first quarter of 1997, followed until the end of June
1998. It ships inside the ``lifetimes`` wheel; churnlens reads the file through
:mod:`importlib.metadata` and never imports ``lifetimes`` (its import breaks on
recent pandas).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pandas as pd

from churnlens.exceptions import DatasetNotAvailableError

__all__ = ["cdnow_path", "load_cdnow", "load_cdnow_sample"]

_DISTRIBUTION = "lifetimes"


def cdnow_path(name: str = "CDNOW_master.txt") -> Path:
    """Path of a CDNOW file inside the installed ``lifetimes`` distribution.

    Parameters
    ----------
    name
        ``"CDNOW_master.txt"`` (every purchase) or ``"CDNOW_sample.txt"`` (the 1/10
        sample).

    Returns
    -------
    pathlib.Path
        The file, ready to read; ``lifetimes`` is not imported.

    Raises
    ------
    DatasetNotAvailableError
        ``lifetimes`` is not installed, or the file is not in it.

    Examples
    --------
    >>> cdnow_path().name
    'CDNOW_master.txt'
    """
    try:
        dist = importlib.metadata.distribution(_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:
        raise DatasetNotAvailableError(
            "the CDNOW data ships inside the 'lifetimes' distribution, which is not "
            "installed. Suggestion: pip install 'churnlens[datasets]'."
        ) from exc
    wanted = f"lifetimes/datasets/{name}"
    for file in dist.files or ():
        if str(file).replace("\\", "/") == wanted:
            path = Path(str(dist.locate_file(file)))
            if path.exists():
                return path
    raise DatasetNotAvailableError(
        f"{wanted} is not in the installed 'lifetimes' {dist.version}. Suggestion: "
        "reinstall it with pip install --force-reinstall 'lifetimes>=0.11.3'."
    )


def load_cdnow() -> pd.DataFrame:
    """The CDNOW master purchase log in churnlens' standard columns.

    Returns
    -------
    pandas.DataFrame
        69,659 rows for 23,570 customers, 1997-01-01 to 1998-06-30, with columns
        ``customer_id`` (text, as in the file: ``"00001"``), ``timestamp`` (the
        purchase day), ``amount`` (dollars) and ``quantity`` (CDs). Several rows per
        customer and day are kept as they are in the file.

    Examples
    --------
    >>> tx = load_cdnow()
    >>> len(tx), tx["customer_id"].nunique()
    (69659, 23570)
    >>> tx.head(3)
      customer_id  timestamp  amount  quantity
    0       00001 1997-01-01   11.77       1.0
    1       00002 1997-01-12   12.00       1.0
    2       00002 1997-01-12   77.00       5.0
    """
    return _read(cdnow_path("CDNOW_master.txt"), ["customer_id", "date", "quantity", "amount"],
                 header=True)


def load_cdnow_sample() -> pd.DataFrame:
    """The CDNOW 1/10 sample (2,357 customers) used by Fader, Hardie and Lee (2005).

    Returns
    -------
    pandas.DataFrame
        Same columns as :func:`load_cdnow`; ``customer_id`` is the sample's own id
        (text, ``"0001"`` to ``"2357"``).

    Examples
    --------
    >>> sample = load_cdnow_sample()
    >>> len(sample), sample["customer_id"].nunique()
    (6919, 2357)
    """
    return _read(cdnow_path("CDNOW_sample.txt"),
                 ["master_id", "customer_id", "date", "quantity", "amount"], header=False)


def _read(path: Path, names: list[str], *, header: bool) -> pd.DataFrame:
    raw = pd.read_csv(path, sep=r"\s+", header=0 if header else None, names=names,
                      dtype={"customer_id": str, "master_id": str, "date": str})
    return pd.DataFrame(
        {
            "customer_id": raw["customer_id"].astype("str"),
            "timestamp": pd.to_datetime(raw["date"], format="%Y%m%d").astype("datetime64[us]"),
            "amount": raw["amount"].astype("float64"),
            "quantity": raw["quantity"].astype("float64"),
        }
    )
