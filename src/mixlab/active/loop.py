"""The active-learning loop with mixup (docs/design.md §8, contract C for mixlab.studies;
its config and curve: mixlab.active.config).

    seed set -> train -> score the pool on clean inputs -> query k -> add -> retrain ...

for `rounds` rounds; test accuracy and loss are recorded after the first training and after
every round, so a curve has rounds + 1 points. Every round trains a new model from scratch.

Mixup modes:
    batch    every training batch is mixed on the fly by mixlab.Mixup (one lam per batch) and
             scored by mixlab.mixup_cross_entropy; alpha = 0 is plain training.
    augment  the second source document's variant, D_l <- D_l + Mixup(D_l), then after each
             query D_l <- D_l + new + Mixup(new): every labeled point gets one mixed copy when
             it is labeled (its partner drawn from the labeled set, one lam ~ Beta(alpha,
             alpha) per copy), stored with its soft label (the document stored the unmixed
             one); training is plain, on clean points and copies, with
             mixlab.soft_cross_entropy. alpha = 0 adds no copies.

Reproducible from config.seed: every draw (seed set, batch order, lam, partners, queries)
comes from a torch.Generator seeded from (seed, purpose, round), and model initialisation and
dropout use torch's global RNG inside fork_rng, seeded the same way, so the caller's RNG state
is untouched. On CPU the same config gives the same curve bit for bit; on CUDA, up to the
non-deterministic kernels of cuDNN and atomics.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

import mixlab
from mixlab.active.config import ActiveLearningConfig, LearningCurve, check_budget
from mixlab.active.data import Dataset, load_dataset
from mixlab.active.metrics import aulc, final_accuracy
from mixlab.active.models import Classifier, build_model
from mixlab.active.strategies import log_probs, make_strategy

# Purposes of the generators derived from config.seed (never renumber: curves would change).
_SEED_SET, _TRAIN, _QUERY, _AUGMENT = range(4)


def run_active_learning(config: ActiveLearningConfig, progress: bool = False) -> LearningCurve:
    """Run the loop of `config` (see the module docstring) and return its learning curve."""
    start = time.perf_counter()
    config.validate()
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {config.device!r} asked for, but CUDA is not available")
    data = load_dataset(config.dataset, config.data_root)
    threads = torch.get_num_threads()
    try:
        if config.cpu_threads:
            torch.set_num_threads(config.cpu_threads)
        curve = _run(config, data, device, progress)
    finally:
        torch.set_num_threads(threads)
    curve.wall_s = time.perf_counter() - start
    return curve


def _run(config, data: Dataset, device: torch.device, progress: bool) -> LearningCurve:
    check_budget(config, data.x_train.shape[0])
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    x_test, y_test = data.x_test.to(device), data.y_test.to(device)
    query = make_strategy(config.strategy, mc_samples=config.mc_samples)

    n_train = x_train.shape[0]
    order = torch.randperm(n_train, generator=_generator(config.seed, _SEED_SET))
    labeled, pool = order[: config.initial_budget], order[config.initial_budget :].sort().values
    new = labeled
    copies_x, copies_t = x_train[:0], torch.empty(0, data.num_classes, device=device)
    sizes, accuracy, losses = [], [], []
    rounds = tqdm(range(config.rounds + 1), desc="active learning", disable=not progress)
    for r in rounds:
        if config.mixup_mode == "augment" and config.alpha > 0:
            cx, ct = _mixed_copies(config, x_train, y_train, labeled, new, data.num_classes, r)
            copies_x, copies_t = torch.cat([copies_x, cx]), torch.cat([copies_t, ct])
        model = _train(config, data, x_train, y_train, labeled, copies_x, copies_t, r)
        acc, loss = _evaluate(model, x_test, y_test)
        sizes.append(int(labeled.numel()))
        accuracy.append(acc)
        losses.append(loss)
        rounds.set_postfix(labeled=sizes[-1], acc=f"{acc:.3f}")
        if r == config.rounds:
            break
        lab = labeled.to(device)
        picked = query(
            model,
            x_train[pool.to(device)],
            x_train[lab],
            y_train[lab],
            config.query_size,
            _generator(config.seed, _QUERY, r),
        )
        new = pool[picked]
        keep = torch.ones(pool.numel(), dtype=torch.bool)
        keep[picked] = False
        labeled, pool = torch.cat([labeled, new]), pool[keep]

    return LearningCurve(
        labeled_sizes=sizes,
        test_accuracy=accuracy,
        test_loss=losses,
        aulc=aulc(sizes, accuracy),
        final_accuracy=final_accuracy(accuracy),
        wall_s=math.nan,  # set by the caller, which also counts loading the data
    )


# ---- one round's training and evaluation ------------------------------------------------------


def _train(config, data: Dataset, x_train, y_train, labeled, copies_x, copies_t, r) -> Classifier:
    """A new model trained on the labeled set (plus, in augment mode, its mixed copies)."""
    device = x_train.device
    generator = _generator(config.seed, _TRAIN, r)
    idx = labeled.to(device)
    x, y = x_train[idx], y_train[idx]
    if config.mixup_mode == "augment":
        x = torch.cat([x, copies_x])
        targets = torch.cat([F.one_hot(y, data.num_classes).float(), copies_t])
    else:
        mixup = mixlab.Mixup(config.alpha, mode="batch", generator=generator, backend="auto")
    n = x.shape[0]
    n_batches = max(1, n // config.batch_size)  # batches of batch_size..2*batch_size-1 rows
    with _forked_rng(generator, device):
        model = build_model(
            config.model,
            data.input_shape,
            data.num_classes,
            width=config.width,
            dropout=config.dropout,
        ).to(device)
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        model.train()
        for _ in range(config.epochs):
            for batch in torch.randperm(n, generator=generator).tensor_split(n_batches):
                rows = batch.to(device)
                if config.mixup_mode == "augment":
                    loss = mixlab.soft_cross_entropy(model(x[rows]), targets[rows])
                else:
                    mixed = mixup(x[rows], y[rows])  # x[rows] is a fresh copy: mixed in place
                    loss = mixlab.mixup_cross_entropy(
                        model(mixed.x), mixed.y_a, mixed.y_b, mixed.lam
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    return model


def _mixed_copies(config, x_train, y_train, labeled, new, num_classes: int, r: int):
    """One mixed copy of each newly labeled point, partnered within the labeled set, with its
    soft label; one lam per copy (Mixup mode "elem")."""
    device = x_train.device
    mixup = mixlab.Mixup(
        config.alpha, mode="elem", generator=_generator(config.seed, _AUGMENT, r), backend="auto"
    )
    idx = labeled.to(device)
    mixed = mixup(x_train[idx], y_train[idx])  # rows of `new` are the last ones of `labeled`
    rows = slice(labeled.numel() - new.numel(), None)
    return mixed.x[rows], mixed.soft_targets(num_classes)[rows]


def _evaluate(model: Classifier, x, y) -> tuple[float, float]:
    """Test accuracy and mean cross-entropy on clean inputs (dropout off)."""
    logp = log_probs(model, x)
    y = y.cpu()
    return float((logp.argmax(1) == y).float().mean()), float(F.nll_loss(logp, y))


# ---- reproducibility ------------------------------------------------------------------------


def _generator(seed: int, purpose: int, r: int = 0) -> torch.Generator:
    """A CPU generator for one purpose and round, independent of every other draw."""
    state = np.random.SeedSequence([seed, purpose, r]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


class _forked_rng:
    """torch's global RNG (model init, dropout), seeded from `generator` and restored after."""

    def __init__(self, generator: torch.Generator, device: torch.device):
        devices = [device] if device.type == "cuda" else []
        self._fork = torch.random.fork_rng(devices=devices)
        self._seed = int(torch.randint(2**62, (), generator=generator))

    def __enter__(self):
        self._fork.__enter__()
        torch.manual_seed(self._seed)

    def __exit__(self, *exc):
        return self._fork.__exit__(*exc)
