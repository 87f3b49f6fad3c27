"""The layering of the code: includes and imports go down only.

The layer lists live in one place, the README's "Layers" section: one fenced
block for the C core (``layers-c``) and one for the Python shim
(``layers-py``), a layer per line, lowest first (``L0: list clock thread``).
A file may include or import only files of *lower* layers (and, in C, its
own header); a file in no layer fails the check, so a new file has to be
placed.  Strict layering also rules out every circle.

The checker itself is tested on a made-up tree: an upward include and an
import circle must be reported, or the checks above would prove nothing.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CSRC = ROOT / "csrc"
PKG = ROOT / "pkg" / "tokio_runtime"

#: Headers every layer may include: the public API (it declares, it does not
#: depend), and libev's and the system's through <...> (not matched below).
C_ALWAYS = {"tokio_runtime", "tokio_runtime_capi"}
#: Modules that are not part of the package's layering (generated).
PY_EXTERNAL = {"_native"}

_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def parse_layers(text: str, tag: str) -> dict[str, int]:
    """Map each name of the ```` ```tag ```` block of ``text`` to its layer number."""
    block = re.search(rf"^```{re.escape(tag)}\n(.*?)^```", text, re.M | re.S)
    if block is None:
        raise AssertionError(f"no ```{tag} block in the README")
    layers: dict[str, int] = {}
    for line in block.group(1).splitlines():
        if not line.strip():
            continue
        head, _, names = line.partition(":")
        level = int(head.strip().lstrip("L"))
        for name in names.split():
            assert name not in layers, f"{name} is listed twice"
            layers[name] = level
    return layers


def c_dependencies(csrc: Path) -> dict[str, set[str]]:
    """Each C file's base name -> the base names of the headers it includes.

    A header and its .c file are one concept (``port.h`` + ``port.c`` ->
    ``port``); public headers under ``include/`` count by their base name.
    """
    deps: dict[str, set[str]] = {}
    for path in sorted(csrc.glob("*.[ch]")):
        concept = path.stem
        for inc in _INCLUDE.findall(path.read_text()):
            deps.setdefault(concept, set()).add(Path(inc).stem)
        deps.setdefault(concept, set()).discard(concept)  # its own header
    return deps


def py_dependencies(pkg: Path) -> dict[str, set[str]]:
    """Each module of the package -> the package modules it imports.

    Counts every import, including those under ``if TYPE_CHECKING:`` and
    inside functions: a type-only or deferred import is still a dependency.
    """
    package = pkg.name
    modules = {path.stem for path in pkg.glob("*.py")} | PY_EXTERNAL

    def named(name: str) -> str:  # from . import name: a module, or a name of __init__
        return name if name in modules else "__init__"

    deps: dict[str, set[str]] = {}
    for path in sorted(pkg.glob("*.py")):
        module = path.stem
        found = deps.setdefault(module, set())
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1 and node.module:  # from ._x import y
                    found.add(node.module.split(".")[0])
                elif node.level == 1:  # from . import _x, _y
                    found.update(named(alias.name) for alias in node.names)
                elif node.module and node.module.split(".")[0] == package:
                    parts = node.module.split(".")
                    if len(parts) > 1:
                        found.add(parts[1])
                    else:
                        found.update(named(alias.name) for alias in node.names)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    parts = alias.name.split(".")
                    if parts[0] == package and len(parts) > 1:
                        found.add(parts[1])
        found.discard(module)
    return deps


def violations(deps: dict[str, set[str]], layers: dict[str, int], always: set[str]) -> list[str]:
    """Every dependency that does not go strictly down, and every unplaced file."""
    problems = []
    for name, targets in sorted(deps.items()):
        if name in always:
            continue
        if name not in layers:
            problems.append(f"{name}: in no layer (add it to the README's layer list)")
            continue
        for target in sorted(targets):
            if target in always or target == name:
                continue
            if target not in layers:
                problems.append(f"{name} -> {target}: {target} is in no layer")
            elif layers[target] >= layers[name]:
                problems.append(
                    f"{name} (L{layers[name]}) -> {target} (L{layers[target]}): not a lower layer"
                )
    for name in sorted(set(layers) - set(deps) - always):
        problems.append(f"{name}: listed in the layers but no such file")
    return problems


def cycles(deps: dict[str, set[str]]) -> list[list[str]]:
    """The dependency circles of ``deps`` (each as a path that comes back)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(deps.get(node, ())):
            if state.get(nxt) == 1:
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt in deps and state.get(nxt) is None:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(deps):
        if state.get(node) is None:
            visit(node, [node])
    return found


def test_c_includes_go_down_only():
    layers = parse_layers(README.read_text(), "layers-c")
    deps = c_dependencies(CSRC)
    assert violations(deps, layers, C_ALWAYS) == []
    assert cycles(deps) == []


def test_python_imports_go_down_only():
    layers = parse_layers(README.read_text(), "layers-py")
    deps = py_dependencies(PKG)
    for name in PY_EXTERNAL:
        deps.pop(name, None)
        layers.pop(name, None)
    assert violations(deps, layers, PY_EXTERNAL) == []
    assert cycles(deps) == []


# ---- the checker finds what it must ---------------------------------------------


@pytest.fixture
def tree(tmp_path):
    """A small C tree and package laid out in three layers, all correct."""
    csrc = tmp_path / "csrc"
    csrc.mkdir()
    (csrc / "list.h").write_text("#include <stddef.h>\n")
    (csrc / "port.h").write_text('#include "list.h"\n#include "tokio_runtime.h"\n')
    (csrc / "port.c").write_text('#include "port.h"\n')
    (csrc / "runtime.c").write_text('#include "port.h"\n#include "list.h"\n')
    pkg = tmp_path / "tokio_runtime"
    pkg.mkdir()
    (pkg / "_errors.py").write_text("from ._native import lib\n")
    (pkg / "_port.py").write_text("from ._errors import status_error\n")
    (pkg / "_runtime.py").write_text("from . import _port\nimport tokio_runtime._errors\n")
    c_layers = {"list": 0, "port": 1, "runtime": 2}
    py_layers = {"_errors": 0, "_port": 1, "_runtime": 2}
    return csrc, pkg, c_layers, py_layers


def test_checker_accepts_a_layered_tree(tree):
    csrc, pkg, c_layers, py_layers = tree
    assert violations(c_dependencies(csrc), c_layers, C_ALWAYS) == []
    py = py_dependencies(pkg)
    assert py == {"_errors": {"_native"}, "_port": {"_errors"}, "_runtime": {"_port", "_errors"}}
    assert violations({k: v - PY_EXTERNAL for k, v in py.items()}, py_layers, set()) == []


def test_checker_reports_an_upward_include_and_its_circle(tree):
    csrc, _, c_layers, _ = tree
    (csrc / "port.c").write_text('#include "port.h"\n#include "runtime.h"\n')
    (csrc / "runtime.h").write_text('#include "port.h"\n')
    deps = c_dependencies(csrc)
    assert violations(deps, c_layers, C_ALWAYS) == ["port (L1) -> runtime (L2): not a lower layer"]
    assert cycles(deps) == [["port", "runtime", "port"]]


def test_checker_reports_a_same_layer_import_and_an_unplaced_module(tree):
    _, pkg, _, py_layers = tree
    (pkg / "_time.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ._runtime import Runtime\n"
    )
    (pkg / "_port.py").write_text("def f():\n    from . import _errors, _runtime\n")
    deps = {k: v - PY_EXTERNAL for k, v in py_dependencies(pkg).items()}
    assert violations(deps, py_layers, set()) == [
        "_port (L1) -> _runtime (L2): not a lower layer",
        "_time: in no layer (add it to the README's layer list)",
    ]
    assert cycles(deps) == [["_port", "_runtime", "_port"]]
