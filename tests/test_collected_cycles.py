"""Native memory outlives every Python object that can still use it.

A coroutine parked on a loop that was closed without cancelling it ends as
cyclic garbage, together with the ``Channel`` or ``Mutex`` it uses.  The
collector then runs the cycle's finalizers in no set order, so the
coroutine's ``finally`` (``channel.close()``, ``Mutex.release()`` from
``async with``, a waiter passing its wake on) may run after the destructor of
the very C object it calls.  That was a use-after-free (seen first as
``channel_demo`` hanging in ``tr_channel_close`` on a lock in freed memory);
the release is now put off to the end of the collection.

The scenarios run in a fresh interpreter: once with glibc's
``MALLOC_PERTURB_`` (freed memory is scribbled over, so a use-after-free
crashes or hangs), and once against a copy of the package whose native module
is built with AddressSanitizer, which reports any use-after-free exactly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

import tokio_runtime

ROOT = Path(__file__).resolve().parent.parent

SCENARIOS = textwrap.dedent(
    """
    import asyncio, gc, sys, time
    import uvloop
    import tokio_runtime as tr

    factory = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}[sys.argv[1]]

    async def closes_in_finally(ch):
        try:
            await ch.recv()
        finally:
            ch.close()

    async def holds_the_lock(lock):
        async with lock:
            await asyncio.sleep(1000)

    async def waits_for_the_lock(lock):
        async with lock:
            pass

    async def woken_then_abandoned(ch):
        await ch.recv()

    def abandon(make):
        loop = factory()
        loop.set_exception_handler(lambda _loop, ctx: None)  # "Task was destroyed"
        tasks = make(loop)
        loop.run_until_complete(asyncio.sleep(0.01))
        loop.close()
        del tasks, loop
        rt = tr.get_runtime()
        while rt.stats()["pending"]:  # the sweep finds the closed loop
            time.sleep(0.005)
        gc.collect()

    for _ in range(5):
        abandon(lambda loop: [loop.create_task(closes_in_finally(tr.Channel(1)))
                              for _ in range(10)])

        def lock_users(loop):
            out = []
            for _ in range(10):
                lock = tr.Mutex()
                out += [loop.create_task(holds_the_lock(lock)),
                        loop.create_task(waits_for_the_lock(lock))]
            return out
        abandon(lock_users)

        def woken(loop):
            out = []
            for _ in range(10):
                ch = tr.Channel(1)
                out.append(loop.create_task(woken_then_abandoned(ch)))
                loop.call_later(0.005, ch.try_send, "wake")
            return out
        abandon(woken)

        def demos(loop):
            async def start():
                return [tr.channel_demo(1000) for _ in range(10)]
            return loop.run_until_complete(start())
        abandon(demos)

    async def still_works():
        ch, lock = tr.Channel(1), tr.Mutex()
        await ch.send(1)
        async with lock:
            return await ch.recv(), await tr.channel_demo(2)
    print(tr.__file__)
    print(asyncio.run(still_works()))
    """
)
EXPECTED = "(1, ['Message 0', 'Message 1'])"


def run(env: dict[str, str], flavour: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCENARIOS, flavour],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
    )


@pytest.mark.parametrize("flavour", ["asyncio", "uvloop"])
def test_abandoned_coroutines_never_touch_freed_native_objects(flavour):
    proc = run({"MALLOC_PERTURB_": "85"}, flavour)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == EXPECTED
    assert proc.stderr == ""


def asan_runtime() -> str | None:
    cc = shutil.which("gcc")
    if cc is None:
        return None
    lib = subprocess.run([cc, "-print-file-name=libasan.so"], capture_output=True, text=True)
    path = lib.stdout.strip()
    return path if os.path.isabs(path) and os.path.exists(path) else None


@pytest.fixture(scope="module")
def asan_package(tmp_path_factory):
    """A copy of the package whose ``_native`` is built with AddressSanitizer."""
    libasan = asan_runtime()
    include = sysconfig.get_paths()["include"]
    if libasan is None or not (Path(include) / "Python.h").exists():
        pytest.skip("gcc with libasan and the Python headers are needed")
    out = tmp_path_factory.mktemp("asan")
    pkg = out / "tokio_runtime"
    shutil.copytree(Path(tokio_runtime.__file__).parent, pkg)
    for old in pkg.glob("_native*.so"):
        old.unlink()
    source = out / "_native.c"
    subprocess.run(
        [sys.executable, str(ROOT / "build_ffi.py"), str(source)], check=True, capture_output=True
    )
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    subprocess.run(
        [
            "gcc",
            "-shared",
            "-fPIC",
            "-O1",
            "-g",
            "-fsanitize=address",
            "-fno-omit-frame-pointer",
            "-std=c11",
            "-D_GNU_SOURCE",
            f"-I{include}",
            f"-I{ROOT / 'csrc' / 'include'}",
            f"-I{ROOT / 'csrc'}",
            str(source),
            *map(str, sorted((ROOT / "csrc").glob("*.c"))),
            "-lev",
            "-lpthread",
            "-lm",
            "-o",
            str(pkg / f"_native{suffix}"),
        ],
        check=True,
        capture_output=True,
    )
    return out, libasan


@pytest.mark.parametrize("flavour", ["asyncio", "uvloop"])
def test_abandoned_coroutines_under_address_sanitizer(asan_package, flavour):
    path, libasan = asan_package
    proc = run(
        {
            "PYTHONPATH": str(path),
            "LD_PRELOAD": libasan,
            # CPython itself keeps memory until exit; only errors count here.
            "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0:exitcode=99",
        },
        flavour,
    )
    assert "AddressSanitizer" not in proc.stderr, proc.stderr[:4000]
    assert proc.returncode == 0, proc.stderr[:4000]
    loaded, result = proc.stdout.splitlines()
    assert loaded.startswith(str(path))  # the instrumented copy, not the installed one
    assert result == EXPECTED
