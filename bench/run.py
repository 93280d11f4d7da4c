"""Run benchmarks and print one JSON line per measurement: `python -m bench.run [names...]`.

Names are the `<name>` of `bench/bench_<name>.py`; no names runs them all. Django is set up here,
against a scratch database so that no benchmark ever touches real data: with a PostgreSQL
DATABASE_URL, a database `cryptostock_bench_<pid>_<random>` on that server (created, migrated,
dropped after; its own name per run, so that runs by several people at once do not collide);
otherwise a SQLite file in a temporary directory.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import secrets
import signal
import sys
import tempfile
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

SCRATCH_PREFIX = "cryptostock_bench_"
BENCH_DIR = Path(__file__).resolve().parent


def available_benches() -> list[str]:
    modules = pkgutil.iter_modules([str(BENCH_DIR)])
    return sorted(module.name.removeprefix("bench_") for module in modules if module.name.startswith("bench_"))


def main(argv: list[str]) -> int:
    names = argv or available_benches()
    if unknown := set(names) - set(available_benches()):
        known = ", ".join(available_benches())
        print(f"unknown benchmarks: {', '.join(sorted(unknown))}; available: {known}", file=sys.stderr)
        return 2
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cryptostock.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
    failed = False
    with scratch_database():
        for name in names:
            failed |= not run_bench(name)
    return 1 if failed else 0


def run_bench(name: str) -> bool:
    from bench import BenchUnavailable

    try:
        for line in importlib.import_module(f"bench.bench_{name}").run():
            print(json.dumps(line), flush=True)
    except BenchUnavailable as reason:
        print(f"bench {name} not run: {reason}", file=sys.stderr)
        return False
    except Exception:  # one broken benchmark must not keep the others from running
        print(f"bench {name} failed:", file=sys.stderr)
        traceback.print_exc()
        return False
    return True


@contextmanager
def scratch_database() -> Iterator[None]:
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        with scratch_postgresql(url):
            yield
    else:
        with tempfile.TemporaryDirectory(prefix="cryptostock-bench-") as directory:
            os.environ["DATABASE_URL"] = f"sqlite:///{directory}/bench.sqlite3"
            setup_django()
            yield


@contextmanager
def scratch_postgresql(url: str) -> Iterator[None]:
    import psycopg

    parts = urlsplit(url)
    scratch = f"{SCRATCH_PREFIX}{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {scratch}")
    os.environ["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{scratch}"))
    # A plain `kill` should clean up too; only a SIGKILL leaves the database behind (README).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        setup_django()
        yield
    finally:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {scratch} WITH (FORCE)")


def setup_django() -> None:
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
