"""The import graph of labelflow/, finetune/, app/ and lfs/, read from the source with ``ast``; the wheel's packages.

Every ``import`` counts, lazy ones inside functions and ``TYPE_CHECKING`` blocks too. The
graph has no cycle, no module is named after a standard-library module, and dependencies
point down the layers of the design card (../shared/DESIGN.md, "Layers"), but for the
imports :data:`KNOWN_DEBTS` names, each with what remains to fix. Modules are named as they
install: finetune/ and lfs/ are ``labelflow.finetune`` and ``labelflow.lfs`` (pyproject.toml's
``package-dir``), and the wheel's package list misses none of them.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("labelflow", "finetune", "app", "lfs")
SCRIPT_FOLDERS = ("app",)
"""Folders run as scripts (``streamlit run app/main.py``): their modules import each other by bare name."""
SOURCE_FOLDERS = PACKAGES + ("tests", "bench")

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (  # bottom first; a module's layer is its longest matching prefix
    ("base", ("labelflow.conventions", "labelflow.errors", "labelflow.io_errors", "labelflow.validation",
              "labelflow.files", "labelflow.quiet")),
    ("inputs", ("labelflow.tables", "labelflow.dataset", "labelflow.schema", "labelflow.lf", "labelflow.lf_builders",
                "labelflow.lf_fingerprint", "labelflow.suite_loading", "labelflow.matrix", "labelflow.fm")),
    ("applier", ("labelflow.chunks", "labelflow.lf_workers", "labelflow.chunk_applier", "labelflow.vote_cache",
                 "labelflow.apply")),
    ("engines", ("labelflow.ray_actors", "labelflow.distributed")),
    ("models", ("labelflow.labelmodels",)),
    ("guidance", ("labelflow.slices", "labelflow.analysis", "labelflow.error_analysis", "labelflow.suggest",
                  "labelflow.suite_edit", "labelflow.extend", "labelflow.model_comparison")),
    ("project", ("labelflow.project", "labelflow.project_config", "labelflow.store", "labelflow.gold",
                 "labelflow.export", "labelflow.extended_matrix", "labelflow.settings", "labelflow.annotations",
                 "labelflow.trust", "labelflow.project_setup", "labelflow.project_suite", "labelflow.project_matrix",
                 "labelflow.project_extension", "labelflow.project_annotations", "labelflow.project_models",
                 "labelflow.project_predictions",
                 "labelflow.fm.run", "labelflow.fm.estimate")),  # FM runs and estimates over a project's rows
    ("doors", ("labelflow.__main__", "labelflow.cli", "labelflow.commands", "labelflow.demo", "labelflow.studio", "app",
               "labelflow.finetune", "labelflow.lfs")),
)

KNOWN_DEBTS: dict[tuple[str, str], str] = {}  # (importer, imported) -> what remains to fix; skipped until gone

OUTSIDE_THE_LIBRARY = ("labelflow.finetune", "labelflow.lfs", "app")
"""What the library never imports, though the first two install inside it: the fine-tuner, the LF suites, the app."""


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target`` at ``path:line``."""

    source: str
    target: str
    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line} {self.source} -> {self.target}"


@dataclass(frozen=True)
class Graph:
    """The modules (name -> file relative to the root), which of them are package ``__init__`` files, and the edges."""

    modules: dict[str, str]
    packages: frozenset[str]
    edges: tuple[Edge, ...]

    def __repr__(self) -> str:
        return f"Graph({len(self.modules)} modules, {len(self.edges)} edges)"

    def targets(self, source: str) -> set[str]:
        return {e.target for e in self.edges if e.source == source}


def setuptools_config(root: Path) -> dict:
    """pyproject.toml's ``[tool.setuptools]`` table."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11
    return tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]


def installed_as(root: Path) -> dict[str, str]:
    """Folder -> package name of the folders installed under another name (``finetune`` -> ``labelflow.finetune``)."""
    return {folder: package for package, folder in setuptools_config(root).get("package-dir", {}).items()}


def module_names(root: Path, folders: Iterable[str], *, renamed: dict[str, str] | None = None) -> dict[str, str]:
    """Module name -> path relative to ``root`` of every ``.py`` file under ``folders``; a folder in ``renamed``
    (see :func:`installed_as`) is named as the package it installs as."""
    modules = {}
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            parts = ((renamed or {}).get(parts[0], parts[0]),) + parts[1:]
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path.relative_to(root).as_posix()
    return modules


def _imported(node: ast.Import | ast.ImportFrom, package: str) -> list[str]:
    """The dotted names an import statement in ``package`` names: ``a.b`` for ``import a.b``, ``pkg.name`` for
    ``from pkg import name`` (relative ones resolved)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        parts = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join(parts + ([base] if base else []))
    return [f"{base}.{alias.name}" for alias in node.names]


def import_graph(root: Path, folders: Iterable[str] = PACKAGES, *, script_folders: Iterable[str] = SCRIPT_FOLDERS,
                 renamed: dict[str, str] | None = None) -> Graph:
    """Read every import of the modules under ``folders`` of ``root`` into a :class:`Graph`.

    ``from pkg import name`` imports ``pkg.name`` when that is a module, else ``pkg``; ``import a.b``
    imports the deepest of ``a.b``, ``a`` that is a module here. Relative imports resolve against
    the importing module's package; in ``script_folders`` a bare name also resolves to a module of
    that folder. Imports of modules outside ``folders`` (the standard library, dependencies) are left out.
    Modules are named as :func:`module_names` names them with ``renamed``.
    """
    modules = module_names(root, folders, renamed=renamed)
    packages = frozenset(name for name, path in modules.items() if path.endswith("/__init__.py"))
    script_folders = tuple(script_folders)
    edges = set()
    for name, path in modules.items():
        package = name if name in packages else name.rpartition(".")[0]
        folder = name.split(".")[0]
        for node in ast.walk(ast.parse((root / path).read_text(encoding="utf-8"), filename=path)):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            bare = folder in script_folders and not getattr(node, "level", 0)  # may name a module of its folder
            for dotted in _imported(node, package):
                candidates = [dotted, f"{folder}.{dotted}"] if bare else [dotted]
                for target in candidates:
                    while target and target not in modules:
                        target = target.rpartition(".")[0]
                    if target and target != name:
                        edges.add(Edge(name, target, path, node.lineno))
                        break
    # one edge per (source, target): the first line it is imported at
    first: dict[tuple[str, str], Edge] = {}
    for edge in sorted(edges, key=lambda e: (e.source, e.target, e.line)):
        first.setdefault((edge.source, edge.target), edge)
    return Graph(modules, packages, tuple(first.values()))


def find_cycle(graph: Graph) -> list[Edge] | None:
    """The edges of one import cycle, or ``None`` when the graph is acyclic."""
    out: dict[str, list[Edge]] = {name: [] for name in graph.modules}
    for edge in graph.edges:
        out[edge.source].append(edge)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[Edge] = []

    def visit(name: str) -> list[Edge] | None:
        state[name] = 1
        for edge in out[name]:
            if state.get(edge.target) == 1:
                start = next((i for i, e in enumerate(path) if e.source == edge.target), len(path))
                return path[start:] + [edge]
            if edge.target not in state:
                path.append(edge)
                if (cycle := visit(edge.target)) is not None:
                    return cycle
                path.pop()
        state[name] = 2
        return None

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph.modules) + 100))
    for name in graph.modules:
        if name not in state and (cycle := visit(name)) is not None:
            return cycle
    return None


def layer_of(name: str) -> int | None:
    """The index in :data:`LAYERS` of the longest prefix ``name`` falls under (``None`` if none)."""
    best = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and (best is None or len(prefix) > len(best[1])):
                best = (index, prefix)
    return None if best is None else best[0]


def reexported(graph: Graph, name: str) -> set[str]:
    """The modules importing ``name`` loads: itself, or for a package ``__init__`` what it imports, recursively."""
    if name not in graph.packages:
        return {name}
    return {module for target in graph.targets(name) for module in reexported(graph, target)}


@pytest.fixture(scope="module")
def full_graph() -> Graph:
    return import_graph(ROOT, renamed=installed_as(ROOT))


@pytest.fixture(scope="module")
def graph(full_graph) -> Graph:
    """The import graph less :data:`KNOWN_DEBTS`."""
    return Graph(full_graph.modules, full_graph.packages,
                 tuple(e for e in full_graph.edges if (e.source, e.target) not in KNOWN_DEBTS))


def test_known_debts_are_still_owed(full_graph):
    found = {(e.source, e.target) for e in full_graph.edges}
    paid = [edge for edge in KNOWN_DEBTS if edge not in found]
    assert not paid, f"these imports are gone: remove them from KNOWN_DEBTS: {paid}"


def test_the_reader_finds_lazy_relative_and_bare_imports(tmp_path):
    files = {
        "pkg/__init__.py": "from pkg.low import ABSTAIN\n",
        "pkg/low.py": "ABSTAIN = -1\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/mid.py": "from .. import low\nfrom ..low import ABSTAIN\nimport json\n",
        "pkg/high.py": "def f():\n    from pkg.sub import mid\n    import pkg.sub.mid as m\n",
        "scripts/main.py": "import helper\nimport pkg\n",
        "scripts/helper.py": "from pkg.sub.mid import nothing\n",
    }
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    g = import_graph(tmp_path, ("pkg", "scripts"), script_folders=("scripts",))
    assert sorted((e.source, e.target, e.line) for e in g.edges) == [
        ("pkg", "pkg.low", 1),
        ("pkg.high", "pkg.sub.mid", 2),
        ("pkg.sub.mid", "pkg.low", 1),
        ("scripts.helper", "pkg.sub.mid", 1),
        ("scripts.main", "pkg", 2),
        ("scripts.main", "scripts.helper", 1),
    ]
    assert g.packages == {"pkg", "pkg.sub"}
    assert find_cycle(g) is None
    (tmp_path / "pkg/low.py").write_text("def f():\n    import pkg.high\n")
    cycle = find_cycle(import_graph(tmp_path, ("pkg",)))
    assert [(e.source, e.target) for e in cycle] == [("pkg.low", "pkg.high"), ("pkg.high", "pkg.sub.mid"),
                                                     ("pkg.sub.mid", "pkg.low")]


def test_no_import_cycle(graph):
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle:\n  " + "\n  ".join(map(str, cycle))


def test_no_module_named_after_the_standard_library(graph):
    shadowing = [path for name, path in graph.modules.items()
                 if any(part in sys.stdlib_module_names and not part.startswith("__") for part in name.split("."))]
    assert not shadowing, f"named after a standard-library module: {shadowing}"


def test_every_module_has_a_layer(graph):
    unplaced = [path for name, path in graph.modules.items() if name not in graph.packages and layer_of(name) is None]
    assert not unplaced, f"place these modules in LAYERS: {unplaced}"


def test_package_inits_import_only_their_own_modules(graph):
    """A package ``__init__`` re-exports its own modules; one placed in a layer (``labelflow.finetune``) may re-export
    a name of a layer below it too (``labelflow.errors.FinetuneError``)."""
    def allowed(edge: Edge) -> bool:
        own = layer_of(edge.source)
        return edge.target.startswith(edge.source + ".") or (
            own is not None and all((layer_of(m) or 0) <= own for m in reexported(graph, edge.target)))

    foreign = [str(e) for e in graph.edges if e.source in graph.packages and not allowed(e)]
    assert not foreign, "a package __init__ re-exports its own modules only:\n  " + "\n  ".join(foreign)


def test_the_library_imports_neither_the_fine_tuner_nor_the_suites_nor_the_app(graph):
    """The fine-tuner, the app and the LF suites import the library, never the other way round: the fine-tuner's
    commands reach the CLI through the ``labelflow.commands`` entry point group."""
    def outside(name: str) -> bool:
        return any(name == part or name.startswith(part + ".") for part in OUTSIDE_THE_LIBRARY)

    inward = [str(e) for e in graph.edges if not outside(e.source) and outside(e.target)]
    assert not inward, "the library imports the fine-tuner, an LF suite or the app:\n  " + "\n  ".join(inward)


def test_nothing_imports_the_folders_installed_under_labelflow_by_their_folder_names():
    """``finetune`` and ``lfs`` are folders, not packages: code imports ``labelflow.finetune`` (suites load by path)."""
    folders = set(installed_as(ROOT))
    found = []
    for folder in SOURCE_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level:
                    names = [node.module or ""]
                else:
                    continue
                found += [f"{path.relative_to(ROOT)}:{node.lineno} imports {name}" for name in names
                          if name.split(".")[0] in folders]
    assert folders == {"finetune", "lfs"}
    assert not found, "import these as labelflow.<name>:\n  " + "\n  ".join(found)


def test_the_wheel_lists_every_package():
    """pyproject.toml lists the wheel's packages (finetune/ and lfs/ install from outside labelflow/): every folder with
    an ``__init__.py`` the wheel ships from (all of :data:`PACKAGES` but the app, run from the repository) is one of
    them, under the name it installs as, so a new subpackage cannot silently miss the wheel."""
    renamed = installed_as(ROOT)
    shipped = [folder for folder in PACKAGES if folder not in SCRIPT_FOLDERS]
    found = {name for name, path in module_names(ROOT, shipped, renamed=renamed).items()
             if path.endswith("/__init__.py")}
    assert sorted(found) == sorted(setuptools_config(ROOT)["packages"])


def test_lower_layers_never_import_higher_ones(graph):
    upward = []
    for edge in graph.edges:
        source = layer_of(edge.source)
        if edge.source in graph.packages or source is None:
            continue
        for module in sorted(reexported(graph, edge.target)):
            target = layer_of(module)
            if target is not None and target > source:
                via = "" if module == edge.target else f" (re-exported by {edge.target})"
                upward.append(f"{edge.path}:{edge.line} {edge.source} ({LAYERS[source][0]}) imports "
                              f"{module} ({LAYERS[target][0]}){via}")
    assert not upward, "a lower layer imports a higher one:\n  " + "\n  ".join(upward)
