"""Django settings for DeepSeek Studio.

Everything that differs between a laptop and a cluster comes from the
environment through studio.env, which rejects bad values at start-up:

- STUDIO_HOME: the data folder (SQLite database, datasets, checkpoints, MLflow store).
- DATABASE_URL: PostgreSQL in production; SQLite under STUDIO_HOME when unset.
- REDIS_URL: broker and channel layer (redis://, rediss:// or unix://). `studio up`
  starts an embedded Redis and sets it for its children when unset.
- MLFLOW_TRACKING_URI: MLflow tracking store; SQLite under STUDIO_HOME when unset.
- OPTUNA_STORAGE_URL: where Optuna keeps studies (an SQLAlchemy URL); the
  studio's own database when unset.
"""

import importlib.util
import os
from pathlib import Path

import dj_database_url
from django.utils.translation import gettext_lazy as _

from studio.env import env_bool, env_int, env_list, env_str, env_url, studio_home

BASE_DIR = Path(__file__).resolve().parent.parent
STUDIO_HOME = studio_home()

SECRET_KEY = env_str("SECRET_KEY") or "insecure-dev-key-set-SECRET_KEY-in-production"
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "projects",
    "training",
    "tuning",
    "compression",
    "deployment",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "studio.urls"
WSGI_APPLICATION = None
ASGI_APPLICATION = "studio.asgi.application"

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
                "studio.context_processors.studio",
            ],
        },
    },
]

# Database: SQLite under the data folder unless DATABASE_URL names a server.
_database_url = env_url("DATABASE_URL", ("postgres", "postgresql", "sqlite"))
if _database_url:
    DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=60)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": STUDIO_HOME / "studio.sqlite3",
            # The web server, the worker's reporter thread and the reaper write at
            # once: WAL lets readers go on and the timeout waits out a writer's lock.
            "OPTIONS": {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("zh-hans", _("Simplified Chinese"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
TIME_ZONE = "UTC"
USE_TZ = True

STATIC_URL = "/static/"
# Plotly's Python package ships plotly.min.js; serving it from there keeps the
# charts working on machines without internet (no CDN). Pages load it as
# {% static "vendor/plotly/plotly.min.js" %}.
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("vendor/plotly", Path(importlib.util.find_spec("plotly").submodule_search_locations[0]) / "package_data"),
]
STATIC_ROOT = STUDIO_HOME / "static"
MEDIA_ROOT = STUDIO_HOME / "media"
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
# Largest dataset upload accepted, in megabytes.
DATASET_MAX_UPLOAD_MB = env_int("DATASET_MAX_UPLOAD_MB", 512, minimum=1)

# Redis: one server for the Celery broker and the channel layer.
REDIS_URL = env_url("REDIS_URL", ("redis", "rediss", "unix"))


def _celery_broker_url(redis_url: str) -> str:
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url.removeprefix("unix://")
    return redis_url


if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # A consumer waits for messages with BZPOPMIN for 5 s (channels-redis 4.3).
            # redis-py 8 times socket reads out after 5 s by default, which ends
            # every idle websocket with a TimeoutError, so reads get more time.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 15}], "capacity": 5000, "expiry": 60},
        }
    }
    CELERY_BROKER_URL = _celery_broker_url(REDIS_URL)
else:
    # Without Redis (unit tests, management commands) nothing is queued or pushed
    # across processes; `studio up` always sets REDIS_URL for its children.
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CELERY_BROKER_URL = "memory://"

CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "cpu"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Redis redelivers a task whose worker vanished without acknowledging it after
# this many seconds; the reaper fails or re-queues stale runs sooner.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=60)}
CELERY_BEAT_SCHEDULE = {
    "reap-stale-runs": {"task": "training.tasks.reap_stale_runs", "schedule": 15.0},
    # Starts trials of studies whose last step was lost with a process, and closes those out of time.
    "fill-studies": {"task": "tuning.tasks.fill_active_studies", "schedule": 15.0},
}

# A running job writes a heartbeat every HEARTBEAT_SECONDS; one silent for
# STALE_AFTER_SECONDS is taken as lost and re-queued up to MAX_ATTEMPTS times.
HEARTBEAT_SECONDS = env_int("STUDIO_HEARTBEAT_SECONDS", 5, minimum=1)
STALE_AFTER_SECONDS = env_int("STUDIO_STALE_AFTER_SECONDS", 60, minimum=3)
MAX_ATTEMPTS = env_int("STUDIO_MAX_ATTEMPTS", 3, minimum=1)

# MLflow 3.17 uploads usage telemetry unless told not to. The studio's
# processes and the MLflow server that `studio up` starts inherit this; an
# explicit setting in the environment is kept.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
MLFLOW_TRACKING_URI = env_str("MLFLOW_TRACKING_URI") or f"sqlite:///{STUDIO_HOME / 'mlflow.db'}"
# The MLflow UI that run pages link to; `studio up` serves one on port + 1.
MLFLOW_UI_URL = env_str("MLFLOW_UI_URL")
OPTUNA_STORAGE_URL = env_str("OPTUNA_STORAGE_URL")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "studio.api_errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "DeepSeek Studio API",
    "DESCRIPTION": "Projects, datasets, training runs and their metrics, and hyper-parameter studies.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and Redoc assets come from drf-spectacular-sidecar's static
    # files, not a CDN, so the docs page works on machines without internet.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        "alembic": {"level": "WARNING"},
    },
}
