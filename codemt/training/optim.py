"""The optimiser of a run (`build_optimizer`): AdamW, or Adafactor as T5 trains with it,
without a host sync per weight.

Adafactor (Shazeer and Stern, 2018) keeps, for every matrix, running means of the squared
gradients over its rows and over its columns instead of one per entry, has no first
moment, clips each update to an RMS of at most `clip_threshold`, and scales it by the RMS
of the weight it changes, so that every weight moves relative to its own size. That last
part is what keeps T5's mixed initial scales (unit embeddings, attention weights of std
~0.01) in balance (docs/default-model.md, "Why Adafactor").

The arithmetic is that of `transformers.optimization.Adafactor(scale_parameter=True,
relative_step=False, warmup_init=False)` with the learning rate given by the schedule;
its state has the same entries, so a checkpoint of either resumes with the other. The
difference is where the weight's scale lives: there it is compared with `eps` on the host
(`max(eps, rms)`), which waits for the GPU once per weight and step; here it stays a device
tensor, and the step queues its work without waiting.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from codemt.model import POINTER_PARTS
from codemt.training.config import TrainSettings

# What transformers' Adafactor must be set to for this arithmetic.
_TRANSFORMERS_SETTINGS = {
    "beta1": None,
    "scale_parameter": True,
    "relative_step": False,
    "warmup_init": False,
}


def _rms(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.norm(2) / math.sqrt(tensor.numel())


class Adafactor(torch.optim.Optimizer):
    """Adafactor with a given learning rate, updates relative to each weight's RMS.

    Args:
        params: the parameters or parameter groups (groups may set `lr`, `weight_decay`).
        lr: the learning rate, the size of an update relative to its weight's RMS.
        eps: (added to squared gradients, the smallest weight RMS an update is scaled by).
        clip_threshold: the largest RMS of an update before scaling.
        decay_rate: the second moments' decay is 1 - step ** decay_rate.
        weight_decay: decoupled, relative to the learning rate as the update is.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float,
        eps: tuple[float, float] = (1e-30, 1e-3),
        clip_threshold: float = 1.0,
        decay_rate: float = -0.8,
        weight_decay: float = 0.0,
    ):
        if lr <= 0:
            raise ValueError(f"Adafactor needs a positive learning rate, got {lr}")
        defaults = {
            "lr": lr,
            "eps": eps,
            "clip_threshold": clip_threshold,
            "decay_rate": decay_rate,
            "weight_decay": weight_decay,
            # transformers' settings of this arithmetic, so that its Adafactor can load our
            # state (a loaded state's groups replace the optimiser's own).
            **_TRANSFORMERS_SETTINGS,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            other = {
                k: group[k]
                for k, v in _TRANSFORMERS_SETTINGS.items()
                if k in group and group[k] != v
            }
            if other:
                raise ValueError(
                    f"a state of transformers' Adafactor with settings this one does not "
                    f"implement ({other}); resume it with transformers' Adafactor"
                )
            eps_grad, eps_scale = group["eps"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                if param.grad.is_sparse:
                    raise RuntimeError("Adafactor does not support sparse gradients")
                self._update(param, group, eps_grad, eps_scale)
        return loss

    def _update(self, param: torch.Tensor, group: dict, eps_grad: float, eps_scale: float):
        grad = param.grad.float()
        weight = param.float() if param.dtype in (torch.float16, torch.bfloat16) else param
        state = self.state[param]
        factored = grad.dim() >= 2
        if not state:
            state["step"] = 0
            if factored:
                state["exp_avg_sq_row"] = grad.new_zeros(grad.shape[:-1])
                state["exp_avg_sq_col"] = grad.new_zeros(grad.shape[:-2] + grad.shape[-1:])
            else:
                state["exp_avg_sq"] = torch.zeros_like(grad)
        else:  # a loaded state comes in the parameter's dtype: keep the moments in float32
            for key in ("exp_avg_sq_row", "exp_avg_sq_col", "exp_avg_sq"):
                if key in state:
                    state[key] = state[key].to(grad)
        state["step"] += 1
        state["RMS"] = _rms(weight)
        # The step size relative to the weight's scale, kept on the device.
        lr = state["RMS"].clamp(min=eps_scale) * group["lr"]
        decay = 1.0 - math.pow(state["step"], group["decay_rate"])

        squared = grad.square().add_(eps_grad)
        if factored:
            row, col = state["exp_avg_sq_row"], state["exp_avg_sq_col"]
            row.mul_(decay).add_(squared.mean(dim=-1), alpha=1.0 - decay)
            col.mul_(decay).add_(squared.mean(dim=-2), alpha=1.0 - decay)
            # The rank-1 estimate of the second moments: outer(row, col) / mean(row).
            row_factor = (row / row.mean(dim=-1, keepdim=True)).rsqrt_().unsqueeze(-1)
            update = row_factor * col.unsqueeze(-2).rsqrt() * grad
        else:
            second = state["exp_avg_sq"]
            second.mul_(decay).add_(squared, alpha=1.0 - decay)
            update = second.rsqrt() * grad
        update.div_((_rms(update) / group["clip_threshold"]).clamp_(min=1.0))
        update.mul_(lr)
        if group["weight_decay"] != 0:
            weight.sub_(weight * (group["weight_decay"] * lr))
        weight.sub_(update)
        if weight is not param:
            param.copy_(weight)


def build_optimizer(
    model: torch.nn.Module, settings: TrainSettings, fused: bool
) -> torch.optim.Optimizer:
    """The optimiser `settings` ask for, over `model`'s parameters in groups: weight
    matrices decayed, layer-norm scales and biases not; with a `copy_lr_scale` other than
    1, a copy mechanism's parameters in groups of their own at `lr * copy_lr_scale` (the
    scheduler scales every group's lr). `fused`: AdamW's fused kernels (CUDA)."""
    # At copy_lr_scale 1 the copy mechanism shares the others' groups, so that checkpoints
    # from before the setting still resume (their optimiser state has that many groups).
    own = settings.copy_lr_scale != 1
    parts = [(own and n.startswith(POINTER_PARTS), p) for n, p in model.named_parameters()]
    groups = []
    for pointer, lr in ((False, settings.lr), (True, settings.lr * settings.copy_lr_scale)):
        for decayed in (True, False):
            chosen = [p for mine, p in parts if mine == pointer and (p.ndim >= 2) == decayed]
            if chosen:
                decay = settings.weight_decay if decayed else 0.0
                groups.append({"params": chosen, "weight_decay": decay, "lr": lr})
    if settings.optimizer == "adafactor":
        # The update is relative to each parameter's RMS.
        return Adafactor(groups, lr=settings.lr)
    return torch.optim.AdamW(
        groups, lr=settings.lr, betas=settings.betas, eps=settings.eps, fused=fused
    )
