"""`manage.py smoke URL` against the real product: `serve` on a fresh database with the sample data
and the replay feed, market data private (the production setting), reached over HTTP and WebSocket
as any client would."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator

import pytest
from django.core.management import CommandError, call_command

from market.tests.test_browser import REPO_ROOT, Product, create_account, free_port, manage, server_env

pytestmark = pytest.mark.slow

PASSWORD = "smoke-test-password-1"


@pytest.fixture(scope="module")
def private_product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Product]:
    tmp = tmp_path_factory.mktemp("smoke")
    env = {**server_env(tmp), "PUBLIC_MARKET_DATA": "0"}
    manage("migrate", "--noinput", env=env)
    manage("load_sample_data", env=env)
    product = Product(env, tmp / "serve.log")
    product.start()
    create_account(product, "vera", PASSWORD, "viewer")
    try:
        yield product
    finally:
        product.stop()


def smoke(url: str, *args: str, stdin: str = "") -> tuple[list[list[str]], str | None]:
    """The command's lines, split into outcome, check and the rest, and its error if it failed."""
    out = io.StringIO()
    error = None
    saved, sys.stdin = sys.stdin, io.StringIO(stdin)
    try:
        call_command("smoke", url, *args, "--timeout", "20", stdout=out, no_color=True)
    except CommandError as exc:
        error = str(exc)
    finally:
        sys.stdin = saved
    return [line.split(maxsplit=2) for line in out.getvalue().splitlines()], error


def test_a_healthy_deployment_passes_every_check_signed_in(private_product):
    lines, error = smoke(private_product.url, "--username", "vera", "--password-stdin", stdin=f"{PASSWORD}\n")

    assert error is None, lines
    assert [line[0] for line in lines] == ["ok"] * 8
    text = "\n".join(" ".join(line) for line in lines)
    assert "signed in as vera" in text
    assert "e.g. " in text
    assert " on binance" in text
    assert "snapshot of " in text


def test_anonymous_reads_of_a_private_deployment_fail_and_say_to_sign_in(private_product):
    lines, error = smoke(private_product.url)

    assert error == "1 check(s) failed"
    by_check = {line[1]: line for line in lines}
    assert by_check["health"][0] == by_check["ready"][0] == "ok"
    assert by_check["sign-in"][0] == "skipped"
    assert by_check["instruments"][0] == "FAILED"
    assert "401: sign in with --username and --password-stdin" in by_check["instruments"][2]
    # what needs an instrument cannot run, and says why
    assert by_check["bars"][0] == by_check["websocket"][0] == "skipped"


def test_a_stale_collector_fails_ready_and_names_it(private_product):
    mark_stale = (
        "from datetime import timedelta; from django.utils import timezone; "
        "from market.models import CollectorStatus; "
        "CollectorStatus.objects.update_or_create(name='smoke-dead', defaults={'source': 'binance', "
        "'state': 'streaming', 'started_at': timezone.now(), 'updated_at': timezone.now() - timedelta(hours=1)})"
    )
    run = [sys.executable, "manage.py", "shell", "-c"]
    subprocess.run([*run, mark_stale], cwd=REPO_ROOT, env=private_product.env, check=True, timeout=120)
    try:
        lines, error = smoke(private_product.url, "--username", "vera", "--password-stdin", stdin=f"{PASSWORD}\n")
    finally:
        forget = "from market.models import CollectorStatus; CollectorStatus.objects.filter(name='smoke-dead').delete()"
        subprocess.run([*run, forget], cwd=REPO_ROOT, env=private_product.env, check=True, timeout=120)

    assert error == "1 check(s) failed"
    ready = next(line for line in lines if line[1] == "ready")
    assert ready[0] == "FAILED"
    assert "503" in ready[2]
    assert "smoke-dead" in ready[2]


def test_a_server_that_does_not_answer_fails_health_and_skips_the_rest():
    lines, error = smoke(f"http://127.0.0.1:{free_port()}")

    assert error == "1 check(s) failed"
    assert lines[0][:2] == ["FAILED", "health"]
    assert "cannot connect to http://127.0.0.1:" in lines[0][2]
    assert {line[0] for line in lines[1:]} == {"skipped"}


def test_a_wrong_password_fails_the_sign_in(private_product):
    lines, error = smoke(private_product.url, "--username", "vera", "--password-stdin", stdin="wrong\n")

    sign_in = next(line for line in lines if line[1] == "sign-in")
    assert sign_in[0] == "FAILED"
    assert "401: No active account found with the given credentials" in sign_in[2]
    assert error is not None


def test_it_refuses_a_password_on_the_command_line_and_a_url_without_scheme():
    with pytest.raises(CommandError, match="--username needs --password-stdin"):
        call_command("smoke", "http://127.0.0.1:1", "--username", "vera")
    with pytest.raises(CommandError, match="expected a URL starting with http:// or https://"):
        call_command("smoke", "127.0.0.1:8000")
