"""edgeopt federate --wire: a store sends only the embedding rows its data read (plus dense arrays),
optionally as each value's high 16 bits; the server rebuilds the arrays Flower averages. The rows a
store did not read must not move in its training (else ``rows`` would drop changes): checked on a
real store's training with lwf and FedProx's term."""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_federate import GRU, GRU_KW, SPEC, _base, _no_phoning_home, world  # noqa: F401 - fixtures
from tests.conftest import run_cli


def test_rows_a_store_did_not_read_do_not_move_and_the_server_rebuilds_its_arrays(world):  # noqa: F811
    from edgeopt.federate import local, wire
    spec = local.ModelSpec(model=str(world / "gru.pt"), rows=(("item_ids", 70),), labels=70, task="classify",
                           metric="recall@20", arch=GRU, arch_kwargs=tuple(sorted(GRU_KW.items())), inputs=(SPEC,))
    built = local.build(spec)
    ds, _ = local.load_store(spec, world / "stores" / "b.npz", None, 0)  # walks over items 30..54
    sent = {k: v.detach().clone() for k, v in built.module.state_dict().items()}
    out = local.train(spec, built, sent, ds, local.LocalConfig(method="lwf", epochs=1, lr=1e-2, batch_size=16),
                      proximal_mu=0.1)
    rows = local.touched_rows(built, ds)
    table = "inner.items.weight"
    unread = np.setdiff1d(np.arange(70), rows[table])
    assert len(unread) > 30 and len(rows[table]) > 10
    new, old = out["state"][table].numpy(), sent[table].numpy()
    assert np.array_equal(new[unread], old[unread]) and not np.array_equal(new[rows[table]], old[rows[table]])
    state = {k: v.numpy() for k, v in out["state"].items()}
    base = {k: v.numpy() for k, v in sent.items()}
    sizes = {}
    for w in wire.WIRES:
        arrays = wire.encode(w, out["state"], base, rows)
        sizes[w] = wire.reply_bytes(arrays, rows)
        full = wire.expand(arrays, base, rows)
        assert list(full) == list(state)
        for k in state:
            if w == "compact":  # the high 16 bits: within bfloat16's resolution, the sent weight's low bits
                np.testing.assert_allclose(full[k], state[k], rtol=2 ** -8, atol=0)
                assert np.array_equal(full[k].view(np.uint32) & 0xFFFF, base[k].view(np.uint32) & 0xFFFF)
            else:
                assert np.array_equal(full[k], state[k]), (w, k)
    assert sizes["rows"] == sizes["full"] - len(unread) * 16 * 4  # float32 rows of 16
    assert sizes["compact"] < 0.55 * sizes["rows"]


@pytest.mark.parametrize("extra", [["--wire", "rows", "--dp-clip", "1", "--dp-epsilon", "5"],
                                   ["--wire", "compact", "--secagg"]])
def test_wire_needs_full_with_dp_or_secagg(world, tmp_path, extra):  # noqa: F811
    out = tmp_path / "out"
    r = run_cli(*_base(world, out, "--stores", world / "stores", *extra))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "use --wire full" in lines[0], r.stderr
    assert not out.exists()
