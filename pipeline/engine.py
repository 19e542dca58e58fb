"""Starting Ray: locally, on loopback only, by default; or on the cluster --address or RAY_ADDRESS names.

Before anything is written, an address must answer a handshake (handshake.py) and a job asking
for GPUs must find them. Once Ray runs, the job's CPU requests are fitted to the cluster
(resources.py), Ray's own console output can go to a log file, and pixcap's SIGTERM handler,
which ray.init replaces with its own, is put back.
"""
from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import sys
import threading
from typing import Optional

import ray

from pixcap.log_stream import LogStream
from pixcap.schemas import Job, JobError

from .handshake import NoCluster, probe
from .resources import check_gpus, describe_waiting, fit_to_cluster, wanted_gpus  # noqa: F401 (describe_waiting: API)

LOOPBACK = "127.0.0.1"
RAY_LOG_NAME = "ray.log"
RAY_LOGGERS = ("ray", "ray.data")
LOCAL_ADDRESSES = (None, "local")  # pixcap starts a Ray of its own


def _address(address, job: Job):
    return address or job.ray.address or os.environ.get("RAY_ADDRESS")


def start_ray(address, job: Job, log_dir: Optional[str] = None, verbose: bool = False, stream=None) -> Job:
    """Start (or join) Ray and return the job to run: the same job, or one whose CPU requests
    were scaled to fit the cluster (a line on stream says so). With log_dir and not verbose,
    Ray's console output goes to log_dir/ray.log instead of the console."""
    address = _address(address, job)
    _check_reachable(address)
    if not ray.is_initialized():  # else a caller (a test session, a notebook) already runs Ray
        _init(address, quiet=bool(log_dir) and not verbose)
    if log_dir and not verbose:
        _ray_logs_to(log_dir)
    check_gpus(job)
    stream = stream or LogStream(logging.getLogger(__name__))
    return fit_to_cluster(job, lambda line: print(line, file=stream, flush=True))


def check_cluster(address, job: Job, quiet: bool = False) -> None:
    """Refuse an unreachable address, or GPUs the cluster lacks, before anything is written.
    Ray itself is started here only for a job that asks for GPUs (to count them); otherwise it
    starts when there is work, so a rerun over a finished output never starts it. quiet: what
    Ray logs is held until start_ray names the log folder (the output does not exist yet)."""
    address = _address(address, job)
    _check_reachable(address)
    if wanted_gpus(job):
        if not ray.is_initialized():
            _init(address, quiet=quiet)
        check_gpus(job)


def _check_reachable(address, timeout: float = 5.0) -> None:
    """An address where nothing answers as a Ray cluster fails in seconds; ray.init would retry
    for minutes, or wait forever on a server that accepts and stays silent."""
    if address in LOCAL_ADDRESSES:
        return
    if address == "auto":  # the cluster `ray start` recorded on this machine
        from ray._private.services import canonicalize_bootstrap_address

        try:
            found = canonicalize_bootstrap_address("auto")
        except Exception as e:
            raise JobError(f"--address auto: {str(e).splitlines()[0]}") from None
        if found is None:
            raise JobError("--address auto: no Ray cluster runs on this machine (start one with `ray start --head`)")
        target = found
    else:
        target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise JobError(f"--address {address}: expected host:port, ray://host:port or auto")
    try:
        probe(host.strip("[]"), int(port), timeout)
    except NoCluster as e:
        raise JobError(f"cannot reach the Ray cluster at {address}: {e}") from None


@contextlib.contextmanager
def _sigterm_recorded(received: list):
    """While ray.init runs, the SIGTERM handler it installs also notes the signal in `received`."""
    import ray._private.utils as ray_utils

    install = ray_utils.set_sigterm_handler

    def noting(sigterm_handler):
        def handler(signum, frame):
            received.append(signum)
            sigterm_handler(signum, frame)
        install(handler)

    ray_utils.set_sigterm_handler = noting
    try:
        yield
    finally:
        ray_utils.set_sigterm_handler = install


def _init(address, quiet: bool) -> None:
    """ray.init; a Ray pixcap starts itself listens on loopback only."""
    options = {"include_dashboard": False, "ignore_reinit_error": True, "log_to_driver": not quiet}
    if address in LOCAL_ADDRESSES:
        # "local", never None: ray.init(None) joins a cluster `ray start` left on this machine.
        address = "local"
        options.update(loopback_options())
    if quiet:
        # Before ray.init, which logs through the `ray` logger's handlers; it keeps them (it
        # only sets their format) as long as it is allowed to configure logging.
        _ray_logs_to(None)
    handler = signal.getsignal(signal.SIGTERM)
    received = []
    try:
        with _sigterm_recorded(received):
            ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise JobError(f"cannot reach the Ray cluster at {address}: {str(e).splitlines()[0]}") from None
    except SystemExit as e:
        # ray.init's own SIGTERM handler exits at once; a SIGTERM while Ray starts is pixcap's to handle.
        if e.code == signal.SIGTERM and callable(handler):
            handler(signal.SIGTERM, None)
        raise
    finally:
        # ray.init installs a SIGTERM handler that exits at once; pixcap's own stops the run
        # through its finally blocks (releasing the lock) and says so.
        if handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, handler)
    if received and callable(handler):
        # The SIGTERM came while ray.init forked (its SystemExit raised inside logging's at-fork
        # callback, where Python prints "Exception ignored" and goes on): it is not lost.
        handler(signal.SIGTERM, None)
    if quiet:
        from ray.data import DataContext

        DataContext.get_current().enable_progress_bars = False
        _ray_logs_to(None)  # importing ray.data set its logger up again, with a console handler


def loopback_options() -> dict:
    """ray.init options for a local Ray whose every process listens on 127.0.0.1 only.

    Ray resolves a node address of 127.0.0.1 to the machine's outward address unless it is told
    that this is no cluster (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, read by Ray at import and by
    every process it starts); GCS, raylet, object manager, workers and agents then bind to
    loopback. The dashboard, which would listen on its own port, is off."""
    from ray._private import ray_constants

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    return {"_node_ip_address": LOOPBACK, "include_dashboard": False}


class _RayLogs(logging.Handler):
    """Where the `ray` loggers write: a file once one is named; until then their records are
    held (the output folder, where the file goes, may not exist yet)."""

    def __init__(self):
        super().__init__()
        self.held = collections.deque(maxlen=10_000)
        self.target = None

    def emit(self, record) -> None:
        if self.target is None:
            self.held.append(record)
        else:
            self.target.handle(record)

    def send_to(self, path: str) -> None:
        if self.target is not None and self.target.baseFilename == os.path.abspath(path):
            return
        if self.target is not None:
            self.target.close()
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.target = logging.FileHandler(path, encoding="utf-8")
        self.target.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        while self.held:
            self.target.handle(self.held.popleft())


_ray_logs = _RayLogs()
_ray_logs.setLevel(logging.INFO)  # ray.data logs DEBUG records too, for its own session file


def _ray_logs_to(log_dir: Optional[str]) -> None:
    """Send the `ray` and `ray.data` loggers to log_dir/ray.log; with None, hold their records."""
    if log_dir is not None:
        _ray_logs.send_to(os.path.join(log_dir, RAY_LOG_NAME))
    for name in RAY_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if handler is not _ray_logs:
                logger.removeHandler(handler)
        if _ray_logs not in logger.handlers:
            logger.addHandler(_ray_logs)
        logger.propagate = False


NATIVE_LOG_NAME = "native.log"


@contextlib.contextmanager
def native_output_to(log_dir: Optional[str]):
    """While Ray runs the graph, what this process's C++ code writes to file descriptor 2 goes to
    log_dir/native.log, and Python's sys.stderr (pixcap's messages, the progress bar) stays on the
    console. Yields the stream that stands for the console meanwhile.

    Why: Ray Data puts each operator's map function in the object store and hands its reference to
    the actors it starts (ray/data/.../map_operator.py); with restarts on, which the actor pools need
    to survive a lost node, Ray's core worker writes a line about it to fd 2 for every pool, straight
    past Python's logging. With log_dir None (--verbose), nothing moves."""
    if log_dir is None:
        yield sys.stderr
        return
    os.makedirs(log_dir, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    console = os.fdopen(os.dup(saved), "w", buffering=1, encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
                        errors="backslashreplace")
    log = os.open(os.path.join(log_dir, NATIVE_LOG_NAME), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 2)
    os.close(log)
    previous = sys.stderr
    sys.stderr = console
    try:
        yield console
    finally:
        try:
            console.flush()
        except OSError:  # the console went away (a closed pipe): nothing more to show there
            pass
        sys.stderr = previous
        os.dup2(saved, 2)
        os.close(saved)
        try:
            console.close()
        except OSError:
            pass
