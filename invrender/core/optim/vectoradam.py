"""VectorAdam (Ling, Sharp, Jacobson 2022): Adam whose second moment is shared by the components of
each vector, so a step's direction does not depend on how the world axes are chosen.

For a parameter whose last axis holds vectors (x, y, z of a vertex, of a spectral coefficient,
of an affine row), the second moment is the running mean of the squared norm `|g|^2` of each
vector instead of each component's `g_c^2`; the first moment is Adam's. The update of each vector
is then `lr * m_hat / (sqrt(v_hat) + eps)`: rotating the gradient rotates the step.

A parameter may carry a `step_scale` attribute (a tensor that broadcasts against it): its update is
multiplied by it. Adam divides every gradient by its own running magnitude, so scaling a gradient
changes nothing; a per-mode scale of the step is how a frequency-dependent preconditioner
(spine-seg's `(Lambda / lambda_0)^-alpha`) acts on an Adam-type optimiser.
"""

from __future__ import annotations

import torch


class VectorAdam(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-2, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"], state["m"] = 0, torch.zeros_like(p)
                    state["v"] = torch.zeros_like(p[..., :1])  # one second moment per vector
                state["step"] += 1
                state["m"].mul_(beta1).add_(p.grad, alpha=1 - beta1)
                state["v"].mul_(beta2).add_(p.grad.pow(2).sum(-1, keepdim=True), alpha=1 - beta2)
                m_hat = state["m"] / (1 - beta1 ** state["step"])
                v_hat = state["v"] / (1 - beta2 ** state["step"])
                update = m_hat / (v_hat.sqrt() + group["eps"])
                scale = getattr(p, "step_scale", None)
                p.sub_(group["lr"] * (update if scale is None else update * scale))
        return loss
