"""A short self-distillation of a pruned model on its calibration inputs, masks held fixed.

After pruning, the kept weights can make up for the removed ones. Without labels, the pruned
model (the student) is trained to reproduce the original model's (the teacher's) output
distribution on the calibration inputs: the loss is the KL divergence between the softened
softmax outputs (Hinton et al., 2015, "Distilling the Knowledge in a Neural Network"). Pruned
weights stay exactly zero: their gradients are masked and they are zeroed again after every
step, so a plan's masks describe the fine-tuned model too.
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from leanxai.compress.prune import PrunePlan
from leanxai.core import validate
from leanxai.core.errors import InputError, InputTypeError
from leanxai.core.models import logits_of

__all__ = ["finetune", "recalibrate_batchnorm"]

logger = logging.getLogger(__name__)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, inputs: torch.Tensor, batch_size: int = 128) -> int:
    """Re-estimate the running mean and variance of every BatchNorm of ``model`` on ``inputs``.

    In place: the statistics are reset and accumulated as a cumulative average over batches
    (``momentum=None``) in train mode, then each BatchNorm's momentum and the model's training
    flags are restored. Returns the number of BatchNorm layers recalibrated (0: nothing done).
    """
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not norms:
        return 0
    flags = {m: m.training for m in model.modules()}
    momenta = [m.momentum for m in norms]
    try:
        model.eval()
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        for start in range(0, inputs.shape[0], batch_size):
            model(inputs[start : start + batch_size])
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        for module, flag in flags.items():
            module.train(flag)
    return len(norms)


def finetune(
    model: nn.Module,
    teacher: nn.Module,
    inputs: torch.Tensor,
    plan: PrunePlan | None = None,
    *,
    steps: int = 200,
    lr: float = 1e-3,
    batch_size: int = 64,
    temperature: float = 2.0,
    seed: int = 0,
    recalibrate: bool = True,
) -> nn.Module:
    """Distil ``teacher`` into a copy of ``model`` on ``inputs``, keeping pruned weights at zero.

    Parameters
    ----------
    model : nn.Module
        The pruned student (from :func:`~leanxai.compress.apply_pruning`); left unchanged.
    teacher : nn.Module
        The original model, whose outputs are the targets; left unchanged.
    inputs : torch.Tensor
        ``(N, ...)`` calibration inputs (no labels needed).
    plan : PrunePlan, optional
        Its masks are held fixed: masked weights get no update and stay zero. Without a plan,
        every weight that is exactly zero in ``model`` is held at zero.
    steps : int, default 200
        Optimiser steps (Adam), each on a random batch of ``batch_size`` inputs.
    lr : float, default 1e-3
        Adam's learning rate, constant.
    batch_size : int, default 64
        Inputs per step.
    temperature : float, default 2.0
        Softmax temperature of the distillation loss (the loss is scaled by its square, as in
        Hinton et al., 2015).
    seed : int, default 0
        Seed of the batch order (a private generator; the global RNG is untouched).
    recalibrate : bool, default True
        First re-estimate the running statistics of every BatchNorm on ``inputs`` (pruning
        shifts the activations a BatchNorm normalises; without this a pruned CNN can fall to
        chance even at 50 % sparsity).

    Returns
    -------
    nn.Module
        The fine-tuned copy, in eval mode.

    Notes
    -----
    The copy's ``requires_grad`` flags are those of ``model``. During the distillation both
    models run in eval mode: BatchNorm statistics stay fixed (after the recalibration) and
    dropout is off. ``steps=0`` with ``recalibrate=True`` only recalibrates.
    """
    validate.instance("model", model, nn.Module)
    validate.instance("teacher", teacher, nn.Module)
    validate.tensor("inputs", inputs)
    if inputs.dim() < 2 or inputs.shape[0] == 0:
        raise InputError(f"inputs must be a non-empty (N, ...) tensor, got {tuple(inputs.shape)}")
    if plan is not None and not isinstance(plan, PrunePlan):
        raise InputTypeError(f"plan must be a PrunePlan or None, got {type(plan).__name__}")
    steps = validate.non_negative_int("steps", steps)
    batch_size = validate.positive_int("batch_size", batch_size)
    lr = validate.positive_float("lr", lr)
    temperature = validate.positive_float("temperature", temperature)
    flags = [p.requires_grad for p in model.parameters()]
    student = copy.deepcopy(model).eval()
    parameters = dict(student.named_parameters())
    if plan is not None:
        unknown = sorted(set(plan.masks) - set(parameters))
        if unknown:
            raise InputError(f"plan names parameters the model does not have: {unknown}")
        masks = {name: mask.to(parameters[name].device) for name, mask in plan.masks.items()}
    else:
        masks = {name: p.detach() != 0 for name, p in parameters.items() if bool((p == 0).any())}
    for p in student.parameters():
        p.requires_grad_(True)
    device = next(iter(parameters.values())).device if parameters else inputs.device
    dtype = next(iter(parameters.values())).dtype if parameters else inputs.dtype
    x_all = inputs.to(device=device, dtype=dtype)
    if recalibrate:
        recalibrate_batchnorm(student, x_all, batch_size=max(batch_size, 128))
    was_training = teacher.training
    teacher.eval()
    try:
        with torch.no_grad():
            targets = torch.cat(
                [
                    logits_of(teacher(x_all[i : i + 256])).detach()
                    for i in range(0, x_all.shape[0], 256)
                ]
            )  # (N, K)
    finally:
        teacher.train(was_training)
    soft = F.softmax(targets / temperature, dim=1)
    optimizer = torch.optim.Adam(student.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    n = x_all.shape[0]
    with torch.enable_grad():
        for _ in range(steps):
            index = torch.randint(0, n, (min(batch_size, n),), generator=generator).to(device)
            log_p = F.log_softmax(logits_of(student(x_all[index])) / temperature, dim=1)
            loss = F.kl_div(log_p, soft[index], reduction="batchmean") * temperature**2
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for name, mask in masks.items():
                grad = parameters[name].grad
                if grad is not None:
                    grad.masked_fill_(~mask, 0)
            optimizer.step()
            with torch.no_grad():  # Adam's momentum must not revive a pruned weight
                for name, mask in masks.items():
                    parameters[name].masked_fill_(~mask, 0)
    for p, flag in zip(student.parameters(), flags, strict=True):
        p.requires_grad_(flag)
    logger.debug("fine-tuned %s for %d steps", type(student).__name__, steps)
    return student.eval()
