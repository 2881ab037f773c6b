"""Server and worker move what start-up loaded out of the garbage collector's full
passes (gc.freeze), which otherwise stall the event loop now and then."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _frozen_after(code: str) -> int:
    result = subprocess.run(
        [sys.executable, "-c", code + "\nimport gc; print(gc.get_freeze_count())"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip().splitlines()[-1])


def test_the_asgi_application_freezes_what_start_up_loaded():
    assert _frozen_after("import myrobot.asgi") > 10_000


def test_a_ready_worker_freezes_what_start_up_loaded():
    start = "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'myrobot.settings'); django.setup()\n"
    assert _frozen_after(start + "import myrobot.celery") == 0
    assert _frozen_after(start + "from myrobot.celery import app\nfrom celery.signals import worker_ready\n"
                         "worker_ready.send(sender=None)") > 10_000
