"""Length-bucketed batches: rows of similar length train together, so almost nothing is padding.

transformers' LengthGroupedSampler sorts inside megabatches of at most 50 batches and only
4 batches on small datasets; this sampler sorts inside megabatches of 64 batches whatever the
dataset size, then shuffles the order of the batches (the longest first, to surface
out-of-memory early). The order depends only on the seed and the epoch, so a resumed run
replays it exactly.
"""

import random
from collections.abc import Iterator
from typing import Any

from torch.utils.data import Sampler

MEGABATCH_BATCHES = 64


class LengthBucketSampler(Sampler[int]):
    """Indices arranged so that each consecutive run of ``batch_size`` has similar lengths."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int) -> None:
        self.lengths = lengths
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        size = self.batch_size * MEGABATCH_BATCHES
        batches: list[list[int]] = []
        for start in range(0, len(order), size):
            chunk = sorted(order[start : start + size], key=lambda i: self.lengths[i], reverse=True)
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        longest = max(range(len(batches)), key=lambda b: self.lengths[batches[b][0]]) if batches else 0
        first = batches.pop(longest) if batches else []
        rng.shuffle(batches)
        for batch in [first, *batches]:
            yield from batch


class LengthBucketMixin:
    """Use LengthBucketSampler for training in any transformers Trainer subclass."""

    args: Any
    train_dataset: Any

    def _get_train_sampler(self, train_dataset: Any = None) -> Sampler[int]:
        dataset = self.train_dataset if train_dataset is None else train_dataset
        lengths = [len(ids) for ids in dataset["input_ids"]]
        batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
        return LengthBucketSampler(lengths, batch, seed=self.args.data_seed or self.args.seed)
