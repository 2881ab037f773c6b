"""pcc-deploy.toml deploys what the README says: Pipecat Cloud builds the Dockerfile beside it.

The rules are pipecatcloud's own (its deploy-config loader and ``deploy`` command):
only known keys; ``image`` set means "deploy that image" (no build), unset means
"Cloud Build the ``[build]`` Dockerfile"; ``image`` and ``build_id`` exclude each other.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = tomllib.loads((ROOT / "pcc-deploy.toml").read_text())
# pipecatcloud's loader refuses any other top-level key
KNOWN_KEYS = {"agent_name", "image", "build_id", "image_credentials", "secret_set", "region", "scaling", "docker",
              "build", "agent_profile", "krisp_viva", "websocket_auth", "max_session_duration", "resources"}


def test_the_file_has_only_keys_pipecat_cloud_reads():
    assert set(CONFIG) <= KNOWN_KEYS
    assert set(CONFIG.get("build", {})) <= {"context_dir", "dockerfile", "exclude"}
    assert set(CONFIG["build"].get("exclude", {})) <= {"patterns"}


def test_deploy_builds_the_bots_dockerfile_instead_of_pulling_an_image():
    assert "image" not in CONFIG and "build_id" not in CONFIG
    build = CONFIG["build"]
    dockerfile = ROOT / build.get("context_dir", ".") / build.get("dockerfile", "Dockerfile")
    assert dockerfile.is_file()
    assert "COPY ./bot.py bot.py" in dockerfile.read_text()


def test_the_agent_and_secret_set_are_the_ones_the_docs_name():
    docs = (ROOT / "docs" / "operations.md").read_text()
    assert CONFIG["agent_name"] in docs and CONFIG["secret_set"] in docs
    assert re.match(r"^[a-z0-9-]+$", CONFIG["agent_name"])
