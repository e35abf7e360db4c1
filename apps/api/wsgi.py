"""WSGI entry point (composition root) for gunicorn.

gunicorn --config python:apps.api.gunicorn_conf apps.api.wsgi:app
"""

from apps.api.app import create_app

app = create_app()
