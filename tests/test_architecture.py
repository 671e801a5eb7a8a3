"""The package's shape, read from its source: an import graph with no cycle whose layers ARCHITECTURE.md names truly, small
functions and classes, short defense plans, defenses that share pieces, and no reference a reader cannot follow."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "asdkit"


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.with_suffix("").relative_to(ROOT).parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules ``name`` imports anywhere: at the top, inside functions (lazy) and under TYPE_CHECKING."""
    here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(here[: len(here) - node.level + 1] + ([node.module] if node.module else [])) if node.level else node.module
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            while t not in known and "." in t:
                t = t.rsplit(".", 1)[0]
            if t in known and t != name:
                found.add(t)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_planted_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_the_packages_modules_lazy_and_type_only_imports_included():
    assert cycles(graph()) == []


def layers() -> dict[str, int]:
    """ARCHITECTURE.md's layer table: module -> layer number."""
    table = {}
    for line in (ROOT / "ARCHITECTURE.md").read_text().splitlines():
        m = re.match(r"^\|\s*(\d+)\s*\|([^|]*)\|", line)
        if m:
            for mod in re.findall(r"`(asdkit[\w.]*)`", m.group(2)):
                assert mod not in table, f"{mod} is in two layers of ARCHITECTURE.md"
                table[mod] = int(m.group(1))
    return table


def layer_of(name: str, table: dict[str, int]) -> int:
    while name not in table and "." in name:
        name = name.rsplit(".", 1)[0]
    if name not in table:
        raise AssertionError(f"ARCHITECTURE.md's layer table does not name {name}")
    return table[name]


def test_architecture_md_names_every_module_and_every_import_points_down_its_layers():
    table, g = layers(), graph()
    assert len(set(table.values())) >= 8
    upward = [f"{a} (layer {layer_of(a, table)}) imports {b} (layer {layer_of(b, table)})"
              for a, deps in sorted(g.items()) for b in sorted(deps) if layer_of(b, table) > layer_of(a, table)]
    assert upward == []
    assert set(table) <= set(g), f"the table names modules that do not exist: {sorted(set(table) - set(g))}"


def definitions():
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                yield name, node, node.end_lineno - node.lineno + 1


def test_no_function_over_80_lines_no_class_over_200_and_every_plan_within_40():
    long = [f"{m}.{n.name}: {size} lines" for m, n, size in definitions()
            if size > (200 if isinstance(n, ast.ClassDef) else 40 if n.name.startswith("plan_") else 80)]
    assert long == []
    plans = [n.name for m, n, _ in definitions() if m.startswith("asdkit.defenses.") and n.name.startswith("plan_")]
    assert sorted(plans) == ["plan_abl", "plan_asd", "plan_dbd", "plan_none", "plan_pipd"]


def test_no_defense_imports_another():
    g, defenses = graph(), {"asdkit.defenses.abl", "asdkit.defenses.asd", "asdkit.defenses.baseline", "asdkit.defenses.dbd", "asdkit.defenses.pipd"}
    assert {(a, b) for a in defenses for b in g[a] if b in defenses} == set()


READABLE = [*PACKAGE.rglob("*.py"), *(ROOT / "tests").glob("*.py"), *(ROOT / "notebooks").glob("*.ipynb"), *(ROOT / "benchmarks").glob("*.py"),
            ROOT / "ARCHITECTURE.md", ROOT / "README.md", ROOT / "figures" / "NOTES.md"]


@pytest.mark.parametrize("pattern", [r"\bDESIGN\b", r"\b[Ii]ssues? #?\d+", r"(?<![\w/])#\d{2,3}\b(?!\w)"])
def test_no_reference_to_a_document_outside_the_repository_or_to_an_issue_number(pattern):
    hits = [f"{p.relative_to(ROOT)}:{i}: {line.strip()[:90]}" for p in READABLE if p.exists()
            for i, line in enumerate(p.read_text().splitlines(), 1) if re.search(pattern, line) and "image/png" not in line
            and p.name != "test_architecture.py"]
    assert hits == []
