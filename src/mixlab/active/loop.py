"""The active-learning loop with mixup (docs/design.md §8, contract C for mixlab.studies).

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

import dataclasses
import math
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

import mixlab
from mixlab.active.data import DATASETS, Dataset, load_dataset, train_size
from mixlab.active.metrics import aulc, final_accuracy
from mixlab.active.models import MODELS, Classifier, build_model
from mixlab.active.strategies import STRATEGIES, log_probs, make_strategy
from mixlab.validation import is_int, is_real

MIXUP_MODES = ("batch", "augment")
# Purposes of the generators derived from config.seed (never renumber: curves would change).
_SEED_SET, _TRAIN, _QUERY, _AUGMENT = range(4)


@dataclass
class ActiveLearningConfig:
    """One active-learning run. The defaults (digits, MLP, 5 rounds) take about 1 s on one
    CPU core."""

    dataset: str = "digits"
    model: str = "mlp"
    alpha: float = 0.2  # mixup's Beta(alpha, alpha); 0 = no mixup
    initial_budget: int = 50
    query_size: int = 25
    rounds: int = 5
    strategy: str = "entropy"
    mixup_mode: str = "batch"
    seed: int = 0
    epochs: int = 30  # per round, over the labeled set (and its mixed copies)
    batch_size: int = 32
    lr: float = 3e-3  # AdamW
    weight_decay: float = 5e-4
    device: str = "cpu"
    data_root: str | None = None  # folder of CIFAR-10's python batches (dataset cifar10)
    mc_samples: int = 20  # BALD's MC-dropout samples
    width: int = 128  # MLP hidden units; CNN channels (ResNet-18: its own)
    dropout: float = 0.25
    # torch's CPU threads during the run (restored after); 0 leaves torch's setting. One
    # thread suits the small models (two threads on two busy cores ran 25x slower here) and
    # lets study workers run one process per core.
    cpu_threads: int = 1

    def __post_init__(self):
        if isinstance(self.data_root, os.PathLike):
            self.data_root = os.fspath(self.data_root)  # stays JSON-able (trial user_attrs)

    def validate(self) -> ActiveLearningConfig:
        """Raise TypeError / ValueError naming the first bad field; return self."""
        _choice("dataset", self.dataset, DATASETS)
        _choice("model", self.model, MODELS)
        _choice("strategy", self.strategy, tuple(STRATEGIES))
        _choice("mixup_mode", self.mixup_mode, MIXUP_MODES)
        _number("alpha", self.alpha, low=0.0)
        _integer("initial_budget", self.initial_budget, 2, "a mixed batch needs two samples")
        _integer("query_size", self.query_size, 1)
        _integer("rounds", self.rounds, 0)
        _integer("seed", self.seed, 0)
        _integer("epochs", self.epochs, 1)
        _integer("batch_size", self.batch_size, 2, "a mixed batch needs two samples")
        _integer("mc_samples", self.mc_samples, 1)
        _integer("width", self.width, 4)
        _integer("cpu_threads", self.cpu_threads, 0)
        _number("lr", self.lr, low=0.0, open_low=True)
        _number("weight_decay", self.weight_decay, low=0.0)
        _number("dropout", self.dropout, low=0.0, high=1.0)
        if self.dropout == 1.0:
            raise ValueError("dropout: must be < 1 (1 drops every unit)")
        if not isinstance(self.device, str):
            raise TypeError(f"device: expected a str such as 'cpu' or 'cuda', got {self.device!r}")
        try:
            device = torch.device(self.device)
        except RuntimeError as err:
            raise ValueError(f"device: {err}") from None
        if device.type not in ("cpu", "cuda"):
            raise ValueError(f"device: expected a cpu or cuda device, got {self.device!r}")
        if self.data_root is not None and not isinstance(self.data_root, str):
            raise TypeError(f"data_root: expected a folder path, got {self.data_root!r}")
        if self.dataset == "cifar10" and self.data_root is None:
            raise ValueError("data_root: dataset 'cifar10' is read from a local folder; set it")
        _check_budget(self, train_size(self.dataset))
        return self


@dataclass
class LearningCurve:
    """Test accuracy and loss after the first training and after every round."""

    labeled_sizes: list[int]
    test_accuracy: list[float]
    test_loss: list[float]
    aulc: float
    final_accuracy: float
    wall_s: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


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
    _check_budget(config, data.x_train.shape[0])
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


# ---- validation helpers -----------------------------------------------------------------------


def _check_budget(config: ActiveLearningConfig, n_train: int | None) -> None:
    if n_train is None:
        return
    needed = config.initial_budget + config.rounds * config.query_size
    if config.initial_budget >= n_train:
        raise ValueError(
            f"initial_budget: {config.initial_budget} leaves no pool in the {n_train} training "
            f"points of {config.dataset}"
        )
    if needed > n_train:
        raise ValueError(
            f"query_size: initial_budget + rounds * query_size = {needed} exceeds the {n_train} "
            f"training points of {config.dataset}"
        )


def _choice(name: str, value, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}: expected one of {allowed}, got {value!r}")


def _integer(name: str, value, low: int, why: str = "") -> None:
    if not is_int(value):
        raise TypeError(f"{name}: expected an int, got {value!r}")
    if value < low:
        raise ValueError(f"{name}: must be >= {low}{f' ({why})' if why else ''}, got {value}")


def _number(name: str, value, low: float, high: float = math.inf, open_low: bool = False) -> None:
    if not is_real(value):
        raise TypeError(f"{name}: expected a number, got {value!r}")
    if not math.isfinite(value) or value < low or value > high or (open_low and value == low):
        bound = f"> {low}" if open_low else f">= {low}"
        bound += f" and <= {high}" if high != math.inf else ""
        raise ValueError(f"{name}: must be a finite number {bound}, got {value}")
