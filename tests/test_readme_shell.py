"""The README's shell examples marked ``<!-- shell-test -->`` run as written, with bash.

Each marked block runs in a fresh folder with the project's ``apns-legacy`` first on
``PATH`` (as with an activated virtual environment), in its own process group so that a
block that hangs is ended with everything it started. What the comments promise is
checked against what the commands printed: every ``# stderr: TEXT`` or
``# stderr (...): TEXT`` comment must appear in the block's stderr (up to a trailing
``...``), every ``# stdout: TEXT`` in its stdout, and the exit codes of the commands
that failed, in order, must be the non-zero ``# exit code N`` comments (a loop's
comment ``# exit codes: 1 1 (why)`` counts once per pass).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
_BLOCK = re.compile(r"<!-- shell-test -->\s*\n```sh\n(.*?)\n```", re.DOTALL)
_STDERR = re.compile(r"^\s*# stderr(?: \([^)]*\))?: (.*?)(?:\.\.\.)?\s*$", re.MULTILINE)
_STDOUT = re.compile(r"^\s*# stdout: (.*?)(?:\.\.\.)?\s*$", re.MULTILINE)
_EXIT = re.compile(r"^\s*# exit codes?:? ([\d ]+?)(?:\s*\(.*\))?\s*$", re.MULTILINE)
# Run after every command that fails (ERR trap): its exit code, for the check above.
_TRAP = "trap 'echo \"::exit $?\" >&2' ERR\n"


def _blocks() -> list[tuple[int, str]]:
    text = README.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in _BLOCK.finditer(text)]


def test_readme_has_shell_examples():
    assert len(_blocks()) >= 1


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the example uses the openssl tool")
@pytest.mark.parametrize(
    ("line", "code"), _blocks(), ids=lambda v: str(v) if isinstance(v, int) else ""
)
def test_readme_shell_example_runs(line, code, tmp_path):
    environment = dict(os.environ)
    environment["PATH"] = str(Path(sys.executable).parent) + os.pathsep + environment["PATH"]
    process = subprocess.Popen(
        ["bash", "-c", _TRAP + code],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: ended as a whole on a timeout
    )
    try:
        out, err = process.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"README.md:{line}: still running after 180 s\n{err}")
    assert process.returncode == 0, f"README.md:{line}:\n{err}"
    for promised in _STDERR.findall(code):
        assert promised.strip() in err, f"README.md:{line}: {promised!r} not in\n{err}"
    failed = [int(n) for n in re.findall(r"^::exit (\d+)$", err, re.MULTILINE)]
    promised_codes = [int(n) for group in _EXIT.findall(code) for n in group.split()]
    assert failed == [n for n in promised_codes if n != 0], err
    for promised in _STDOUT.findall(code):
        assert promised.strip() in out, f"README.md:{line}: {promised!r} not in\n{out}"
