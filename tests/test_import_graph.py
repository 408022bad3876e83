"""The packages' import graph, read from the source with ast (nothing is imported): it has no cycle but
the known ones listed below (none left), and no module imports a layer above its own (``LAYERS``).

Every import counts, also those inside functions (a lazy import still makes the two modules depend on
each other) and those under ``TYPE_CHECKING``. An import names its module, not the packages above it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("metarl_agents", "metarl_envs")
#: Cycles not broken yet, each with the step that breaks it. A new cycle fails the test, and so does one of
#: these once it is gone (then delete it here): the list only ever shrinks.
KNOWN_CYCLES: list[list[str]] = []


def package_modules(root: Path = ROOT) -> dict[str, Path]:
    """Module name -> source file, for every module of the packages."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join([*base, node.module] if node.module else base)


def _deepest_known(name: str, modules: dict[str, Path]) -> str | None:
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return None


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package modules it imports."""
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        edges: set[str] = set()
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(node, module, is_package)
                names = [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            edges.update(target for name in names if (target := _deepest_known(name, modules)) is not None)
        edges.discard(module)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_cycle_finder_finds_a_planted_cycle_and_nothing_else() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_graph_resolves_relative_and_from_imports(tmp_path: Path) -> None:
    package = tmp_path / "metarl_agents"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from . import leaf\n")
    (package / "sub" / "leaf.py").write_text("def f():\n    from ..top import x\n")
    (package / "top.py").write_text("from metarl_agents.sub.leaf import f\nimport os\n")
    (tmp_path / "metarl_envs").mkdir()
    graph = import_graph(package_modules(tmp_path))
    assert graph == {"metarl_agents": set(), "metarl_agents.sub": {"metarl_agents.sub.leaf"},
                     "metarl_agents.sub.leaf": {"metarl_agents.top"}, "metarl_agents.top": {"metarl_agents.sub.leaf"}}
    assert cycles(graph) == [["metarl_agents.sub.leaf", "metarl_agents.top"]]


def test_the_packages_import_graph_has_no_cycle_but_the_known_ones() -> None:
    modules = package_modules()
    assert {"metarl_agents.training.ppo", "metarl_envs.core"} <= set(modules)  # the walk found both
    assert cycles(import_graph(modules)) == KNOWN_CYCLES


#: The packages' layers, lowest first, in the direction data flows (env -> policy -> trainer -> store ->
#: report -> command line). A module may import its own layer and the layers below it, never one above.
#: Modules not named here belong to the layer of the nearest named package above them.
LAYERS: list[tuple[str, ...]] = [
    ("metarl_envs",),
    ("metarl_agents.value_check", "metarl_agents.derived", "metarl_agents.lazy"),
    ("metarl_agents.memory", "metarl_agents.heads"),
    ("metarl_agents.policy_settings", "metarl_agents.recurrent_adapter", "metarl_agents.policies"),
    ("metarl_agents.training",),
    ("metarl_agents.bomrl",),
    ("metarl_agents.leaderboard",),
    ("metarl_agents.cli", "metarl_agents.zoo"),
    ("metarl_agents",),  # the package's front door re-exports from every layer
]


def layer_of(module: str) -> int:
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        for level, names in enumerate(LAYERS):
            if prefix in names:
                return level
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(importer, imported) pairs where a module imports a higher layer; ``__main__`` modules are command
    lines, the top of every stack, and may import anything."""
    return sorted((a, b) for a, targets in graph.items() for b in targets
                  if not a.endswith("__main__") and layer_of(b) > layer_of(a))


def test_layer_check_finds_a_planted_upward_import() -> None:
    graph = {"metarl_agents.memory.core": {"metarl_agents.training.ppo"}, "metarl_agents.training.ppo": {"metarl_envs.core"}}
    assert upward_imports(graph) == [("metarl_agents.memory.core", "metarl_agents.training.ppo")]


def test_no_module_imports_a_layer_above_its_own() -> None:
    assert upward_imports(import_graph(package_modules())) == []
