"""Short runs of the atheris harnesses in fuzz/: each must finish its runs with exit 0.

Longer runs are manual (fuzz/README.md). These only prove that the harnesses start,
load their seed corpus and hold their invariant for a few thousand inputs.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris", reason="atheris is not installed (pip install atheris)")

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
HARNESSES = ["gateway", "error_response", "feedback", "h2_response", "h2_answer"]
RUNS = 5_000


def test_every_harness_has_a_seed_corpus():
    for name in HARNESSES:
        assert (FUZZ / f"fuzz_{name}.py").is_file()
        assert list((FUZZ / "corpus" / name).glob("*.bin")), name


def test_harnesses_run_clean(tmp_path):
    # All of them at once (they are independent processes); each writes new inputs into a
    # scratch copy of its corpus, never into the repository.
    procs = {}
    for name in HARNESSES:
        work = tmp_path / name
        shutil.copytree(FUZZ / "corpus" / name, work)
        procs[name] = subprocess.Popen(
            [
                sys.executable,
                str(FUZZ / f"fuzz_{name}.py"),
                f"-atheris_runs={RUNS}",
                f"-artifact_prefix={tmp_path}/{name}-",
                "-print_final_stats=1",
                str(work),
            ],
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    failures = []
    for name, proc in procs.items():
        try:
            output, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
            failures.append(f"{name}: timed out\n{output[-3000:]}")
            continue
        if proc.returncode != 0 or f"Done {RUNS} " not in output:
            failures.append(f"{name}: exit {proc.returncode}\n{output[-3000:]}")
    assert not failures, "\n\n".join(failures)
