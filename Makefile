# Two commands work on a fresh machine with only Python 3.11:
#   make run    set up, migrate, seed the demo and serve http://localhost:8000 (PORT=8001 for another port)
#   make test   set up and run the whole test suite (installs Chromium with apt-get when missing)
#   make demo   like `make run`, with simulated calls (no Daily or OpenAI account needed)

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt | md5sum | cut -c1-12)

.PHONY: run demo demo-worker test test-unit test-browser venv migrate worker beat bot reap dispatch webhooks chromium espeak clean

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
# PORT picks the server's port; the demo's login link and PUBLIC_BASE_URL follow it
# (unless PUBLIC_BASE_URL is set in the environment).
PORT ?= 8000
RUN_ENV := PUBLIC_BASE_URL=$${PUBLIC_BASE_URL:-http://localhost:$(PORT)}
run: migrate
	$(RUN_ENV) $(PY) manage.py seed_demo
	$(RUN_ENV) $(PY) manage.py dispatch_calls --loop & DISPATCHER=$$!; \
	  trap 'kill $$DISPATCHER 2>/dev/null' EXIT INT TERM; \
	  $(RUN_ENV) DEBUG=$${DEBUG:-1} $(PY) manage.py runserver 127.0.0.1:$(PORT)

# `make run` with the call sandbox: simulated Daily REST API and bot runner on
# 127.0.0.1:$(SANDBOX_PORT), where every call is the real bot.py in the call simulator
# (espeak-ng voices the patient), reporting over the real status socket. The server reaches it through the ordinary settings. Refuses ENV=production.
SANDBOX_PORT ?= 7871
DEMO_PORT ?= $(PORT)
SANDBOX_ENV := PUBLIC_BASE_URL=http://127.0.0.1:$(DEMO_PORT) DAILY_API_URL=http://127.0.0.1:$(SANDBOX_PORT)/v1 DAILY_API_KEY=sandbox-daily-api-key-for-local-demos-only \
	LOCAL_SERVER_URL=http://127.0.0.1:$(SANDBOX_PORT) DAILY_MEETING_TOKEN_MODE=local
demo: migrate espeak
	@$(PY) -c "from sandbox.server import refuse_in_production as r; r()"
	$(SANDBOX_ENV) $(PY) manage.py seed_demo
	@$(SANDBOX_ENV) $(PY) -m sandbox --port $(SANDBOX_PORT) & SANDBOX_PID=$$!; \
	  $(SANDBOX_ENV) $(PY) manage.py dispatch_calls --loop & DISPATCHER=$$!; \
	  trap 'kill $$SANDBOX_PID $$DISPATCHER 2>/dev/null' EXIT INT TERM; \
	  $(SANDBOX_ENV) DEBUG=$${DEBUG:-1} $(PY) manage.py runserver 127.0.0.1:$(DEMO_PORT)

# `make demo` with REDIS_URL set hands bot starts to Celery: this worker reaches the
# sandbox through the same settings as the demo's server.
demo-worker: venv
	@$(PY) -c "from sandbox.server import refuse_in_production as r; r()"
	$(SANDBOX_ENV) $(PY) -m celery -A myrobot worker --loglevel=INFO

# The Celery worker (needs REDIS_URL): without -Q it consumes every queue the settings
# declare (CELERY_QUEUE and WEBHOOK_QUEUE); its pool and concurrency come from the settings.
worker: venv
	$(PY) -m celery -A myrobot worker --loglevel=INFO

# Beat's schedule file goes to var/ (ignored by git), not the working tree's root.
beat: venv
	@mkdir -p var
	$(PY) -m celery -A myrobot beat --loglevel=INFO --schedule var/celerybeat-schedule

# Pipecat's development runner with our bot, on http://localhost:7860 (LOCAL_SERVER_URL).
bot: venv
	$(PY) bot.py

# Without Celery beat (the embedded default): end stale calls every minute.
reap: venv
	$(PY) manage.py reap_stale_calls --loop

# Without Celery beat: the call policy's dispatcher (make run starts it already).
dispatch: venv
	$(PY) manage.py dispatch_calls --loop

# Without Celery beat: send webhook retries and anything left unsent.
webhooks: venv
	$(PY) manage.py send_webhooks --loop

espeak:
	@command -v espeak-ng >/dev/null 2>&1 || \
	  ( (command -v sudo >/dev/null 2>&1 && [ "$$(id -u)" != 0 ] && SUDO=sudo || SUDO=""; \
	    $$SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq espeak-ng >/dev/null) )

chromium:
	@(command -v chromium >/dev/null 2>&1 || test -x /usr/bin/chromium) && command -v espeak-ng >/dev/null 2>&1 || \
	  ( (command -v sudo >/dev/null 2>&1 && [ "$$(id -u)" != 0 ] && SUDO=sudo || SUDO=""; \
	    $$SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq chromium espeak-ng >/dev/null) )

test-unit: venv chromium
	$(PY) -m pytest -m "not browser" -q

test-browser: venv chromium
	$(PY) -m pytest -m browser -q || [ $$? -eq 5 ]

test: test-unit test-browser

clean:
	rm -rf $(VENV) db.sqlite3 staticfiles test-results
