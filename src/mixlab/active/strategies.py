"""Query strategies: which k points of the unlabeled pool to label next.

Every strategy has one signature,

    strategy(model, pool_x, labeled_x, labeled_y, k, generator) -> (min(k, N),) int64 indices

into pool_x, distinct, on the CPU. The model is a mixlab.active.models.Classifier; pool and
labeled inputs are clean (never mixed) and on the model's device. Ties are broken by the
lower index, so a query is a deterministic function of its inputs and the generator.

    random            uniform without replacement
    entropy           max H(p), from log_softmax: p log p is taken as 0 where p == 0 (the
                      source document's -sum p log(p) is NaN once a probability underflows)
    margin            min p_top1 - p_top2
    least_confidence  max 1 - p_top1
    bald              max mutual information I(y; w) = H(mean_t p_t) - mean_t H(p_t) over T
                      MC-dropout samples (Gal, Islam & Ghahramani 2017)
    coreset           k-center greedy on the embeddings, labeled points as the first centers
                      (Sener & Savarese 2018)
    alfamix           in the spirit of ALFA-Mix (Parvaneh et al. 2022): interpolate each
                      unlabeled embedding a little toward every labeled class anchor (class
                      mean of labeled embeddings); the points whose predicted label flips are
                      candidates, k diverse ones are taken by k-center greedy, and too few
                      are filled up by entropy
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor

from mixlab.active.models import Classifier, mc_dropout

Strategy = Callable[[Classifier, Tensor, Tensor, Tensor, int, torch.Generator], Tensor]
EVAL_BATCH = 1024
MC_SAMPLES = 20
ALFAMIX_ALPHA = 0.2  # the largest interpolation weight toward an anchor (ALFA-Mix's epsilon)


# ---- model outputs, in eval batches ---------------------------------------------------------


@torch.no_grad()
def _batched(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    return torch.cat([fn(chunk) for chunk in x.split(EVAL_BATCH)])


def log_probs(model: Classifier, x: Tensor) -> Tensor:
    """Clean-input log-probabilities (dropout off), float32 on the CPU."""
    mc_dropout(model, enabled=False)
    return torch.log_softmax(_batched(model, x).float(), dim=1).cpu()


def embeddings(model: Classifier, x: Tensor) -> Tensor:
    """Penultimate-layer embeddings (dropout off), float32 on x's device."""
    mc_dropout(model, enabled=False)
    return _batched(model.embed, x).float()


def entropy_from_log_probs(logp: Tensor) -> Tensor:
    """-sum_c p_c log p_c per row, with 0 log 0 = 0 (no NaN when a probability is 0)."""
    p = logp.exp()
    return -torch.where(p > 0, p * logp, torch.zeros_like(logp)).sum(dim=1)


def _top_k(scores: Tensor, k: int) -> Tensor:
    """Indices of the k largest scores; ties go to the lower index (stable sort)."""
    return torch.sort(scores, descending=True, stable=True).indices[:k]


# ---- the strategies -------------------------------------------------------------------------


def random(model, pool_x, labeled_x, labeled_y, k, generator) -> Tensor:
    return torch.randperm(pool_x.shape[0], generator=generator)[:k]


def entropy(model, pool_x, labeled_x, labeled_y, k, generator) -> Tensor:
    return _top_k(entropy_from_log_probs(log_probs(model, pool_x)), k)


def margin(model, pool_x, labeled_x, labeled_y, k, generator) -> Tensor:
    top2 = log_probs(model, pool_x).exp().topk(2, dim=1).values
    return _top_k(top2[:, 1] - top2[:, 0], k)


def least_confidence(model, pool_x, labeled_x, labeled_y, k, generator) -> Tensor:
    return _top_k(1 - log_probs(model, pool_x).exp().amax(dim=1), k)


def bald(model, pool_x, labeled_x, labeled_y, k, generator, *, mc_samples=MC_SAMPLES) -> Tensor:
    # Dropout draws from torch's RNG: seed a forked copy from the generator, so the query is
    # reproducible and the caller's global RNG state is left alone.
    devices = [pool_x.device] if pool_x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(torch.randint(2**62, (), generator=generator)))
        mc_dropout(model, enabled=True)
        samples = torch.stack(
            [torch.log_softmax(_batched(model, pool_x).float(), 1).cpu() for _ in range(mc_samples)]
        )
    mc_dropout(model, enabled=False)
    mean_p = samples.exp().mean(dim=0)
    predictive = entropy_from_log_probs(mean_p.clamp_min(0).log())
    expected = torch.stack([entropy_from_log_probs(s) for s in samples]).mean(dim=0)
    return _top_k(predictive - expected, k)


def coreset(model, pool_x, labeled_x, labeled_y, k, generator) -> Tensor:
    return k_center_greedy(embeddings(model, pool_x), embeddings(model, labeled_x), k)


def alfamix(model, pool_x, labeled_x, labeled_y, k, generator, *, alpha=ALFAMIX_ALPHA) -> Tensor:
    z_pool, z_lab = embeddings(model, pool_x), embeddings(model, labeled_x)
    labels = labeled_y.to(z_lab.device)
    classes = labels.unique()
    anchors = torch.stack([z_lab[labels == c].mean(dim=0) for c in classes])
    # One interpolation weight per feature, uniform in [0, alpha] (ALFA-Mix's random variant
    # of its optimised alpha): z + a * (anchor - z) moves each point a little toward a class.
    weights = alpha * torch.rand(z_pool.shape[1], generator=generator).to(z_pool.device)
    with torch.no_grad():
        pred = _batched(model.head, z_pool).argmax(1)
        flips = torch.zeros_like(pred, dtype=torch.bool)
        for anchor in anchors:
            mixed = z_pool + weights * (anchor - z_pool)
            flips |= _batched(model.head, mixed).argmax(1) != pred
    candidates = flips.nonzero().squeeze(1).cpu()
    if candidates.numel() >= k:
        pick = k_center_greedy(z_pool[candidates.to(z_pool.device)], z_lab, k)
        return candidates[pick]
    rest = (~flips).nonzero().squeeze(1).cpu()
    logits = _batched(model.head, z_pool[rest.to(z_pool.device)]).float()
    uncertainty = entropy_from_log_probs(torch.log_softmax(logits, 1).cpu())
    fill = rest[_top_k(uncertainty, k - candidates.numel())]
    return torch.cat([candidates, fill])


def k_center_greedy(points: Tensor, centers: Tensor, k: int) -> Tensor:
    """Greedily pick k of points, each the one farthest from the centers picked so far (the
    given centers included): a 2-approximation of the k-center problem. O(k N) after the
    first O(N M) distance pass, which runs in column chunks to bound memory."""
    k = min(k, points.shape[0])
    nearest = torch.full((points.shape[0],), float("inf"), device=points.device)
    for chunk in centers.split(EVAL_BATCH):
        nearest = torch.minimum(nearest, torch.cdist(points, chunk).amin(dim=1))
    chosen = []
    for _ in range(k):
        i = int(torch.argmax(nearest))  # the first maximum: ties go to the lower index
        chosen.append(i)
        nearest = torch.minimum(nearest, torch.cdist(points, points[i : i + 1]).squeeze(1))
        nearest[i] = -1.0  # never picked twice, even among duplicates
    return torch.tensor(chosen, dtype=torch.int64)


STRATEGIES: dict[str, Strategy] = {
    "random": random,
    "entropy": entropy,
    "margin": margin,
    "least_confidence": least_confidence,
    "bald": bald,
    "coreset": coreset,
    "alfamix": alfamix,
}


def make_strategy(name: str, *, mc_samples: int = MC_SAMPLES) -> Strategy:
    """The strategy called `name`, with its options bound (mc_samples: BALD's T)."""
    if name not in STRATEGIES:
        raise ValueError(f"strategy: expected one of {tuple(STRATEGIES)}, got {name!r}")
    if name == "bald":
        return functools.partial(bald, mc_samples=mc_samples)
    return STRATEGIES[name]
