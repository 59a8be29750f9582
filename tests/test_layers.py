"""The package's layout: imports flow one way, from the stages before to the stages after (docs/design.md).

A module may import from an earlier layer, or from its own subpackage (providers/openai.py from providers/base.py);
never from a later layer, and the import graph has no cycle. A new module must be given a layer here and a row in
the design's stage table, so the map stays true.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "harness"

# Earliest first. Names are module paths under harness/, dotted, without the "harness." prefix.
LAYERS = [
    ["types", "errors", "secrets", "model_apis"],
    ["yamldoc", "jsonl"],
    ["schemas", "langid", "negation", "numbers", "spelling", "privacy"],
    ["checks"],
    ["load", "store"],
    ["providers", "providers.base", "providers.capped", "providers.openai", "providers.anthropic",
     "providers.replay", "providers.batch", "providers.endpoints"],
    ["generate", "grade", "processes", "graders", "graders.rules", "graders.llm", "graders.labels",
     "graders.configured", "stats", "charts", "agreement"],
    ["analyze", "attack"],
    ["review", "decide", "report", "healthbench_export"],
    ["report_compare", "agreement_report", "healthbench",
     "view", "view.data", "view.labels", "view.app"],      # bilan view: reads runs as report and review do
    ["run"],
    ["batches"],          # above run: it runs rounds of run's pipeline, then run() itself
    ["cli", "cli.common", "cli.running", "cli.reviewing"],
    ["__main__", ""],
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """The harness modules a file imports, anywhere in it (function-level imports included)."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    return imports_of_source(path.read_text(encoding="utf-8"), name, [p for p in package if p])


def imports_of_source(source: str, name: str, package: list[str]) -> set[str]:
    """Imports in `source`, the module `name` inside subpackage `package` of harness ([] for the top level)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - node.level + 1] if node.level > 1 else package
            if node.module:
                found.add(".".join(base + node.module.split(".")))
            else:
                found.update(".".join(base + [alias.name]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("harness"):
            found.add(node.module.removeprefix("harness").lstrip("."))
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("harness").lstrip(".") for a in node.names
                         if a.name == "harness" or a.name.startswith("harness."))
    return found - {name}


def graph() -> dict[str, set[str]]:
    return {module_name(p): {t for t in imports_of(p) if (PACKAGE / (t.replace(".", "/") + ".py")).exists()
                             or (PACKAGE / t.replace(".", "/") / "__init__.py").exists()}
            for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_has_a_layer():
    missing = sorted(set(graph()) - set(LAYER))
    assert not missing, ("modules in no layer (add them to LAYERS in tests/test_layers.py and to docs/design.md): "
                         f"{missing}")


def against_the_flow(edges: dict[str, set[str]]) -> list[str]:
    """Imports of a later layer, or of the same layer outside one's own subpackage."""
    wrong = []
    for module, targets in sorted(edges.items()):
        for target in sorted(targets):
            # inside one subpackage: a module of it, or the package itself importing its own modules
            same_package = ("." in module or "." in target) and target.split(".")[0] == module.split(".")[0]
            if LAYER[target] > LAYER[module] or (LAYER[target] == LAYER[module] and not same_package):
                wrong.append(f"{module} (layer {LAYER[module]}) imports {target} (layer {LAYER[target]})")
    return wrong


def test_imports_flow_one_way():
    wrong = against_the_flow(graph())
    assert not wrong, "imports against the flow:\n" + "\n".join(wrong)


def test_no_import_cycle():
    edges = graph()
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path + [node, nxt]
            if nxt not in state and (cycle := visit(nxt, path + [node])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start, [])):
            raise AssertionError("import cycle: " + " -> ".join(cycle))


def test_design_names_every_module():
    design = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    unnamed = [str(p.relative_to(ROOT)) for p in sorted(PACKAGE.rglob("*.py"))
               if p.name not in ("__init__.py", "__main__.py") and f"`{p.relative_to(ROOT)}`" not in design
               and f"{p.relative_to(ROOT).parent}/`" not in design and p.name not in design]
    assert not unnamed, f"docs/design.md's stage table does not name: {unnamed}"


def test_the_checker_sees_a_wrong_import(tmp_path):
    """The rules are not vacuous: a function-level upward import and a same-layer import are both reported."""
    module = tmp_path / "checks.py"
    module.write_text("from .types import Locale\n\ndef f():\n    from .run import run\n    from . import load\n")
    found = imports_of_source(module.read_text(), "checks", ["harness"][:0])
    assert found == {"types", "run", "load"}
    wrong = against_the_flow({"checks": found, "load": {"store"}})
    assert wrong == ["checks (layer 3) imports load (layer 4)", "checks (layer 3) imports run (layer 10)",
                     "load (layer 4) imports store (layer 4)"]
