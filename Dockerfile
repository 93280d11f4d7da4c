# The one image for every cryptostock process (web, collectors, Celery worker and beat).
FROM python:3.12-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VAR_DIR=/app/var

WORKDIR /app
# pg_dump and pg_restore for the backups (docs/backups.md), of the database server's major version
# (docker-compose.yml's TimescaleDB image runs PostgreSQL 16; Debian's own client is 15, too old to
# dump a 16 server), from PostgreSQL's Debian repository, whose key postgresql-common carries.
ARG PG_MAJOR=16
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates postgresql-common \
    && /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y \
    && apt-get install -y --no-install-recommends "postgresql-client-${PG_MAJOR}" \
    && rm -rf /var/lib/apt/lists/*

COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
# collectstatic needs settings to load; the key is only for this build step.
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --no-input -v0 \
    && useradd --system --home /app cryptostock \
    && mkdir -p /app/var/backups && chown -R cryptostock /app/var
USER cryptostock

EXPOSE 8000
# The web server: one daphne process per CPU on one socket (cryptostock/webserver.py).
CMD ["python", "-m", "cryptostock.webserver", "--bind", "0.0.0.0", "--port", "8000"]
