"""The production web server: several daphne processes answering on one port, stopped together."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cryptostock.webserver import wait_until_serving

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.fixture
def web_server(tmp_path):
    port = free_port()
    env = {**os.environ, "DEBUG": "0", "ALLOWED_HOSTS": "127.0.0.1", "SECRET_KEY": "web-server-test-key"}
    env.pop("DATABASE_URL", None)  # /health needs no database; the default SQLite file lives in VAR_DIR
    env.update(VAR_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "cryptostock.webserver", "--bind", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen([*command, "--workers", "2"], cwd=ROOT, env=env)
    try:
        yield process, f"http://127.0.0.1:{port}/health", port
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=30)


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads child processes from /proc")
def test_two_daphne_processes_answer_on_one_port_and_stop_on_sigint(web_server):
    process, url, _ = web_server

    assert wait_until_serving(url, process)
    assert len(children(process.pid)) == 2
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads child processes from /proc")
def test_when_one_daphne_dies_the_server_stops_the_other_and_fails(web_server):
    process, url, _ = web_server
    wait_until_serving(url, process)
    first, second = children(process.pid)

    os.kill(first, signal.SIGKILL)

    assert process.wait(timeout=30) != 0
    with pytest.raises(ProcessLookupError):
        os.kill(second, 0)


LISTENING, ESTABLISHED = "0A", "01"


def sockets_on(port: int, state: str) -> set[str]:
    """The sockets (as /proc/<pid>/fd links name them) of local `port` in TCP `state`."""
    rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    return {f"socket:[{row[9]}]" for row in rows if int(row[1].split(":")[1], 16) == port and row[3] == state}


def held(pid: int, sockets: set[str]) -> set[str]:
    links = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            link = os.readlink(fd)
        except FileNotFoundError:  # closed by the process between the listing and the read
            continue
        if link in sockets:
            links.add(link)
    return links


@pytest.mark.skipif(sys.platform != "linux", reason="SO_REUSEPORT spreads connections on Linux")
def test_each_daphne_process_listens_on_a_socket_of_its_own(web_server):
    # One socket shared by all: the first process to wake accepts every pending connection.
    process, url, port = web_server
    wait_until_serving(url, process)

    listening = [held(pid, sockets_on(port, LISTENING)) for pid in children(process.pid)]

    assert [len(sockets) for sockets in listening] == [1, 1]
    assert listening[0] != listening[1]


@pytest.mark.skipif(sys.platform != "linux", reason="SO_REUSEPORT spreads connections on Linux")
def test_connections_arriving_together_are_spread_over_both_daphne_processes(web_server):
    # Given both processes up, and 32 connections opened at once (as a load generator or a proxy does)
    process, url, port = web_server
    wait_until_serving(url, process)
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(32)]
    try:
        time.sleep(1)  # each process accepts what its own socket queued

        # Then each process holds some of them (with one shared socket, the first to wake took all)
        counts = [len(held(pid, sockets_on(port, ESTABLISHED))) for pid in children(process.pid)]
    finally:
        for client in clients:
            client.close()
    assert sum(counts) == 32
    assert min(counts) >= 4, counts


def resident_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited"
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


def slow_download(port: int, *, slow_bytes: int, seconds: float) -> tuple[socket.socket, int]:
    """GET / with a small receive buffer, reading `slow_bytes` spread over `seconds`."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    received, step = 0, slow_bytes * 0.02 / seconds
    while received < slow_bytes:
        received += len(sock.recv(int(step)))
        time.sleep(0.02)
    return sock, received


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the server's memory from /proc")
def test_a_slow_client_holds_up_a_streamed_response_instead_of_filling_the_servers_memory():
    # Given the web server (daphne with flow control) streaming 40 MB in 1 MB pieces
    port = free_port()
    command = [sys.executable, "-m", "cryptostock.daphne_server", "-b", "127.0.0.1", "-p", str(port)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([*command, "market.tests.streaming_app:application"], cwd=ROOT, env=env)
    try:
        wait_for_port(port, server)
        before = resident_kb(server.pid)

        # When a client takes 2 MB of it over two seconds
        sock, received = slow_download(port, slow_bytes=2_000_000, seconds=2.0)
        grown = resident_kb(server.pid) - before

        # Then the server has not made (and held) the rest meanwhile: daphne alone grows by the whole
        # 40 MB within the first second
        assert grown < 12_000, f"the server grew by {grown} kB while the client was slow"
        # and the client still gets every byte once it reads at full speed
        with sock:
            while chunk := sock.recv(1 << 20):
                received += len(chunk)
                if chunk.endswith(b"0\r\n\r\n"):
                    break
        assert received > 40_000_000
    finally:
        server.terminate()
        server.wait(timeout=30)
