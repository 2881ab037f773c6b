"""botrunner is an adapter: it imports none of our apps, and bot.py's module no Django."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUR_APPS = {"organizations", "patients", "calls", "myrobot"}


def test_botrunner_imports_none_of_our_apps():
    for path in (ROOT / "botrunner").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in OUR_APPS, f"{path.name} imports {name}"


def test_botrunner_package_is_empty_and_agent_request_needs_no_django():
    assert (ROOT / "botrunner" / "__init__.py").read_text().strip() == ""
    code = "import sys, botrunner.agent_request; assert 'django' not in sys.modules, 'django imported'"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
