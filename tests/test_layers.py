"""Keeps DESIGN.md section 3's import rules true by walking every module's imports (AST)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _modules(*globs: str) -> list[Path]:
    return sorted(p for g in globs for p in ROOT.glob(g))


STREAMLIT_ALLOWED = {ROOT / "app.py", ROOT / "analyst" / "resources.py"}


@pytest.mark.parametrize("path", _modules("models/*.py"), ids=lambda p: p.name)
def test_models_never_import_ui_store_or_analyst(path: Path) -> None:
    bad = _imports(path) & {"streamlit", "duckdb", "analyst"}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


@pytest.mark.parametrize("name", ["store.py", "ingest.py", "synthetic.py", "schema.py", "config.py"])
def test_data_layer_has_no_torch_or_streamlit(name: str) -> None:
    path = ROOT / "analyst" / name
    if not path.exists():
        pytest.skip(f"{name} not present")
    bad = _imports(path) & {"streamlit", "torch", "transformers", "captum", "models"}
    assert not bad, f"analyst/{name} imports {sorted(bad)}"


@pytest.mark.parametrize("path", _modules("analyst/*.py", "models/*.py", "bench/*.py"), ids=lambda p: p.name)
def test_only_app_and_views_import_streamlit(path: Path) -> None:
    if path in STREAMLIT_ALLOWED:
        return
    assert "streamlit" not in _imports(path), f"{path.relative_to(ROOT)} imports streamlit"


def test_service_has_no_streamlit() -> None:
    assert "streamlit" not in _imports(ROOT / "analyst" / "service.py")


def test_no_sql_built_by_string_formatting() -> None:
    """f-strings / % / .format must not build SQL: values travel as parameters."""
    offenders = []
    for path in _modules("analyst/*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.JoinedStr):
                text = "".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
                if any(kw in text.upper() for kw in ("SELECT ", "INSERT ", "UPDATE ", "DELETE ", " WHERE ")):
                    offenders.append(f"{path.name}:{node.lineno}")
    assert not offenders, f"SQL built with f-strings at {offenders}"
