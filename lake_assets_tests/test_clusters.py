"""`lake generate` + `lake run` on real Spark clusters, as an operator would point the CLI at one.

* a Spark standalone cluster: a master and two workers (pyspark's own ``bin/spark-class``);
* a Spark Connect server (``bin/spark-submit --class ...SparkConnectServer``).

Everything binds to 127.0.0.1 and writes into the test's tmp dir. The CLI runs in a
subprocess: a JVM holds one SparkContext and this test run's own session is local[2].
The gold table is read back with pyarrow, independently of Spark.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

#: The CLI next to this interpreter (the venv's bin/), else on PATH.
LAKE = Path(sys.executable).parent / "lake"
if not LAKE.exists() and shutil.which("lake"):
    LAKE = Path(shutil.which("lake"))
START = dt.date(2024, 3, 1)
DAYS = 2
RECORDS_PER_DAY = 300
WAIT_CLUSTER_S = 90  # daemons up / workers registered / port open
CLI_TIMEOUT_S = 240  # one `lake` command
#: Every JVM of these tests (daemons, driver, executors, Connect server): C1 only and a serial GC.
#: Short jobs on 2 shared cores spend most of their CPU in C2 compilation and parallel GC threads;
#: this halves `lake run` under load and changes nothing the project does.
JVM_OPTS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


def _spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def _require_tools() -> None:
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        pytest.skip("no Java runtime")
    if not LAKE.exists():
        pytest.skip(f"{LAKE} not installed (run scripts/bootstrap)")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"<{path}: {exc}>"
    return "\n".join(text[-lines:])


class Daemon:
    """A Spark daemon in its own process group, its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path, logs: Path):
        self.name = name
        self.log = logs / f"{name}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def describe(self, lines: int = 40) -> str:
        state = "running" if self.alive() else f"exited with {self.proc.returncode}"
        return f"--- {self.name} (pid {self.pid}, {state}), tail of {self.log}:\n{_tail(self.log, lines)}"

    def stop(self) -> None:
        """SIGTERM the group (a worker stops its executors), then SIGKILL what is left."""
        for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue
            # The leader is gone; clear any child still in its group (executor JVMs).
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            break


class Cluster:
    """Daemons started by one test, their env and logs; everything stopped at teardown."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.logs = tmp / "logs"
        self.logs.mkdir()
        self.daemons: list[Daemon] = []
        self.spark_home = _spark_home()
        self.env = self._base_env()

    def _base_env(self) -> dict[str, str]:
        """Inherited env minus any Spark/lake setting of this test run, plus tmp dirs for every write."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SPARK_", "PYSPARK_", "LAKE_", "DAGSTER_"))}
        scratch = self.tmp / "scratch"
        conf_dir = self.tmp / "conf"  # empty: no spark-defaults.conf / spark-env.sh from anywhere
        for d in (scratch, conf_dir, self.tmp / "pids"):
            d.mkdir(exist_ok=True)
        env.update({
            "SPARK_HOME": str(self.spark_home),
            "SPARK_CONF_DIR": str(conf_dir),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_LOCAL_DIRS": str(scratch),
            "SPARK_LOG_DIR": str(self.logs),
            "SPARK_PID_DIR": str(self.tmp / "pids"),
            "SPARK_NO_DAEMONIZE": "1",
            "SPARK_DAEMON_MEMORY": "512m",
            "SPARK_DAEMON_JAVA_OPTS": JVM_OPTS,
            # No REST submission server: it would take the fixed port 6066.
            "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
            # Executors (and a Connect server's Python workers) run the venv's Python.
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
            "PYTHONUNBUFFERED": "1",
            "DAGSTER_DISABLE_TELEMETRY": "1",
        })
        return env

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Daemon:
        d = Daemon(name, argv, env or self.env, self.tmp, self.logs)
        self.daemons.append(d)
        return d

    def report(self, lines: int = 40) -> str:
        return "\n".join(d.describe(lines) for d in self.daemons)

    def wait_for(self, what: str, probe, timeout: float = WAIT_CLUSTER_S, interval: float = 0.5):
        """Poll ``probe()`` until it returns something truthy; fail with the daemons' logs."""
        deadline = time.monotonic() + timeout
        last_error = None
        while time.monotonic() < deadline:
            dead = [d for d in self.daemons if not d.alive()]
            if dead:
                pytest.fail(f"{dead[0].name} died while waiting for {what}\n{self.report()}", pytrace=False)
            try:
                found = probe()
            except Exception as exc:  # noqa: BLE001 - not up yet
                last_error, found = exc, None
            if found:
                return found
            time.sleep(interval)
        pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error!r})\n"
                    f"{self.report()}", pytrace=False)

    def stop(self) -> None:
        for d in reversed(self.daemons):
            d.stop()

    # -- the CLI under test ------------------------------------------------
    def lake(self, env: dict[str, str], *args: str, timeout: float = CLI_TIMEOUT_S) -> str:
        """Run ``lake <args>`` in its own process group; fail with its output and the daemons' logs."""
        t0 = time.monotonic()
        proc = subprocess.Popen([str(LAKE), *args], env=env, cwd=self.tmp, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        if timed_out:
            os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its driver JVM
            out, err = proc.communicate()
            pytest.fail(f"`lake {' '.join(args)}` timed out after {timeout:.0f}s\n--- stdout:\n{out[-4000:]}\n"
                        f"--- stderr:\n{err[-6000:]}\n{self.report()}", pytrace=False)
        took = time.monotonic() - t0
        print(f"`lake {' '.join(args)}`: exit {proc.returncode} in {took:.1f}s")
        if proc.returncode != 0:
            pytest.fail(f"`lake {' '.join(args)}` exited {proc.returncode} after {took:.1f}s\n"
                        f"--- stdout:\n{out[-6000:]}\n--- stderr:\n{err[-8000:]}\n{self.report()}",
                        pytrace=False)
        return out + err

    def lake_env(self, **extra: str) -> dict[str, str]:
        env = dict(self.env)
        env.update({
            "LAKE_ROOT": str(self.tmp / "lake"),
            "DAGSTER_HOME": str(self.tmp / "dagster_home"),
            # Subprocess Spark settings (the parent's conftest ones are not inherited).
            "SPARK_SHUFFLE_PARTITIONS": "2",
            "SPARK_DRIVER_MEMORY": "1g",
            "SPARK_CONF_spark__sql__warehouse__dir": str(self.tmp / "warehouse"),
            "SPARK_CONF_spark__local__dir": str(self.tmp / "scratch"),
            "SPARK_CONF_spark__driver__extraJavaOptions": JVM_OPTS,
            "SPARK_CONF_spark__executor__extraJavaOptions": JVM_OPTS,
        })
        env.update(extra)
        return env

    def generate(self, env: dict[str, str]) -> None:
        """Raw files into the lake: no Spark, so it runs while the daemons start."""
        self.lake(env, "generate", "logs", "--days", str(DAYS), "--records-per-day", str(RECORDS_PER_DAY),
                  "--start", START.isoformat(), timeout=90)
        assert list((self.tmp / "lake" / "raw").rglob("*.*")), "generate wrote no raw files"

    def run(self, env: dict[str, str]) -> str:
        out = self.lake(env, "run")
        assert "done in" in out, out[-4000:]
        return out


@pytest.fixture
def cluster(tmp_path):
    _require_tools()
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.stop()


def _http_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def _listening(pid_tree: set[int]) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN owned by these processes, from ``ss -ltnp``."""
    out = subprocess.run(["ss", "-H", "-ltnp"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 6 or not any(f"pid={p}," in fields[5] for p in pid_tree):
            continue
        addr, _, port = fields[3].rpartition(":")
        found.append((addr.strip("[]"), int(port)))
    return found


def _assert_loopback_only(daemon: Daemon, must_include: int | None = None) -> None:
    """Every TCP port the daemon's JVM listens on is bound to 127.0.0.1 (not 0.0.0.0 / ::)."""
    if not shutil.which("ss"):
        pytest.skip("no `ss` to inspect listening sockets")
    sockets = _listening({daemon.pid})
    if must_include is not None:
        assert must_include in {p for _, p in sockets}, f"{daemon.name} is not listening on {must_include}: {sockets}"
    public = [(a, p) for a, p in sockets if a not in ("127.0.0.1", "::ffff:127.0.0.1", "::1")]
    assert not public, f"{daemon.name} listens beyond loopback: {public} (all: {sockets})"


def _assert_gold(read_parquet, lake: Path) -> dict[str, int]:
    """analytics/daily_activity, read file by file with pyarrow (the shared reader): rows and requests for
    each generated date."""
    from lake_assets.lake import LakeStorage

    root = lake / "analytics" / "daily_activity"
    files = sorted(root.rglob("*.parquet"))
    assert files, f"no gold files under {root}"
    requests: dict[str, int] = {}
    rows: dict[str, int] = {}
    table = read_parquet(LakeStorage(str(lake)), "analytics/daily_activity")
    for r in table.select(["date", "requests"]).to_pylist():
        key = r["date"].isoformat()
        rows[key] = rows.get(key, 0) + 1
        requests[key] = requests.get(key, 0) + (r["requests"] or 0)
    expected = [(START + dt.timedelta(days=i)).isoformat() for i in range(DAYS)]
    for day in expected:
        assert rows.get(day, 0) > 0, f"no gold rows for {day}: rows per date {rows}"
        assert requests[day] > 0, f"no requests for {day}: {requests}"
    # Requests are deduplicated access records: never more than were generated.
    assert 0 < sum(requests[d] for d in expected) <= DAYS * RECORDS_PER_DAY, requests
    return requests


# -- Spark standalone ------------------------------------------------------
def test_lake_run_on_a_standalone_cluster(cluster, read_parquet):
    spark_class = str(cluster.spark_home / "bin" / "spark-class")
    port, ui = _free_port(), _free_port()
    master_url = f"spark://127.0.0.1:{port}"
    cluster.start("master", [spark_class, "org.apache.spark.deploy.master.Master",
                             "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui)])
    app_name = f"lake_assets-standalone-{uuid.uuid4().hex[:8]}"
    env = cluster.lake_env(
        SPARK_MASTER=master_url,
        SPARK_APP_NAME=app_name,
        SPARK_CONF_spark__executor__memory="512m",
        SPARK_CONF_spark__executor__cores="1",
        SPARK_CONF_spark__cores__max="2",
    )
    cluster.generate(env)
    master_json = f"http://127.0.0.1:{ui}/json/"
    cluster.wait_for("the master's web UI", lambda: _http_json(master_json))
    work_dirs = []
    for i in (1, 2):
        work = cluster.tmp / f"worker{i}"
        work.mkdir()
        work_dirs.append(work)
        cluster.start(f"worker{i}", [spark_class, "org.apache.spark.deploy.worker.Worker",
                                     "--host", "127.0.0.1", "--cores", "1", "--memory", "1g",
                                     "--port", str(_free_port()), "--webui-port", str(_free_port()),
                                     "--work-dir", str(work), master_url],
                      env={**cluster.env, "SPARK_WORKER_DIR": str(work)})
    cluster.wait_for("2 alive workers", lambda: _http_json(master_json).get("aliveworkers") == 2)
    for d in cluster.daemons:
        _assert_loopback_only(d)

    cluster.run(env)
    _assert_gold(read_parquet, cluster.tmp / "lake")

    # The application really ran on this cluster, with executors on the workers that ran tasks.
    def app_listed():
        state = _http_json(master_json)
        apps = [a for a in state.get("completedapps", []) + state.get("activeapps", []) if a["name"] == app_name]
        return apps or None

    apps = cluster.wait_for(f"app {app_name} on the master", app_listed, timeout=30)
    app_id = apps[0]["id"]
    executor_logs = {w.name: sorted((w / app_id).glob("*/stderr")) for w in work_dirs}
    assert all(executor_logs.values()), (f"{app_id} did not get an executor on each worker: {executor_logs}\n"
                                         f"{cluster.report()}")
    tasks = {str(p): p.read_text(errors="replace").count("Finished task")
             for logs in executor_logs.values() for p in logs}
    print(f"{app_id}: tasks finished per executor {tasks}")
    assert sum(tasks.values()) > 0, (f"no executor of {app_id} finished a task:\n"
                                     + "\n".join(f"--- {p}:\n{_tail(Path(p))}" for p in tasks))


# -- Spark Connect ---------------------------------------------------------
def test_lake_run_on_a_spark_connect_server(cluster, read_parquet):
    port = _free_port()
    server = cluster.start("connect-server", [
        str(cluster.spark_home / "bin" / "spark-submit"),
        "--class", "org.apache.spark.sql.connect.service.SparkConnectServer",
        "--name", "lake-connect-test",
        "--master", "local[2]",
        "--driver-memory", "1g",
        "--driver-java-options", JVM_OPTS,
        "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
        "--conf", f"spark.connect.grpc.binding.port={port}",
        "--conf", "spark.sql.session.timeZone=UTC",
        "--conf", "spark.driver.host=127.0.0.1",
        "--conf", "spark.driver.bindAddress=127.0.0.1",
        "--conf", "spark.ui.enabled=false",
        "--conf", "spark.sql.shuffle.partitions=2",
        "--conf", f"spark.local.dir={cluster.tmp / 'scratch'}",
        "--conf", f"spark.sql.warehouse.dir={cluster.tmp / 'warehouse'}",
    ])

    def port_open():
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    env = cluster.lake_env(SPARK_REMOTE=f"sc://127.0.0.1:{port}")
    cluster.generate(env)
    cluster.wait_for(f"the Connect server on 127.0.0.1:{port}", port_open)
    _assert_loopback_only(server, must_include=port)

    before = server.log.stat().st_size
    cluster.run(env)
    _assert_gold(read_parquet, cluster.tmp / "lake")
    # The server did the work: its executor ran the run's tasks (and it is still up).
    assert server.alive(), server.describe()
    with open(server.log, "rb") as f:
        f.seek(before)
        during_run = f.read().decode(errors="replace")
    assert "Finished task" in during_run, f"the Connect server ran no task during `lake run`\n{server.describe()}"
