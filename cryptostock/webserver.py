"""The production web server: several daphne processes accepting on one listening socket.

`python -m cryptostock.webserver --port 8000 --workers 2 [-- <more daphne options>]`

One daphne process runs Django's request handling in one interpreter: a single GIL, so at most one
core's worth of Python no matter how many the machine has. This opens the socket once and starts
`--workers` daphne processes that each adopt it (`daphne --fd`); the kernel hands every new
connection to one of them. HTTP and WebSockets both go to whichever process accepts (each consumer
reaches the others through the Redis channel layer, as with several hosts).

Supervision is deliberately minimal: when one daphne exits, the others are stopped and this exits
with its status, so the container's restart policy starts a clean set. SIGTERM and SIGINT are passed
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
from collections.abc import Sequence
from pathlib import Path

APPLICATION = "cryptostock.asgi:application"
STOP_TIMEOUT = 20.0


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
    sock = listening_socket(args.bind, args.port, args.backlog)
    fd = sock.fileno()
    workers = [subprocess.Popen(daphne_command(fd, args), pass_fds=(fd,)) for _ in range(args.workers)]
    # The children hold the socket now; this process only supervises.
    sock.close()

    def stop(signum: int, _frame: object) -> None:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    _pid, status = os.wait()
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()
    for worker in workers:
        try:
            worker.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    return os.waitstatus_to_exitcode(status)


def main(argv: Sequence[str] | None = None) -> int:
    return serve(parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
