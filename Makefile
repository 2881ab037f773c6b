# Two commands work on a fresh machine with only Python 3.11:
#   make run    set up, migrate, seed the demo and serve http://localhost:8000
#   make test   set up and run the whole test suite (installs Chromium with apt-get when missing)

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt | md5sum | cut -c1-12)

.PHONY: run test test-unit test-browser venv migrate worker beat bot reap dispatch chromium clean

venv: $(STAMP)

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

migrate: venv
	$(PY) manage.py migrate --noinput

# The dispatcher (scheduled calls, the queue, stale calls) runs beside the server,
# as Celery beat runs it in production; it stops with the server.
run: migrate
	$(PY) manage.py seed_demo
	$(PY) manage.py dispatch_calls --loop & DISPATCHER=$$!; \
	  trap 'kill $$DISPATCHER 2>/dev/null' EXIT INT TERM; \
	  DEBUG=$${DEBUG:-1} $(PY) manage.py runserver 127.0.0.1:8000

# The Celery worker (needs REDIS_URL); its pool and concurrency come from myrobot/celery.py settings.
worker: venv
	$(PY) -m celery -A myrobot worker --loglevel=INFO

beat: venv
	$(PY) -m celery -A myrobot beat --loglevel=INFO

# Pipecat's development runner with our bot, on http://localhost:7860 (LOCAL_SERVER_URL).
bot: venv
	$(PY) bot.py

# Without Celery beat (the embedded default): end stale calls every minute.
reap: venv
	$(PY) manage.py reap_stale_calls --loop

# Without Celery beat: the call policy's dispatcher (make run starts it already).
dispatch: venv
	$(PY) manage.py dispatch_calls --loop

chromium:
	@command -v chromium >/dev/null 2>&1 || test -x /usr/bin/chromium || \
	  ( (command -v sudo >/dev/null 2>&1 && [ "$$(id -u)" != 0 ] && SUDO=sudo || SUDO=""; \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null) )

test-unit: venv
	$(PY) -m pytest -m "not browser" -q

test-browser: venv chromium
	$(PY) -m pytest -m browser -q || [ $$? -eq 5 ]

test: test-unit test-browser

clean:
	rm -rf $(VENV) db.sqlite3 staticfiles test-results
