"""The server under test (uvicorn in a subprocess) and the HTTP clients that load it."""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.harness import HOST, ROOT, BenchError

SERVER_START_TIMEOUT_S = 60.0
APP = "app.main:create_app"  # served with --factory, as in production
# Set by ``--profile DIR``: py-spy samples every server while it serves. With
# V2V_BENCH_PROFILE_GIL=1 only the thread holding the GIL is sampled: where Python's CPU goes,
# without the threads that wait (idle workers, the event loop in epoll) counted as busy.
PROFILE_DIR: Path | None = None


# ---- the server --------------------------------------------------------------------------


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def server_command(target: str, port: int) -> list[str]:
    flags = f"--host {HOST} --port {port} --no-access-log".split()
    factory = ["--factory"] if target == APP else []
    return [sys.executable, "-m", "uvicorn", target, *factory, *flags]


@dataclass(frozen=True)
class Server:
    base: str
    pid: int

    def cpu_seconds(self) -> float:
        """CPU time the server process has used so far, all threads (Linux; NaN elsewhere)."""
        return _stat_cpu_seconds(Path(f"/proc/{self.pid}/stat"))

    def thread_cpu_seconds(self, tid: int) -> float:
        """CPU time one thread of the server has used so far (its main thread: ``pid``)."""
        return _stat_cpu_seconds(Path(f"/proc/{self.pid}/task/{tid}/stat"))


def _stat_cpu_seconds(path: Path) -> float:
    """User plus system time from a /proc stat file; NaN where there is none."""
    try:
        stat = path.read_text()
    except OSError:
        return math.nan
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def serve(
    label: str,
    database_url: str,
    logdir: Path,
    *,
    target: str = APP,
    root: Path | None = None,
) -> Iterator[Server]:
    """Run uvicorn on a free port until the block ends; ``root``: the checkout whose code it
    serves (this one by default)."""
    port = free_port()
    env = {
        **os.environ,
        "V2V_DATABASE_URL": database_url,
        "V2V_SCHEDULER_ENABLED": "false",
        # A logger's abuse limit (100 calls/s per key) would cap a throughput benchmark; a
        # limit this high still runs the limiter's code on every call, it just never trips.
        "V2V_RATE_LIMIT_INGEST_PER_MIN": "1e12",
    }
    log_path = logdir / f"uvicorn-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            server_command(target, port),
            cwd=root or ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    base = f"http://{HOST}:{port}"
    spy: subprocess.Popen[bytes] | None = None
    try:
        _wait_ready(proc, base, log_path)
        spy = _profile(proc.pid, label)
        yield Server(base, proc.pid)
    finally:
        if spy is not None:
            _stop(spy, timeout=60)  # py-spy writes its output on SIGINT
        _stop(proc)


def _profile(pid: int, label: str) -> subprocess.Popen[bytes] | None:
    if PROFILE_DIR is None:
        return None
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    exe = shutil.which("py-spy", path=search)
    if exe is None:
        raise BenchError("--profile needs py-spy: .venv/bin/pip install py-spy")
    PROFILE_DIR.mkdir(parents=True, exist_ok=True)
    out = PROFILE_DIR / f"{label}-server.txt"
    command = [
        exe,
        "record",
        "--pid",
        str(pid),
        "--rate",
        "200",
        "--nonblocking",
        "--format",
        "raw",
        "--threads",
        *(["--gil"] if os.environ.get("V2V_BENCH_PROFILE_GIL") else []),
        "--output",
        str(out),
    ]
    spy = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
    )
    time.sleep(0.5)  # let it attach before the first request
    if spy.poll() is not None:
        raise BenchError(f"py-spy exited with {spy.returncode} (ptrace permission?)")
    return spy


def _wait_ready(proc: subprocess.Popen[bytes], base: str, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    with httpx.Client(base_url=base, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BenchError(f"uvicorn exited with {proc.returncode}:\n{_tail(log_path)}")
            try:
                if client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    raise BenchError(f"uvicorn not ready after {SERVER_START_TIMEOUT_S:.0f} s:\n{_tail(log_path)}")


def _stop(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown runs the lifespan's exit
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# ---- clients -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One pre-serialised POST and the check its response must pass."""

    path: str
    body: bytes
    headers: dict[str, str]
    check: Callable[[httpx.Response], None]


@dataclass(frozen=True)
class Drive:
    latencies: list[float]  # seconds, one per completed call
    elapsed: float  # wall time from the common start to the last response

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed


def drive(
    server: Server, queues: Sequence[Sequence[Call]], *, seconds: float | None = None
) -> Drive:
    """One thread and one keep-alive connection per queue, all released at once.

    Each client works through its queue, or until `seconds` have passed.
    """
    start = threading.Barrier(len(queues) + 1)
    latencies: list[list[float]] = [[] for _ in queues]
    errors: list[BaseException] = []

    def client(index: int, calls: Sequence[Call]) -> None:
        try:
            with httpx.Client(base_url=server.base, timeout=120.0) as http:
                http.get("/healthz")  # connect before the clock starts
                start.wait()
                deadline = time.perf_counter() + seconds if seconds else math.inf
                for call in calls:
                    t0 = time.perf_counter()
                    if t0 >= deadline:
                        break
                    response = http.post(call.path, content=call.body, headers=call.headers)
                    latencies[index].append(time.perf_counter() - t0)
                    call.check(response)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            start.abort()

    threads = [
        threading.Thread(target=client, args=(i, q), daemon=True) for i, q in enumerate(queues)
    ]
    for thread in threads:
        thread.start()
    try:
        start.wait()
    except threading.BrokenBarrierError:
        pass
    t0 = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return Drive([x for per in latencies for x in per], elapsed)
