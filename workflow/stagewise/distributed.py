"""Inside a data-parallel stage (`training.devices` processes per node × `training.nodes` nodes): this process's rank,
its device, and the collective operations `trainer.fit` uses.

`launcher.launch` (the rule's own process) starts the workers; each one runs `python -m stagewise.distributed SPEC`
(`_worker` here): it joins the process group (NCCL on GPUs, gloo on CPU) and runs the whole step again (builds the
same model from the same checkpoint or seeded init); `trainer.fit` shards every global batch across the ranks and
sums the gradients; only rank 0 validates and writes the stage's files.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import traceback
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

import torch

from .errors import StagewiseError
from .launcher import TIMEOUT, world_size


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


def pick_device(name: str) -> torch.device:
    """`auto` is CUDA when available, else CPU."""
    if name == "cuda" and not torch.cuda.is_available():
        raise StagewiseError("training.device: cuda requested but torch sees no GPU; use device: auto or cpu")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def device(name: str) -> torch.device:
    """The worker's device: `cuda:<local rank>` (modulo the visible GPUs) or the CPU."""
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


if __name__ == "__main__":
    # run as `python -m stagewise.distributed SPEC`: use the package's module, whose context the step reads
    from stagewise import distributed as _package_module

    sys.exit(_package_module._worker(sys.argv[1]))
