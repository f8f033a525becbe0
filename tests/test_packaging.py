"""The package as users install it: every module shipped, importable, registered, without import circles.

``scripts/test.sh`` runs the suite against the wheel installed in a fresh virtual environment, from a
folder outside the checkout, and passes the built wheel and sdist in ``SUBSPACE_PARAM_WHEEL`` /
``SUBSPACE_PARAM_SDIST``; run elsewhere (``pytest`` in the development venv), these tests build the
wheel themselves.
"""

from __future__ import annotations

import ast
import importlib
import os
import pkgutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch

import subspace_param as sp
from subspace_param.geometry import registered_geometries
from subspace_param.projections import available_methods

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = Path(sp.__file__).resolve().parent


def _source_modules() -> set[str]:
    """Wheel paths every .py file of the source tree must have (kernels/ ships as subspace_param/kernels/)."""
    out = set()
    for src, dst in (("subspace_param", "subspace_param"), ("kernels", "subspace_param/kernels")):
        for f in (ROOT / src).rglob("*.py"):
            if "__pycache__" not in f.parts:
                out.add(f"{dst}/{f.relative_to(ROOT / src).as_posix()}")
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    given = os.environ.get("SUBSPACE_PARAM_WHEEL")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        timeout=600,
    )
    (found,) = out.glob("subspace_param-*.whl")
    return found


def test_wheel_ships_every_module_of_the_source_tree(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = _source_modules() - names
    assert not missing, f"{wheel.name} lacks {sorted(missing)}"
    assert "subspace_param/py.typed" in names
    assert not any(n.startswith(("tests/", "benchmarks/", "examples/", "kernels/")) for n in names), sorted(
        names
    )
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "License-Expression: MIT" in text
    assert "Requires-Dist: typing_extensions" in text and 'python_version < "3.11"' in text


def test_sdist_holds_the_sources_and_the_build_files() -> None:
    given = os.environ.get("SUBSPACE_PARAM_SDIST")
    if not given:
        pytest.skip("the sdist is built and passed in by scripts/test.sh")
    with tarfile.open(given) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    expected = {p.replace("subspace_param/kernels/", "kernels/", 1) for p in _source_modules()}
    missing = (expected | {"setup.py", "pyproject.toml", "LICENSE", "README.md"}) - names
    assert not missing, f"{given} lacks {sorted(missing)}"


def test_installed_package_is_used_when_testing_the_wheel() -> None:
    if os.environ.get("SUBSPACE_PARAM_EXPECT_INSTALLED") != "1":
        pytest.skip("only when scripts/test.sh runs the suite against the installed wheel")
    assert PACKAGE_DIR != ROOT / "subspace_param", (
        f"subspace_param was imported from the checkout: {PACKAGE_DIR}"
    )
    assert "site-packages" in PACKAGE_DIR.parts, PACKAGE_DIR
    import subspace_param.kernels as kernels

    assert Path(kernels.__path__[0]).resolve() == PACKAGE_DIR / "kernels"


def package_modules() -> dict[str, tuple[Path, bool]]:
    """Every module of the imported package: name -> (file, is a package). ``subspace_param.kernels``
    is read from its own ``__path__`` (under the package when installed, ./kernels in an editable one)."""
    import subspace_param.kernels as kernels

    modules: dict[str, tuple[Path, bool]] = {}
    for prefix, folder in (
        ("subspace_param", PACKAGE_DIR),
        ("subspace_param.kernels", Path(kernels.__path__[0])),
    ):
        for f in folder.rglob("*.py"):
            parts = [p for p in f.relative_to(folder).with_suffix("").parts if p != "__init__"]
            modules.setdefault(".".join([prefix, *parts]), (f, f.name == "__init__.py"))
    return modules


def test_every_module_imports() -> None:
    names = sorted(package_modules())
    assert "subspace_param.kernels.segmented" in names and "subspace_param.connectivity.paths" in names
    for name in names:
        importlib.import_module(name)


def _imports(path: Path, module: str, is_package: bool, modules: set[str]) -> set[str]:
    """Every subspace_param module that ``module`` imports, at top level or inside a function
    (``from pkg import name`` imports the submodule ``pkg.name`` if there is one, else ``pkg``)."""
    package = module if is_package else module.rpartition(".")[0]
    out: set[str] = set()
    tree = ast.parse(path.read_text())
    type_only = {  # `if TYPE_CHECKING:` imports never run: they are not import edges
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for stmt in block.body
        for n in ast.walk(stmt)
    }
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            for a in node.names:
                out.add(f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return out


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    return {
        name: {t for t in _imports(f, name, is_pkg, set(modules)) if t in modules and t != name}
        for name, (f, is_pkg) in modules.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (depth-first search), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        stack.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                return [*stack[stack.index(w) :], w]
            if w not in state and (cycle := visit(w)):
                return cycle
        stack.pop()
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state and (cycle := visit(v)):
            return cycle
    return None


def test_cycle_finder_finds_a_planted_cycle(tmp_path) -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    src = tmp_path / "m.py"
    src.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from .b import B\n"
        "def f():\n    from .c import C\n"
    )
    names = {"p.b", "p.c", "p.m"}
    assert _imports(src, "p.m", False, names) & names == {"p.c"}  # lazy imports count, type-only ones do not


def test_no_import_cycles_in_the_installed_package() -> None:
    graph = import_graph()
    assert "subspace_param.kernels.combine" in graph and graph["subspace_param.fused"]
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph) or [])}"


def test_every_geometry_and_projector_module_is_registered() -> None:
    for package, registered, kind in (
        ("geometry", registered_geometries(), "geometry"),
        ("projections", available_methods(), "projector"),
    ):
        files = {m.name for m in pkgutil.iter_modules([str(PACKAGE_DIR / package)])} - {
            "base",
            "engine",
            "choice",
        }
        loaded = {m for m in files if f"subspace_param.{package}.{m}" in sys.modules}
        assert loaded == files, f"{kind} modules not imported by subspace_param.{package}: {files - loaded}"
        assert len(registered) >= len(files)


_GEOMETRY_ARGS = {"chain": {"bends": 2}, "simplex": {"vertices": 4}}


@pytest.mark.parametrize("name", sorted(registered_geometries()))
def test_each_registered_geometry_round_trips_through_save_load(name: str, tmp_path) -> None:
    geometry = registered_geometries()[name](**_GEOMETRY_ARGS.get(name, {}))
    net = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3)).double()
    sub = sp.wrap(net, geometry, seed=3)
    sub.set_point(sub.geometry.sample(1, generator=torch.Generator().manual_seed(1))[0].double())
    x = torch.randn(4, 5, dtype=torch.float64)
    expected = net(x)
    sp.save(sub, tmp_path / "s.pt")
    fresh = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3)).double()
    loaded = sp.load(tmp_path / "s.pt", fresh)
    assert loaded.geometry == geometry
    torch.testing.assert_close(fresh(x), expected, rtol=0, atol=0)


@pytest.mark.parametrize("method", sorted(available_methods()))
def test_each_registered_projector_round_trips_through_save_load(method: str, tmp_path) -> None:
    net = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    sub = sp.projection(net, dim=6, method=method, seed=2)
    with torch.no_grad():
        sub.omega.copy_(torch.randn(6))
    x = torch.randn(4, 5)
    expected = net(x)
    sp.save(sub, tmp_path / "p.pt")
    fresh = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    loaded = sp.load(tmp_path / "p.pt", fresh)
    assert loaded.spec["method"] == method
    torch.testing.assert_close(fresh(x), expected)
