"""The soak script runs: a short run of tests/soak.py must pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parent / "soak.py"


def test_soak_runs_clean_for_a_few_seconds():
    proc = subprocess.run(
        [sys.executable, str(SOAK), "--seconds", "3", "--seed", "12345"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("soak: 3 s, seed 12345")
    assert lines[-2].startswith("soak OK: ") and "0 violations" in lines[-2]
    assert lines[-1] == "soak: 1 passed, 0 failed"
    assert "VIOLATION" not in proc.stdout
    # It did real work in those seconds.
    ops = int(lines[-2].split(" operations")[0].rsplit(" ", 1)[1])
    assert ops > 1000


def test_soak_is_not_collected_and_fails_loudly_on_bad_arguments():
    proc = subprocess.run(
        [sys.executable, str(SOAK), "--seconds", "soon"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "invalid float value" in proc.stderr
