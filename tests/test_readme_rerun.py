"""A README example a user runs twice in the same folder works the second time too
(files it leaves behind, such as a token store, must not break it)."""

from __future__ import annotations

import pytest
from test_readme import _blocks


@pytest.mark.parametrize(
    ("line", "code"), _blocks(), ids=lambda v: str(v) if isinstance(v, int) else ""
)
def test_readme_example_runs_twice_in_the_same_folder(line, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    compiled = compile(code, f"README.md:{line}", "exec")
    exec(compiled, {"__name__": "__readme__"})
    exec(compiled, {"__name__": "__readme__"})
