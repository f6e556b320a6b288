"""edgeopt federate --secagg: Flower's SecAgg+ (SecAggPlusWorkflow + secaggplus_mod) on the simulation
engine gives the plain FedAvg model up to SecAgg+'s quantization, embedding rows still averaged over
the stores that read them; the strategy's arithmetic on SecAgg+'s mean; bad combinations."""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_federate import GRU, GRU_KW, SPEC, _base, _no_phoning_home, flower, world  # noqa: F401 - fixtures
from tests.conftest import run_cli


@flower
def test_secagg_gives_plain_fedavg_up_to_quantization(world, tmp_path):  # noqa: F811 - the fixture
    """One round over 3 stores (200 samples each, 180 train), with and without SecAgg+: same local
    training, so the global models differ only by SecAgg+'s stochastic quantization. Each store's
    weighted change is rounded to a step of 2*clip/2**22; the sum of 3 errs by at most 3 steps, the
    mean divides that by the weights' sum (3 * 180/200), and a row only a third of the weight read is
    scaled by 3 again."""
    import torch

    from edgeopt.federate.job import SecAgg
    from edgeopt.federate.run import prepare, simulate

    reports, states = {}, {}
    for name, secure in (("plain", None), ("secure", SecAgg())):
        out = tmp_path / name
        job = prepare(model=world / "gru.pt", arch=GRU, arch_kwargs=GRU_KW, inputs=[SPEC], stores=world / "stores",
                      out=out, rounds=1, old_data=world / "old.npz", secagg=secure)
        reports[name] = simulate(job)
        states[name] = torch.export.load(out / "model.pt2").state_dict
    plain, secure = reports["plain"], reports["secure"]
    assert plain["secure_aggregation"] is False
    sa = secure["secure_aggregation"]
    assert sa["protocol"].startswith("SecAgg+") and sa["max_weight"] == 200.0 and sa["clip"] == 8.0
    assert sa["quantization"] == 2 ** 22 and sa["shares"] == 1.0 and sa["threshold"] == 0.5
    row_p, row_s = plain["rounds"][0], secure["rounds"][0]
    assert row_s["replied"] == 3 and row_s["failed"] == 0
    assert row_s["rows_rescaled"] == row_p["rows_rescaled"] and row_p["rows_rescaled"]["inner.items.weight"] > 0
    # the masked vector: int64 per entry of the weights, of the row mask (70 rows) and of Flower's weight factor
    entries = sum(v.numel() for v in states["plain"].values()) + 70 + 1
    assert 8 * entries < row_s["bytes_up_per_store"] < 8 * entries + 200 * (len(states["plain"]) + 2)
    assert row_s["bytes_down_per_store"] == row_p["bytes_down_per_store"]
    step = 2 * 8.0 / 2 ** 22
    bound = 3 * step / (3 * 180 / 200) * 3
    diffs = {k: float((states["plain"][k] - states["secure"][k]).detach().abs().max()) for k in states["plain"]}
    assert max(diffs.values()) <= bound, diffs
    assert max(diffs.values()) > 0  # it did go through the quantizer
    assert secure["rounds"][0]["stores_eval"]["recall@20"] == pytest.approx(row_p["stores_eval"]["recall@20"], abs=0.02)


@flower
def test_secure_rows_turns_secaggs_mean_back_into_row_averaged_weights():
    """What SecAgg+ hands the strategy is the weighted mean of [change..., row mask...] (here with
    quantization-sized noise). Store A (weight 3) read rows 1 and 3, store B (weight 1) rows 2 and 3:
    the rows come out as each store's own change, the shared row as the weighted mean, an unread row
    exactly unchanged; dense weights are the plain weighted mean."""
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays

    from edgeopt.federate import secagg

    g, dense = np.zeros((4, 2), np.float32), np.zeros(3, np.float32)
    change_a, change_b = np.zeros_like(g), np.zeros_like(g)
    change_a[[1, 3]] = 1.0
    change_b[[2, 3]] = np.float32([[2], [3]])
    mask_a, mask_b = np.float32([0, 1, 0, 1]), np.float32([0, 0, 1, 1])
    mean = [(3 * a + b) / 4 for a, b in ((change_a, change_b), (dense + 1, dense + 5), (mask_a, mask_b))]
    noise = np.random.default_rng(0)
    mean = [m + noise.uniform(-4e-6, 4e-6, m.shape) for m in mean]
    s = secagg.legacy_strategy("fedavg", keys=["t", "d"], tables=["t"], initial=[g, dense], fraction=1.0,
                               min_stores=2, proximal_mu=0.0, server_lr=0.01, evaluate_fn=None)
    s._sent = [g, dense]
    s.rounds.append(secagg.RoundLog(1, sampled=2))
    res = [(None, FitRes(Status(Code.OK, ""), ndarrays_to_parameters(mean), n, {})) for n in (3, 1)]
    params, _ = s.aggregate_fit(1, res, [])
    t, d = parameters_to_ndarrays(params)
    np.testing.assert_allclose(t[:, 0], [0, 1, 2, 1.5], atol=1e-4)
    assert (t[0] == 0).all()  # no store read row 0: SecAgg+'s noise does not move it
    np.testing.assert_allclose(d, 2.0, atol=1e-5)
    assert s.rounds[-1].rows_rescaled == {"t": 2} and s.rounds[-1].replied == 2
    np.testing.assert_allclose(s.latest[0], t)
    adam = secagg.legacy_strategy("fedadam", keys=["t"], tables=["t"], initial=[g], fraction=1.0, min_stores=2,
                                  proximal_mu=0.0, server_lr=0.01, evaluate_fn=None)
    names = [c.__name__ for c in type(adam).__mro__]
    assert names.index("FedOpt") < names.index("SecureRows") < names.index("FedAvg")


@pytest.mark.parametrize("extra, expect", [
    (["--secagg", "--dp-clip", "1", "--dp-epsilon", "5"], "--secagg with --dp-clip is not built"),
    (["--secagg", "--secagg-shares", "5"], "exceed the 3 stores"),
    (["--secagg", "--secagg-shares", "2"], "--secagg-shares must be > 2"),
    (["--secagg", "--secagg-shares", "3", "--secagg-threshold", "3"], "--secagg-threshold must be"),
])
def test_secagg_bad_input(world, tmp_path, extra, expect):  # noqa: F811 - the fixture
    out = tmp_path / "out"
    r = run_cli(*_base(world, out, "--stores", world / "stores", *extra))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], r.stderr
    assert not out.exists()
