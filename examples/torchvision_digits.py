"""A torchvision v2-style pipeline (CutMix or MixUp in the DataLoader's collate_fn, as in
torchvision's references) on scikit-learn's digits.

    python examples/torchvision_digits.py                 # switched to mixlab
    python examples/torchvision_digits.py --torchvision   # the original: torchvision's

The two differ only in the import block below; the pipeline is the same code.
"""

from __future__ import annotations

import sys

import torch
from torch.utils.data import DataLoader, TensorDataset, default_collate
from torchvision.transforms import v2

if "--torchvision" in sys.argv:  # the original
    from torchvision.transforms.v2 import CutMix, MixUp
else:  # switched to mixlab
    from mixlab.torchvision import CutMix, MixUp

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
    args = arguments(__doc__.splitlines()[0], "--torchvision")
    images, labels = digits(args.image_size)
    cutmix = CutMix(num_classes=NUM_CLASSES)
    mixup = MixUp(num_classes=NUM_CLASSES)
    cutmix_or_mixup = v2.RandomChoice([cutmix, mixup])

    def collate_fn(batch):
        return cutmix_or_mixup(*default_collate(batch))

    loader = DataLoader(
        TensorDataset(images, labels),
        batch_size=args.batch_size,
        shuffle=True,
        collate_fn=collate_fn,
        drop_last=True,  # equal batches, so that step times compare
    )
    model = small_cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    criterion = torch.nn.CrossEntropyLoss()
    batches = forever(loader)

    def step():  # one batch: collate (mixing), forward, loss, backward, update
        image, target = next(batches)
        loss = criterion(model(image), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.detach()

    seconds, losses = timed_steps(step, args.steps)
    report("torchvision" if args.torchvision else "mixlab", seconds, losses, peak_step_bytes(step))


if __name__ == "__main__":
    main()
