"""The Spark session of an ingest, and progress from Spark's status tracker."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pyspark.sql import SparkSession

#: Quiet, deterministic and safe defaults; settings add master, memory and partitions.
_BASE_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.ansi.enabled": "true",
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.parquet.compression.codec": "zstd",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # The pseudonymizing UDF's batches: bounded memory on the Python side.
    "spark.sql.execution.arrow.maxRecordsPerBatch": "20000",
}


def spark_session(
    master: str,
    *,
    driver_memory: str = "4g",
    executor_memory: str = "4g",
    shuffle_partitions: int = 8,
    jars: str = "",
    local_dir: Path | None = None,
    app_name: str = "fedcredit-ingest",
    extra_conf: dict[str, str] | None = None,
) -> SparkSession:
    """A session on ``master``; Python workers run this interpreter (same packages)."""
    if master.startswith("local"):
        # Nothing outside this machine needs to reach a local driver: listen on loopback only.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        conf_local = {"spark.driver.bindAddress": "127.0.0.1", "spark.driver.host": "127.0.0.1"}
    else:
        conf_local = {}
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.master(master).appName(app_name)
    conf = {**_BASE_CONF, **conf_local}
    conf.update(
        {
            "spark.driver.memory": driver_memory,
            "spark.executor.memory": executor_memory,
            "spark.sql.shuffle.partitions": str(shuffle_partitions),
            "spark.pyspark.python": sys.executable,
        }
    )
    if jars:
        conf["spark.jars"] = jars
    if local_dir is not None:  # shuffle and spill files
        conf["spark.local.dir"] = str(local_dir)
    conf.update(extra_conf or {})
    for key, value in conf.items():
        builder = builder.config(key, value)
    previous = signal.getsignal(signal.SIGINT)
    session = builder.getOrCreate()
    # PySpark installs a SIGINT handler that cancels jobs through the context; it must not
    # outlive the context (stop_spark restores this one).
    _previous_sigint[id(session)] = previous
    session.sparkContext.setLogLevel("ERROR")
    return session


_previous_sigint: dict[int, object] = {}


def stop_spark(session: SparkSession) -> None:
    """Stop the session *and* its JVM (PySpark keeps the JVM until the interpreter exits),
    and give SIGINT back to whoever had it before."""
    from pyspark import SparkContext

    previous = _previous_sigint.pop(id(session), None)
    session.stop()
    gateway = SparkContext._gateway
    if gateway is not None:
        process = getattr(gateway, "proc", None)
        workers = descendants(process.pid) if process is not None else []
        gateway.shutdown()
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except Exception:  # a JVM that ignores SIGTERM
                process.kill()
        _reap(workers)  # Spark's Python workers outlive the JVM by a moment otherwise
        SparkContext._gateway = None
        SparkContext._jvm = None
    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, previous)  # type: ignore[arg-type]


def descendants(pid: int) -> list[int]:
    """A process's descendants (the JVM's Python workers), recursively; [] off Linux."""
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                out.append(int(child))
                out.extend(descendants(int(child)))
    except OSError:  # not Linux, or already gone
        pass
    return out


def _reap(pids: list[int], timeout_s: float = 10.0) -> None:
    """Wait for ``pids`` to exit (they are not our children); SIGKILL what is left."""
    deadline = time.monotonic() + timeout_s
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if Path(f"/proc/{p}").exists()]
        if alive:
            time.sleep(0.05)
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@contextmanager
def interruptible(session: SparkSession) -> Iterator[None]:
    """Ctrl-C cancels the running Spark jobs and surfaces as KeyboardInterrupt.

    PySpark's own handler raises KeyboardInterrupt wherever the main thread is, often inside a
    py4j call, which then reports a Py4JError instead: the interrupt would look like a crash.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    interrupted = threading.Event()

    def on_sigint(signum: int, frame: object) -> None:
        if not interrupted.is_set():
            interrupted.set()
            threading.Thread(target=_cancel, args=(session,), daemon=True).start()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    except KeyboardInterrupt:
        raise
    except Exception:
        if interrupted.is_set():
            raise KeyboardInterrupt from None
        raise
    finally:
        signal.signal(signal.SIGINT, previous)


def _cancel(session: SparkSession) -> None:
    try:
        session.sparkContext.cancelAllJobs()
    except Exception:  # the context may be going away: the interrupt wins anyway
        pass


@contextmanager
def stage_progress(
    session: SparkSession, report: Callable[[int, int], None], interval_s: float = 0.5
) -> Iterator[None]:
    """Call ``report(done_tasks, total_tasks)`` for the active stages while the block runs."""
    tracker = session.sparkContext.statusTracker()
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(interval_s):
            done = total = 0
            for stage_id in tracker.getActiveStageIds():
                info = tracker.getStageInfo(stage_id)
                if info is not None:
                    done += info.numCompletedTasks
                    total += info.numTasks
            if total:
                report(done, total)

    thread = threading.Thread(target=poll, name="spark-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
