"""The import contracts in pyproject.toml (run by `make lint`) hold, and breaking one fails."""

from __future__ import annotations

import ast
import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("backend", "notebooks", "podcast", "reports", "web")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def copy_of_the_project(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("tests", "__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_project_keeps_its_import_contracts() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        # An app reaching past the façade into the runtime's state machine.
        ("notebooks/selectors.py", "from backend.runtime import state", "through its façade"),
        # A pure library importing Django.
        ("notebooks/ingest/chunking.py", "from django.conf import settings", "Pure libraries"),
        ("reports/generation/render.py", "from backend.models import Job", "Pure libraries"),
        # A lower layer of the runtime importing a higher one, or the façade.
        ("backend/runtime/dispatch.py", "from backend.runtime.state import job_cancel", "layered"),
        ("backend/runtime/state.py", "from backend.runtime import progress", "never import its façade"),
        ("backend/runtime/events.py", "from notebooks.models import Notebook", "know nothing above them"),
        # Another app querying the notebooks app's models instead of its selectors.
        ("podcast/apis.py", "from notebooks.models import Notebook", "through its selectors only"),
        # An app's lower layer reaching up: a selector calling a service, a model its job.
        ("notebooks/selectors.py", "from notebooks import services", "reads top-down"),
        ("reports/models.py", "from reports.jobs import report_generate", "reads top-down"),
    ],
)
def test_breaking_a_contract_fails_the_lint(copy_of_the_project: Path, module: str, line: str, contract: str) -> None:
    target = copy_of_the_project / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    result = lint_imports(copy_of_the_project)
    assert result.returncode != 0
    broken = [row for row in result.stdout.splitlines() if " BROKEN" in row]  # "BROKEN (n ignored imports)"
    assert any(contract in row for row in broken), result.stdout


def unresolved_imports(files: list[Path]) -> list[str]:
    """Every ``from <project module> import name`` in these files, at any depth (the lazy ones in
    function bodies too, which nothing runs until their code path does), whose module or name
    does not exist."""
    project = (*PACKAGES, "bench", "tests")
    missing = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module):
                continue
            if node.module.split(".")[0] not in project:
                continue
            try:
                module = importlib.import_module(node.module)
            except ImportError:
                missing.append(f"{path}:{node.lineno} {node.module}")
                continue
            for alias in node.names:
                if alias.name == "*" or hasattr(module, alias.name):
                    continue
                try:
                    importlib.import_module(f"{node.module}.{alias.name}")
                except ImportError:
                    missing.append(f"{path}:{node.lineno} {node.module}.{alias.name}")
    return missing


def test_every_import_of_a_project_module_resolves_even_inside_functions(tmp_path: Path) -> None:
    files = [p for d in (*PACKAGES, "bench", "tests") for p in (ROOT / d).rglob("*.py") if "migrations" not in p.parts]
    assert unresolved_imports(files) == []
    # A lazy import of a name that moved away (make eval once imported a moved service this way).
    moved = tmp_path / "stale.py"
    moved.write_text("def build():\n    from notebooks.services import source_process\n")
    assert unresolved_imports([moved]) == [f"{moved}:2 notebooks.services.source_process"]
