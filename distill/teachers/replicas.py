"""`hf:MODEL` with `gpus=N` (`distill generate --teacher hf:... --gpus N`): data parallel, one replica of
the model per GPU, each request sent to the replica with the fewest requests in flight.

Every replica batches its own requests and generates in its own worker thread (PyTorch releases the
GIL while kernels run, so the GPUs work at once). The teacher's name is the model's, whatever the
number of replicas: a run resumed with another `--gpus` reuses the journal.
"""
from __future__ import annotations

from distill.teachers.base import Completion, Request, TeacherError
from distill.teachers.local import HFTeacher


def replica_devices(gpus: int, device: str | None) -> list[str]:
    """cuda:0 .. cuda:N-1, or N replicas on one non-CUDA device (`device="cpu"`: tests, CPU machines)."""
    if gpus < 1:
        raise TeacherError(f"--gpus must be at least 1, got {gpus}")
    if device is not None and not device.startswith("cuda"):
        return [device] * gpus
    if device not in (None, "cuda"):
        raise TeacherError(f"--gpus {gpus} places one replica on each GPU; --device {device} would put them all on one")
    import torch

    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if have < gpus:
        raise TeacherError(f"--gpus {gpus}: {have} CUDA device(s) here (--device cpu puts the replicas on the CPU)")
    return [f"cuda:{i}" for i in range(gpus)]


class HFReplicas:
    """The `hf:` backend: `HFTeacher`'s options, plus `gpus` replicas (None: one, on `device`)."""

    def __init__(self, model: str, *, gpus: int | None = None, device: str | None = None, dtype: str = "auto",
                 batch_size: int = 8, trust_remote_code: bool = False):
        places = replica_devices(gpus, device) if gpus else [device]
        self.replicas = [HFTeacher(model, device=d, dtype=dtype, batch_size=batch_size,
                                   trust_remote_code=trust_remote_code) for d in places]
        self.name = self.replicas[0].name
        self.in_flight = [0] * len(self.replicas)
        self.served = [0] * len(self.replicas)  # requests answered by each replica

    async def complete(self, request: Request) -> list[Completion]:
        i = min(range(len(self.replicas)), key=lambda k: (self.in_flight[k], self.served[k]))
        self.in_flight[i] += 1
        try:
            return await self.replicas[i].complete(request)
        finally:
            self.in_flight[i] -= 1
            self.served[i] += 1

    async def aclose(self) -> None:
        for replica in self.replicas:
            await replica.aclose()
