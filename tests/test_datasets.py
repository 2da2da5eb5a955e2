"""CDNOW, read from the installed ``lifetimes`` distribution (data tests on a real file)."""

from __future__ import annotations

import importlib.metadata
import sys

import pandas as pd
import pytest

from churnlens import ChurnlensError, DatasetNotAvailableError, load_transactions
from churnlens.datasets import cdnow_path, load_cdnow, load_cdnow_sample

try:
    importlib.metadata.distribution("lifetimes")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover - dev extra installs it
    pytest.fail("the 'lifetimes' distribution (extra 'datasets') is required by these tests",
                pytrace=False)


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    return load_cdnow()


def test_cdnow_counts_and_range(cdnow: pd.DataFrame) -> None:
    assert len(cdnow) == 69_659  # rows as in the file, before any same-day aggregation
    assert cdnow["customer_id"].nunique() == 23_570
    assert cdnow["timestamp"].min() == pd.Timestamp("1997-01-01")
    assert cdnow["timestamp"].max() == pd.Timestamp("1998-06-30")
    assert list(cdnow.columns) == ["customer_id", "timestamp", "amount", "quantity"]


def test_cdnow_ids_are_text_with_leading_zeros(cdnow: pd.DataFrame) -> None:
    assert pd.api.types.is_string_dtype(cdnow["customer_id"])
    assert cdnow["customer_id"].iloc[0] == "00001"
    assert cdnow["customer_id"].str.fullmatch(r"\d{5}").all()
    assert {"00001", "23570"} <= set(cdnow["customer_id"])


def test_cdnow_several_rows_per_customer_day_kept(cdnow: pd.DataFrame) -> None:
    assert cdnow.duplicated(["customer_id", "timestamp"]).sum() > 1_000
    first = cdnow[cdnow["customer_id"] == "00002"].head(2)
    assert first["timestamp"].tolist() == [pd.Timestamp("1997-01-12")] * 2
    assert first["amount"].tolist() == [12.0, 77.0]
    assert first["quantity"].tolist() == [1.0, 5.0]


def test_cdnow_values(cdnow: pd.DataFrame) -> None:
    assert cdnow["timestamp"].dtype == "datetime64[us]"
    assert (cdnow["timestamp"] == cdnow["timestamp"].dt.normalize()).all()  # days only
    assert cdnow["amount"].dtype == "float64" and cdnow["amount"].min() >= 0
    assert (cdnow["quantity"] >= 1).all()
    # every customer first bought in the first quarter of 1997
    first = cdnow.groupby("customer_id")["timestamp"].min()
    assert first.max() < pd.Timestamp("1997-04-01")


def test_cdnow_meets_the_contract(cdnow: pd.DataFrame) -> None:
    tx, report = load_transactions(cdnow, quantity_col="quantity")
    assert report.rows_kept == 69_659 and report.customers == 23_570
    assert report.dropped_missing_customer_id == 0
    assert tx["customer_id"].tolist()[:3] == ["00001", "00002", "00002"]


def test_cdnow_sample() -> None:
    sample = load_cdnow_sample()
    assert sample["customer_id"].nunique() == 2_357
    assert len(sample) == 6_919
    assert sample["timestamp"].min() == pd.Timestamp("1997-01-01")
    assert sample["timestamp"].max() <= pd.Timestamp("1998-06-30")
    assert sample["customer_id"].iloc[0] == "0001"  # the sample's own id, as text
    assert list(sample.columns) == ["customer_id", "timestamp", "amount", "quantity"]


def test_cdnow_path_inside_the_distribution() -> None:
    path = cdnow_path()
    assert path.name == "CDNOW_master.txt" and path.parent.name == "datasets"
    assert path.parent.parent.name == "lifetimes"


def test_lifetimes_is_never_imported(monkeypatch) -> None:
    # A None entry in sys.modules makes "import lifetimes" raise ImportError.
    monkeypatch.setitem(sys.modules, "lifetimes", None)
    assert len(load_cdnow_sample()) == 6_919


def test_missing_distribution_names_the_extra(monkeypatch) -> None:
    def not_installed(name: str):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    for loader in (load_cdnow, load_cdnow_sample):
        with pytest.raises(DatasetNotAvailableError) as caught:
            loader()
        message = str(caught.value)
        assert "pip install 'churnlens[datasets]'" in message
        assert "lifetimes" in message
        # catchable as a churnlens error, a ValueError and a missing module
        assert isinstance(caught.value, ChurnlensError)
        assert isinstance(caught.value, ValueError)
        assert isinstance(caught.value, ModuleNotFoundError)


def test_distribution_without_the_file(monkeypatch) -> None:
    real = importlib.metadata.distribution("lifetimes")

    class Stripped:
        version = real.version
        files = tuple(f for f in real.files or () if "datasets" not in str(f))

        def locate_file(self, file):
            return real.locate_file(file)

    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: Stripped())
    with pytest.raises(DatasetNotAvailableError, match=r"CDNOW_master\.txt.*reinstall"):
        load_cdnow()
