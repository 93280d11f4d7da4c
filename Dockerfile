# The one image for every cryptostock process (web, collectors, Celery worker and beat).
FROM python:3.12-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VAR_DIR=/app/var

WORKDIR /app
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
# collectstatic needs settings to load; the key is only for this build step.
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --no-input -v0 \
    && useradd --system --home /app cryptostock \
    && mkdir -p /app/var && chown -R cryptostock /app/var
USER cryptostock

EXPOSE 8000
# The web server: one daphne process per CPU on one socket (cryptostock/webserver.py).
CMD ["python", "-m", "cryptostock.webserver", "--bind", "0.0.0.0", "--port", "8000"]
