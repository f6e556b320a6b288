"""What each update method adds to the plain loss on the new data.

finetune: nothing (the baseline). lwf (Li & Hoiem, Learning without Forgetting): the frozen
previous model's softened outputs on the training inputs, distilled into the old output columns
(KL at temperature T; one binary column by logit matching), weighted by ``strength``. ewc
(Kirkpatrick et al.): a quadratic penalty ``strength/2 * sum F (theta - theta_old)^2`` with F the diagonal empirical Fisher information of
the previous model on old data (per-sample squared gradients, scaled to a mean of 1); new rows of grown tables carry no
penalty. replay: a bounded sample of old data, stratified by label, mixed into the training set.
"""

from __future__ import annotations

import numpy as np

from edgeopt.errors import UsageError

METHODS = ("finetune", "lwf", "ewc", "replay")
DEFAULT_STRENGTH = {"finetune": None, "lwf": 1.0, "ewc": 1.0, "replay": 0.5}
# what --tune tries: lwf / ewc weights, replay's share of old samples per new sample
TUNE_GRID = {"finetune": [None], "lwf": [0.5, 1.0, 2.0, 4.0], "ewc": [0.1, 1.0, 10.0, 100.0],
             "replay": [0.25, 0.5, 1.0, 2.0]}  # class-incremental data needed 2 (docs/PERFORMANCE.md, Myntra)


# LwF on one binary column (a click model): the squared logit difference. The binary KL at
# temperature T, T^2 KL(sig(t/T) || sig(s/T)), tends to (s - t)^2 / 8 as T grows; a single column
# has no other classes for a temperature to bring out, and softening only weakens the pull where
# the old model was confident, which is where a click model forgets. Half that limit (1/16): on the
# CTR ranker of benchmarks/update_ctr.py (one seed) KL at T = 2 forgot 0.59x what fine-tuning forgot
# (learning the new period 0.026 AUC less); logit matching at 1/8 x strength 0.25 .. 0.75 forgot
# less than nothing (the old AUC rose) at -0.009 .. -0.028 new AUC, and at strength 1 missed the
# new-AUC target (0.03) by 0.001, so the default strength 1 sits inside that range.
BINARY_LWF_SCALE = 1 / 16


def check(method: str, strength: float | None, has_old: bool) -> None:
    if method not in METHODS:
        raise UsageError(f"unknown --method {method!r}; choose {', '.join(METHODS)}")
    if method in ("ewc", "replay") and not has_old:
        raise UsageError(f"--method {method} needs --old-data (the data the model was trained on, or a "
                         "sample of it)")
    if strength is not None:
        if method == "finetune":
            raise UsageError("--strength does not apply to --method finetune")
        if not strength >= 0 or (method == "replay" and strength <= 0):
            raise UsageError(f"--strength must be {'> 0' if method == 'replay' else '>= 0'}, got {strength}")


def hard_loss(task: str, out, labels, output_kind: str = "logits"):
    """The plain loss on labels; a binary model that outputs probabilities (it ends in a sigmoid)
    trains with BCE on them, one that outputs logits with BCE-with-logits."""
    import torch.nn.functional as F

    if task == "classify":
        return F.cross_entropy(out, labels.long())
    if task == "binary" and output_kind == "probs":
        return F.binary_cross_entropy(out.reshape(-1).clamp(1e-7, 1 - 1e-7), labels.float().reshape(-1))
    if task == "binary":
        return F.binary_cross_entropy_with_logits(out.reshape(-1), labels.float().reshape(-1))
    return F.mse_loss(out.reshape(labels.shape), labels.float())


def lwf_loss(task: str, out, teacher, temperature: float = 2.0, output_kind: str = "logits"):
    """Distillation from the previous model on its own output columns only (new classes are free);
    probabilities are distilled as the logits they came from. ``temperature`` applies to
    classification: one binary column is distilled by logit matching (BINARY_LWF_SCALE)."""
    import torch

    from edgeopt.train import objectives

    if task == "binary" and output_kind == "probs":
        out, teacher = torch.logit(out, eps=1e-6), torch.logit(teacher, eps=1e-6)
    width = teacher.shape[-1]
    if task == "binary":
        return BINARY_LWF_SCALE * ((out[..., :width].reshape(-1) - teacher.reshape(-1)) ** 2).mean()
    return objectives.loss(task, out[..., :width], teacher, None, temperature=temperature)


def fisher(module, batches, loss_of) -> dict:
    """Diagonal empirical Fisher: the mean over samples of each parameter's squared gradient.
    ``batches`` yields one-sample argument lists; ``loss_of(module, args_labels)`` is its loss."""
    import torch

    params = {n: p for n, p in module.named_parameters() if p.requires_grad and p.is_floating_point()}
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    count = 0
    for item in batches:
        module.zero_grad(set_to_none=True)
        loss_of(module, item).backward()
        for n, p in params.items():
            if p.grad is not None:
                total[n] += p.grad.detach() ** 2
        count += 1
    module.zero_grad(set_to_none=True)
    # scaled to a mean of 1 over all weights: a confident model's squared gradients are tiny, and
    # the scale would otherwise make the strength depend on the model and its training
    n_all = sum(t.numel() for t in total.values())
    mean = float(sum(t.sum() for t in total.values())) / max(count, 1) / max(n_all, 1)
    return {n: t / max(count, 1) / max(mean, 1e-30) for n, t in total.items()}


def ewc_penalty(module, fisher_diag: dict, anchor: dict):
    """sum F (theta - theta_old)^2 over the old part of every parameter (grown rows are free)."""
    total = 0.0
    params = dict(module.named_parameters())
    for n, f in fisher_diag.items():
        p = params.get(n)
        if p is None:
            continue
        old = anchor[n]
        if p.shape != old.shape:  # a grown table: penalize only the rows it had
            p = p[tuple(slice(0, s) for s in old.shape)]
        if f.shape != old.shape:
            f = f[tuple(slice(0, s) for s in old.shape)]
        total = total + (f * (p - old) ** 2).sum()
    return total


def replay_sample(old_train, share: float, n_new: int, limit: int | None, seed: int):
    """At most ``share * n_new`` (and ``limit``) old samples, stratified by label."""
    n = int(np.ceil(share * n_new))
    if limit is not None:
        n = min(n, limit)
    n = max(1, min(n, len(old_train)))
    return old_train.subsample(n, seed=seed + 1)
