"""Settings of the showdown's Django peer (the peer itself: showdown/views.py).
Production settings: DEBUG off, persistent database connections, only the middleware an API
without sessions or cookies uses."""

import os
from urllib.parse import unquote, urlsplit

_db = urlsplit(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench"))

DEBUG = False
# Django refuses to start without one; nothing here signs anything (no sessions, no CSRF).
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "showdown-peer-signs-nothing")
ALLOWED_HOSTS = [os.environ.get("HOST", "127.0.0.1"), "localhost"]

INSTALLED_APPS = ["showdown"]
# startproject's list minus sessions, auth, messages, CSRF and clickjacking: a JSON API without
# cookies or a login has no use for them. CommonMiddleware sets Content-Length.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]
ROOT_URLCONF = "showdown.urls"
WSGI_APPLICATION = "showdown.wsgi.application"
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db.path.lstrip("/"),
        "USER": unquote(_db.username or ""),
        "PASSWORD": unquote(_db.password or ""),
        "HOST": _db.hostname,
        "PORT": _db.port or 5432,
        # Persistent connections (default 0: one connection per request): each gunicorn worker
        # keeps its one connection for its whole life (None: no age limit).
        "CONN_MAX_AGE": None,
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
