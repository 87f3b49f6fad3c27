"""Run the tokio_runtime benchmark suite (issue 5): cases B1-B8, on asyncio and uvloop.

Each case runs once per loop kind in a fresh interpreter (``bXX_*.py --loop
KIND --json``), which measures every variant ``--repeat`` times (interleaved,
after a warm-up) and checks every run for correctness.  This script collects
the raw runs, takes medians, computes the ratios of ours against the peers
measured in the same child, checks the targets, prints the table and writes
``latest.json`` (and ``latest.txt`` and the chart ``latest.png``) under
``--out``.  Progress goes to stderr, a line per case and per run.

    python benchmarks/run.py                      # everything (make bench)
    python benchmarks/run.py --quick              # tiny sizes: a smoke test
    python benchmarks/run.py --cases B1,B3 --loops uvloop --repeat 3
    python benchmarks/run.py --quick --stdlib-only --no-chart   # no third-party peers
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import report  # noqa: E402
from _common import LOOP_KINDS, THIRD_PARTY, Summary, median, progress  # noqa: E402

#: Case id -> module (a script beside this one).
CASES = {
    "B1": "b1_overhead",
    "B2": "b2_latency",
    "B3": "b3_throughput",
    "B4": "b4_scale",
    "B5": "b5_locks",
    "B6": "b6_handoff",
    "B7": "b7_pingpong",
    "B8": "b8_native",
}
SCHEMA = "tokio_runtime.bench/1"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    ap = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--quick", action="store_true", help="tiny sizes, 2 repeats: a smoke test")
    ap.add_argument("--repeat", type=int, help="timed runs per variant (default 5; 2 with --quick)")
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated, e.g. B1,B3")
    ap.add_argument(
        "--loops",
        help="comma-separated loop kinds (default asyncio,uvloop; asyncio with --stdlib-only)",
    )
    ap.add_argument("--out", type=Path, default=HERE / "results", help="directory for results")
    ap.add_argument(
        "--stdlib-only",
        action="store_true",
        help="leave out janus, culsans and aiologic (only ours and the stdlib peers)",
    )
    ap.add_argument("--no-chart", action="store_true", help="do not draw the PNG chart")
    ap.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds before a case's child is killed"
    )
    args = ap.parse_args(argv)
    args.case_list = [c.strip().upper() for c in args.cases.split(",") if c.strip()]
    for c in args.case_list:
        if c not in CASES:
            ap.error(f"unknown case {c!r} (known: {', '.join(CASES)})")
    default_loops = "asyncio" if args.stdlib_only else ",".join(LOOP_KINDS)
    args.loop_list = [x.strip() for x in (args.loops or default_loops).split(",") if x.strip()]
    for x in args.loop_list:
        if x not in LOOP_KINDS:
            ap.error(f"unknown loop kind {x!r} (known: {', '.join(LOOP_KINDS)})")
    if args.repeat is None:
        args.repeat = 2 if args.quick else 5
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    return args


def versions(stdlib_only: bool, loops: list[str]) -> dict[str, str]:
    """Versions of ours and of the peers in use."""
    from importlib.metadata import PackageNotFoundError, version

    names = ["tokio_runtime"]
    if "uvloop" in loops:
        names.append("uvloop")
    if not stdlib_only:
        names += list(THIRD_PARTY)
    out = {}
    for n in names:
        try:
            out[n] = version(n)
        except PackageNotFoundError:
            out[n] = "not installed"
    return out


def git_commit() -> str:
    """The commit of the checkout (``+dirty`` if it has changes), or ``unknown``."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=HERE,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "pkg", "csrc"],
            cwd=HERE.parent,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_child(case: str, loop: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one case on one loop kind in a fresh interpreter; its raw JSON result."""
    cmd = [
        sys.executable,
        str(HERE / f"{CASES[case]}.py"),
        "--loop",
        loop,
        "--repeat",
        str(args.repeat),
        "--json",
    ]
    if args.quick:
        cmd.append("--quick")
    if args.stdlib_only:
        cmd.append("--stdlib-only")
    # stderr is inherited: the child's progress lines show as they happen.
    proc = subprocess.run(
        cmd, stdout=subprocess.PIPE, text=True, timeout=args.timeout, check=False, cwd=HERE
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{case} on {loop}: child exited with {proc.returncode}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if not lines:
        raise RuntimeError(f"{case} on {loop}: child printed no result")
    doc: dict[str, Any] = json.loads(lines[-1])
    return doc


def summarize(case: str, raw: dict[str, Any]) -> dict[str, Any]:
    """Medians, ratios and targets of one case on one loop, from the child's raw runs."""
    mod = importlib.import_module(CASES[case])
    variants = raw["variants"]
    summary: Summary = {}
    for name, v in variants.items():
        summary[name] = {}
        for mname, m in v["metrics"].items():
            runs = m["runs"]
            m["median"] = median(runs)
            m["min"] = min(runs)
            m["max"] = max(runs)
            summary[name][mname] = m["median"]
    ratios = []
    skipped = []
    for ours in mod.OURS:
        if ours not in variants:
            continue
        for peer, pv in variants.items():
            if pv["ours"]:
                continue
            for mname in mod.RATIO_METRICS:
                if mname not in pv["metrics"] or mname not in variants[ours]["metrics"]:
                    continue
                o = summary[ours][mname]
                p = summary[peer][mname]
                pair = {"ours": ours, "peer": peer, "metric": mname}
                if not (o > 0 and p > 0):  # e.g. a lateness median below 0: sleeps woke early
                    why = f"not both positive: ours {o:.4g}, peer {p:.4g}"
                    skipped.append({**pair, "why": why})
                    continue
                better = pv["metrics"][mname]["better"]
                speedup = p / o if better == "lower" else o / p
                ratios.append({**pair, "speedup": speedup})
    targets = [t.to_json() for t in mod.targets(summary, raw["params"])]
    return {
        "params": raw["params"],
        "variants": variants,
        "ratios": ratios,
        "ratios_skipped": skipped,
        "targets": targets,
        "error": None,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the chosen cases on the chosen loops; print, save, chart.  Exit 1 on any failure."""
    args = parse_args(argv)
    started = time.perf_counter()
    load_before = os.getloadavg()
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config": {
            "quick": args.quick,
            "repeat": args.repeat,
            "cases": args.case_list,
            "loops": args.loop_list,
            "stdlib_only": args.stdlib_only,
        },
        "environment": {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "loadavg_start": list(load_before),
            "git_commit": git_commit(),
            "versions": versions(args.stdlib_only, args.loop_list),
        },
        "cases": {},
    }
    failures = 0
    jobs = [(c, lp) for c in args.case_list for lp in args.loop_list]
    for i, (case, loop) in enumerate(jobs, 1):
        mod = importlib.import_module(CASES[case])
        entry = doc["cases"].setdefault(
            case, {"title": mod.TITLE, "script": f"{CASES[case]}.py", "loops": {}}
        )
        progress(
            f"== [{i}/{len(jobs)}] {case} {mod.TITLE} - loop {loop} "
            f"(elapsed {time.perf_counter() - started:.0f} s)"
        )
        t0 = time.perf_counter()
        try:
            result = summarize(case, run_child(case, loop, args))
        except Exception as exc:  # one broken case must not hide the others
            failures += 1
            progress(f"!! {case} on {loop} FAILED: {exc}")
            result = {
                "params": {},
                "variants": {},
                "ratios": [],
                "ratios_skipped": [],
                "targets": [],
                "error": str(exc),
            }
        result["elapsed_s"] = time.perf_counter() - t0
        entry["loops"][loop] = result
    doc["environment"]["loadavg_end"] = list(os.getloadavg())
    doc["elapsed_s"] = time.perf_counter() - started
    all_targets = [
        t for c in doc["cases"].values() for r in c["loops"].values() for t in r["targets"]
    ]
    doc["targets_met"] = sum(1 for t in all_targets if t["met"])
    doc["targets_total"] = len(all_targets)
    doc["ok"] = failures == 0

    text = report.render(doc)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    (args.out / "latest.txt").write_text(text + "\n")
    progress(f"wrote {args.out / 'latest.json'} and {args.out / 'latest.txt'}")
    if not args.no_chart:
        png = args.out / "latest.png"
        try:
            report.chart(doc, png)
            progress(f"wrote {png}")
        except ImportError as exc:
            progress(f"no chart: {exc} (pip install '.[bench]')")
    progress(f"done in {doc['elapsed_s']:.0f} s; {failures} failed case run(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
