"""Smoke test of the benchmark suite (issue 5): every case, tiny sizes, stdlib peers only.

Runs ``benchmarks/run.py --quick --stdlib-only`` (ours against the standard
library's peers, on asyncio and uvloop: no bench extra needed) and checks the
JSON it writes: every case ran on every loop, every run passed its
correctness check, and every ratio is a finite positive number.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "benchmarks" / "run.py"
CASES = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8"]
LOOPS = ["asyncio", "uvloop"]
REPEAT = 2
THIRD_PARTY = ("janus", "culsans", "aiologic")


def finite_positive(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_quick_run_writes_a_complete_result(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(RUN),
            "--quick",
            "--stdlib-only",
            "--no-chart",
            "--repeat",
            str(REPEAT),
            "--loops",
            ",".join(LOOPS),
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    # Progress: a line per case and loop, and per run.
    assert proc.stderr.count("== [") == len(CASES) * len(LOOPS)
    assert f"run {REPEAT}/{REPEAT}" in proc.stderr

    doc = json.loads((tmp_path / "latest.json").read_text())
    assert doc["schema"] == "tokio_runtime.bench/1"
    assert doc["ok"] is True
    assert doc["config"] == {
        "quick": True,
        "repeat": REPEAT,
        "cases": CASES,
        "loops": LOOPS,
        "stdlib_only": True,
    }
    assert {"python", "cpu_count", "git_commit", "versions"} <= set(doc["environment"])
    assert list(doc["cases"]) == CASES
    targets = 0
    for cid, case in doc["cases"].items():
        assert case["title"] and case["script"].endswith(".py")
        assert list(case["loops"]) == LOOPS, cid
        for lp, res in case["loops"].items():
            where = f"{cid} on {lp}"
            assert res["error"] is None, where
            assert res["params"], where
            variants = res["variants"]
            assert any(v["ours"] for v in variants.values()), where
            assert any(not v["ours"] for v in variants.values()), where
            for name, v in variants.items():
                assert not name.startswith(THIRD_PARTY), f"{where}: {name} is not a stdlib peer"
                assert v["checks_passed"] == REPEAT, f"{where}: {name}"
                assert v["primary"] in v["metrics"], f"{where}: {name}"
                for mname, m in v["metrics"].items():
                    assert len(m["runs"]) == REPEAT, f"{where}: {name}.{mname}"
                    assert m["better"] in ("lower", "higher")
                    assert m["min"] <= m["median"] <= m["max"], f"{where}: {name}.{mname}"
                    assert all(math.isfinite(x) for x in m["runs"]), f"{where}: {name}.{mname}"
                # Lateness may be negative (a sleep that woke early) or 0 (a timer
                # run within the clock's resolution); every other primary
                # metric is a time or a rate.
                runs = v["metrics"][v["primary"]]["runs"]
                if v["primary"] == "timer_p99_ms":
                    assert all(x >= 0 for x in runs), f"{where}: {name}"
                elif v["primary"] != "p99_ms":
                    assert all(finite_positive(x) for x in runs), f"{where}: {name}"
            # A ratio is left out (and said why) only when a value is not positive.
            assert res["ratios"] or res["ratios_skipped"], f"{where}: no ratios"
            for r in res["ratios_skipped"]:
                assert r["why"], where
            for r in res["ratios"]:
                assert r["ours"] in variants and r["peer"] in variants, where
                assert variants[r["ours"]]["ours"] and not variants[r["peer"]]["ours"], where
                assert finite_positive(r["speedup"]), f"{where}: {r}"
            for t in res["targets"]:
                assert isinstance(t["met"], bool) and math.isfinite(t["value"]), f"{where}: {t}"
                targets += 1
    assert doc["targets_total"] == targets > 0
    assert 0 <= doc["targets_met"] <= targets

    table = (tmp_path / "latest.txt").read_text()
    for cid in CASES:
        assert f"\n{cid}  " in table
    assert "targets met:" in table
    assert not (tmp_path / "latest.png").exists()  # --no-chart
