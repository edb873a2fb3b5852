"""Data-parallel stages: `training.devices` processes per node × `training.nodes` nodes.

The rule's own process is the *launcher*: it writes the step's arguments to a spec file next to the
stage's outputs, hosts the rendezvous (a `torch.distributed.TCPStore` on a free port of its host) and
starts the workers: N local processes (`python -m stagewise.distributed SPEC`, with the `STAGEWISE_RANK`
environment) or, inside a SLURM job, one `srun` step of `nodes × devices` tasks (ranks from
`SLURM_PROCID`/`SLURM_NTASKS`/`SLURM_LOCALID`; the store is on the batch host, the allocation's first
node). Each worker runs the whole step again (builds the same model from the same checkpoint or seeded
init) under `torch.distributed` (NCCL on GPUs, gloo on CPU); `trainer.fit` shards every global batch
across the ranks and sums the gradients; only rank 0 validates and writes the stage's files.

When a worker fails the launcher stops the others at once (srun: `--kill-on-bad-exit`) and raises an
error naming the rank and its last message.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from datetime import timedelta
from importlib import import_module
from pathlib import Path

import torch

from .errors import StagewiseError

LAUNCH_ENV = "STAGEWISE_LAUNCH"  # local | srun: how to start the workers (default: srun inside a SLURM job)
# Rendezvous and collectives: the other ranks wait in a broadcast while rank 0 validates, which may take long
# on big data; a dead peer is noticed at once anyway (the launcher, or srun --kill-on-bad-exit, stops them all).
TIMEOUT = timedelta(hours=2)
KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL of the surviving workers


@dataclass(frozen=True)
class Context:
    """This process's place in a data-parallel stage (rank 0 of 1 outside one)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


_context = Context()


def context() -> Context:
    return _context


def world_size(training: dict) -> int:
    """Processes of a stage: `devices` per node × `nodes`."""
    return int(training.get("devices", 1)) * int(training.get("nodes", 1))


def check(training: dict, where: str) -> list[str]:
    """Problems of a stage's `devices`/`nodes` found without running it (`stagewise check` reports them)."""
    world = world_size(training)
    if world > 1 and training["batch_size"] < world:
        return [
            f"{where}.batch_size: {training['batch_size']} is smaller than the stage's {world} processes "
            f"(devices {training.get('devices', 1)} × nodes {training.get('nodes', 1)}); batch_size is the global "
            "batch, split across the processes: raise it to at least the number of processes"
        ]
    return []


def shard(n: int, rank: int, world: int) -> slice:
    """Rank `rank`'s rows of a global batch of `n` rows: contiguous, sizes differing by at most one, lower ranks
    first."""
    size, extra = divmod(n, world)
    start = rank * size + min(rank, extra)
    return slice(start, start + size + (rank < extra))


# --- inside a worker ---------------------------------------------------------------------------


def device(name: str) -> torch.device:
    """The worker's device: `cuda:<local rank>` (modulo the visible GPUs) or the CPU."""
    from .training import pick_device

    chosen = pick_device(name)
    if chosen.type != "cuda":
        return chosen
    index = _context.local_rank % torch.cuda.device_count()
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def all_reduce_gradients(
    params: list[torch.nn.Parameter], masks: list[tuple[torch.nn.Parameter, torch.Tensor]] = ()
) -> None:
    """Sum every trainable parameter's gradient over the ranks (one flat all-reduce, parameter order), then apply the
    entry masks of partly new tensors. A gradient no rank has stays None (the optimizer skips it, as one process
    would)."""
    import torch.distributed as dist

    if _context.world == 1:
        return
    device_ = params[0].device
    flat = torch.cat(
        [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float() for p in params]
        + [torch.tensor([float(p.grad is not None) for p in params], device=device_)]
    )
    dist.all_reduce(flat)
    offset = 0
    present = flat[-len(params) :]
    for i, p in enumerate(params):
        chunk = flat[offset : offset + p.numel()].view_as(p).to(p.dtype)
        offset += p.numel()
        if present[i] > 0:
            if p.grad is None:
                p.grad = chunk.clone()
            else:
                p.grad.copy_(chunk)
    with torch.no_grad():
        for p, mask in masks:
            if p.grad is not None:
                p.grad.mul_(mask)


def broadcast_state(model: torch.nn.Module, buffers_only: bool = False) -> None:
    """Rank 0's parameters and buffers on every rank (at the start: they are built alike, this makes sure), or its
    buffers only (after each epoch: trainable BatchNorm's running statistics are rank 0's, as torch DDP keeps them)."""
    if _context.world == 1:
        return
    import torch.distributed as dist

    with torch.no_grad():
        for tensor in model.buffers() if buffers_only else model.state_dict().values():
            dist.broadcast(tensor, 0)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` summed over the ranks (in place)."""
    if _context.world > 1:
        import torch.distributed as dist

        dist.all_reduce(tensor)
    return tensor


def broadcast_flag(value: bool, device_: torch.device) -> bool:
    """Rank 0's `value` on every rank."""
    if _context.world == 1:
        return value
    import torch.distributed as dist

    flag = torch.tensor([1.0 if value else 0.0], device=device_)
    dist.broadcast(flag, 0)
    return bool(flag.item())


def gather(obj: object) -> list:
    """Every rank's `obj`, in rank order (on every rank)."""
    if _context.world == 1:
        return [obj]
    import torch.distributed as dist

    out: list = [None] * _context.world
    dist.all_gather_object(out, obj)
    return out


def digest(tensors: dict[str, torch.Tensor], names: list[str] | None = None) -> str:
    """sha256 of the named tensors' bytes (all, sorted by name, when `names` is None)."""
    h = hashlib.sha256()
    for name in sorted(tensors if names is None else names):
        t = tensors[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _worker(spec_path: str) -> int:
    """A worker's main: join the process group, run the step, report a failure with the rank."""
    global _context
    spec = json.loads(Path(spec_path).read_text())
    env = os.environ
    if "STAGEWISE_RANK" in env:
        rank, world, local = int(env["STAGEWISE_RANK"]), int(env["STAGEWISE_WORLD"]), int(env["STAGEWISE_LOCAL_RANK"])
    else:
        rank, world, local = int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0))
    if world != spec["world"]:
        print(f"stagewise error: rank {rank}: {world} processes started, the stage needs {spec['world']}", flush=True)
        return 1
    _context = Context(rank, world, local)
    torch.set_num_threads(spec["threads"])
    try:
        import torch.distributed as dist

        store = dist.TCPStore(spec["host"], spec["port"], world, is_master=False, timeout=TIMEOUT)
        dev = device(spec["device"])
        dist.init_process_group(
            "nccl" if dev.type == "cuda" else "gloo", store=store, rank=rank, world_size=world, timeout=TIMEOUT
        )
        print(f"rank {rank} of {world} on {socket.gethostname()}: {dev}, {spec['threads']} threads", flush=True)
        module, _, name = spec["step"].partition(":")
        getattr(import_module(module), name)(spec["inputs"], spec["outputs"], spec["params"])
        dist.barrier()
        dist.destroy_process_group()
    except StagewiseError as error:
        print(f"stagewise error: rank {rank}: {error}", flush=True)
        return 1
    except Exception as error:
        traceback.print_exc(file=sys.stdout)
        print(f"stagewise error: rank {rank}: unexpected {type(error).__name__}: {error}", flush=True)
        return 1
    return 0


# --- the launcher (the rule's process) -----------------------------------------------------------


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


if (
    __name__ == "__main__"
):  # run as `python -m stagewise.distributed SPEC`: use the package's module, whose context the step reads
    from stagewise import distributed as _package_module

    sys.exit(_package_module._worker(sys.argv[1]))
