"""Start-up cost of the command line: a command loads its own module, not every command's.

Run in fresh interpreters (this one has pytest and everything else loaded already).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from apns_legacy.cli._main import COMMANDS

HEAVY = ("apns_legacy.bridge", "apns_legacy.wallet", "apns_legacy.conform", "pytest",
         "hypercorn", "starlette")  # fmt: skip

PROBE = """
import json, sys
from apns_legacy.cli._main import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
loaded = sorted({name.split(".")[0] if not name.startswith("apns_legacy") else
                 ".".join(name.split(".")[:2]) for name in sys.modules})
print(json.dumps({"code": code, "loaded": loaded}))
"""


def run(*arguments: str, cwd: Path | None = None) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *arguments],
        capture_output=True, text=True, timeout=60, cwd=cwd,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


@pytest.mark.parametrize(
    "arguments",
    [("send", "--help"), ("feedback", "--help"), ("-v", "send", "--help"),
     ("--log-format", "json", "tokens", "--help"), ("--config", "bridge", "serve", "--help")],
)  # fmt: skip
def test_a_command_loads_its_own_module_only(arguments, tmp_path):
    (tmp_path / "bridge").write_text("")  # a settings file named like a command
    result = run(*arguments, cwd=tmp_path)
    assert result["code"] == 0
    loaded = set(result["loaded"])  # type: ignore[arg-type]
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_the_top_level_help_still_lists_every_command():
    done = subprocess.run(
        [sys.executable, "-m", "apns_legacy", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    for name in COMMANDS:
        assert name in done.stdout
    # An unknown command is refused with the list of them all.
    done = subprocess.run(
        [sys.executable, "-m", "apns_legacy", "sned"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "invalid choice: 'sned'" in done.stderr
    assert "bridge" in done.stderr


def test_the_in_process_grader_still_runs_without_trio_testing_at_import():
    # conform imports trio.testing (and so pytest) only when grading in process.
    result = run("conform", "--help")
    assert result["code"] == 0
    assert "pytest" not in result["loaded"]  # type: ignore[operator]
