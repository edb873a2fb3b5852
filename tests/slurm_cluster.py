"""A real two-node SLURM cluster on this one machine, with job accounting, for end-to-end tests of profiles/slurm.

Starts munged (as the munge user), MariaDB + slurmdbd, slurmctld and one slurmd per node (``slurmd -N n1``,
``slurmd -N n2``, each on its own port of 127.0.0.1; Debian's SLURM is built with --enable-multiple-slurmd),
with partitions ``cpu`` (default) and ``gpu`` on both nodes. Each node declares the whole machine (its CPUs,
its memory less 1 GB, one fake GPU: a char device named in gres.conf), so the nodes share it and a job may
land on either (same filesystem); a job of ``--nodes=2`` gets both. Needs root and the packages from
``.ci/slurm-deps.sh``. The cluster is machine-wide: configs go to /etc/slurm, pid files to /run, and every
start wipes the SLURM state and the accounting database, so job ids restart at 1. Daemons are only ever
stopped through their pid files.

    cluster = start_cluster(tmp_path)          # 2-6 s; raises ClusterError with log tails
    profile = write_test_profile(tmp_path / "profile", cluster)
    ...  snakemake --profile <profile> ...
    cluster.stop()                             # cancels jobs, stops daemons, copies logs
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHIPPED_PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
HERE = Path(__file__).resolve().parent / "slurm"  # profile-overrides.yaml, *.conf.template
CLUSTER_NAME = "ci"
ETC, LOGS, FAKE_GPU = Path("/etc/slurm"), Path("/var/log/slurm"), Path("/dev/fakegpu0")
STATE, SPOOL = Path("/var/lib/slurm/slurmctld"), Path("/var/lib/slurm/slurmd")
DB_PASS = "stagewise-ci"
NODES = ("n1", "n2")  # one slurmd each, on the first free ports from SLURMD_PORT on
SLURMD_PORT = 6821  # above slurmctld's 6817, slurmd's default 6818 and slurmdbd's 6819
# (name, pid file, log file), in stop order; /run/slurmd.pid: a one-node cluster's (an older checkout's)
DAEMONS = [
    *(("slurmd", Path(f"/run/slurmd-{node}.pid"), LOGS / f"slurmd-{node}.log") for node in NODES),
    ("slurmd", Path("/run/slurmd.pid"), LOGS / "slurmd.log"),
    ("slurmctld", Path("/run/slurmctld.pid"), LOGS / "slurmctld.log"),
    ("slurmdbd", Path("/run/slurmdbd.pid"), LOGS / "slurmdbd.log"),
    ("mariadbd", Path("/run/mysqld/mysqld.pid"), LOGS / "mariadb.log"),
    ("munged", Path("/run/munge/munged.pid"), Path("/var/log/munge/munged.log")),
]
BINARIES = [
    "munged",
    "munge",
    "mariadbd",
    "mariadb",
    "slurmdbd",
    "slurmctld",
    "slurmd",
    "sbatch",
    "squeue",
    "sacct",
    "sacctmgr",
    "sinfo",
    "scancel",
]


class ClusterError(RuntimeError):
    """The test cluster did not come up (the message holds the relevant log tail)."""


def slurm_required() -> bool:
    """In CI (CI=1 or STAGEWISE_REQUIRE_SLURM=1) a missing cluster is a failure, not a skip."""
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("CI", "STAGEWISE_REQUIRE_SLURM"))


def cluster_unavailable_reason() -> str | None:
    """Why no test cluster can be started here, or None if it can."""
    if os.geteuid() != 0:
        return "the SLURM test cluster needs root (it starts system daemons)"
    missing = [b for b in BINARIES if not shutil.which(b, path=os.environ.get("PATH", "") + ":/usr/sbin")]
    if missing:
        return f"SLURM test cluster: missing {', '.join(missing)} (run .ci/slurm-deps.sh)"
    return None


def skip_or_fail_if_unavailable() -> None:
    """For pytest fixtures: skip when no cluster can run here, but fail in CI."""
    import pytest

    if reason := cluster_unavailable_reason():
        (pytest.fail if slurm_required() else pytest.skip)(reason)


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}  # use /etc/slurm/slurm.conf
    env["PATH"] = env.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
    return subprocess.run(cmd, capture_output=True, text=True, check=check, env=env, timeout=60)


def _ok(*cmd: str) -> bool:
    return _run(*cmd, check=False).returncode == 0


def _alive(pid: int) -> bool:
    """Like kill -0, but a zombie whose threads have all exited counts as dead (PID 1 here may
    reap orphans late, and a zombie leader can still have threads that are shutting down)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
        return any(
            Path(f"/proc/{pid}/task/{t}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX" for t in tasks
        )
    except (OSError, IndexError):
        return False


def _pid(name: str, pid_file: Path) -> int | None:
    """The daemon's pid if its pid file names a live process of that name (not a reused pid)."""
    try:
        pid = int(pid_file.read_text().split()[0])
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError, IndexError):
        return None
    return pid if comm == name[:15] and _alive(pid) else None


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return f"--- last lines of {path} ---\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"--- {path}: {e} ---"


def _wait(ready: Callable[[], bool], what: str, log: Path, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > end:
            raise ClusterError(f"{what} not ready after {timeout:.0f} s\n{_tail(log)}")
        time.sleep(0.2)


def _pid_file(name: str) -> Path:
    return next(pid_file for daemon, pid_file, _ in DAEMONS if daemon == name)


def _cancel_jobs() -> None:
    """Cancel every job (slurmstepd would outlive slurmd) and wait up to 15 s for them to end."""
    if not _pid("slurmctld", _pid_file("slurmctld")):
        return
    end = time.monotonic() + 15
    while (jobs := _run("squeue", "-h", "-o", "%i", check=False).stdout.split()) and time.monotonic() < end:
        _run("scancel", "--quiet", *jobs, check=False)
        time.sleep(0.3)


def _stop_daemons(timeout: float = 20) -> None:
    for name, pid_file, _ in DAEMONS:
        pid = _pid(name, pid_file)
        if pid is None:
            continue
        os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < end:
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


@dataclass
class Cluster:
    workdir: Path  # receives logs/ (copies of the daemon logs) on stop()
    nodes: list[str]
    cpus: int  # CPUs of each node (the machine's)
    mem_mb: int  # RealMemory of each node
    startup_seconds: float = 0.0

    def stop(self) -> None:
        """Cancel all jobs, stop every daemon by its pid file, copy the logs into workdir/logs."""
        _cancel_jobs()
        _stop_daemons()
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        for _, _, log in DAEMONS:
            if log.exists():
                shutil.copy(log, self.workdir / "logs" / log.name)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_ports(count: int, start: int = SLURMD_PORT) -> list[int]:
    """The first `count` ports from `start` on that nobody listens on (a fixed port may be taken here)."""
    ports = []
    for port in range(start, start + 1000):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as slurmd does
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == count:
            return ports
    raise ClusterError(f"no {count} free ports from {start} on for slurmd")


def _configure(host: str, cpus: int, mem: int) -> None:
    for d in (STATE, SPOOL):  # fresh state: no jobs or node state from an earlier run
        shutil.rmtree(d, ignore_errors=True)
    for d in (STATE, LOGS, *(SPOOL / node for node in NODES)):
        d.mkdir(parents=True, exist_ok=True)
    for d in (STATE, LOGS):
        shutil.chown(d, "slurm", "slurm")
    for _, _, log in DAEMONS:
        if log.exists():
            log.write_text("")
    if not FAKE_GPU.is_char_device():  # the fake GPU: a char device like /dev/null
        FAKE_GPU.unlink(missing_ok=True)
        os.mknod(FAKE_GPU, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    nodes = ",".join(NODES)
    (ETC / "gres.conf").write_text(f"AutoDetect=off\nNodeName={nodes} Name=gpu File={FAKE_GPU}\n")
    node_lines = "\n".join(
        f"NodeName={node} NodeHostname={host} NodeAddr=127.0.0.1 Port={port} CPUs={cpus} RealMemory={mem} "
        "Gres=gpu:1 State=UNKNOWN"
        for node, port in zip(NODES, _free_ports(len(NODES)))
    )
    (ETC / "slurm.conf").write_text(
        (HERE / "slurm.conf.template")
        .read_text()
        .format(
            cluster=CLUSTER_NAME, host=host, node_lines=node_lines, nodes=nodes, state=STATE, spool=SPOOL, logs=LOGS
        )
    )
    dbd = ETC / "slurmdbd.conf"  # slurmdbd insists on owner slurm, mode 600
    dbd.write_text((HERE / "slurmdbd.conf.template").read_text().format(logs=LOGS, db_pass=DB_PASS))
    dbd.chmod(0o600)
    shutil.chown(dbd, "slurm", "slurm")


def start_cluster(workdir: Path | str, timeout: float = 60) -> Cluster:
    """Start a fresh cluster (stopping stale daemons first); return once both nodes are idle."""
    if reason := cluster_unavailable_reason():
        raise ClusterError(reason)
    t0 = time.monotonic()
    _cancel_jobs()
    _stop_daemons()
    host = socket.gethostname().split(".")[0]
    hw = dict(kv.split("=", 1) for kv in _run("slurmd", "-C").stdout.split() if "=" in kv)
    cluster = Cluster(Path(workdir), list(NODES), int(hw["CPUs"]), int(hw["RealMemory"]) - 1024)
    _configure(host, cluster.cpus, cluster.mem_mb)
    logs = {name: log for name, _, log in DAEMONS if name != "slurmd"}
    try:
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            _run("mungekey", "--create")
        shutil.chown(key, "munge", "munge")
        key.chmod(0o600)
        os.makedirs("/run/munge", exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        _run("runuser", "-u", "munge", "--", "munged")
        _wait(lambda: _ok("sh", "-c", "munge -n | unmunge"), "munged", logs["munged"], timeout)

        os.makedirs("/run/mysqld", exist_ok=True)
        shutil.chown("/run/mysqld", "mysql", "mysql")
        _run(
            "sh",
            "-c",
            f"mariadbd --user=mysql --bind-address=127.0.0.1 --pid-file={_pid_file('mariadbd')} "
            f"--innodb-buffer-pool-dump-at-shutdown=0 </dev/null >{logs['mariadbd']} 2>&1 &",
        )
        _wait(lambda: _ok("mariadb", "-e", "select 1"), "mariadbd", logs["mariadbd"], timeout)
        _run(
            "mariadb",
            "-e",
            "DROP DATABASE IF EXISTS slurm_acct_db; CREATE DATABASE slurm_acct_db; "
            f"CREATE OR REPLACE USER 'slurm'@'localhost' IDENTIFIED BY '{DB_PASS}'; "
            "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';",
        )

        _run("slurmdbd")
        _wait(lambda: _ok("sacctmgr", "-n", "list", "cluster"), "slurmdbd", logs["slurmdbd"], timeout)
        _run("sacctmgr", "-i", "add", "cluster", CLUSTER_NAME)

        _run("slurmctld")
        for node in NODES:
            _run("slurmd", "-N", node)

        def idle() -> bool:  # one line per node and partition
            lines = _run("sinfo", "-h", "-N", "-o", "%N %T", check=False).stdout.splitlines()
            return dict(line.split() for line in lines) == dict.fromkeys(NODES, "idle")

        try:
            _wait(idle, f"nodes {','.join(NODES)} (idle)", logs["slurmctld"], timeout)
        except ClusterError as e:
            raise ClusterError(
                f"{e}\n"
                + "\n".join(_tail(LOGS / f"slurmd-{node}.log") for node in NODES)
                + "\n"
                + _run("scontrol", "show", "node", check=False).stdout
            ) from None
    except subprocess.CalledProcessError as e:
        cluster.stop()
        raise ClusterError(f"{' '.join(e.cmd)} failed (rc {e.returncode}): {e.stderr}{e.stdout}") from None
    except ClusterError:
        cluster.stop()
        raise
    cluster.startup_seconds = time.monotonic() - t0
    return cluster


def write_test_profile(dest: Path | str, cluster: Cluster) -> Path:
    """Write <dest>/config.yaml: the shipped profiles/slurm plus tests/slurm/profile-overrides.yaml,
    with mem_mb and cpus_per_task capped to what the test node has. Returns the profile folder."""
    import yaml  # PyYAML comes with snakemake

    profile = yaml.safe_load(SHIPPED_PROFILE.read_text())
    profile.update(yaml.safe_load((HERE / "profile-overrides.yaml").read_text()))
    caps = {"mem_mb": cluster.mem_mb // 2, "cpus_per_task": cluster.cpus}
    for resources in [profile.get("default-resources", {}), *profile.get("set-resources", {}).values()]:
        for key, cap in caps.items():
            if isinstance(resources.get(key), int):
                resources[key] = min(resources[key], cap)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config.yaml").write_text(
        f"# generated from {SHIPPED_PROFILE} by {__file__}\n" + yaml.safe_dump(profile, sort_keys=False)
    )
    return dest
