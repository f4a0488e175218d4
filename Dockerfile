# One image for every process of the Procfile (release, web, worker, flower);
# docker-compose.yml picks the process. The default command is `web`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FLASK_APP=wsgi \
    PORT=8000

WORKDIR /app

# Dependencies first: this layer is rebuilt only when requirements.txt changes.
COPY requirements.txt .
RUN pip install -r requirements.txt

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home app
COPY --chown=app:app . .
# instance/ holds the embedded SQLite database when DATABASE_URL is not set.
RUN mkdir -p instance && chown app:app instance

USER app
EXPOSE 8000

# The Procfile's `web` line (gunicorn.conf.py binds to $PORT, gevent workers).
CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
