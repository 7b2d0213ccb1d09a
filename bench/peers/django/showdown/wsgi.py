"""The WSGI application gunicorn serves (gunicorn.conf.py)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "showdown.settings")
application = get_wsgi_application()
