"""The test suite on each Python the package supports that this machine has.

    nox                  # every available interpreter (missing ones are skipped)
    nox -s tests-3.12    # one of them
    nox -- -k feedback   # arguments after -- go to pytest

Each session makes a fresh virtual environment, installs the project with its test
extras exactly as CI does (``pip install -e '.[test]'``) and runs the whole suite.
"""

from __future__ import annotations

import nox

#: The versions in setup.cfg's classifiers.
PYTHONS = ["3.11", "3.12", "3.13"]

nox.options.error_on_missing_interpreters = False
nox.options.default_venv_backend = "venv"


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """pip install -e '.[test]', then pytest (including ruff, mypy and the README)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)
