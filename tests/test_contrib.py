"""contrib/: the systemd unit, the container file and the example settings parse, and
name only commands and options that exist."""

from __future__ import annotations

import configparser
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from apns_legacy.cli._main import build_parser
from apns_legacy.cli._settings import apply, read_file

ROOT = Path(__file__).resolve().parent.parent
CONTRIB = ROOT / "contrib"
UNIT = CONTRIB / "apns-legacy-feedback.service"
VENV_BINARY = "/opt/apns-legacy/.venv/bin/apns-legacy"


def subparser(name: str):
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return parser, action.choices[name]


def unit_sections() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=True, interpolation=None)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read_string(UNIT.read_text())
    return unit


def test_the_unit_has_the_sections_and_keys_systemd_needs():
    unit = unit_sections()
    assert unit.sections() == ["Unit", "Service", "Install"]
    service = unit["Service"]
    command = shlex.split(service["ExecStart"])
    assert command[0] == VENV_BINARY
    # The command line it runs parses with our own parser.
    args = build_parser().parse_args([*command[1:], "--cert", "x.pem"])
    assert (args.command, args.every, args.log_format) == ("feedback", "24h", "json")
    assert service["KillSignal"] == "SIGTERM"  # what the graceful stop listens for
    assert unit["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verifies_the_unit(tmp_path):
    # The unit with ExecStart pointing at this environment's apns-legacy (verify checks
    # that the program exists); nothing else changed.
    binary = Path(sys.executable).parent / "apns-legacy"
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(VENV_BINARY, str(binary)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr  # unknown keys are only warnings: none allowed


CONTAINER_INSTRUCTIONS = {
    "FROM", "RUN", "COPY", "ADD", "USER", "WORKDIR", "VOLUME", "ENV", "ENTRYPOINT", "CMD",
    "STOPSIGNAL", "EXPOSE", "LABEL", "ARG", "HEALTHCHECK", "SHELL", "ONBUILD",
}  # fmt: skip


def container_instructions() -> list[tuple[str, str]]:
    """(instruction, arguments) with continuation lines joined and comments dropped."""
    instructions = []
    pending = ""
    for line in (CONTRIB / "Containerfile").read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).strip().partition(" ")
        instructions.append((keyword, rest.strip()))
        pending = ""
    assert not pending, "a continuation line at the end"
    return instructions


def test_the_container_file_parses_and_runs_a_real_command():
    instructions = container_instructions()
    assert instructions[0][0] == "FROM"
    for keyword, _ in instructions:
        assert keyword in CONTAINER_INSTRUCTIONS, keyword
    exec_form = dict(instructions)
    entrypoint = json.loads(exec_form["ENTRYPOINT"])
    command = json.loads(exec_form["CMD"])
    assert entrypoint[0] == "apns-legacy"
    args = build_parser().parse_args([*entrypoint[1:], *command, "--cert", "x.pem"])
    assert (args.command, args.every) == ("feedback", "24h")
    assert exec_form["STOPSIGNAL"] == "SIGTERM"
    assert exec_form["USER"] != "root"


@pytest.mark.parametrize("command", ["feedback", "serve"])
def test_the_example_settings_are_valid(command):
    path = CONTRIB / "apns-legacy.toml"
    assert command in read_file(str(path))
    _, parser = subparser(command)
    apply(command, parser, str(path), {})  # raises UsageError for a key it does not know


def test_the_readme_settings_example_is_valid(tmp_path):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Operations") :]
    block = section.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "settings.toml"
    path.write_text("\n".join(line.strip() for line in block.splitlines()))
    _, parser = subparser("feedback")
    apply("feedback", parser, str(path), {})
    assert parser.get_default("every") == "24h"
