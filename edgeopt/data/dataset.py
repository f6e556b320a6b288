"""A list of single-sample feeds (+ optional labels), with checks, splits and batching."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from edgeopt.errors import UsageError
from edgeopt.spec import IOSpec

_CASTS = {("float64", "float32"), ("float16", "float32"), ("int32", "int64"), ("int8", "int64"),
          ("uint8", "int64"), ("int16", "int64"), ("bool", "int64"), ("int64", "int32"), ("uint8", "float32")}


@dataclass
class Dataset:
    samples: list[dict[str, np.ndarray]]  # each array has a leading batch axis of size 1
    labels: np.ndarray | None = None
    source: str = ""
    kind: str = "tensors"  # tensors | text | images
    pad_values: dict[str, int] = field(default_factory=dict)  # per input, for batching ragged text
    texts: list[str] | None = None
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    def validate(self, io: IOSpec) -> None:
        """Names, dtypes, ranks, static sizes and finiteness against the model's inputs."""
        want = {s.name: s for s in io.inputs}
        have = set(self.samples[0])
        if have != set(want):
            raise UsageError(f"{self.source} has inputs {sorted(have)}, but the model takes {sorted(want)}; "
                             "key the data by the model's input names")
        # lazily decoded images are checked on the first one; every other kind on all samples
        for i, sample in enumerate(self.samples if self.kind != "images" else self.samples[:1]):
            for name, arr in sample.items():
                spec = want[name]
                if arr.dtype.name != spec.dtype:
                    if (arr.dtype.name, spec.dtype) not in _CASTS:
                        raise UsageError(f"{self.source}: {name!r} is {arr.dtype.name}, the model takes {spec.dtype}")
                    sample[name] = arr = arr.astype(spec.dtype)
                if arr.ndim != len(spec.shape):
                    raise UsageError(f"{self.source}: {name!r} has shape {tuple(arr.shape)} (rank {arr.ndim}), "
                                     f"the model takes rank {len(spec.shape)} {spec.shape}")
                for axis, (got, dim) in enumerate(zip(arr.shape, spec.shape)):
                    if isinstance(dim, int) and got != dim:
                        raise UsageError(f"{self.source}: {name!r} has size {got} on axis {axis}, the model takes {dim}")
                if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                    raise UsageError(f"{self.source}: sample {i} of {name!r} has NaN or Inf; clean the data")
        if self.labels is not None and len(self.labels) != len(self.samples):
            raise UsageError(f"{self.source}: {len(self.labels)} labels for {len(self.samples)} samples")

    def _take(self, idx) -> "Dataset":
        return replace(self, samples=[self.samples[i] for i in idx],
                       labels=None if self.labels is None else self.labels[idx],
                       texts=None if self.texts is None else [self.texts[i] for i in idx])

    def subsample(self, n: int, *, seed: int = 0) -> "Dataset":
        """At most n samples, shuffled; stratified by label (round-robin over classes) when labelled."""
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(self))
        if self.labels is not None:
            by_class: dict = {}
            for i in order:
                by_class.setdefault(self.labels[i].item() if self.labels.ndim == 1 else 0, []).append(i)
            queues = list(by_class.values())
            order, k = [], 0
            while any(queues):
                q = queues[k % len(queues)]
                if q:
                    order.append(q.pop())
                k += 1
            order = np.array(order)
        return self._take(np.array(order[:n]))

    def split(self, holdout: float, *, seed: int = 0) -> tuple["Dataset", "Dataset"]:
        """(calibration part, held-out evaluation part), shuffled."""
        order = np.random.default_rng(seed).permutation(len(self))
        k = max(1, int(round(len(self) * holdout)))
        if len(self) - k < 1:
            raise UsageError(f"{self.source}: {len(self)} samples are too few to hold some out; pass --eval")
        return self._take(order[k:]), self._take(order[:k])

    def batches(self, batch_size: int):
        """Yield (feeds, labels) with samples stacked; ragged text is right-padded with pad_values."""
        for start in range(0, len(self), batch_size):
            feeds = stack(self.samples[start:start + batch_size], self.pad_values)
            labels = None if self.labels is None else self.labels[start:start + batch_size]
            yield feeds, labels

    def same_shape_batches(self, limit: int = 64, samples=None):
        """Yield (sample indices, feeds): samples of one shape stacked, at most ``limit`` per batch,
        no padding; each sample's numbers in a model are then its own (to float rounding).
        ``samples``: a subset to group instead of all (indices refer to it)."""
        samples = self.samples if samples is None else samples
        groups: dict[tuple, list[int]] = {}
        for i, sample in enumerate(samples):
            groups.setdefault(tuple((k, v.shape) for k, v in sorted(sample.items())), []).append(i)
        for members in groups.values():
            for start in range(0, len(members), limit):
                chunk = members[start:start + limit]
                yield chunk, {k: np.concatenate([samples[i][k] for i in chunk]) for k in samples[chunk[0]]}

    def padding_fraction(self) -> float | None:
        """Share of padded positions in attention masks (None when there is no mask)."""
        masks = [s["attention_mask"] for s in self.samples if "attention_mask" in s]
        if not masks:
            return None
        total = sum(m.size for m in masks)
        return float(1 - sum(int(m.sum()) for m in masks) / total) if total else None


def stack(chunk: list[dict[str, np.ndarray]], pad_values: dict[str, int]) -> dict[str, np.ndarray]:
    """Single-sample feeds stacked into one batch; ragged token ids right-padded with ``pad_values``."""
    feeds = {}
    for name in chunk[0]:
        arrays = [s[name] for s in chunk]
        if len({a.shape for a in arrays}) > 1:
            width = max(a.shape[1] for a in arrays)
            pad = pad_values.get(name, 0)
            arrays = [np.pad(a, [(0, 0), (0, width - a.shape[1])] + [(0, 0)] * (a.ndim - 2), constant_values=pad)
                      for a in arrays]
        feeds[name] = np.concatenate(arrays, axis=0)
    return feeds
