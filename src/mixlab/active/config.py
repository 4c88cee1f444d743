"""What the active-learning loop takes and gives (docs/design.md §8, contract C):
an ActiveLearningConfig, checked field by field, and a LearningCurve."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

import torch

from mixlab.active.data import DATASETS, train_size
from mixlab.active.models import MODELS
from mixlab.active.strategies import STRATEGIES
from mixlab.validation import is_int, is_real

MIXUP_MODES = ("batch", "augment")


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
        check_budget(self, train_size(self.dataset))
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


def check_budget(config: ActiveLearningConfig, n_train: int | None) -> None:
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
