"""Rules about the source itself, read with ``ast`` and ``tokenize`` (see docs/architecture.md).

- The domain packages never import the API layer (``vidgen.graphql``, ``vidgen.web``,
  Strawberry, Starlette): not at the top, not inside a function, not under
  ``TYPE_CHECKING``, not by a relative import and not through ``importlib``.
- Every document a comment or docstring under ``src/`` cites exists in the repository, so a
  reader who follows a citation finds it.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "vidgen"

#: The packages (and modules) that hold the rules of vidgen, not its API.
DOMAIN = ("services", "jobs", "media", "providers", "events", "models", "webhooks_out")
#: What they must never import: the API layer and its frameworks.
API_LAYER = ("vidgen.graphql", "vidgen.web", "strawberry", "starlette")


# --- imports -----------------------------------------------------------------------------


def module_name(path: Path) -> str:
    """The dotted name of a module under ``src/`` (``vidgen.jobs.queue``)."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _absolute(module: str | None, level: int, importer: str, is_package: bool) -> str:
    """The absolute name of ``from <level dots><module> import …`` written in ``importer``."""
    if level == 0:
        return module or ""
    base = importer.split(".")
    if not is_package:
        base.pop()  # a module's relative imports start from its package
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def imported_names(
    source: str, importer: str, *, is_package: bool = False
) -> Iterator[tuple[int, str]]:
    """Every module ``source`` imports, as (line, absolute dotted name), wherever the import
    statement is. ``from a import b`` yields both ``a`` and ``a.b`` (``b`` may be a module).
    Calls of ``importlib.import_module`` or ``__import__`` with a literal name count too."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node.module, node.level, importer, is_package)
            yield node.lineno, base
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{base}.{alias.name}" if base else alias.name
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            first = node.args[0]
            if (
                name in ("import_module", "__import__")
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                yield node.lineno, first.value


def in_api_layer(name: str) -> bool:
    return any(name == layer or name.startswith(layer + ".") for layer in API_LAYER)


def domain_files(unit: str) -> list[Path]:
    """The source files of one domain package (or single-module unit such as ``models``)."""
    module = PACKAGE / f"{unit}.py"
    if module.is_file():
        return [module]
    return sorted((PACKAGE / unit).rglob("*.py"))


def api_layer_imports(path: Path) -> list[str]:
    """``file:line imports name`` for each import of the API layer in ``path``."""
    found = []
    imports = imported_names(
        path.read_text(encoding="utf-8"), module_name(path), is_package=path.name == "__init__.py"
    )
    for line, name in imports:
        if in_api_layer(name):
            found.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return found


@pytest.mark.parametrize("unit", DOMAIN)
def test_domain_never_imports_the_api_layer(unit: str) -> None:
    files = domain_files(unit)
    assert files, f"no source found for vidgen.{unit}: update DOMAIN in this test"
    violations = [v for path in files for v in api_layer_imports(path)]
    assert not violations, (
        "Domain code must not import the API layer (docs/architecture.md); move the code "
        "that needs it into vidgen.graphql or vidgen.web:\n" + "\n".join(violations)
    )


@pytest.mark.parametrize(
    ("source", "caught"),
    [
        ("import strawberry", "strawberry"),
        ("from starlette.requests import Request", "starlette.requests"),
        ("from vidgen import web", "vidgen.web"),
        ("def f():\n    from vidgen.graphql import types\n", "vidgen.graphql"),
        (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import vidgen.web.app\n",
            "vidgen.web.app",
        ),
        ("from ..graphql import context", "vidgen.graphql"),
        ("import importlib\nimportlib.import_module('vidgen.graphql.schema')", "vidgen.graphql"),
        ("__import__('strawberry.relay')", "strawberry.relay"),
    ],
)
def test_the_import_check_sees_every_form(source: str, caught: str) -> None:
    names = [name for _, name in imported_names(source, "vidgen.jobs.queue")]
    assert any(in_api_layer(name) and name.startswith(caught) for name in names), names


@pytest.mark.parametrize(
    "source",
    [
        "from vidgen import errors, models",
        "from vidgen.events.bus import video_channel",
        "from . import lifecycle",
        "import graphql_tools",  # a name that only starts like the layer's
        "from vidgen.webhooks_util import x",
    ],
)
def test_the_import_check_allows_the_domain(source: str) -> None:
    names = [name for _, name in imported_names(source, "vidgen.jobs.queue")]
    assert not [name for name in names if in_api_layer(name)], names


# --- citations of documents --------------------------------------------------------------

#: A path ending in ``.md`` that is not part of a longer path or a URL.
MD_CITATION = re.compile(r"(?<![\w/.:-])((?:[\w.-]+/)*[\w.-]+\.md)\b")
#: Notes kept outside the repository were also cited without their extension.
BARE_CITATION = re.compile(r"\b(STACK-NOTES)\b(?!\.md)")


def cited_documents(text: str) -> Iterator[tuple[int, str]]:
    """(line offset within ``text``, cited path) for each document ``text`` cites."""
    for pattern, suffix in ((MD_CITATION, ""), (BARE_CITATION, ".md")):
        for match in pattern.finditer(text):
            yield text.count("\n", 0, match.start()), match.group(1) + suffix


def comments_and_docstrings(source: str) -> Iterator[tuple[int, str]]:
    """(first line, text) of every comment and every docstring (any string statement)."""
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            yield node.lineno, node.value.value


def resolves(citation: str, citing: Path) -> bool:
    """A citation names a file from the repository's root, from ``docs/`` or from the citing
    file's folder."""
    return any((base / citation).is_file() for base in (ROOT, ROOT / "docs", citing.parent))


def test_cited_documents_exist() -> None:
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for line, text in comments_and_docstrings(path.read_text(encoding="utf-8")):
            for offset, citation in cited_documents(text):
                if not resolves(citation, path):
                    missing.append((str(path.relative_to(ROOT)), line + offset, citation))
    assert not missing, (
        "Comments and docstrings must cite documents that are in the repository "
        "(docs/...):\n" + "\n".join(f"{p}:{n} cites {c}" for p, n, c in sorted(missing))
    )


@pytest.mark.parametrize(
    ("text", "citations"),
    [
        ("See providers.md section 3.", ["providers.md"]),
        ("(see docs/jobs.md#workers)", ["docs/jobs.md"]),
        ("the lifespan task (see STACK-NOTES).", ["STACK-NOTES.md"]),
        ("see CONTRACT.md ``GenerateVideoInput``", ["CONTRACT.md"]),
        ("https://github.com/redis/redis-py/blob/master/README.md", []),
        ("no document here: .mdx, notes.mdown", []),
    ],
)
def test_the_citation_check_reads_citations(text: str, citations: list[str]) -> None:
    assert [citation for _, citation in cited_documents(text)] == citations


def test_the_citation_check_reads_comments_and_docstrings() -> None:
    source = '"""Module, see a.md."""\n\nX = 1  # see b.md\n\n\ndef f():\n    """see c.md"""\n'
    texts = [text for _, text in comments_and_docstrings(source)]
    assert [c for text in texts for _, c in cited_documents(text)] == ["b.md", "a.md", "c.md"]
