"""Start a data-parallel stage's processes from the rule's own process, and stop them all when one fails.

The launcher writes the step's arguments to a spec file next to the stage's outputs, hosts the rendezvous (a
`torch.distributed.TCPStore` on a free port of its host) and starts the workers: N local processes (`python -m
stagewise.distributed SPEC`, with the `STAGEWISE_RANK` environment) or, inside a SLURM job, one `srun` step of
`nodes × devices` tasks (ranks from `SLURM_PROCID`/`SLURM_NTASKS`/`SLURM_LOCALID`; the store is on the batch host,
the allocation's first node). What the workers run is in `distributed`.

When a worker fails the launcher stops the others at once (srun: `--kill-on-bad-exit`) and raises an error naming
the rank and its last message.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from datetime import timedelta
from pathlib import Path

import torch

from .errors import StagewiseError

LAUNCH_ENV = "STAGEWISE_LAUNCH"  # local | srun: how to start the workers (default: srun inside a SLURM job)
# Rendezvous and collectives: the other ranks wait in a broadcast while rank 0 validates, which may take long
# on big data; a dead peer is noticed at once anyway (the launcher, or srun --kill-on-bad-exit, stops them all).
TIMEOUT = timedelta(hours=2)
KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL of the surviving workers


def world_size(training: dict) -> int:
    """Processes of a stage: `devices` per node × `nodes`."""
    return int(training.get("devices", 1)) * int(training.get("nodes", 1))


def _die_with_parent() -> None:
    """In a child: be killed when the launcher dies (no orphan keeps training after a cancelled job)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _mode(nodes: int) -> str:
    mode = os.environ.get(LAUNCH_ENV) or (
        "srun" if os.environ.get("SLURM_JOB_ID") and shutil.which("srun") else "local"
    )
    if mode not in ("local", "srun"):
        raise StagewiseError(f"{LAUNCH_ENV}={mode}: use local or srun")
    if mode == "local" and nodes > 1:
        raise StagewiseError(
            f"training.nodes: {nodes} needs SLURM (run with --profile slurm); on one machine use devices only"
        )
    return mode


def _pump(stream, prefix: str, tail: deque, lock: threading.Lock) -> None:
    for line in iter(stream.readline, ""):
        tail.append(line.rstrip("\n"))
        with lock:
            sys.stdout.write(prefix + line)
            sys.stdout.flush()


def _reason(code: int) -> str:
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


def launch(step: str, inputs: dict, outputs: dict, params: dict, where: str) -> None:
    """Run `step` ("module:function", called with inputs, outputs, params) on the stage's processes; return when every
    rank succeeded; else stop them all and raise an error naming the failed rank."""
    training = params["stage"]["training"]
    world, devices, nodes = world_size(training), int(training.get("devices", 1)), int(training.get("nodes", 1))
    mode = _mode(nodes)
    threads = max(1, torch.get_num_threads() // devices)  # the rule's threads are the node's: `devices ×` one process's
    from torch.distributed import TCPStore

    store = TCPStore(
        "127.0.0.1" if mode == "local" else "0.0.0.0",
        0,
        world + 1,
        is_master=True,
        timeout=TIMEOUT,
        wait_for_workers=False,
    )
    host = "127.0.0.1" if mode == "local" else socket.gethostname()
    folder = Path(outputs["stage"]).parent.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(".launch-*.json"):  # left by a killed run of this stage
        stale.unlink(missing_ok=True)
    spec_path = folder / f".launch-{os.getpid()}.json"
    spec_path.write_text(
        json.dumps(
            {
                "step": step,
                "inputs": inputs,
                "outputs": outputs,
                "params": params,
                "world": world,
                "threads": threads,
                "host": host,
                "port": store.port,
                "device": training["device"],
            }
        )
    )
    command = [sys.executable, "-m", "stagewise.distributed", str(spec_path)]
    print(
        f"{where}: {world} processes ({devices} per node × {nodes} node{'s' if nodes > 1 else ''}, {mode}), "
        f"{threads} thread{'s' if threads > 1 else ''} each; rendezvous {host}:{store.port}",
        flush=True,
    )
    lock = threading.Lock()
    try:
        if mode == "local":
            _run_local(command, world, threads, lock, where)
        else:
            _run_srun(command, world, devices, nodes, threads, lock, where)
    finally:
        spec_path.unlink(missing_ok=True)
        del store


def _run_local(command: list[str], world: int, threads: int, lock: threading.Lock, where: str) -> None:
    procs, tails, pumps = [], [], []
    for rank in range(world):
        env = {
            **os.environ,
            "STAGEWISE_RANK": str(rank),
            "STAGEWISE_WORLD": str(world),
            "STAGEWISE_LOCAL_RANK": str(rank),
            "OMP_NUM_THREADS": str(threads),
            "PYTHONUNBUFFERED": "1",
        }
        proc = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=_die_with_parent
        )
        tail: deque = deque(maxlen=40)
        pump = threading.Thread(target=_pump, args=(proc.stdout, f"[rank {rank}] ", tail, lock), daemon=True)
        pump.start()
        procs.append(proc)
        tails.append(tail)
        pumps.append(pump)
    failed: list[tuple[int, int]] = []
    try:
        while any(p.poll() is None for p in procs):
            failed = [(r, p.returncode) for r, p in enumerate(procs) if p.returncode not in (None, 0)]
            if failed:
                break
            time.sleep(0.1)
        failed = failed or [(r, p.returncode) for r, p in enumerate(procs) if p.returncode != 0]
    finally:
        _stop(procs)
        for pump in pumps:
            pump.join(timeout=5)
    if failed:
        rank, code = min(
            failed, key=lambda f: (f[1] >= 0, failed.index(f))
        )  # a killed rank first: the others followed it
        raise StagewiseError(
            f"{where}: rank {rank} of {world} failed ({_reason(code)}); the others were stopped. "
            + _last_words(tails[rank], rank)
        )


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    end = time.monotonic() + KILL_GRACE
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _last_words(tail, rank: int) -> str:
    lines = list(tail)
    said = [line.split("stagewise error: ", 1)[1] for line in lines if "stagewise error: " in line]
    if said:
        return said[-1].removeprefix(f"rank {rank}: ")
    return "Its last output: " + (" | ".join(lines[-5:]) or "(none)")


def _run_srun(
    command: list[str], world: int, devices: int, nodes: int, threads: int, lock: threading.Lock, where: str
) -> None:
    srun = [
        "srun",
        f"--nodes={nodes}",
        f"--ntasks={world}",
        f"--ntasks-per-node={devices}",
        f"--cpus-per-task={threads}",
        "--kill-on-bad-exit=1",
        "--label",
        "--unbuffered",
        *command,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    for var in ("STAGEWISE_RANK", "STAGEWISE_WORLD", "STAGEWISE_LOCAL_RANK"):
        env.pop(var, None)
    print("launching: " + " ".join(srun), flush=True)
    proc = subprocess.Popen(
        srun, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=_die_with_parent
    )
    tail: deque = deque(maxlen=200)
    pump = threading.Thread(target=_pump, args=(proc.stdout, "", tail, lock), daemon=True)
    pump.start()
    code = proc.wait()
    pump.join(timeout=5)
    if code != 0:
        lines = list(tail)
        said = [line for line in lines if "stagewise error: rank" in line]
        killed = [line for line in lines if line.startswith("srun: error:") and "task" in line]
        detail = (killed[:1] + said[:1]) or lines[-5:]
        raise StagewiseError(
            f"{where}: the srun step of {world} tasks failed ({_reason(code)}); the others were stopped. "
            + " | ".join(line.strip() for line in detail)
        )
