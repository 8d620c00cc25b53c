"""The README's examples run: every ```python block that follows a ``<!-- doctest -->`` line.

Blocks that need a real gateway or files of the user's (certificates) are not marked;
everything that can run on its own is, so the docs cannot drift from the code.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
_BLOCK = re.compile(r"<!-- doctest -->\s*\n```python\n(.*?)\n```", re.DOTALL)


def _blocks() -> list[tuple[int, str]]:
    text = README.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in _BLOCK.finditer(text)]


def test_readme_has_runnable_examples():
    assert len(_blocks()) >= 1


@pytest.mark.parametrize(
    ("line", "code"), _blocks(), ids=lambda v: str(v) if isinstance(v, int) else ""
)
def test_readme_example_runs(line, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"README.md:{line}", "exec"), {"__name__": "__readme__"})


def test_every_top_level_name_is_in_the_readme():
    import apns_legacy

    text = README.read_text(encoding="utf-8")
    missing = [name for name in apns_legacy.__all__ if f"`{name}`" not in text]
    assert missing == [], f"exported but not in the README: {missing}"
    for name in apns_legacy.__all__:
        assert getattr(apns_legacy, name) is not None


def test_every_python_example_runs_somewhere():
    # Each ```python block is a doctest, except the pytest-plugin example, which
    # tests/test_pytest_plugin.py runs as a test file of its own.
    text = README.read_text(encoding="utf-8")
    unmarked = [
        text.count("\n", 0, m.start()) + 1
        for m in re.finditer(r"(?<!<!-- doctest -->\n)```python\n", text)
    ]
    plugin = text.index("# test_push.py in your project")
    assert [line for line in unmarked if text.count("\n", 0, plugin) != line] == []
