"""The production web server: several daphne processes accepting on one port.

`python -m cryptostock.webserver --port 8000 --workers 2 [-- <more daphne options>]`

One daphne process runs Django's request handling in one interpreter: a single GIL, so at most one
core's worth of Python no matter how many the machine has. This opens one listening socket per
worker, all on the same port (SO_REUSEPORT), and starts `--workers` daphne processes that each
adopt one (`daphne --fd`); the kernel spreads new connections evenly over the sockets. One socket
shared by all would not: twisted accepts every pending connection whenever its socket wakes up, so
under load the first process to wake took them all (measured: all 16 of wrk's connections in one
process, 9 s of CPU against 0 s in the other, the server working at one core's pace). Where the
platform cannot spread a port over sockets (not Linux), the workers share one socket as before.
HTTP and WebSockets both go to whichever process accepts (each consumer reaches the others through
the Redis channel layer, as with several hosts). Each worker is daphne with HTTP flow control
(`cryptostock.daphne_server`): a streamed response waits for a slow client instead of piling up in
the worker's memory.

Supervision is deliberately minimal: when one daphne exits, the others are stopped and this exits
with its status, so the container's restart policy starts a clean set (only a worker failing while
the set starts is started again, see `serve`). SIGTERM and SIGINT are passed
on to every daphne, which then close their connections as they would alone.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

APPLICATION = "cryptostock.asgi:application"
STOP_TIMEOUT = 20.0
# A worker exiting with an error within this many seconds of the start is started again, at most
# STARTUP_RESTARTS times.
STARTUP_SECONDS = 120.0
STARTUP_RESTARTS = 3
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cryptostock.webserver", description=__doc__.splitlines()[0])
    parser.add_argument("--bind", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("WEB_WORKERS", "0")) or os.cpu_count() or 1,
        help="daphne processes (default WEB_WORKERS, else one per CPU)",
    )
    parser.add_argument("--backlog", type=int, default=1024, help="pending connections the socket queues")
    parser.add_argument("--application", default=APPLICATION)
    parser.add_argument("daphne_args", nargs="*", help="after --: passed to every daphne as they are")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    return args


def listening_sockets(host: str, port: int, backlog: int, count: int) -> list[socket.socket]:
    """One socket per worker on the same port (the first one's, if `port` is 0), or one shared."""
    spread = sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")
    first = listening_socket(host, port, backlog, reuse_port=spread)
    if not spread:
        return [first] * count
    port = first.getsockname()[1]
    return [first, *(listening_socket(host, port, backlog, reuse_port=True) for _ in range(count - 1))]


def listening_socket(host: str, port: int, backlog: int, *, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=backlog, reuse_port=reuse_port)
    sock.set_inheritable(True)
    return sock


def daphne_command(fd: int, args: argparse.Namespace) -> list[str]:
    # daphne's command line with HTTP flow control (cryptostock.daphne_server), run by this
    # interpreter (the virtualenv's), whatever PATH says.
    return [sys.executable, "-m", "cryptostock.daphne_server", "--fd", str(fd), *args.daphne_args, args.application]


def serve(args: argparse.Namespace) -> int:
    with metrics_directory():
        return serve_workers(args)


@contextmanager
def metrics_directory() -> Iterator[Path]:
    """A directory for prometheus_client's multiprocess mode, in the workers' environment: each daphne
    writes its request metrics there and /metrics sums them all, whichever process answers the scrape
    (cryptostock/metrics.py). PROMETHEUS_MULTIPROC_DIR chooses it (emptied first: the counts of an
    earlier run are not this one's); otherwise a temporary one, removed at the end."""
    chosen = os.environ.get(METRICS_DIR_VARIABLE)
    if chosen:
        directory = Path(chosen)
        directory.mkdir(parents=True, exist_ok=True)
        for leftover in directory.glob("*.db"):
            leftover.unlink()
        yield directory
        return
    with tempfile.TemporaryDirectory(prefix="cryptostock-metrics-") as temporary:
        os.environ[METRICS_DIR_VARIABLE] = temporary
        try:
            yield Path(temporary)
        finally:
            del os.environ[METRICS_DIR_VARIABLE]


def serve_workers(args: argparse.Namespace) -> int:
    # Kept open here too, so that a worker can be started again on its socket (see STARTUP_SECONDS).
    sockets = listening_sockets(args.bind, args.port, args.backlog, args.workers)

    def start_worker(sock: socket.socket) -> subprocess.Popen[bytes]:
        worker = subprocess.Popen(daphne_command(sock.fileno(), args), pass_fds=(sock.fileno(),))
        socket_of[worker.pid] = sock
        return worker

    socket_of: dict[int, socket.socket] = {}
    workers = {worker.pid: worker for worker in (start_worker(sock) for sock in sockets)}
    started = time.monotonic()
    restarts = 0
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for worker in list(workers.values()):
            if worker.poll() is None:
                worker.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        pid, status = os.wait()
        exited = workers.pop(pid, None)
        if exited is not None:
            exited.returncode = os.waitstatus_to_exitcode(status)
        # daphne finds its `fd:` endpoint through twisted's plugin cache, and workers starting at the
        # same moment have been seen to miss it ("Unknown endpoint type: 'fd'"): a worker that fails
        # while starting gets another chance, a few times; after that, or later, it is a real failure.
        # Killed by a signal (the OOM killer, an operator) is never retried.
        failed_starting = os.waitstatus_to_exitcode(status) > 0 and time.monotonic() - started < STARTUP_SECONDS
        if not stopping and failed_starting and restarts < STARTUP_RESTARTS:
            restarts += 1
            print(f"webserver: a daphne process failed while starting; starting another ({restarts})", file=sys.stderr)
            worker = start_worker(socket_of[pid])
            workers[worker.pid] = worker
            continue
        break
    for sock in set(sockets):
        sock.close()
    for worker in workers.values():
        if worker.poll() is None:
            worker.terminate()
    for worker in workers.values():
        try:
            worker.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    # Asked to stop, it stopped (a worker still loading dies of the signal itself: not a failure).
    return 0 if stopping else os.waitstatus_to_exitcode(status)


class NotServing(RuntimeError):
    """A server that was started did not answer in time, or exited first."""


def wait_until_serving(
    url: str,
    process: subprocess.Popen[Any] | None = None,
    *,
    timeout: float = 60.0,
    headers: Mapping[str, str] | None = None,
) -> bytes:
    """GET `url` until it answers with a success and return the body: for whatever starts a server
    and needs it up (tests, benchmarks, scripts). An error status (e.g. /health's 503) counts as not
    yet. Raises NotServing if `process` exits first or `timeout` seconds pass."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise NotServing(f"the server exited with status {process.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return bytes(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise NotServing(f"no answer from {url} within {timeout:.0f} s") from None
            time.sleep(0.2)


def main(argv: Sequence[str] | None = None) -> int:
    return serve(parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
