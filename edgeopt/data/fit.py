"""Does DATA fit the model? Checked once, on the source model, before anything is built.

Data that passes the dtype / rank checks can still be wrong for the model: token ids beyond its
vocabulary (tokenized for another model), sequences longer than its position table. Found late,
inside a runtime's calibration, that is an opaque native error; found here it is one line that
names the sample and the input.
"""

from __future__ import annotations

from edgeopt.data.dataset import Dataset
from edgeopt.errors import UsageError, first_line


def _extremes(ds: Dataset) -> list[int]:
    """The samples most likely to break a model: the longest, and the largest value of each
    integer input (an id past the vocabulary)."""
    if ds.kind == "images":
        return [0]
    picks = {0}
    longest = max(range(len(ds.samples)), key=lambda i: max(a.size for a in ds.samples[i].values()))
    picks.add(longest)
    for name, arr in ds.samples[0].items():
        if arr.dtype.kind in "iu":
            picks.add(max(range(len(ds.samples)), key=lambda i: int(ds.samples[i][name].max(initial=0))))
    return sorted(picks)


def check_fits(model, ds: Dataset, what: str) -> None:
    """Run the source model on the extreme samples of ``ds``; a rejection is the data's fault. Ids
    past a table the model reads them from (models/ids.py) are named with the table's size first."""
    limits = model.metadata.get("id_limits")
    if limits is not None:
        from edgeopt.models.ids import check_ids

        check_ids(ds.samples, limits.exact, f"{what} does not fit {model.name}")
    if model.reference is None:
        return
    for i in _extremes(ds):
        sample = ds.samples[i]
        try:
            model.reference(sample)
        except Exception as e:  # noqa: BLE001 - the model rejected this sample: say which and why
            ints = {n: int(a.max(initial=0)) for n, a in sample.items() if a.dtype.kind in "iu"}
            facts = [f"largest {n} {v}" for n, v in ints.items() if "mask" not in n]
            if sample and next(iter(sample.values())).ndim >= 2:
                facts.append(f"length {next(iter(sample.values())).shape[1]}")
            if model.tokenizer is not None:
                hint = ("was it tokenized for this model (vocabulary, maximum length"
                        f"{f' {model.max_length}' if model.max_length else ''})?")
            elif ints:
                hint = "are its integer inputs within the model's embedding tables?"
            else:
                hint = "check its shape and preprocessing against the model's inputs"
            raise UsageError(f"{what} does not fit {model.name}: sample {i} ({', '.join(facts) or 'no integer input'}) "
                             f"is rejected by the model: {first_line(e, 160)}; {hint}") from None
