"""The notebooks in notebooks/: stored clean, public API only, and they run.

The execution tests start a real Jupyter kernel (``python3``: the interpreter running
pytest, so the venv with churnlens installed), run every cell in a temporary working
directory and fail on the first error. They are marked ``notebooks`` and ``slow``
(``make test-fast`` skips them).
"""

from __future__ import annotations

import ast
import time
from pathlib import Path

import nbformat
import pytest

import churnlens

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
EXPECTED = ("01-quickstart", "02-retention-analysis", "03-at-risk-campaign")
# Public submodules a notebook may import besides the names in churnlens.__all__.
PUBLIC_SUBMODULES = {"datasets", "plots", "exceptions", "cli"}
CELL_TIMEOUT_S = 600


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def _code(notebook: nbformat.NotebookNode) -> list[tuple[int, str]]:
    """(cell index, Python source) of each code cell, IPython syntax translated."""
    from IPython.core.inputtransformer2 import TransformerManager

    translate = TransformerManager().transform_cell
    return [(i, translate(cell.source)) for i, cell in enumerate(notebook.cells)
            if cell.cell_type == "code"]


def private_uses(source: str) -> list[str]:
    """Every way ``source`` reaches past churnlens' public API, as readable strings.

    Public means: a name in ``churnlens.__all__``, or a submodule in
    :data:`PUBLIC_SUBMODULES` and the names it does not mark private (``_x``).
    """
    problems: list[str] = []
    aliases: set[str] = set()  # local names bound to the churnlens package itself
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] != "churnlens":
                    continue
                if len(parts) > 1 and (parts[1] not in PUBLIC_SUBMODULES
                                       or any(p.startswith("_") for p in parts)):
                    problems.append(f"import {alias.name}")
                elif len(parts) == 1 or alias.asname is None:
                    aliases.add(alias.asname or "churnlens")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "churnlens":
            parts = (node.module or "").split(".")
            if len(parts) > 1:
                if parts[1] not in PUBLIC_SUBMODULES or any(p.startswith("_") for p in parts):
                    problems.append(f"from {node.module} import ...")
                problems += [f"from {node.module} import {a.name}"
                             for a in node.names if a.name.startswith("_")]
            else:
                public = set(churnlens.__all__) | PUBLIC_SUBMODULES
                problems += [f"from churnlens import {a.name}"
                             for a in node.names if a.name not in public]
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in aliases):
            public = set(churnlens.__all__) | PUBLIC_SUBMODULES
            if node.attr not in public:
                problems.append(f"{node.value.id}.{node.attr}")
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
              and isinstance(node.value.value, ast.Name) and node.value.value.id in aliases
              and node.value.attr in PUBLIC_SUBMODULES and node.attr.startswith("_")):
            problems.append(f"{node.value.value.id}.{node.value.attr}.{node.attr}")
    return problems


# --- fast checks of the stored files --------------------------------------------------


def test_the_issue_notebooks_exist() -> None:
    assert set(EXPECTED) <= set(_ids(NOTEBOOKS)), f"missing: {set(EXPECTED) - set(_ids(NOTEBOOKS))}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_is_stored_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    dirty = [i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"
             and (cell.outputs or cell.execution_count is not None)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; clear them before committing"
    assert notebook.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_imports_only_the_public_api(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    problems = [f"cell {i}: {use}" for i, source in _code(notebook)
                for use in private_uses(source)]
    assert not problems, f"{path.name} uses private churnlens names: {problems}"
    assert any("import churnlens" in source for _, source in _code(notebook))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import churnlens\nchurnlens.load_transactions", []),
        ("from churnlens import retention_rates, BGNBDModel", []),
        ("from churnlens.plots import plot_cohort_heatmap", []),
        ("import churnlens.datasets\nchurnlens.datasets.load_cdnow()", []),
        ("import churnlens as cl\ncl._retention", ["cl._retention"]),
        ("from churnlens._report import plot_roc", ["from churnlens._report import ..."]),
        ("import churnlens._io", ["import churnlens._io"]),
        ("from churnlens import _LAZY", ["from churnlens import _LAZY"]),
        ("from churnlens.plots import _figure", ["from churnlens.plots import _figure"]),
        ("import churnlens\nchurnlens.plots._groups", ["churnlens.plots._groups"]),
        ("import churnlens\nchurnlens.no_such_name", ["churnlens.no_such_name"]),
    ],
)
def test_private_use_detector(source: str, expected: list[str]) -> None:
    assert private_uses(source) == expected


# --- execution ----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_executes(path: Path, tmp_path: Path) -> None:
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, kernel_name="python3", timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(tmp_path)}},  # the kernel's working directory
    )
    began = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as exc:
        pytest.fail(f"{path.name} failed:\n{exc}")
    seconds = time.perf_counter() - began
    print(f"{path.name}: executed in {seconds:.1f} s")
    errors = [output for cell in notebook.cells if cell.cell_type == "code"
              for output in cell.outputs if output.output_type == "error"]
    assert not errors
    # Figures are displayed, not just built: each plotting cell shows an image.
    images = [cell for cell in notebook.cells if cell.cell_type == "code"
              and any("image/png" in output.get("data", {}) for output in cell.outputs)]
    assert images, f"{path.name} displayed no figure"
    assert list(tmp_path.iterdir()) == [], "a notebook wrote into its working directory"
