"""Jupyter: examples/tour.ipynb runs in a real IPython kernel; no nested loops.

The notebook is executed with nbclient in a kernel of this environment's
Python, from a kernelspec installed in a temporary directory (nothing is
installed in the user's Jupyter paths), and its outputs are checked cell by
cell.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "examples" / "tour.ipynb"
PACKAGE = ROOT / "pkg" / "tokio_runtime"
KERNEL = "tokio-runtime-tour"

# The kernel's own report, appended to the notebook by the test only.
PROBE = "import sys, tokio_runtime\nprint(sys.executable)\nprint(tokio_runtime.__file__)"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The tour, executed; maps each code cell's id to its stdout, plus the probe's."""
    tmp = tmp_path_factory.mktemp("jupyter")
    subprocess.run(
        [sys.executable, "-m", "ipykernel", "install", "--prefix", str(tmp), "--name", KERNEL],
        check=True,
        capture_output=True,
        timeout=120,
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(tmp / "share" / "jupyter"))
        mp.setenv("JUPYTER_RUNTIME_DIR", str(tmp / "runtime"))
        mp.setenv("JUPYTER_PLATFORM_DIRS", "1")
        mp.setenv("IPYTHONDIR", str(tmp / "ipython"))  # no user profile or startup files
        import nbclient
        import nbformat

        nb = nbformat.read(NOTEBOOK, as_version=4)
        nbformat.validate(nb)
        nb.cells.append(nbformat.v4.new_code_cell(PROBE, id="test-probe"))
        client = nbclient.NotebookClient(
            nb,
            kernel_name=KERNEL,
            timeout=120,
            allow_errors=False,
            resources={"metadata": {"path": str(tmp)}},  # the kernel's cwd
        )
        client.execute()
    outputs = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kinds = {o.output_type for o in cell.outputs}
        assert kinds <= {"stream"}, (cell.id, cell.outputs)
        assert all(o.name == "stdout" for o in cell.outputs), (cell.id, cell.outputs)
        outputs[cell.id] = "".join(o.text for o in cell.outputs)
    return outputs


def lines(outputs, cell_id):
    return outputs[cell_id].splitlines()


def test_the_notebook_ran_in_this_environment(executed):
    python, package = lines(executed, "test-probe")
    assert Path(python).parent == Path(sys.executable).parent
    assert Path(package).parent.name == "tokio_runtime"
    assert "site-packages" in package  # the installed package, not the source tree


def test_the_kernel_loop_is_already_running(executed):
    assert lines(executed, "setup") == ["the kernel's loop is running: True"]


def test_spawn_background_task_ticks_print_in_the_cell_that_spawned_them(executed):
    assert lines(executed, "seed-background") == [
        "Spawned background task with 3 iterations",
        "Background task iteration: 1/3",
        "Background task iteration: 2/3",
        "Background task iteration: 3/3",
    ]
    # ... and nowhere else
    others = [k for k, v in executed.items() if k != "seed-background"]
    assert not any("Background task iteration" in executed[k] for k in others)


def test_seed_functions_give_the_documented_results(executed):
    fetched, took = lines(executed, "seed-concurrent-run")
    assert fetched == "['Fetched: a.example', 'Fetched: b.example', 'Fetched: c.example']"
    seconds = float(re.fullmatch(r"took (\d+\.\d+) s \(one after another: 0\.45 s\)", took)[1])
    assert 0.19 <= seconds < 1.0
    assert lines(executed, "seed-counter-run") == ["100000"]
    assert lines(executed, "seed-timeout-run") == [
        "Operation completed",
        "TimeoutError: Operation timed out after 50ms (operation would take 200ms)",
    ]
    assert lines(executed, "seed-channel-run") == [
        "['Message 0', 'Message 1', 'Message 2', 'Message 3', 'Message 4']"
    ]


def test_general_api_cells(executed):
    slept, timers = lines(executed, "api-sleep")
    assert slept == "slept 50 ms"
    assert 0.09 <= float(re.fullmatch(r"1000 timers in (\d+\.\d+) s", timers)[1]) < 2.0
    assert lines(executed, "api-timeout") == [
        "timed out; the 10 s timer was stopped in C",
        "in time",
    ]
    # on_tick=print: every tick, in order, in this cell, before the handle resolves.
    assert lines(executed, "api-background") == [
        "1",
        "2",
        "3",
        "4",
        "5",
        "finished after 5 iterations",
        "cancelled: True - it had ticked: True",
    ]
    assert lines(executed, "api-ticks") == ["[1, 2, 3, 4] 4"]
    assert lines(executed, "api-channel") == ["sum of 0..999 sent from a thread: 499500"]
    assert lines(executed, "api-mutex") == ["counter: 2000"]
    assert lines(executed, "api-runtime") == [
        "on my own runtime",
        "{'worker_threads': 2, 'thread_name': 'notebook', 'submitted': 1, 'completed': 1}",
        "shut down: True",
    ]


def test_nothing_is_pending_at_the_end(executed):
    assert lines(executed, "end") == ["pending: 0"]


def test_the_notebook_uses_top_level_await_only():
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "await " in code
    for banned in ("asyncio.run(", "run_until_complete", "nest_asyncio", "new_event_loop"):
        assert banned not in code, banned


def forbidden_calls(path):
    """Calls that start or nest an event loop, and nest_asyncio imports, in a module.

    Parsed, not grepped: docstrings may show a user's script calling
    ``asyncio.run`` (the package's own docstring does).
    """
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            f = node.func
            if f.attr == "run_until_complete" or (
                f.attr == "run" and isinstance(f.value, ast.Name) and f.value.id == "asyncio"
            ):
                found.append(f"{path.name}:{node.lineno}: {ast.unparse(f)}(...)")
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names]
            module = getattr(node, "module", None) or ""
            if "nest_asyncio" in [module, *names] or (module == "asyncio" and "run" in names):
                found.append(f"{path.name}:{node.lineno}: import {module} {names}")
    return found


def test_the_library_never_starts_or_nests_an_event_loop():
    # __main__.py is the command-line demo (python -m tokio_runtime), not the
    # library: it owns its process and runs its own loop, as a script would.
    modules = sorted(p for p in PACKAGE.glob("*.py") if p.name != "__main__.py")
    assert len(modules) >= 10
    found = [hit for p in modules for hit in forbidden_calls(p)]
    assert found == []
    assert "nest_asyncio" not in "".join(p.read_text() for p in PACKAGE.glob("*.py"))
    # The check does see such calls: the demo entry point has them.
    assert forbidden_calls(PACKAGE / "__main__.py")
