"""The production web server: several daphne processes accepting on one listening socket.

`python -m cryptostock.webserver --port 8000 --workers 2 [-- <more daphne options>]`

One daphne process runs Django's request handling in one interpreter: a single GIL, so at most one
core's worth of Python no matter how many the machine has. This opens the socket once and starts
`--workers` daphne processes that each adopt it (`daphne --fd`); the kernel hands every new
connection to one of them. HTTP and WebSockets both go to whichever process accepts (each consumer
reaches the others through the Redis channel layer, as with several hosts).

Supervision is deliberately minimal: when one daphne exits, the others are stopped and this exits
with its status, so the container's restart policy starts a clean set (only a worker failing while
the set starts is started again, see `serve`). SIGTERM and SIGINT are passed
on to every daphne, which then close their connections as they would alone.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

APPLICATION = "cryptostock.asgi:application"
STOP_TIMEOUT = 20.0
# A worker exiting with an error within this many seconds of the start is started again, at most
# STARTUP_RESTARTS times.
STARTUP_SECONDS = 120.0
STARTUP_RESTARTS = 3


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


def listening_socket(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=backlog)
    sock.set_inheritable(True)
    return sock


def daphne_command(fd: int, args: argparse.Namespace) -> list[str]:
    # The daphne beside this interpreter (the virtualenv's), whatever PATH says.
    daphne = Path(sys.executable).with_name("daphne")
    executable = str(daphne) if daphne.exists() else shutil.which("daphne") or "daphne"
    return [executable, "--fd", str(fd), *args.daphne_args, args.application]


def serve(args: argparse.Namespace) -> int:
    # Kept open here too, so that a worker can be started again on it (see STARTUP_SECONDS).
    sock = listening_socket(args.bind, args.port, args.backlog)
    fd = sock.fileno()

    def start_worker() -> subprocess.Popen[bytes]:
        return subprocess.Popen(daphne_command(fd, args), pass_fds=(fd,))

    workers = {worker.pid: worker for worker in (start_worker() for _ in range(args.workers))}
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
            worker = start_worker()
            workers[worker.pid] = worker
            continue
        break
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


def main(argv: Sequence[str] | None = None) -> int:
    return serve(parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
