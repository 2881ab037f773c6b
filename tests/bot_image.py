"""The bot image's files, read from the Dockerfile, staged alone in a directory.

Used by the tests that import bot.py and run Pipecat's development runner with
nothing but what the image holds, and with Django made unimportable.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIREMENTS = "requirements-bot.txt"

# Runs first in the child: any import of django fails loudly, and nothing of the
# repository but the staged image is on the path (-I already drops the cwd and PYTHONPATH).
NO_DJANGO = """
import sys, importlib.abc
class _NoDjango(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "django" or name.startswith("django."):
            raise ImportError("the bot image has no Django: " + name)
        return None
sys.meta_path.insert(0, _NoDjango())
sys.path[:] = [{image!r}] + [p for p in sys.path
                             if p and (not p.startswith({root!r}) or p.startswith({venv!r}))]
"""


def image_files(root: str = ROOT) -> list[str]:
    """The repository paths the Dockerfile copies into the image (the requirements file aside)."""
    sources: list[str] = []
    with open(os.path.join(root, "Dockerfile")) as f:
        for line in f:
            parts = shlex.split(line, comments=True)
            if parts and parts[0].upper() == "COPY" and not any(p.startswith("--") for p in parts[1:]):
                for src in parts[1:-1]:
                    src = os.path.normpath(src)
                    if src != REQUIREMENTS:
                        sources.append(src)
    return sources


def stage(dest: str, root: str = ROOT) -> list[str]:
    """Copy the image's files to ``dest``; returns the files staged (relative paths)."""
    staged: list[str] = []
    for src in image_files(root):
        full = os.path.join(root, src)
        if os.path.isdir(full):
            shutil.copytree(full, os.path.join(dest, src), ignore=shutil.ignore_patterns("__pycache__"),
                            dirs_exist_ok=True)
            staged += [os.path.relpath(os.path.join(d, n), dest)
                       for d, _, names in os.walk(os.path.join(dest, src)) for n in names]
        else:
            os.makedirs(os.path.dirname(os.path.join(dest, src)) or dest, exist_ok=True)
            shutil.copy2(full, os.path.join(dest, src))
            staged.append(src)
    return sorted(staged)


def python_in_image(image_dir: str, code: str) -> list[str]:
    """argv for ``python -I`` running ``code`` with only ``image_dir`` of ours on the path, no Django."""
    prelude = NO_DJANGO.format(image=image_dir, root=ROOT, venv=os.path.join(ROOT, ".venv"))
    return [sys.executable, "-I", "-u", "-c", prelude + code]
