"""Rules of the code base that keep it easy to change: imports run one way, no circles, short functions."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("model", "training", "benchmarks")
MAX_FUNCTION_LINES = 80


def sources() -> list[Path]:
    return [ROOT / "app.py", *sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))]


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def imports(path: Path, modules) -> set[str]:
    """The project modules a file imports, at the top or inside functions. `from package import module`
    depends on the module alone; `from package import name` on the package (its __init__)."""
    found = set()
    package = module_name(path).rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package if node.level else ""
            name = f"{base}.{node.module}" if base and node.module else (node.module or base)
            for a in node.names:
                found.add(f"{name}.{a.name}" if f"{name}.{a.name}" in modules else name)
    return {m for m in found if m in modules}


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in sources()}
    return {name: imports(path, modules) - {name} for name, path in modules.items()}


def test_model_never_imports_training_or_benchmarks():
    back = {name: sorted(m for m in deps if not m.startswith("model"))
            for name, deps in graph().items() if name.startswith("model")}
    assert not any(back.values()), {k: v for k, v in back.items() if v}


def test_training_never_imports_the_app_and_the_app_never_imports_training():
    g = graph()
    assert not [m for name, deps in g.items() if name.startswith("training") for m in deps if m == "app"]
    assert not [m for m in g["app"] if m.startswith("training")]


def test_the_photo_type_rule_has_one_home():
    """Only model/photo_types.py reads the by_photo_type values of a config section (its settings for one photo
    type); the others call it. calibrate.py writes them."""
    readers = [p.relative_to(ROOT).as_posix() for p in sources()
               if '.get("by_photo_type", {})' in p.read_text()]
    assert readers == ["model/photo_types.py"], readers


def test_no_import_circles():
    g = graph()
    state: dict[str, str] = {}

    def visit(node, path):
        state[node] = "open"
        for dep in sorted(g[node]):
            if state.get(dep) == "open":
                raise AssertionError("import circle: " + " -> ".join([*path, node, dep]))
            if dep not in state:
                visit(dep, [*path, node])
        state[node] = "done"

    for node in sorted(g):
        if node not in state:
            visit(node, [])


def test_no_function_longer_than_the_limit():
    long = []
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long


def test_the_rules_see_a_circle_and_a_long_function(tmp_path, monkeypatch):
    """The checks above can fail: a planted circle and a planted long function are found."""
    import sys
    rules = sys.modules[__name__]
    fake = tmp_path / "model"
    fake.mkdir()
    (fake / "a.py").write_text("from model import b\n")
    (fake / "b.py").write_text("import model.a\n\ndef f():\n" + "    x = 1\n" * MAX_FUNCTION_LINES)
    monkeypatch.setattr(rules, "ROOT", tmp_path)
    monkeypatch.setattr(rules, "PACKAGES", ("model",))
    monkeypatch.setattr(rules, "sources", lambda: sorted(fake.glob("*.py")))
    with pytest.raises(AssertionError, match="model.a -> model.b -> model.a"):
        rules.test_no_import_circles()
    with pytest.raises(AssertionError, match="b.py:3 f"):
        rules.test_no_function_longer_than_the_limit()
