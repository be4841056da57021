"""Settings for every environment, read from environment variables.

Each variable is documented in ``.env.example`` and the README (Settings). A service URL
that is absent selects the embedded default (SQLite, eager Celery, in-memory channel layer,
local-memory cache) and is reported as a warning at start-up.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from pathlib import Path
from typing import Any

import dj_database_url
import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _
from kombu import Queue

from assistant_site.settings.env import env_bool, env_float, env_int, env_list, env_str

django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")))

# Reasons the process runs on an embedded stand-in; logged as warnings once logging is up.
EMBEDDED_FALLBACKS: list[str] = []

DEBUG = env_bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set; set it (50+ random characters) or DJANGO_DEBUG=true"
        )
    SECRET_KEY = "insecure-development-key-set-DJANGO_SECRET_KEY-in-production"  # noqa: S105
    EMBEDDED_FALLBACKS.append("DJANGO_SECRET_KEY is not set: using an insecure development key")

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "axes",
    "django_celery_beat",
    "assistant_site",
    "audit",
    "workflows",
    "connectors",
    "knowledge",
    "frontend",
]

MIDDLEWARE = [
    "assistant_site.middleware.RequestIdMiddleware",
    "assistant_site.middleware.MetricsMiddleware",
    "assistant_site.middleware.ProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "assistant_site.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: it turns a lockout into a 429 response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "assistant_site.urls"
WSGI_APPLICATION = "assistant_site.wsgi.application"
ASGI_APPLICATION = "assistant_site.asgi.application"

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
                "django.template.context_processors.i18n",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL")
DB_POOL_MAX_SIZE = env_int("DB_POOL_MAX_SIZE", 10, minimum=1)
if DATABASE_URL:
    _db = dict(dj_database_url.parse(DATABASE_URL))
    if _db["ENGINE"] == "django.db.backends.postgresql" and env_bool("DB_POOL", default=True):
        # Under ASGI each sync view runs on a new thread; with persistent connections that
        # opens a connection per request and exhausts PostgreSQL. A pool is safe for both
        # the WSGI and ASGI servers and for threaded Celery workers.
        _db["CONN_MAX_AGE"] = 0
        _db["OPTIONS"] = {
            "pool": {"min_size": 1, "max_size": DB_POOL_MAX_SIZE, "timeout": 10},
        }
    else:
        _db["CONN_MAX_AGE"] = env_int("DB_CONN_MAX_AGE", 60, minimum=0)
    DATABASES: dict[str, dict[str, Any]] = {"default": _db}
else:
    EMBEDDED_FALLBACKS.append("DATABASE_URL is not set: using SQLite at var/db.sqlite3")
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "db.sqlite3",
            "OPTIONS": {"timeout": 20},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: cache, channel layer, Celery broker and results ----------------------------
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES: dict[str, dict[str, Any]] = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
    CHANNEL_LAYERS: dict[str, dict[str, Any]] = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # With redis-py 8 the layer's blocking reads time out after about 5 s and close
            # every WebSocket unless socket_timeout is disabled explicitly.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": None}]},
        }
    }
    CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
    CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", REDIS_URL)
    CELERY_TASK_ALWAYS_EAGER = False
else:
    EMBEDDED_FALLBACKS.append(
        "REDIS_URL is not set: Celery tasks run eagerly in the web process, the channel layer "
        "is in-memory (WebSockets work within one process only) and the cache is local memory"
    )
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CELERY_BROKER_URL = "memory://"
    CELERY_RESULT_BACKEND = "cache+memory://"
    CELERY_TASK_ALWAYS_EAGER = True

# --- Celery ---------------------------------------------------------------------------
# Two queues: `runs` holds I/O-bound workflow runs (a thread pool keeps many LLM calls in
# flight), `ingest` holds CPU-bound document parsing and embedding (prefork, few processes).
CELERY_TASK_QUEUES = (Queue("runs"), Queue("ingest"))
CELERY_TASK_DEFAULT_QUEUE = "runs"
CELERY_TASK_ROUTES = {"knowledge.*": {"queue": "ingest"}}
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# One task reserved per thread (Celery's advice for long tasks): with its default of 4 a busy
# worker holds 4 x threads runs that another worker, or a new replica, could start, and
# the `runs` list that autoscalers watch stays empty meanwhile.
CELERY_WORKER_PREFETCH_MULTIPLIER = env_int("CELERY_WORKER_PREFETCH_MULTIPLIER", 1, minimum=1)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = env_int("CELERY_RESULT_EXPIRES", 3600, minimum=60)
# One result backend per process instead of one per thread: under ASGI every sync request
# runs on a fresh thread, and building a Redis backend there cost about 1.5-4.5 ms of CPU per
# .delay() (bench/connector_ingress.py). redis-py's client is thread-safe; nothing of ours
# waits on a result from several threads.
CELERY_RESULT_BACKEND_THREAD_SAFE = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Workers log through LOGGING below (JSON, redacted) instead of Celery's own format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Entries here are copied into the database scheduler (editable in the admin).
CELERY_BEAT_SCHEDULE = {
    "recover-stale-runs": {"task": "workflows.runs_sweep", "schedule": 30.0},
    "connectors-sweep": {"task": "connectors.sweep", "schedule": 30.0},
}
CELERY_TIMEZONE = "UTC"

# --- Vector store ----------------------------------------------------------------------
CHROMA_URL = env_str("CHROMA_URL")
if not CHROMA_URL:
    EMBEDDED_FALLBACKS.append("CHROMA_URL is not set: the knowledge index is unavailable")

# --- Knowledge ingestion ---------------------------------------------------------------
KNOWLEDGE_MAX_UPLOAD_MB = env_int("KNOWLEDGE_MAX_UPLOAD_MB", 50, minimum=1)
KNOWLEDGE_MAX_PAGES = env_int("KNOWLEDGE_MAX_PAGES", 2000, minimum=1)

# --- Connectors (Feishu/Lark, Telegram, web chat) ---------------------------------------
# Credentials live on each connector (encrypted, set in the admin or API), not here.
# How long inbound events and deliveries are kept (the sweeper deletes older ones).
CONNECTOR_RETENTION_DAYS = env_int("CONNECTOR_RETENTION_DAYS", 30, minimum=1)
# Attempts before a reply becomes a dead letter (retry it from the admin).
CONNECTOR_DELIVERY_ATTEMPTS = env_int("CONNECTOR_DELIVERY_ATTEMPTS", 8, minimum=1)

# --- Auth, roles, object permissions, lockout -----------------------------------------
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
# No guardian "AnonymousUser" row: anonymous visitors get no object permissions.
ANONYMOUS_USER_NAME = None
GUARDIAN_MONKEY_PATCH_USER = False
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = env_float("LOGIN_COOLOFF_HOURS", 0.25)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_ENABLE_ACCESS_FAILURE_LOG = False
AXES_VERBOSE = False
AXES_CLIENT_IP_CALLABLE = "assistant_site.middleware.client_ip"
# Designers and viewers are not staff: the studio has its own sign-in page.
LOGIN_URL = "frontend:login"
LOGIN_REDIRECT_URL = "/studio/"
# Number of reverse proxies of ours in front of the app (nginx: 1); their X-Forwarded-For
# hop is the client address used by the audit trail and the login lockout.
TRUSTED_PROXIES = env_int("TRUSTED_PROXIES", 0, minimum=0)

# --- HTTPS and browser security --------------------------------------------------------
HTTPS = env_bool("DJANGO_HTTPS", default=not DEBUG)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31_536_000 if HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
# /healthz and /readyz are probed over plain HTTP inside the cluster.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
if env_bool("DJANGO_TRUST_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 8 * 3600, minimum=300)
X_FRAME_OPTIONS = "DENY"
CONTENT_SECURITY_POLICY = env_str(
    "CONTENT_SECURITY_POLICY",
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self' ws: wss:; "
    "frame-ancestors 'none'; base-uri 'self'; form-action 'self'; object-src 'none'",
)

# --- Secrets at rest -------------------------------------------------------------------
# "kid:base64key,kid:base64key": the first key encrypts, all of them decrypt.
SECRETS_KEYS: dict[str, bytes] = {}
SECRETS_CURRENT_KEY_ID = ""
for _entry in env_list("SECRETS_KEYS"):
    _kid, _sep, _b64 = _entry.partition(":")
    try:
        _key = base64.b64decode(_b64, validate=True)
    except (binascii.Error, ValueError) as _exc:
        raise ImproperlyConfigured(f"SECRETS_KEYS entry {_kid!r} is not valid base64") from _exc
    if not _sep or not _kid.isidentifier() or len(_key) != 32:
        raise ImproperlyConfigured(
            "SECRETS_KEYS entries must be 'key_id:base64-of-32-bytes' (key id: letters, digits, "
            f"underscore); entry {_kid!r} is not"
        )
    SECRETS_KEYS[_kid] = _key
    SECRETS_CURRENT_KEY_ID = SECRETS_CURRENT_KEY_ID or _kid

# --- Outbound HTTP ---------------------------------------------------------------------
# assistant_site/http.py refuses destinations that resolve to private, loopback, link-local
# or other non-public addresses (SSRF guard) unless their host name or network is listed
# here: "crm.internal,10.20.0.0/16" (docs/security.md).
OUTBOUND_HTTP_ALLOWED_HOSTS = env_list("OUTBOUND_HTTP_ALLOWED_HOSTS")
for _entry in OUTBOUND_HTTP_ALLOWED_HOSTS:
    if "/" in _entry:
        try:
            ipaddress.ip_network(_entry, strict=False)
        except ValueError as _exc:
            raise ImproperlyConfigured(
                f"OUTBOUND_HTTP_ALLOWED_HOSTS entry {_entry!r} is not a network (e.g. 10.0.0.0/8)"
            ) from _exc

# --- Observability ---------------------------------------------------------------------
METRICS_BEARER_TOKEN = env_str("METRICS_BEARER_TOKEN")
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS", ["127.0.0.1/32", "::1/128"])
# A Celery worker's own /metrics (assistant_site/worker_metrics.py): for containers, where
# each worker keeps its samples in a folder of its own. 0: off.
WORKER_METRICS_PORT = env_int("WORKER_METRICS_PORT", 0, minimum=0)
WORKER_METRICS_ADDRESS = env_str("WORKER_METRICS_ADDRESS", "0.0.0.0")  # noqa: S104  (containers)
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOG_FORMAT = env_str("LOG_FORMAT", "json")
if LOG_FORMAT not in {"json", "text"}:
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r} must be json or text")
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "assistant_site.logging.RequestIdFilter"}},
    "formatters": {
        "json": {
            "()": "assistant_site.logging.RedactingJsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            "datefmt": "%Y-%m-%dT%H:%M:%S%z",
        },
        "text": {
            "()": "assistant_site.logging.RedactingTextFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.server": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
    },
}

# --- i18n ------------------------------------------------------------------------------
LANGUAGE_CODE = env_str("DJANGO_LANGUAGE_CODE", "en")
LANGUAGES = [("en", _("English")), ("zh-hans", _("Simplified Chinese"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
TIME_ZONE = env_str("DJANGO_TIME_ZONE", "UTC")
USE_TZ = True

# --- Static files ----------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
# The editor's and chat's bundle, built by Vite (frontend/README.md); absent until built.
FRONTEND_DIST = Path(env_str("FRONTEND_DIST", str(BASE_DIR / "frontend" / "dist")))
STATICFILES_DIRS = [FRONTEND_DIST] if FRONTEND_DIST.is_dir() else []
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
MEDIA_ROOT = VAR_DIR / "media"
MEDIA_URL = "/media/"

# --- REST API --------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "assistant_site.api.exception_handler",
    # `?format=` belongs to our endpoints (workflow export: yaml or json), not to DRF.
    "URL_FORMAT_OVERRIDE": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Assistant Studio API",
    "DESCRIPTION": "Workflows, knowledge bases, connectors, model endpoints and sharing.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Four models have a `status`; each gets its own enum name in the schema.
    "ENUM_NAME_OVERRIDES": {
        "RunStatusEnum": "workflows.models.Run.Status",
        "DocumentStatusEnum": "knowledge.models.Document.Status",
        "InboundEventStatusEnum": "connectors.models.InboundEvent.Status",
        "DeliveryStatusEnum": "connectors.models.Delivery.Status",
    },
}
