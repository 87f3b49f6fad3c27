"""B8 native work: C functions on the workers, a C producer thread, zlib jobs.

Three sub-cases, each with its own metric (so ours is compared only with the
peers of its sub-case).  The C side is the example extension of
``examples/capi`` (``tr_capi_example``), compiled into a temporary folder
with ``cc`` at the start of the child (a second or so; no setuptools): it
reaches the runtime only through the C API table (``tokio_runtime_capi.h``).

* ``native``: N ``rt.run_native(fn)`` in one ``asyncio.gather``, ``fn`` a C
  function that returns 1 (the example's ``noop_fn_address()``, cast with
  cffi); per op.  Peers: the B1 floor (N loop futures resolved in one batch
  by one callback on the loop, measured here, in the same process), B1's
  ``tokio_runtime.sleep(0)``, and ``asyncio.to_thread`` of the same cffi
  function pointer.
* ``stream``: 1,000,000 int64s from a native pthread
  (``producer_start``: ``TR_CAPI->channel_send_int``, no GIL) into a
  ``Channel(4096)`` drained by ``await recv_many(4096)``; items/s from
  starting the producer to the last item.  Peer: the same channel and
  consumer fed by a Python thread calling ``send_blocking(i)``.
* ``zlib``: M buffers of 4 KiB (from incompressible to very compressible),
  compressed at level 6 on 2 threads; buffers/s.  Ours: ``zcompress`` (a
  ``Completion`` completed by a job on a ``Runtime(worker_threads=2)``), all
  M in one gather.  Peers: ``asyncio.to_thread(zlib.compress, b, 6)`` in
  one gather (the default executor), and ``ThreadPoolExecutor(2).map``.

Every run is checked: every ``run_native`` result is 1; the stream's items
are 0..N-1 in order (each batch contiguous and following the previous one);
every compressed buffer decompresses to its input (checked after the timing).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import random
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _common import (
    Metric,
    Summary,
    Target,
    Variant,
    check,
    child_args,
    emit,
    progress,
    ratio_text,
    repeat_variants,
    run_on,
    timer,
)

CASE_ID = "B8"
TITLE = "native work: C functions on the workers, a C producer thread, zlib jobs"
OURS = ("ours_native", "ours_stream", "ours_zlib")
RATIO_METRICS = ("native_us", "stream_per_s", "zlib_per_s")
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "capi" / "src" / "tr_capi_example"
CAPACITY = 4096
BUFFER = 4096
LEVEL = 6
ZLIB_THREADS = 2


def sizes(quick: bool) -> dict[str, Any]:
    """The case's parameters."""
    return {
        "ops": 1_000 if quick else 10_000,
        "items": 50_000 if quick else 1_000_000,
        "capacity": CAPACITY,
        "buffers": 200 if quick else 4_000,
        "buffer_bytes": BUFFER,
        "zlib_threads": ZLIB_THREADS,
    }


def build_example() -> None:
    """Compile the example extension into a temporary folder and put it on ``sys.path``."""
    import tokio_runtime

    out = Path(tempfile.mkdtemp(prefix="b8-capi-"))
    atexit.register(shutil.rmtree, out, True)
    pkg = out / "tr_capi_example"
    pkg.mkdir()
    shutil.copy(EXAMPLE / "__init__.py", pkg)
    target = pkg / f"_ext{sysconfig.get_config_var('EXT_SUFFIX')}"
    cmd = [
        os.environ.get("CC", "cc"),
        "-O2",
        "-shared",
        "-fPIC",
        "-std=c11",
        f"-I{sysconfig.get_paths()['include']}",
        f"-I{tokio_runtime.get_include()}",
        str(EXAMPLE / "_ext.c"),
        "-lz",
        "-o",
        str(target),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"building the C API example failed:\n{proc.stderr}")
    sys.path.insert(0, str(out))


def make_variants() -> list[Variant]:
    """Per sub-case: ours first, then the peers."""

    def v(name: str, label: str, ours: bool, metric: str, unit: str, better: str) -> Variant:
        return Variant(
            name,
            label,
            ours,
            metric,
            {metric: Metric(unit, better), "total_s": Metric("s", "lower")},
            show=(metric, "total_s"),
        )

    per_op = ("native_us", "µs", "lower")
    stream = ("stream_per_s", "items/s", "higher")
    zl = ("zlib_per_s", "bufs/s", "higher")
    return [
        v("ours_native", "ours: rt.run_native(C fn) [per op, one gather]", True, *per_op),
        v("floor", "floor: loop futures resolved in one batch (B1) [per op]", False, *per_op),
        v("sleep0", "tokio_runtime.sleep(0) (B1's ours) [per op]", False, *per_op),
        v("to_thread", "asyncio.to_thread(the same cffi fn) [per op]", False, *per_op),
        v("ours_stream", "ours: C thread channel_send_int -> recv_many [stream]", True, *stream),
        v("py_stream", "Python thread send_blocking -> recv_many [stream]", False, *stream),
        v("ours_zlib", "ours: zcompress, Runtime(2 workers) [zlib 4 KiB]", True, *zl),
        v("to_thread_zlib", "asyncio.to_thread(zlib.compress) [zlib 4 KiB]", False, *zl),
        v("pool_zlib", "ThreadPoolExecutor(2).map(zlib.compress) [zlib 4 KiB]", False, *zl),
    ]


def make_buffers(n: int) -> list[bytes]:
    """``n`` buffers of BUFFER bytes, from incompressible to very compressible."""
    rnd = random.Random(8)
    out = []
    for i in range(n):
        noise = rnd.randbytes(BUFFER * (i % 4) // 4)
        out.append(noise + bytes([i % 251]) * (BUFFER - len(noise)))
    return out


class State:
    """What the runs share: the runtime, the C function, the buffers, the pool."""

    def __init__(self, params: dict[str, Any]) -> None:
        import cffi
        import tr_capi_example as ex

        import tokio_runtime as tr

        ffi = cffi.FFI()  # any FFI instance: cffi's types are shared
        self.ex = ex
        self.tr = tr
        self.fn = ffi.cast("int64_t (*)(void *, const volatile int *)", ex.noop_fn_address())
        self.null = ffi.NULL
        self.flag = ffi.new("int *")  # the cancel flag the to_thread peer passes
        self.zlib_rt = tr.Runtime(worker_threads=ZLIB_THREADS, thread_name="b8-zlib")
        self.pool = ThreadPoolExecutor(ZLIB_THREADS, thread_name_prefix="b8-pool")
        self.buffers = make_buffers(params["buffers"])

    def close(self) -> None:
        """Stop the runtime and the pool."""
        self.zlib_rt.shutdown()
        self.pool.shutdown()


async def native_run(st: State, name: str, n: int) -> float:
    """``n`` operations of variant ``name`` in one gather; check them; seconds."""
    loop = asyncio.get_running_loop()
    t0 = timer()
    if name == "ours_native":
        rt = st.tr.get_runtime()
        res = await asyncio.gather(*[rt.run_native(st.fn) for _ in range(n)])
        dt = timer() - t0
        check(res == [1] * n, "run_native results")
    elif name == "floor":
        futs = [loop.create_future() for _ in range(n)]

        def resolve_all() -> None:
            for f in futs:
                if not f.done():
                    f.set_result(1)

        loop.call_soon(resolve_all)
        res = await asyncio.gather(*futs)
        dt = timer() - t0
        check(res == [1] * n, "floor results")
    elif name == "sleep0":
        res = await asyncio.gather(*[st.tr.sleep(0, 1) for _ in range(n)])
        dt = timer() - t0
        check(res == [1] * n, "sleep(0) results")
    elif name == "to_thread":
        res = await asyncio.gather(*[asyncio.to_thread(st.fn, st.null, st.flag) for _ in range(n)])
        dt = timer() - t0
        check(res == [1] * n, "to_thread results")
    else:
        raise ValueError(name)
    return dt


async def drain(ch: Any, n: int) -> None:
    """Receive ``n`` ints with ``recv_many``, checking they are 0..n-1 in order."""
    expect = 0
    while expect < n:
        xs = await ch.recv_many(CAPACITY)
        m = len(xs)
        check(
            xs[0] == expect and xs[-1] == expect + m - 1,
            f"batch at {expect}: got {xs[0]}..{xs[-1]} ({m} items)",
        )
        expect += m


async def stream_run(st: State, name: str, n: int) -> float:
    """``n`` ints from a C or a Python thread through a Channel; seconds."""
    ch = st.tr.Channel(CAPACITY)
    t0 = timer()
    if name == "ours_stream":
        producer = st.ex.producer_start(ch, n)
        await drain(ch, n)
        dt = timer() - t0
        sent, status = await asyncio.to_thread(st.ex.producer_join, producer)
        check((sent, status) == (n, st.ex.TR_OK), f"producer: {sent} sent, status {status}")
    elif name == "py_stream":

        def produce() -> None:
            send = ch.send_blocking
            for i in range(n):
                send(i)

        thread = threading.Thread(target=produce, name="b8-producer")
        thread.start()
        await drain(ch, n)
        dt = timer() - t0
        await asyncio.to_thread(thread.join)
    else:
        raise ValueError(name)
    check(len(ch) == 0, "items left in the channel")
    return dt


async def zlib_run(st: State, name: str, bufs: list[bytes]) -> float:
    """Compress ``bufs`` with variant ``name``; check the output afterwards; seconds."""
    t0 = timer()
    if name == "ours_zlib":
        rt = st.zlib_rt
        out = await asyncio.gather(*[st.ex.zcompress(b, LEVEL, runtime=rt) for b in bufs])
    elif name == "to_thread_zlib":
        out = await asyncio.gather(*[asyncio.to_thread(zlib.compress, b, LEVEL) for b in bufs])
    elif name == "pool_zlib":
        out = list(st.pool.map(zlib.compress, bufs, [LEVEL] * len(bufs)))
    else:
        raise ValueError(name)
    dt = timer() - t0
    check(len(out) == len(bufs), "a result per buffer")
    check(all(zlib.decompress(c) == b for c, b in zip(out, bufs)), "zlib round trip")
    return dt


async def one_run(st: State, name: str, params: dict[str, Any]) -> dict[str, float]:
    """One checked run of variant ``name``: its metrics."""
    if name in ("ours_native", "floor", "sleep0", "to_thread"):
        n = params["ops"]
        dt = await native_run(st, name, n)
        return {"native_us": dt / n * 1e6, "total_s": dt}
    if name.endswith("_stream"):
        n = params["items"]
        dt = await stream_run(st, name, n)
        return {"stream_per_s": n / dt, "total_s": dt}
    bufs = st.buffers[: params["buffers"]]
    dt = await zlib_run(st, name, bufs)
    return {"zlib_per_s": len(bufs) / dt, "total_s": dt}


def targets(s: Summary, params: dict[str, Any]) -> list[Target]:
    """run_native: <= 2x the floor, >= 10x to_thread; C stream: >= 5 M/s and >= 3x Python's;
    zcompress: faster than to_thread and the thread pool."""
    out = []
    if "ours_native" in s:
        op = s["ours_native"]["native_us"]
        if "floor" in s:
            r = op / s["floor"]["native_us"]
            out.append(
                Target(
                    "ours_native: per op <= 2x the floor",
                    r,
                    "<=",
                    2.0,
                    f"{ratio_text(r, '<=')} floor",
                )
            )
        if "to_thread" in s:
            r = s["to_thread"]["native_us"] / op
            out.append(
                Target(
                    "ours_native: >= 10x faster than to_thread",
                    r,
                    ">=",
                    10.0,
                    f"{ratio_text(r, '>=')} faster",
                )
            )
    if "ours_stream" in s:
        rate = s["ours_stream"]["stream_per_s"]
        out.append(Target("ours_stream: >= 5 M items/s", rate, ">=", 5e6, f"{rate / 1e6:.2f} M/s"))
        if "py_stream" in s:
            r = rate / s["py_stream"]["stream_per_s"]
            out.append(
                Target(
                    "ours_stream: >= 3x the Python-thread producer",
                    r,
                    ">=",
                    3.0,
                    f"{ratio_text(r, '>=')} Python",
                )
            )
    for peer, short in (("to_thread_zlib", "to_thread"), ("pool_zlib", "thread pool")):
        if "ours_zlib" in s and peer in s:
            r = s["ours_zlib"]["zlib_per_s"] / s[peer]["zlib_per_s"]
            out.append(
                Target(
                    f"ours_zlib: faster than {short}", r, ">", 1.0, f"{ratio_text(r, '>')} {short}"
                )
            )
    return out


def main() -> None:
    """Measure every variant on a loop of ``--loop`` kind and print the result."""
    args = child_args(__doc__ or "")
    params = sizes(args.quick)
    variants = make_variants()
    tag = f"{CASE_ID} {args.loop}"
    progress(f"[{tag}] building the C API example extension")
    build_example()
    quarter = {
        **params,
        "ops": max(params["ops"] // 4, 100),
        "items": max(params["items"] // 4, 10_000),
        "buffers": max(params["buffers"] // 4, 50),
    }

    async def bench() -> None:
        st = State(params)
        try:

            async def runner(name: str) -> dict[str, float]:
                return await one_run(st, name, params)

            async def warmup(name: str) -> None:
                await one_run(st, name, quarter)

            await repeat_variants(tag, variants, runner, args.repeat, warmup)
        finally:
            st.close()

    run_on(args.loop, bench)
    emit(args, params, variants)


if __name__ == "__main__":
    main()
