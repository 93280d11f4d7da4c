"""Test-wide set-up. Tests run against whatever DATABASE_URL / REDIS_URL say (CI: real PostgreSQL
and Redis); without them, against the embedded defaults."""

import os

# The suite never runs with DEBUG on, so it needs a secret key; a real deployment sets its own.
os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production")
