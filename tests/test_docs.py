"""The documentation matches the code.

- every ``churnlens ...`` command shown in README.md uses commands and flags the CLI has;
- every figure of the worked example in docs/retention.md is what the library computes;
- every public name in ``churnlens.__all__`` has a numpydoc docstring.
"""

from __future__ import annotations

import inspect
import math
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import typer
from conftest import GOLDEN_ROWS, GOLDEN_T0, GOLDEN_T1

import churnlens
import churnlens.datasets
import churnlens.plots
from churnlens.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RETENTION_DOC = ROOT / "docs" / "retention.md"

# --- README commands ---------------------------------------------------------------------

# Code blocks in these languages hold no shell commands.
NOT_SHELL = {"python", "py", "pycon", "json", "yaml", "yml", "toml", "ini", "text", "html"}
# Words that may come before ``churnlens`` on a shell line without making it another
# program's command (environment assignments, NAME=value, are allowed too).
WRAPPERS = {"time", "nohup", "exec", "env"}
SEPARATORS = {"|", "||", "&&", ";", "&", "(", ")"}
PLACEHOLDER = re.compile(r"^(?:[A-Z][A-Z0-9_]*(?:\.\.\.)?|<[^>]*>|\.\.\.|\$\S*|\[.*\])$")
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class CommandLine:
    """One ``churnlens`` invocation shown in a document."""

    where: str  # "README.md:12"
    text: str  # the line as shown, continuations joined
    args: tuple[str, ...]  # the words after ``churnlens``
    in_code_block: bool


def _is_churnlens(word: str) -> bool:
    return word == "churnlens" or word.endswith("/churnlens")


def _invocations(text: str) -> list[tuple[str, ...]]:
    """The argument lists of every churnlens invocation in one shell line."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words = list(lexer)
    found, segment = [], []
    for word in [*words, ";"]:
        if word not in SEPARATORS:
            segment.append(word)
            continue
        for k, token in enumerate(segment):
            if _is_churnlens(token):
                before = segment[:k]
                if all(ENV_ASSIGNMENT.match(w) or w in WRAPPERS for w in before):
                    found.append(tuple(segment[k + 1:]))
                break
        segment = []
    return found


def _logical_lines(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Join shell lines continued with a trailing backslash; drop ``$ `` prompts."""
    joined: list[tuple[int, str]] = []
    start, parts = 0, []
    for number, line in lines:
        if not parts:
            start = number
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            parts.append(stripped[:-1])
            continue
        parts.append(stripped)
        text = " ".join(p.strip() for p in parts).strip()
        joined.append((start, text[2:] if text.startswith("$ ") else text))
        parts = []
    if parts:
        joined.append((start, " ".join(p.strip() for p in parts).strip()))
    return joined


def command_lines(markdown: str, name: str = "README.md") -> list[CommandLine]:
    """Every churnlens command in a Markdown text: in shell code blocks and inline code."""
    found: list[CommandLine] = []
    block: list[tuple[int, str]] | None = None
    fence, language = "", ""
    prose: list[tuple[int, str]] = []
    for number, line in enumerate(markdown.splitlines(), start=1):
        opening = re.match(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)", line)
        if block is None and opening:
            block, fence, language = [], opening.group(1), opening.group(2).lower()
        elif block is not None and line.strip().startswith(fence):
            if language not in NOT_SHELL:
                for start, text in _logical_lines(block):
                    found += _commands_in(text, f"{name}:{start}", in_code_block=True)
            block = None
        elif block is not None:
            block.append((number, line))
        else:
            prose.append((number, line))
    for number, line in prose:
        for span in re.findall(r"(?<!`)`([^`\n]+)`(?!`)", line):
            span = span.strip()
            if span.startswith("$ "):
                span = span[2:]
            if _is_churnlens(span.split(" ", 1)[0]) and " " in span:
                found += _commands_in(span, f"{name}:{number}", in_code_block=False)
    return found


def _commands_in(text: str, where: str, *, in_code_block: bool) -> list[CommandLine]:
    try:
        invocations = _invocations(text)
    except ValueError as exc:  # unbalanced quotes
        if "churnlens" in text.split("#", 1)[0]:
            return [CommandLine(where, text, ("<unparseable: " + str(exc) + ">",),
                                in_code_block)]
        return []
    return [CommandLine(where, text, args, in_code_block) for args in invocations]


def _option_names(command: Any) -> dict[str, Any]:
    names = {}
    for param in command.params:
        if param.param_type_name == "option":
            for opt in (*param.opts, *param.secondary_opts):
                names[opt] = param
    return names


def cli_problems(args: tuple[str, ...], *, full: bool) -> list[str]:
    """What is wrong with ``churnlens <args>``, as messages (empty if nothing).

    Commands and flags must exist; a flag that takes a value must be given one, and a
    flag that takes none must not. With ``full``, a line without placeholders is also
    parsed by the CLI itself (types, choices, required options).
    """
    if args and args[0].startswith("<unparseable"):
        return [args[0]]
    root = typer.main.get_command(app)
    help_names = set(root.get_help_option_names(root.context_class(root, info_name="x")))
    root_options = set(_option_names(root)) | help_names
    i = 0
    problems = []
    while i < len(args) and args[i].startswith("-"):
        if args[i] not in root_options:
            problems.append(f"no option {args[i]} before the command")
        i += 1
    if i == len(args) or PLACEHOLDER.match(args[i]):
        return problems  # churnlens --version, churnlens COMMAND --help
    name, rest = args[i], list(args[i + 1:])
    command = root.commands.get(name)
    if command is None:
        return [*problems, f"no command {name!r} (commands: {sorted(root.commands)})"]
    options = _option_names(command)
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    positional = 0
    j = 0
    while j < len(rest):
        word = rest[j]
        if word.startswith("-") and len(word) > 1 and not re.match(r"^-\d", word):
            flag, equals, _ = word.partition("=")
            param = options.get(flag)
            if flag in help_names:
                pass
            elif param is None:
                problems.append(f"{name}: no option {flag}")
                if not equals and j + 1 < len(rest) and not rest[j + 1].startswith("-"):
                    j += 1  # its value, most likely: do not report it as well
            elif param.is_flag or param.count:
                if equals:
                    problems.append(f"{name}: {flag} takes no value")
            elif not equals:
                if j + 1 >= len(rest) or (rest[j + 1].startswith("-") and len(rest[j + 1]) > 1
                                          and not re.match(r"^-\d", rest[j + 1])):
                    problems.append(f"{name}: {flag} needs a value")
                else:
                    j += 1
        else:
            positional += 1
            takes = sum(float("inf") if a.nargs < 0 else a.nargs for a in arguments)
            if positional > takes:
                problems.append(f"{name}: unexpected argument {word!r}")
        j += 1
    if (full and not problems and not help_names & set(rest)
            and not any(PLACEHOLDER.match(w) for w in rest)):
        try:
            command.make_context(name, list(rest))
        except Exception as exc:  # the CLI's own usage error, whatever its class
            problems.append(f"{name}: {exc}")
    return problems


def test_readme_shows_churnlens_commands() -> None:
    lines = [c for c in command_lines(README.read_text(encoding="utf-8")) if c.in_code_block]
    assert len(lines) >= 5, (
        f"README.md shows {len(lines)} churnlens command lines in code blocks; expected the "
        "commands of every user tour (at least 5)"
    )


def test_readme_commands_and_flags_exist_in_the_cli() -> None:
    problems = [f"{c.where}: {c.text}\n    {p}"
                for c in command_lines(README.read_text(encoding="utf-8"))
                for p in cli_problems(c.args, full=c.in_code_block)]
    assert not problems, "README.md shows CLI usage the CLI does not accept:\n" + "\n".join(
        problems)


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        # good lines, with prompts, continuations, placeholders, env vars, pipes, paths
        ("```bash\n$ churnlens train --transactions tx.csv --as-of 2024-12-31 \\\n"
         "    --no-mlflow --bundle models\n```", []),
        ("```\nchurnlens score -t FILE --as-of DATE --out scores.parquet\n```", []),
        ("```sh\nCHURNLENS_API_KEYS=k1 .venv/bin/churnlens serve --transactions t.csv "
         "--port 8080 | tee log\n```", []),
        ("```bash\nchurnlens --version && churnlens at-risk --help\n```", []),
        ("```bash\nchurnlens backtest -t tx.csv --as-of 2024-06-30 --as-of=2024-09-30\n```", []),
        ("```bash\nchurnlens generate --out tx.csv  # a comment --no-such-flag\n```", []),
        ("```python\nchurnlens.train(tx, as_of='2024-12-31')\n```", []),
        ("```bash\npip install churnlens --upgrade\n```", []),
        ("Run `churnlens retention --every quarter` for a series.", []),
        # bad lines
        ("```bash\nchurnlens trian --transactions tx.csv --as-of 2024-12-31\n```",
         ["no command 'trian'"]),
        ("```bash\nchurnlens score --transactions tx.csv \\\n  --as-of 2024-12-31 "
         "--out s.csv --no-such-flag\n```", ["score: no option --no-such-flag"]),
        ("```bash\nchurnlens at-risk --scores s.csv --out l.csv --top\n```",
         ["at-risk: --top needs a value"]),
        ("```bash\nchurnlens train --transactions tx.csv --as-of 2024-12-31 --no-mlflow=1\n```",
         ["train: --no-mlflow takes no value"]),
        ("```bash\nchurnlens at-risk --scores s.csv --out l.csv --top ten\n```",
         ["at-risk: "]),
        ("```bash\nchurnlens train --transactions tx.csv\n```", ["train: Missing"]),
        ("See `churnlens score --engin spark`.", ["score: no option --engin"]),
        ("```bash\nchurnlens --verbose validate -t tx.csv\n```",
         ["no option --verbose before the command"]),
    ],
)
def test_readme_command_checker(markdown: str, expected: list[str]) -> None:
    """The checker itself: it accepts real usage and catches each kind of mistake."""
    lines = command_lines(markdown)
    problems = [p for c in lines for p in cli_problems(c.args, full=c.in_code_block)]
    assert len(problems) == len(expected), problems
    for problem, start in zip(problems, expected, strict=True):
        assert start in problem, problems


def test_checker_finds_commands_only_where_they_are() -> None:
    markdown = ("Intro `churnlens` and `churnlens.load_model`.\n\n```bash\n"
                "churnlens validate -t a.csv\nmake demo\n```\n\n```python\nimport churnlens\n```\n")
    lines = command_lines(markdown)
    assert [(c.where, c.args, c.in_code_block) for c in lines] == [
        ("README.md:4", ("validate", "-t", "a.csv"), True)]


# --- docs/retention.md: the worked example ----------------------------------------------


def _golden_table(name: str) -> list[dict[str, str]]:
    """The Markdown table between ``<!-- golden:NAME -->`` and ``<!-- /golden:NAME -->``."""
    text = RETENTION_DOC.read_text(encoding="utf-8")
    match = re.search(rf"<!-- golden:{name} -->\n(.*?)\n<!-- /golden:{name} -->", text, re.S)
    assert match, f"docs/retention.md has no golden:{name} table"
    rows = [[cell.strip().replace("\\|", "|")
             for cell in re.split(r"(?<!\\)\|", line.strip()[1:-1])]
            for line in match.group(1).strip().splitlines()]
    header, body = rows[0], rows[2:]
    assert all(len(row) == len(header) for row in body)
    return [dict(zip(header, row, strict=True)) for row in body]


def _agrees(shown: str, actual: float) -> bool:
    """A figure as printed (``33.33``, ``100.0``, ``3``, empty = NaN) matches a value."""
    if shown == "":
        return actual is None or (isinstance(actual, float) and math.isnan(actual))
    decimals = len(shown.partition(".")[2])
    return math.isclose(float(shown), float(actual), rel_tol=0, abs_tol=0.5 * 10**-decimals)


def _unquote(name: str) -> str:
    return name.strip("`")


@pytest.fixture
def golden() -> pd.DataFrame:
    raw = pd.DataFrame(GOLDEN_ROWS, columns=["customer_id", "timestamp", "amount"])
    return churnlens.load_transactions(raw).transactions


def test_retention_doc_example_is_the_golden_fixture() -> None:
    shown = [(r["customer"], r["day"], float(r["amount"])) for r in _golden_table("transactions")]
    assert shown == GOLDEN_ROWS


def test_retention_doc_rates(golden: pd.DataFrame) -> None:
    rates = churnlens.retention_rates(golden, GOLDEN_T0, GOLDEN_T1)
    assert rates.window_days == 91
    table = _golden_table("rates")
    assert [_unquote(r["figure"]) for r in table] == [
        "S", "E", "N", "reactivated", "crr", "cohort_retention", "churn_rate", "repeat_rate",
        "simple_ratio"]
    wrong = {name: (row["value"], getattr(rates, name)) for row in table
             if not _agrees(row["value"], getattr(rates, name := _unquote(row["figure"])))}
    assert not wrong, f"docs/retention.md (shown, computed): {wrong}"


def test_retention_doc_features_and_labels(golden: pd.DataFrame) -> None:
    features = churnlens.compute_features(golden, GOLDEN_T0)
    labels = churnlens.compute_labels(golden, GOLDEN_T0, 91, observed_until=GOLDEN_T1)
    computed = features.merge(labels[["customer_id", "churned"]], on="customer_id",
                              validate="one_to_one").set_index("customer_id")
    table = _golden_table("features")
    assert sorted(r["customer"] for r in table) == sorted(computed.index)
    for row in table:
        for column in ("frequency", "recency_days", "tenure_days", "monetary_total", "churned"):
            value = computed.loc[row["customer"], column]
            assert _agrees(row[column], float(value)), (row["customer"], column, value)


def test_retention_doc_sets_follow_from_the_features(golden: pd.DataFrame) -> None:
    """S, E and N of the example, from recency and tenure at t0 and t1 (W = L = 91)."""
    rates = churnlens.retention_rates(golden, GOLDEN_T0, GOLDEN_T1)
    at_t0 = churnlens.compute_features(golden, GOLDEN_T0).set_index("customer_id")
    at_t1 = churnlens.compute_features(golden, GOLDEN_T1).set_index("customer_id")
    start = set(at_t0.index[at_t0["recency_days"] < 91])
    end = set(at_t1.index[at_t1["recency_days"] < 91])
    new = set(at_t1.index[at_t1["tenure_days"] < 91])
    assert (start, end, new) == ({"A", "B", "F"}, {"A", "C", "D", "E"}, {"D"})
    assert (rates.S, rates.E, rates.N) == (len(start), len(end), len(new))
    assert rates.reactivated == len(end - new - start) == 2
    assert rates.cohort_retention == pytest.approx(len(start & end) / len(start) * 100)


def test_retention_doc_predicted(golden: pd.DataFrame) -> None:
    risk = {"A": 0.2, "B": 0.9, "C": 0.5, "E": 0.6, "F": 0.3}  # as stated in the doc
    text = RETENTION_DOC.read_text(encoding="utf-8")
    assert "A 0.2, B 0.9, C 0.5, E 0.6 and\nF 0.3" in text
    features = churnlens.compute_features(golden, GOLDEN_T0)
    predicted = churnlens.predict_retention(
        features["recency_days"], features["customer_id"].map(risk), window_days=91)
    table = _golden_table("predicted")
    assert len(table) == 9
    wrong = {name: (row["value"], getattr(predicted, name)) for row in table
             if not _agrees(row["value"], getattr(predicted, name := _unquote(row["figure"])))}
    assert not wrong, f"docs/retention.md (shown, computed): {wrong}"


def test_retention_doc_cohort_table(golden: pd.DataFrame) -> None:
    table = churnlens.cohort_table(golden).set_index("cohort")
    shown = _golden_table("cohorts")
    assert [r["cohort"] for r in shown] == list(table.index[table["cohort_size"] > 0])
    for row in shown:
        assert int(row["cohort_size"]) == table.loc[row["cohort"], "cohort_size"]
        for k in range(6):
            assert _agrees(row[str(k)], float(table.loc[row["cohort"], k])), (row["cohort"], k)


def test_retention_doc_occasion_rule_is_the_same_for_rates_and_features() -> None:
    """Amounts are added exactly: a day that nets to zero is no occasion, in features
    and rates alike (in floating point, 0.1 + 0.2 - 0.3 is 5.6e-17)."""
    raw = pd.DataFrame({
        "customer_id": ["a", "a", "a", "b", "b"],
        "timestamp": ["2024-01-05", "2024-03-01", "2024-03-01", "2024-01-06", "2024-03-02"],
        "amount": [10.0, 0.1 + 0.2, -0.3, 5.0, 4.0],  # a's 2024-03-01 nets to 5.6e-17
    })
    assert "Amounts are added exactly" in RETENTION_DOC.read_text(encoding="utf-8")
    tx = churnlens.load_transactions(raw).transactions
    features = churnlens.compute_features(tx, "2024-03-31").set_index("customer_id")
    rates = churnlens.retention_rates(tx, "2024-01-31", "2024-03-31")
    assert features.loc["a", "frequency"] == 1  # the near-zero day is no occasion
    assert (rates.S, rates.E) == (2, 1)  # so a is not active at the end


# --- docstrings of the public API --------------------------------------------------------

SECTIONS = {
    "Parameters", "Returns", "Yields", "Receives", "Other Parameters", "Raises", "Warns",
    "Warnings", "See Also", "Notes", "References", "Examples", "Attributes", "Methods",
}
# Public names that are data, not callables: they cannot carry a docstring of their own.
DATA_NAMES = {"FEATURES", "__version__"}

# Docstrings not yet in numpydoc form, in modules other people are editing. Each is an
# expected failure (strict): fixing one makes its test pass, and then fail until the name
# is removed from here. Keep this list shrinking.
PENDING_DOCSTRINGS: dict[str, str] = {}


def numpydoc_problems(obj: Any) -> list[str]:
    """How the docstring of a public function or class falls short of numpydoc.

    A one-line summary ending with a period, then sections with underlined headers
    numpydoc knows. Functions document every parameter under ``Parameters`` and the
    result under ``Returns`` (unless they return ``None``). Classes other than
    exceptions document their constructor's parameters under ``Parameters`` or
    ``Attributes``.
    """
    doc = inspect.getdoc(obj)
    if not doc:
        return ["no docstring"]
    problems = []
    lines = doc.splitlines()
    if not lines[0].strip().endswith("."):
        problems.append("the summary line does not end with a period")
    if len(lines) > 1 and lines[1].strip():
        problems.append("the summary is more than one line")
    sections: dict[str, list[str]] = {}
    current = None
    for k, line in enumerate(lines):
        underline = lines[k + 1] if k + 1 < len(lines) else ""
        if re.fullmatch(r"-{3,}", underline.strip()) and line.strip():
            current = line.strip()
            if current not in SECTIONS:
                problems.append(f"unknown section {current!r}")
            elif len(underline.strip()) != len(current):
                problems.append(f"the underline of {current!r} has the wrong length")
            sections[current] = []
        elif current is not None and not re.fullmatch(r"-{3,}", line.strip()):
            sections[current].append(line)
    documented = {
        name.strip().lstrip("*")
        for section in ("Parameters", "Attributes", "Other Parameters")
        for line in sections.get(section, [])
        if line and not line[0].isspace()
        for name in line.split(" : ")[0].split(",")
    }
    if inspect.isclass(obj) and issubclass(obj, BaseException):
        return problems
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return problems
    params = [p.name for p in signature.parameters.values()
              if p.name not in ("self", "cls") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    missing = [p for p in params if p not in documented]
    if missing:
        where = "Parameters or Attributes" if inspect.isclass(obj) else "Parameters"
        problems.append(f"{where} does not document {missing}")
    if inspect.isfunction(obj):
        returns_none = signature.return_annotation in (None, "None")
        if not returns_none and "Returns" not in sections and "Yields" not in sections:
            problems.append("no Returns section")
    return problems


PUBLIC = [name for name in churnlens.__all__ if name not in DATA_NAMES]
# The public submodules' own functions, by dotted name.
SUBMODULE_FUNCTIONS = [f"{module.__name__.removeprefix('churnlens.')}.{name}"
                       for module in (churnlens.datasets, churnlens.plots)
                       for name in module.__all__
                       if callable(getattr(module, name))]


def test_pending_docstrings_are_public_names() -> None:
    assert set(PENDING_DOCSTRINGS) <= set(PUBLIC)
    for name, module in PENDING_DOCSTRINGS.items():
        assert Path(inspect.getfile(getattr(churnlens, name))).name == module, name


@pytest.mark.parametrize(
    "name",
    [pytest.param(name, marks=pytest.mark.xfail(
        strict=True, reason=f"docstring in {PENDING_DOCSTRINGS[name]} is not numpydoc yet; "
        "remove the name from PENDING_DOCSTRINGS once it is"))
     if name in PENDING_DOCSTRINGS else name for name in PUBLIC],
)
def test_public_name_has_a_numpydoc_docstring(name: str) -> None:
    problems = numpydoc_problems(getattr(churnlens, name))
    assert not problems, f"churnlens.{name}: {problems}"


@pytest.mark.parametrize("dotted", SUBMODULE_FUNCTIONS)
def test_public_submodule_function_has_a_numpydoc_docstring(dotted: str) -> None:
    module, name = dotted.split(".")
    problems = numpydoc_problems(getattr(getattr(churnlens, module), name))
    assert not problems, f"churnlens.{dotted}: {problems}"


def _example(doc: str) -> Any:
    def function(transactions: pd.DataFrame, as_of: str, *, top: int = 3) -> pd.DataFrame:
        return transactions

    function.__doc__ = doc
    return function


GOOD_DOC = """Rank customers.

Parameters
----------
transactions, as_of
    The data and the day.
top : int
    How many.

Returns
-------
pandas.DataFrame
    The ranked rows.
"""


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (GOOD_DOC, []),
        (None, ["no docstring"]),
        ("Rank customers", ["the summary line does not end with a period",
                            "Parameters does not document ['transactions', 'as_of', 'top']",
                            "no Returns section"]),
        (GOOD_DOC.replace("top : int", "limit : int"),
         ["Parameters does not document ['top']"]),
        (GOOD_DOC.replace("Returns\n-------", "Returns\n----"),
         ["the underline of 'Returns' has the wrong length"]),
        (GOOD_DOC.replace("Returns\n-------", "Result\n------"),
         ["unknown section 'Result'", "no Returns section"]),
    ],
)
def test_numpydoc_checker(doc: str | None, expected: list[str]) -> None:
    assert numpydoc_problems(_example(doc)) == expected
