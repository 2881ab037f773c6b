"""Real-browser fixtures: Playwright's async API driving Debian's Chromium.

Playwright cannot download its own browser here; ``make chromium`` (or
``apt-get install -y chromium``) provides /usr/bin/chromium. The async API is
used so tests may touch the ORM (through sync_to_async) in the same test
(sync Playwright runs an event loop in the thread, so the ORM there raises SynchronousOnlyOperation).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import pytest_asyncio

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
RESULTS = Path(__file__).resolve().parents[2] / "test-results"


@pytest.fixture
def results_dir() -> Path:
    """Screenshots land here (gitignored) for a reviewer to look at."""
    RESULTS.mkdir(exist_ok=True)
    return RESULTS


@pytest_asyncio.fixture
async def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}: run `make chromium` (apt-get install -y chromium)")
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            await chromium.close()
