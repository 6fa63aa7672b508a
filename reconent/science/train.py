"""Ground truth by full training (SCIENCE §3): is this (σ_w², σ_b², depth) point trainable?

Body plus Linear head, cross-entropy on the logits (the paper's code put a softmax and a tanh
before the loss; we do not), plain SGD, lr 1e-3, batch 64. Stops after `epochs` or as soon as the
accuracy exceeds `threshold`. The whole accuracy curve is kept so verdicts can be re-derived
with other thresholds. A NaN/inf loss ends training with status 'diverged': that is data.

Verdicts decided early (docs/budgets.md, "Stopping hopeless trainings"):
- `eval_every` steps: the accuracy is also checked inside an epoch, so a trainable network stops soon after
  it passes, not at the end of a long epoch. Every check is kept as a (step, accuracy) pair.
- `stop`: a rule that ends a run whose curve says it cannot pass the threshold within the budget
  (`STOP_RULES`; default `none`). Its verdict is *predicted*, not observed: the row says `stopped_early` and
  the rule's numbers, and the analysis marks it. The rule runs here, inside training, not as a Tune stopper:
  a stopper would end the trial before its row is written.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field, fields
from typing import Callable

import torch
from torch import nn

from . import models
from .budget import STOP_RULES, Extrapolate, replay, stop_rule  # noqa: F401 -- the rules are torch-free
from .models import DATA, Body, Classifier, stream


@dataclass
class TrainResult:
    accuracy: list[float]  # after each epoch, on the evaluation set (the last: where training stopped)
    train_loss: list[float]  # mean cross-entropy of each epoch
    epochs: int  # epochs actually run
    threshold: float
    reached: bool  # accuracy exceeded the threshold
    status: str  # 'ok' or 'diverged'
    seconds: float
    device: str
    curve_steps: list[int] = field(default_factory=list)  # the step of every accuracy check, ascending
    curve_accuracy: list[float] = field(default_factory=list)  # the accuracy at each of them
    steps_per_epoch: int = 0
    stopped_early: bool = False  # the stop rule ended the run: its verdict (not reached) is predicted
    stop_bound: float | None = None  # the rule's optimistic accuracy at the budget when it stopped the run
    stop_rate: float | None = None  # the recent rate of the best accuracy (per epoch) it extrapolated
    # The trained Classifier (a copy of the body, `.body`, plus `.head`); not stored.
    model: nn.Module | None = field(default=None, repr=False)

    @property
    def final_accuracy(self) -> float:
        return self.accuracy[-1] if self.accuracy else float("nan")

    def summary(self) -> dict:
        return {**{f.name: getattr(self, f.name) for f in fields(self) if f.name != "model"},
                "final_accuracy": self.final_accuracy}


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device, chunk: int = 1024) -> float:
    model.eval()
    hits = sum(int((model(x[i:i + chunk].to(device)).argmax(1) == y[i:i + chunk].to(device)).sum())
               for i in range(0, len(x), chunk))
    model.train()
    return hits / len(x)


def train(body: Body, train_x: torch.Tensor, train_y: torch.Tensor, eval_x: torch.Tensor | None = None,
          eval_y: torch.Tensor | None = None, *,
          epochs: int = 1, threshold: float = 0.8, lr: float = 1e-3, batch_size: int = 64, n_classes: int = 10,
          train_samples: int | None = None, device: str | torch.device = "cpu",
          on_epoch: Callable[[int, float, float], None] | None = None, eval_every: int | None = None,
          stop: str = "none") -> TrainResult:
    """Train body+head with SGD; `on_epoch(epoch, accuracy, loss)` is called after each epoch.

    The accuracy is checked after every epoch and, with `eval_every`, also every `eval_every` steps (counted
    from the start); training ends at the first check above `threshold`. `stop` names a rule of STOP_RULES
    that may end a hopeless run at an epoch's end (`stopped_early`).

    With eval_x None the accuracy is measured on the (subsetted) training set: that is the
    memorisation criterion used for white noise with random labels.

    The caller's `body` is left as it was (weights, requires_grad, device): training runs on a copy,
    and the trained network comes back as `TrainResult.model` (its `.body` and `.head`).
    """
    t0 = time.perf_counter()
    rule = stop_rule(stop)
    if eval_every is not None and int(eval_every) < 1:
        raise ValueError(f"eval_every must be a positive number of steps, got {eval_every}")
    device = models.device(device)
    gen = stream(body.seed, 0, DATA)
    if train_samples is not None and train_samples < len(train_x):
        idx = torch.randperm(len(train_x), generator=gen)[:train_samples]
        train_x, train_y = train_x[idx], train_y[idx]
    if eval_x is None:
        eval_x, eval_y = train_x, train_y
    model = Classifier(copy.deepcopy(body), n_classes).to(device).train()  # the caller's body stays untrained
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    accs, losses, status, steps, curve, stopped = [], [], "ok", 0, ([], []), None
    per_epoch = math.ceil(len(train_x) / batch_size)

    def check() -> float:
        curve[0].append(steps)
        curve[1].append(accuracy(model, eval_x, eval_y, device))
        return curve[1][-1]

    for epoch in range(1, epochs + 1):
        perm = torch.randperm(len(train_x), generator=gen)
        total, n, passed = torch.zeros((), device=device), 0, False
        for i in range(0, len(perm), batch_size):
            idx = perm[i:i + batch_size]
            loss = loss_fn(model(train_x[idx].to(device)), train_y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(idx)
            n += len(idx)
            steps += 1
            # a check inside the epoch (the epoch's end is checked below); a non-finite loss is left to it
            if eval_every and steps % eval_every == 0 and i + batch_size < len(perm) and torch.isfinite(loss):
                if check() > threshold:
                    passed = True
                    break
        mean_loss = float(total) / n
        losses.append(mean_loss)
        accs.append(curve[1][-1] if passed else check())
        if on_epoch is not None:
            on_epoch(epoch, accs[-1], mean_loss)
        if not math.isfinite(mean_loss):
            status = "diverged"
            break
        if accs[-1] > threshold:
            break
        if rule is not None and (stopped := rule(accs, epochs, threshold)) is not None:
            break
    return TrainResult(accs, losses, len(accs), threshold, bool(accs and accs[-1] > threshold), status,
                       time.perf_counter() - t0, str(device), curve_steps=curve[0], curve_accuracy=curve[1],
                       steps_per_epoch=per_epoch, stopped_early=stopped is not None,
                       stop_bound=None if stopped is None else stopped["bound"],
                       stop_rate=None if stopped is None else stopped["rate"], model=model)
