"""Keeps the layering true by walking every module's imports (AST), function-level ones included.

Layers, bottom to top (a module may import its own layer and the layers below, never above):

0. models/contracts.py                       the field table, label schema, devices
1. models/*, analyst/vocab.py, analyst/config.py, analyst/access.py
2. analyst/store/*, ingest, synthetic, sampling, charts   data and plain figures (of models/,
                                             only the torch-free contracts and signals)
3. analyst/service/*                         use cases (inside: records at the bottom, the
                                             Workbench facade on top; see SERVICE_ORDER)
4. analyst/report.py, analyst/cli.py, analyst/resources.py
5. analyst/views/*
6. app.py
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the service package's own order: a module may import only those before it
SERVICE_ORDER = ("records", "demo", "labels", "links", "jobs", "model_files", "versions", "explanations", "export",
                 "ray_scoring", "scoring", "cases",
                 "review", "rings", "rescoring", "stream_sources", "streaming", "__init__")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _project_files() -> list[Path]:
    files = [ROOT / "app.py", *ROOT.glob("analyst/**/*.py"), *ROOT.glob("models/**/*.py")]
    return sorted(p for p in files if "__pycache__" not in p.parts)


MODULES = {_module_name(p): p for p in _project_files()}


def _imported(path: Path) -> set[str]:
    """Project modules (and top-level third-party names) that `path` imports."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = node.module + "." + alias.name
                names.add(full if full in MODULES else node.module)
    return names


def _top(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


def layer(module: str) -> int:
    if module == "models.contracts":
        return 0
    if module.startswith("models") or module in ("analyst.vocab", "analyst.config", "analyst.access"):
        return 1
    if module.startswith(("analyst.store", "analyst.synthetic")) or module in (
            "analyst.ingest", "analyst.sampling", "analyst.charts", "analyst"):
        return 2
    if module.startswith("analyst.service"):
        return 3
    if module in ("analyst.report", "analyst.cli", "analyst.resources"):
        return 4
    if module.startswith("analyst.views"):
        return 5
    if module == "app":
        return 6
    raise AssertionError(f"{module}: no layer assigned; add it to tests/test_layers.py")


@pytest.mark.parametrize("module", sorted(MODULES), ids=str)
def test_no_import_runs_up_a_layer(module: str) -> None:
    up = sorted(m for m in _imported(MODULES[module]) if m in MODULES and layer(m) > layer(module))
    assert not up, f"{module} (layer {layer(module)}) imports {up} from a higher layer"


def test_service_modules_import_only_those_below() -> None:
    bad = []
    for name in SERVICE_ORDER:
        module = "analyst.service" if name == "__init__" else "analyst.service." + name
        rank = SERVICE_ORDER.index(name)
        for dep in _imported(MODULES[module]):
            if dep.startswith("analyst.service"):
                dep_name = "__init__" if dep == "analyst.service" else dep.split(".")[2]
                if SERVICE_ORDER.index(dep_name) >= rank:
                    bad.append(f"{module} -> {dep}")
    assert not bad, f"service imports that run sideways or up: {bad}"
    present = {p.stem for p in (ROOT / "analyst" / "service").glob("*.py")}
    assert present == set(SERVICE_ORDER), f"service modules without a place in SERVICE_ORDER: {present ^ set(SERVICE_ORDER)}"


def test_no_import_circles() -> None:
    graph = {m: {d for d in _imported(p) if d in MODULES and d != m} for m, p in MODULES.items()}
    seen: dict[str, int] = {}   # 1 on the current path, 2 done

    def visit(node: str, path: list[str]) -> None:
        seen[node] = 1
        for dep in sorted(graph[node]):
            if seen.get(dep) == 1:
                raise AssertionError("import circle: " + " -> ".join(path[path.index(dep):] + [dep]))
            if dep not in seen:
                visit(dep, path + [dep])
        seen[node] = 2

    for module in sorted(graph):
        if module not in seen:
            visit(module, [module])


def test_contracts_need_no_framework() -> None:
    assert _top(_imported(MODULES["models.contracts"])) <= {"__future__", "dataclasses", "numpy", "pandas"}


@pytest.mark.parametrize("module", [m for m in sorted(MODULES) if m.startswith("models")], ids=str)
def test_models_never_import_ui_store_or_analyst(module: str) -> None:
    # models.signals runs its SQL on DuckDB as a compute engine over frames (the store runs the
    # same SQL on its file): the one model module allowed duckdb, and it needs no torch
    engine = {"duckdb"} if module == "models.signals" else set()
    bad = _top(_imported(MODULES[module])) & ({"streamlit", "duckdb", "analyst"} - engine)
    assert not bad, f"{module} imports {sorted(bad)}"


# model modules the data layer may use: they import no torch (checked below)
TORCH_FREE_MODELS = {"models.contracts", "models.signals"}


@pytest.mark.parametrize("module", sorted(TORCH_FREE_MODELS), ids=str)
def test_torch_free_models_are(module: str) -> None:
    assert not _top(_imported(MODULES[module])) & {"torch", "transformers", "captum", "streamlit"}
    assert {m for m in _imported(MODULES[module]) if m.startswith("models")} <= TORCH_FREE_MODELS | {"models"}


@pytest.mark.parametrize("module", [m for m in sorted(MODULES) if layer(m) == 2 or m in (
    "analyst.vocab", "analyst.config")], ids=str)
def test_data_layer_has_no_torch_or_streamlit(module: str) -> None:
    imported = _imported(MODULES[module])
    bad = _top(imported) & {"streamlit", "torch", "transformers", "captum"}
    bad |= {m for m in imported if m.startswith("models") and m not in TORCH_FREE_MODELS} - {"models"}
    assert not bad, f"{module} imports {sorted(bad)}"


STREAMLIT_ALLOWED = {"app", "analyst.resources"}


@pytest.mark.parametrize("module", sorted(MODULES), ids=str)
def test_only_app_and_views_import_streamlit(module: str) -> None:
    if module in STREAMLIT_ALLOWED or module.startswith("analyst.views"):
        return
    assert "streamlit" not in _top(_imported(MODULES[module])), f"{module} imports streamlit"


def test_bench_never_imports_streamlit() -> None:
    offenders = [p.name for p in ROOT.glob("bench/*.py") if "streamlit" in _top(_imported(p))]
    assert not offenders, f"bench scripts import streamlit: {offenders}"


@pytest.mark.parametrize("path", [ROOT / "analyst" / "cli.py", ROOT / "app.py",
                                  *sorted((ROOT / "analyst" / "views").glob("*.py"))], ids=lambda p: p.name)
def test_pages_and_cli_do_not_reach_through_to_the_store(path: Path) -> None:
    """The CLI and the pages call the Workbench's use cases, never `wb.store` directly."""
    hits = [node.lineno for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Attribute) and node.attr == "store"]
    assert not hits, f"{path.relative_to(ROOT)} reaches into .store at lines {hits}"


def test_no_sql_built_by_string_formatting() -> None:
    """f-strings / % / .format must not build SQL: values travel as parameters."""
    offenders = []
    for path in sorted(ROOT.glob("analyst/**/*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.JoinedStr):
                text = "".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
                if any(kw in text.upper() for kw in ("SELECT ", "INSERT ", "UPDATE ", "DELETE ", " WHERE ")):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"SQL built with f-strings at {offenders}"
