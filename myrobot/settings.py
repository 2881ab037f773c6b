"""Settings: everything from the environment, with defaults that run on a laptop.

See docs/operations.md, "Settings". ENV only selects where bots start (and
makes SECRET_KEY required); TLS-related switches have their own variables.
"""

import base64
import hashlib
import os
from pathlib import Path

import dj_database_url
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if not value:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def refuse_to_start(message: str):
    """A configuration mistake: one line on stderr and exit status 1 in every process
    that loads the settings (server, worker, beat, ``manage.py``), not a traceback."""
    raise SystemExit(f"myrobot: configuration error: {message}")


ENVIRONMENTS = ("development", "production")
ENV = os.environ.get("ENV", "development").strip().lower() or "development"
if ENV not in ENVIRONMENTS:
    # A typo ("prod", "staging") must not run with development's secret key and local bots.
    refuse_to_start(
        f"ENV={os.environ.get('ENV')!r} is not one of {', '.join(ENVIRONMENTS)} (any case): set ENV and start again."
    )

DEBUG = env_bool("DEBUG", False)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if ENV == "production":
        refuse_to_start("SECRET_KEY is empty and ENV=production: set SECRET_KEY to a long random string.")
    # "django-insecure-": `check --deploy` names it for what it is (security.W009).
    SECRET_KEY = "django-insecure-dev-secret-key-change-me-for-anything-real"

# Encryption at rest of transcripts, patient data and secrets (myrobot/crypto.py):
# Fernet keys, newest first. Without them a development key (public: it is right
# here) is used, except with ENV=production, which never accepts it.
DEVELOPMENT_FIELD_KEY = base64.urlsafe_b64encode(hashlib.sha256(b"myrobot development field key").digest()).decode()
FIELD_ENCRYPTION_KEYS = env_list("FIELD_ENCRYPTION_KEYS", [])
if ENV == "production":
    FIELD_ENCRYPTION_KEYS = [key for key in FIELD_ENCRYPTION_KEYS if key != DEVELOPMENT_FIELD_KEY]
elif not FIELD_ENCRYPTION_KEYS:
    FIELD_ENCRYPTION_KEYS = [DEVELOPMENT_FIELD_KEY]

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", []) + ["localhost", "127.0.0.1", "[::1]"]
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# Load balancers probe /healthz over plain HTTP: a redirect would read as "down".
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
# /metrics answers only `Authorization: Bearer <METRICS_TOKEN>`; unset, it is off (404).
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "ninja",
    "axes",
    "csp",
    "organizations",
    "patients",
    "calls",
    "webhooks",
    "audit",
    "campaigns",
    "fhir",
]

# Django's own middleware and WhiteNoise's. (Subclasses that ran their hooks on
# the event loop instead of a thread hop each were measured within the ±3 ms
# run-to-run noise of bench/RESULTS.md, so they went: "middleware" there.)
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # API errors (oversized bodies, unknown methods) in the envelope, before anything else reads the body.
    "myrobot.api_guard.ApiEnvelopeMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: turns a locked-out login into its lockout answer.
    "axes.middleware.AxesMiddleware",
]


ROOT_URLCONF = "myrobot.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

ASGI_APPLICATION = "myrobot.asgi.application"
WSGI_APPLICATION = None

# --- Database -------------------------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # Under ASGI every request would open a connection; a pool keeps them warm.
        # psycopg's default pool holds 4 connections: a Celery worker with 32
        # threads (or a busy server) then waits for one (bench/RESULTS.md).
        if env_bool("DATABASE_POOL", True):
            DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
                "min_size": int(os.environ.get("DATABASE_POOL_MIN_SIZE", "2")),
                "max_size": int(os.environ.get("DATABASE_POOL_MAX_SIZE", "20")),
                "timeout": float(os.environ.get("DATABASE_POOL_TIMEOUT_S", "10")),
            }
        # A connection whose server backend was terminated (a restart, a failover)
        # is replaced before use instead of failing the next request or start task;
        # with the pool, Django turns this into the pool's `check` (docs/operations.md).
        DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("SQLITE_PATH", str(BASE_DIR / "db.sqlite3")),
            # IMMEDIATE: a transaction takes the write lock when it begins, so two
            # requests that read then write wait their turn (up to ``timeout``)
            # instead of one failing at once with "database is locked".
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
        }
    }
if os.environ.get("TEST_DATABASE_NAME"):
    DATABASES["default"].setdefault("TEST", {})["NAME"] = os.environ["TEST_DATABASE_NAME"]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: Celery broker and channel layer --------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")

if REDIS_URL:
    # channels-redis waits up to 5 s for a message (BZPOPMIN); the redis client's
    # own read timeout is also 5 s by default, so an idle socket's wait could time
    # out first and close the socket (1011). Reads wait longer than the layer does.
    REDIS_SOCKET_TIMEOUT_S = float(os.environ.get("REDIS_SOCKET_TIMEOUT_S", "30"))
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [{
                    "address": REDIS_URL,
                    "socket_timeout": REDIS_SOCKET_TIMEOUT_S,
                    "socket_connect_timeout": 5,
                    "socket_keepalive": True,
                    "health_check_interval": 15,
                }],
            },
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    # A start delivery takes seconds (room + start request, each bounded by
    # BOTRUNNER_START_TIMEOUT_S); a message held by a worker that died is handed
    # back after this long instead of kombu's default hour. Retries are new
    # messages, so no single delivery runs longer than this.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT_S", "120")),
        "socket_timeout": REDIS_SOCKET_TIMEOUT_S,
        "socket_connect_timeout": 5,
    }
    # Publishing a task while Redis is down fails within about a second; the
    # call stays queued and the dispatcher enqueues it again (calls/services.py).
    CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
    CELERY_TASK_ALWAYS_EAGER = False
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CELERY_BROKER_URL = "memory://"
    CELERY_TASK_ALWAYS_EAGER = True
    CELERY_TASK_EAGER_PROPAGATES = True

# Without a worker (eager Celery) a start runs on a thread of its own, not in the
# request that placed the call (tests turn this off to start inline).
EMBEDDED_START_IN_THREAD = env_bool("EMBEDDED_START_IN_THREAD", True)

# The queue tasks go to (one deployment, or one test run, per queue).
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_QUEUE", "celery")
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 4
# Starts are I/O-bound: a thread pool keeps many in flight per worker process.
CELERY_WORKER_POOL = os.environ.get("CELERY_WORKER_POOL", "threads")
CELERY_WORKER_CONCURRENCY = int(os.environ.get("CELERY_WORKER_CONCURRENCY", "32"))
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    "reap-stale-calls": {"task": "calls.tasks.reap_stale_calls", "schedule": 60.0},
    # The call policy's dispatcher: due scheduled calls, queued calls with a free slot, lost starts.
    "dispatch-calls": {
        "task": "calls.tasks.dispatch_calls",
        "schedule": float(os.environ.get("DISPATCH_INTERVAL_S", "2")),
        "options": {"expires": 10},
    },
    "send-due-webhooks": {"task": "webhooks.tasks.sweep", "schedule": 30.0},
    "fhir-sync": {"task": "fhir.tasks.sync_all", "schedule": float(os.environ.get("FHIR_SYNC_INTERVAL_S", "900"))},
    "fhir-send-due-writes": {"task": "fhir.tasks.sweep", "schedule": 30.0},
    # Retention: transcripts, outcome notes and event payloads past each organisation's limit.
    "purge-call-data": {"task": "calls.tasks.purge_call_data", "schedule": float(os.environ.get("PURGE_INTERVAL_S", "3600"))},
}

# --- Webhooks to the organisation's systems ----------------------------------
# Sends run on their own queue (which a plain worker consumes too, or a separate
# one started with `-Q webhooks`), so a slow receiver never holds up a call start.
WEBHOOK_QUEUE = os.environ.get("WEBHOOK_QUEUE", "webhooks")
WEBHOOK_TIMEOUT_S = float(os.environ.get("WEBHOOK_TIMEOUT_S", "10"))
# Retries due within this many seconds are timed by the sender; later ones by the sweep.
WEBHOOK_SHORT_RETRY_S = int(os.environ.get("WEBHOOK_SHORT_RETRY_S", "300"))
# A sweep sends at most this many deliveries per endpoint (a dead one cannot take every sender).
WEBHOOK_SWEEP_PER_ENDPOINT = int(os.environ.get("WEBHOOK_SWEEP_PER_ENDPOINT", "5"))
# Webhooks reach public addresses only (webhooks/destinations.py). Loopback (a
# receiver on the developer's own machine) is allowed with DEBUG on, or when set
# explicitly outside production (the test suite's local receivers); never in production.
WEBHOOK_ALLOW_LOOPBACK = env_bool("WEBHOOK_ALLOW_LOOPBACK", DEBUG)
if WEBHOOK_ALLOW_LOOPBACK and ENV == "production" and not DEBUG:
    raise ImproperlyConfigured("WEBHOOK_ALLOW_LOOPBACK cannot be on when ENV=production: unset it.")
CELERY_TASK_ROUTES = {
    "webhooks.tasks.deliver": {"queue": WEBHOOK_QUEUE},
    "webhooks.tasks.sweep": {"queue": WEBHOOK_QUEUE},
    "fhir.tasks.send_write": {"queue": os.environ.get("FHIR_QUEUE", WEBHOOK_QUEUE)},
    "fhir.tasks.sweep": {"queue": os.environ.get("FHIR_QUEUE", WEBHOOK_QUEUE)},
}
# Every queue the app sends to, declared: a worker started without `-Q` consumes
# all of them (a plain `celery -A myrobot worker` also sends webhooks); `-Q` splits
# them over separate workers (docs/operations.md, "Processes").
CELERY_TASK_QUEUES = [Queue(name) for name in dict.fromkeys([CELERY_TASK_DEFAULT_QUEUE, WEBHOOK_QUEUE])]

# --- FHIR (fhir/, docs/fhir.md) --------------------------------------------
# Writes to the EHR share the webhooks' queue unless FHIR_QUEUE names another.
FHIR_QUEUE = os.environ.get("FHIR_QUEUE", WEBHOOK_QUEUE)
# Sync and write-back requests; the scheduling tools wait far less (the patient is on the line).
FHIR_TIMEOUT_S = float(os.environ.get("FHIR_TIMEOUT_S", "15"))
FHIR_TOOL_TIMEOUT_S = float(os.environ.get("FHIR_TOOL_TIMEOUT_S", "4"))

# --- Daily / Pipecat -------------------------------------------------------
DAILY_API_KEY = os.environ.get("DAILY_API_KEY", "")
DAILY_API_URL = (os.environ.get("DAILY_API_URL") or "https://api.daily.co/v1").rstrip("/")
DAILY_MEETING_TOKEN_MODE = os.environ.get("DAILY_MEETING_TOKEN_MODE", "local")
DAILY_ROOM_EXPIRY_MARGIN_S = int(os.environ.get("DAILY_ROOM_EXPIRY_MARGIN_S", "300"))
# Daily's HIPAA mode (the domain's Healthcare add-on): Daily names the rooms; the
# start path stores the name it returns and the reaper deletes rooms no call holds
# (after DAILY_ORPHAN_ROOM_AFTER_S), so the Daily domain must be MyRobot's alone.
DAILY_HIPAA_MODE = env_bool("DAILY_HIPAA_MODE", False)
DAILY_ORPHAN_ROOM_AFTER_S = int(os.environ.get("DAILY_ORPHAN_ROOM_AFTER_S", "300"))
LOCAL_SERVER_URL = (os.environ.get("LOCAL_SERVER_URL") or "http://localhost:7860").rstrip("/")
PIPECAT_API_URL = (os.environ.get("PIPECAT_API_URL") or "https://api.pipecat.daily.co").rstrip("/")
PIPECAT_API_KEY = os.environ.get("PIPECAT_API_KEY", "")
PIPECAT_AGENT_NAME = os.environ.get("PIPECAT_AGENT_NAME", "")
# How long to wait for the runner / Pipecat Cloud to answer a start (a timeout is ambiguous: not retried).
BOTRUNNER_START_TIMEOUT_S = float(os.environ.get("BOTRUNNER_START_TIMEOUT_S", "15"))
PUBLIC_BASE_URL = os.environ.get("PUBLIC_BASE_URL", "http://localhost:8000").rstrip("/")

# Unsigned dial-in webhooks are accepted for an organisation without a secret
# only while DEBUG is on.
DIALIN_WEBHOOK_MAX_SKEW_S = int(os.environ.get("DIALIN_WEBHOOK_MAX_SKEW_S", "300"))
# How long a call may stay `starting` with no word from its bot.
STALE_START_AFTER_S = int(os.environ.get("STALE_START_AFTER_S", "120"))
STALE_MARGIN_S = int(os.environ.get("STALE_MARGIN_S", "300"))

# --- Call policy (calls.policy, calls.dispatcher) ------------------------------
# How often the dispatcher runs (beat, or `manage.py dispatch_calls --loop`).
DISPATCH_INTERVAL_S = float(os.environ.get("DISPATCH_INTERVAL_S", "2"))
# Steps other apps add to every dispatcher tick, before it promotes and hands calls
# (calls imports none of them): campaigns release their held calls at their pace.
CALL_DISPATCH_STEPS = ["campaigns.services.release_step"]
# A queued call whose start was handed to a worker this long ago and never
# began (a dead worker, a lost message) is handed again.
DISPATCH_LOST_START_AFTER_S = float(os.environ.get("DISPATCH_LOST_START_AFTER_S", "15"))
# A start a worker began (`starting`) and never sent, e.g. the worker was killed:
# handed to a worker again after this long (longer than a start really takes).
DISPATCH_STALLED_START_AFTER_S = float(os.environ.get("DISPATCH_STALLED_START_AFTER_S", "60"))
# Pipecat Cloud at capacity (429): try again after this backoff (doubling, capped),
# and fail the call with reason `capacity` only after waiting this long in all.
CALL_CAPACITY_BACKOFF_S = float(os.environ.get("CALL_CAPACITY_BACKOFF_S", "5"))
CALL_CAPACITY_BACKOFF_MAX_S = float(os.environ.get("CALL_CAPACITY_BACKOFF_MAX_S", "60"))
CALL_CAPACITY_WAIT_S = float(os.environ.get("CALL_CAPACITY_WAIT_S", "1800"))


def timing_conflicts() -> list[str]:
    """Timing settings that defeat each other, each as a sentence naming both."""
    problems = []
    for name in ("STALE_START_AFTER_S", "STALE_MARGIN_S", "DISPATCH_INTERVAL_S", "DISPATCH_LOST_START_AFTER_S",
                 "DISPATCH_STALLED_START_AFTER_S", "BOTRUNNER_START_TIMEOUT_S", "CALL_CAPACITY_BACKOFF_S",
                 "CALL_CAPACITY_BACKOFF_MAX_S", "CALL_CAPACITY_WAIT_S"):
        if globals()[name] <= 0:
            problems.append(f"{name}={globals()[name]:g} must be more than 0")
    # The dispatcher hands a lost or stalled start again; the reaper must not fail it first.
    for rescue in ("DISPATCH_LOST_START_AFTER_S", "DISPATCH_STALLED_START_AFTER_S"):
        if STALE_START_AFTER_S <= globals()[rescue] + DISPATCH_INTERVAL_S:
            problems.append(
                f"STALE_START_AFTER_S={STALE_START_AFTER_S:g} must be more than {rescue}={globals()[rescue]:g} "
                f"+ DISPATCH_INTERVAL_S={DISPATCH_INTERVAL_S:g}, or the reaper fails calls the dispatcher would hand again"
            )
    if not CALL_CAPACITY_BACKOFF_S <= CALL_CAPACITY_BACKOFF_MAX_S <= CALL_CAPACITY_WAIT_S:
        problems.append(
            f"CALL_CAPACITY_BACKOFF_S={CALL_CAPACITY_BACKOFF_S:g} <= CALL_CAPACITY_BACKOFF_MAX_S="
            f"{CALL_CAPACITY_BACKOFF_MAX_S:g} <= CALL_CAPACITY_WAIT_S={CALL_CAPACITY_WAIT_S:g} must hold"
        )
    visibility = globals().get("CELERY_BROKER_TRANSPORT_OPTIONS", {}).get("visibility_timeout")
    if visibility is not None and visibility <= BOTRUNNER_START_TIMEOUT_S:
        problems.append(
            f"CELERY_VISIBILITY_TIMEOUT_S={visibility} must be more than BOTRUNNER_START_TIMEOUT_S="
            f"{BOTRUNNER_START_TIMEOUT_S:g}, or a start still waiting on the runner is delivered to a second worker"
        )
    return problems


if timing_conflicts():
    refuse_to_start("; ".join(timing_conflicts()) + " (docs/operations.md, \"Timing\").")

# A request body over 1 MB is refused (413 in the API's envelope, myrobot.api_guard).
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

# --- Auth, i18n, static ----------------------------------------------------
# django-axes: admin logins lock out after AXES_FAILURE_LIMIT failures for one
# username from one address, for AXES_COOLOFF_HOURS (README "Security").
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("AXES_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = float(os.environ.get("AXES_COOLOFF_HOURS", "1"))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_LOCKOUT_TEMPLATE = "myrobot/lockout.html"  # the admin's look, not a bare line
AXES_RESET_ON_SUCCESS = True
# Behind a proxy the client's address is the first of X-Forwarded-For (only
# when the proxy header is trusted, as for HTTPS).
AXES_IPWARE_META_PRECEDENCE_ORDER = (
    ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"] if env_bool("SECURE_PROXY_SSL_HEADER", False) else ["REMOTE_ADDR"]
)
AXES_VERBOSE = False  # its messages would log usernames at every attempt; failures still are

# django-csp: scripts and styles only from our own static files (no inline
# code), sockets only to this origin.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "admin:login"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # Django's own console handler on "django" (DEBUG only) plus the root's printed every
    # request and 404 twice in the dev server: "django" keeps no handler of its own.
    "loggers": {"django": {"handlers": [], "level": "INFO", "propagate": True}},
}

# The API's lists: django-ninja's limit/offset pagination, `{"items", "count"}`,
# with `offset` bounded to 64 bits (myrobot/pagination.py says why).
NINJA_PAGINATION_CLASS = "myrobot.pagination.BoundedLimitOffsetPagination"
NINJA_PAGINATION_PER_PAGE = 50
NINJA_PAGINATION_MAX_LIMIT = 200
