"""Adam with a second moment shared across components, so that a step keeps a direction that
per-component Adam would distort.

- `AdamUniform` (largesteps, Nicolet et al. 2021): one scale for the whole tensor, the maximum of
  the per-component second moments: the step keeps the preconditioned direction of the gradient.
- `VectorAdam` (Ling, Sharp, Jacobson 2022): one second moment per vector of the last axis (the
  x, y, z of a vertex, of a spectral coefficient, of an affine row), the running mean of the
  squared norm `|g|^2`: rotating the gradient rotates the step, whatever the world axes.

The first moment is Adam's. A parameter may carry a `step_scale` attribute (a tensor that broadcasts
against it): its update is multiplied by it. Adam divides every gradient by its own running
magnitude, so scaling a gradient changes nothing; a per-mode scale of the step is how a
frequency-dependent preconditioner (spine-seg's `(Lambda / lambda_0)^-alpha`) acts on Adam.
"""

from __future__ import annotations

import torch


class _SharedMomentAdam(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-2, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    def squared_gradient(self, grad: torch.Tensor) -> torch.Tensor:
        """What the second moment averages."""
        raise NotImplementedError

    def scale(self, v_hat: torch.Tensor) -> torch.Tensor:
        """The (bias-corrected) second moment -> the divisor's square."""
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                squared = self.squared_gradient(p.grad)
                if not state:
                    state["step"], state["m"], state["v"] = 0, torch.zeros_like(p), torch.zeros_like(squared)
                state["step"] += 1
                state["m"].mul_(beta1).add_(p.grad, alpha=1 - beta1)
                state["v"].mul_(beta2).add_(squared, alpha=1 - beta2)
                m_hat = state["m"] / (1 - beta1 ** state["step"])
                v_hat = state["v"] / (1 - beta2 ** state["step"])
                update = m_hat / (self.scale(v_hat).sqrt() + group["eps"])
                step_scale = getattr(p, "step_scale", None)
                p.sub_(group["lr"] * (update if step_scale is None else update * step_scale))
        return loss


class AdamUniform(_SharedMomentAdam):
    """Adam whose second moment is reduced to its maximum over each parameter tensor."""

    def squared_gradient(self, grad: torch.Tensor) -> torch.Tensor:
        return grad * grad

    def scale(self, v_hat: torch.Tensor) -> torch.Tensor:
        return v_hat.max()


class VectorAdam(_SharedMomentAdam):
    """Adam whose second moment is shared by the components of each vector (the last axis)."""

    def squared_gradient(self, grad: torch.Tensor) -> torch.Tensor:
        return grad.pow(2).sum(-1, keepdim=True)

    def scale(self, v_hat: torch.Tensor) -> torch.Tensor:
        return v_hat
