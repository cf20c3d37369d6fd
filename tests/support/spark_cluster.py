"""A Spark standalone master and one worker on loopback, from the scripts pyspark ships."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyspark


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spark_class() -> Path:
    return Path(pyspark.__file__).parent / "bin" / "spark-class"


@contextmanager
def standalone_cluster(work_dir: Path, cores: int = 2, memory: str = "2g",
                       timeout_s: float = 90.0) -> Iterator[str]:
    """Yield the master URL once a worker has registered; stop both afterwards."""
    port, ui_port = _free_port(), _free_port()
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_NO_DAEMONIZE": "1",
           "SPARK_LOG_DIR": str(work_dir / "logs"), "SPARK_WORKER_DIR": str(work_dir / "work")}
    logs = work_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    master_url = f"spark://127.0.0.1:{port}"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with (logs / "master.log").open("wb") as out:
            processes.append(subprocess.Popen(
                [str(_spark_class()), "org.apache.spark.deploy.master.Master",
                 "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui_port)],
                env=env, stdout=out, stderr=subprocess.STDOUT))
        with (logs / "worker.log").open("wb") as out:
            processes.append(subprocess.Popen(
                [str(_spark_class()), "org.apache.spark.deploy.worker.Worker", master_url,
                 "--host", "127.0.0.1", "--cores", str(cores), "--memory", memory,
                 "--webui-port", str(_free_port()), "--work-dir", str(work_dir / "work")],
                env=env, stdout=out, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + timeout_s
        while True:
            for process in processes:
                if process.poll() is not None:
                    raise RuntimeError(f"a Spark daemon exited; see {logs}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=2) as r:
                    state = json.load(r)
                if any(w.get("state") == "ALIVE" for w in state.get("workers", [])):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"no Spark worker registered in {timeout_s:.0f} s; see {logs}")
            time.sleep(0.5)
        yield master_url
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
