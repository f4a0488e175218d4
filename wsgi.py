"""WSGI entry point: gunicorn serves wsgi:app."""

from backend import create_app

app = create_app()
