"""A timm-style training loop (timm's train.py pattern) on scikit-learn's digits.

    python examples/timm_digits.py           # switched to mixlab
    python examples/timm_digits.py --timm    # the original: timm's Mixup and loss

The two differ only in the import block below; the loop is the same code.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

if "--timm" in sys.argv:  # the original
    from timm.data import Mixup
    from timm.loss import SoftTargetCrossEntropy
else:  # switched to mixlab
    from mixlab.timm import Mixup, SoftTargetCrossEntropy

from common import (
    NUM_CLASSES,
    arguments,
    digits,
    forever,
    peak_step_bytes,
    report,
    small_cnn,
    timed_steps,
)


def main() -> None:
    args = arguments(__doc__.splitlines()[0], "--timm")
    np.random.seed(0)  # as timm's train.py (utils.random_seed): Mixup draws from NumPy
    images, labels = digits(args.image_size)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(images, labels),
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,  # timm's Mixup asserts an even batch
    )
    model = small_cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    mixup_fn = Mixup(
        mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=NUM_CLASSES
    )
    train_loss_fn = SoftTargetCrossEntropy()
    batches = forever(loader)

    def step():
        input, target = next(batches)
        input, target = mixup_fn(input, target)
        loss = train_loss_fn(model(input), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.detach()

    seconds, losses = timed_steps(step, args.steps)
    report("timm" if args.timm else "mixlab", seconds, losses, peak_step_bytes(step))


if __name__ == "__main__":
    main()
