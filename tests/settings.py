"""Settings for the test suite: a throw-away data folder and a file-based test database.

The test database is a file, not SQLite's in-memory default, so that the
Celery worker and Daphne processes started by integration tests share it.
"""

import os
import tempfile

os.environ.setdefault("STUDIO_HOME", tempfile.mkdtemp(prefix="studio-test-"))

from studio.settings import *  # noqa: E402,F403
from studio.settings import DATABASES, STATIC_ROOT, STUDIO_HOME  # noqa: E402

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["TEST"] = {"NAME": str(STUDIO_HOME / "test.sqlite3")}

# Whitenoise warns at start-up when the collected static folder is missing.
STATIC_ROOT.mkdir(parents=True, exist_ok=True)

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
