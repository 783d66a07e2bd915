"""The package's import structure, read from the source with ``ast`` (nothing is imported):

* no import circle between modules, counting imports inside functions too (a lazy import
  that closes a circle still ties the modules together, and fails as soon as the order changes),
  nor between packages (the layers of docs/architecture.md);
* one file name per idea: two modules share a file name only when they are the same kind of
  thing for different owners (:data:`SHARED_NAMES` says which, and why);
* the ROS-free packages never reach rclpy, also when actually imported (the README promises it).

Imports under ``if TYPE_CHECKING:`` do not run and are not edges. Plug-in modules that
``core/model/checkpoint.py`` loads by name (``EXTERNAL_TEACHER_TYPES``) are not edges either:
a registry looked up when a checkpoint names its type, not an import of the module's code.
"""

from __future__ import annotations

import ast
import functools
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "actdistill_ros"

# file names that several modules may share: the same kind of thing, one per owning package
SHARED_NAMES = {
    "__init__.py": "a package",
    "config.py": "a package's own configuration, as its docstring says (core: the model and its training; "
                 "ingest, sim, distill_job: theirs); the shared machinery is core/typed_config.py",
}

ROS_FREE = ("core", "ingest", "control", "distill_job", "teachers", "sim", "launching")


def is_ros(name: str) -> bool:
    """rclpy, the rosidl runtime, generated interfaces (ours and ``*_msgs``/``*_srvs``/``*_interfaces``)."""
    top = name.split(".")[0]
    return (top in ("rclpy", "rosidl_runtime_py", "rosidl_parser") or top.endswith(("_msgs", "_srvs", "_interfaces"))
            or name.startswith((f"{PACKAGE}.msg", f"{PACKAGE}.srv")))


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the package (a package is its ``__init__``)."""
    out = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                stack.extend(child.orelse)
            else:
                stack.append(child)


def imported_names(module: str, path: Path) -> frozenset[str]:
    """Absolute dotted names ``module`` imports: ``import a.b`` gives ``a.b``, ``from a import b``
    gives ``a.b`` (a submodule or not: :func:`import_graph` finds out)."""
    return _imported_names(module, path.name == "__init__.py", path.read_text())


@functools.cache
def _imported_names(module: str, is_package: bool, source: str) -> frozenset[str]:
    names = set()
    for node in _runtime_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module
            names.update(f"{origin}.{alias.name}" for alias in node.names)
    return frozenset(names)


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the package's modules that importing it runs: the imported module (``from pkg
    import name``: the submodule when there is one, else pkg) and the packages above it, except
    the importer's own packages (already being imported when it runs)."""
    files = module_files(root)
    graph = {}
    for module, path in files.items():
        own = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        targets = set()
        for name in imported_names(module, path):
            while name and name not in files:
                name = name.rpartition(".")[0]
            while name and name.startswith(PACKAGE + ".") and name not in own:
                targets.add(name)
                name = name.rpartition(".")[0]
        targets.discard(module)
        graph[module] = targets
    return graph


def tangles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The groups of modules that import each other (strongly connected components of more than
    one module, Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(set(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(components, key=min)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest circle per group of modules that import each other."""
    return [_circle_in(graph, component) for component in tangles(graph)]


def _circle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest circle through the component's first module (breadth-first back to it)."""
    start = min(component)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for succ in sorted(graph[node] & component):
                if succ == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [*reversed(path), start]
                if succ not in parents:
                    parents[succ] = node
                    following.append(succ)
        frontier = following
    raise AssertionError(f"no circle in component {sorted(component)}")


def ros_chain(graph: dict[str, set[str]], files: dict[str, Path], start: str) -> list[str]:
    """A chain of imports from ``start`` to a ROS module (empty: none)."""
    parents: dict[str, str | None] = {start: None}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            if hit := sorted(filter(is_ros, imported_names(node, files[node]))):
                chain = [hit[0], node]
                while parents[chain[-1]] is not None:
                    chain.append(parents[chain[-1]])
                return chain[::-1]
            for succ in sorted(graph[node]):
                if succ not in parents:
                    parents[succ] = node
                    following.append(succ)
        frontier = following
    return []


def test_no_import_circle():
    graph = import_graph()
    found = [f"{' -> '.join(_circle_in(graph, group))} (the group: {', '.join(sorted(group))})"
             for group in tangles(graph)]
    assert not found, "import circles:\n" + "\n".join(found)


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The module graph collapsed to packages: ``actdistill_ros``'s, and ``core``'s one level down."""

    def owner(module: str) -> str:
        parts = module.split(".")
        return ".".join(parts[:3] if parts[1:2] == ["core"] else parts[:2])

    collapsed: dict[str, set[str]] = {}
    for module, targets in graph.items():
        collapsed.setdefault(owner(module), set()).update(owner(t) for t in targets if owner(t) != owner(module))
    return collapsed


def test_no_import_circle_between_packages():
    """Layers, not just modules: no two packages (core's subpackages counted apart) import each
    other, not even through different modules (core.model -> core.training -> core.model)."""
    graph = package_graph(import_graph())
    found = [" -> ".join(_circle_in(graph, group)) for group in tangles(graph)]
    assert not found, "packages that import each other:\n" + "\n".join(found)


def test_the_circle_check_finds_a_circle(tmp_path):
    package = tmp_path / PACKAGE
    (package / "a").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a" / "__init__.py").write_text("")
    (package / "a" / "one.py").write_text("from . import two\n")
    (package / "a" / "two.py").write_text("def f():\n    from ..b import three\n")
    (package / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import one\n")
    (package / "three.py").write_text("from actdistill_ros.a.one import x\n")
    graph = import_graph(tmp_path)
    assert graph[f"{PACKAGE}.b"] == set()  # TYPE_CHECKING only
    assert cycles(graph) == []
    (package / "b.py").write_text("from .a import one\n")
    assert cycles(import_graph(tmp_path)) == [[f"{PACKAGE}.a.one", f"{PACKAGE}.a.two", f"{PACKAGE}.b",
                                               f"{PACKAGE}.a.one"]]


def test_module_file_names_say_what_they_hold():
    names = Counter(path.name for path in module_files().values())
    shared = {name for name, count in names.items() if count > 1}
    unexplained = sorted(shared - set(SHARED_NAMES))
    where = {name: sorted(str(p.relative_to(ROOT)) for p in module_files().values() if p.name == name)
             for name in unexplained}
    assert not unexplained, f"several modules named alike (rename one, or add the name to SHARED_NAMES): {where}"
    assert set(SHARED_NAMES) <= shared, f"SHARED_NAMES lists names no longer shared: {set(SHARED_NAMES) - shared}"


def test_ros_free_packages_never_reach_rclpy():
    graph, files = import_graph(), module_files()
    chains = {}
    for module in files:
        if module.count(".") and module.split(".")[1] in ROS_FREE and (chain := ros_chain(graph, files, module)):
            chains[module] = " -> ".join(chain)
    assert not chains, "ROS-free modules that import ROS:\n" + "\n".join(chains.values())


def test_importing_the_ros_free_packages_loads_no_rclpy():
    modules = [m for m in module_files() if m.count(".") and m.split(".")[1] in ROS_FREE]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'rclpy' or m.startswith('{PACKAGE}.msg'))\n"
        "print(loaded)\n"
        "assert not loaded, loaded\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
