"""The Pipecat Cloud image: its files come from the Dockerfile, and bot.py runs with only them."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.bot_image import image_files, python_in_image, stage  # noqa: E402


def test_the_dockerfile_copies_only_what_the_bot_needs():
    files = image_files()
    assert "bot.py" in files and "botkit" in files and "botrunner/agent_request.py" in files
    assert not any(f.split("/")[0] in ("calls", "organizations", "patients", "myrobot", "tests") for f in files)
    assert "botrunner" not in files  # only the pure wire model, not the Daily/Pipecat adapter
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        assert f.readline().startswith("#") and "FROM dailyco/pipecat-base" in f.read()
    with open(os.path.join(ROOT, "requirements-bot.txt")) as f:
        packages = [line.split("#")[0].strip().lower() for line in f if line.split("#")[0].strip()]
    assert packages and not [p for p in packages if p.startswith(("django", "celery", "channels"))]


def test_bot_imports_with_only_the_image_files_and_no_django(tmp_path):
    staged = stage(str(tmp_path))
    assert "bot.py" in staged and "botkit/dialout.py" in staged
    code = (
        "import bot, botkit.dialout, botkit.prompt, botkit.reporter, botkit.phi\n"
        "assert bot.__file__.startswith(sys.path[0]), bot.__file__\n"
        "assert 'django' not in sys.modules\n"
        "assert callable(bot.bot) and bot.TRANSPORT_EVENTS\n"
        "print('image ok')\n"
    )
    out = subprocess.run(python_in_image(str(tmp_path), code), cwd=str(tmp_path), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "image ok" in out.stdout


def test_a_django_import_in_the_image_would_fail(tmp_path):
    stage(str(tmp_path))
    out = subprocess.run(python_in_image(str(tmp_path), "import django"), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0 and "no Django" in out.stderr
