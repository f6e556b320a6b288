"""edgeopt federate: stores training a tiny GRU recommender on Flower's simulation engine, row-aware
averaging, the forgetting gate, a store dropping out, bad input; the deployment engine (SuperLink +
3 SuperNodes on loopback) and the yoochoose benchmark's smoke run are slow."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, SHARED_DATA, run_cli

GRU = f"{ROOT / 'tests' / 'update_models.py'}:session_gru"
GRU_KW = {"n_items": 50, "dim": 16}
SPEC = "item_ids:batchx5:int64"
flower = pytest.mark.skipif(importlib.util.find_spec("flwr") is None or importlib.util.find_spec("ray") is None,
                            reason="Flower is not installed: pip install 'edgeopt[federate]' (its own environment)")


@pytest.fixture(scope="module", autouse=True)
def _no_phoning_home():
    """Flower's telemetry and Ray's usage stats report to the internet by default: off for these
    tests (Flower reads it when first imported; the console scripts and Flower processes the tests
    start inherit it)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLWR_TELEMETRY_ENABLED", "0")
        mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
        yield


def _walks(rng, lo, hi, n, length=5):
    start = rng.integers(lo, hi, n)
    seq = np.stack([lo + (start - lo + k) % (hi - lo) for k in range(length + 1)], 1)
    return seq[:, :length].astype(np.int64), seq[:, length].astype(np.int64)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A GRU trained on walks over items 1..49 (old data), and 3 stores whose walks reach items
    50..69 the model has never seen, each store a different range (non-IID)."""
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from update_models import trained_session_gru

    folder = tmp_path_factory.getbasetemp() / "federate-world"  # one per session: test_federate_*.py share it
    if (folder / "gru.pt").exists():
        return folder
    folder.mkdir()
    rng = np.random.default_rng(0)
    x, y = _walks(rng, 1, 50, 800)
    np.savez(folder / "old.npz", item_ids=x, labels=y)
    (folder / "stores").mkdir()
    for name, (lo, hi) in {"a": (30, 60), "b": (30, 55), "c": (40, 70)}.items():
        a, b = _walks(rng, lo, hi, 200)
        np.savez(folder / "stores" / f"{name}.npz", item_ids=a, labels=b)
    torch.save(trained_session_gru(x, y, epochs=15, **GRU_KW).state_dict(), folder / "gru.pt")
    return folder


def _base(world, out, *extra):
    return ["federate", world / "gru.pt", "--arch", GRU, "--arch-kwargs", json.dumps(GRU_KW), "--input", SPEC,
            "--lr", "1e-2", "--batch-size", "16", "-o", out, *extra]


@flower
def test_federate_cli_end_to_end(world, tmp_path):
    """The real command: 3 stores, 2 rounds of FedAvg with lwf; the id space is agreed (70 rows in
    every store), the stores' held-out metric rises above the previous version's, the report has
    per-round metrics and bytes each way, and OUT loads as a model of the grown size."""
    out = tmp_path / "out"
    r = run_cli(*_base(world, out, "--stores", world / "stores", "--old-data", world / "old.npz", "--rounds", "2",
                       "--local-epochs", "2", "--method", "lwf", "--metric", "recall@20", "--max-forgetting", "0.2",
                       "--json"), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads(r.stdout)
    assert rep == json.loads((out / "report.json").read_text())
    assert rep["model"]["grew"]["item_ids"] == {"from": 50, "to": 70, "parameter": "inner.items.weight"}
    assert [row["round"] for row in rep["rounds"]] == [1, 2]
    for row in rep["rounds"]:
        assert row["sampled"] == row["replied"] == 3 and row["failed"] == 0
        # --wire rows (the default): a store sends back only the item rows its walks read, and their ids
        assert row["bytes_down_per_store"] > 70 * 16 * 4 and row["bytes_up_per_store"] < row["bytes_down_per_store"]
        assert set(row["stores_eval"]) == {"top1", "recall@20", "mrr@20"}
        assert "forgetting" in row["old"]
    # items 50..69 are new: the previous version cannot name them, the federated model learnt them
    first, last = rep["rounds"][0]["stores_eval"]["recall@20"], rep["rounds"][-1]["stores_eval"]["recall@20"]
    assert last > 0.6 and last >= first - 0.05
    assert rep["forgetting"] <= 0.2 and rep["passed"]
    assert rep["bytes"]["total_down"] == sum(r["bytes_down_per_store"] * r["sampled"] for r in rep["rounds"])
    assert rep["privacy"] is None and rep["seconds"] > 0 and rep["settings"]["wire"] == "rows"

    from edgeopt.models import load_model

    m = load_model(out)
    assert m.io.outputs[0].shape[-1] == 70
    y = m.reference({"item_ids": np.array([[61, 62, 63, 64, 65]], dtype=np.int64)})
    assert y[m.io.outputs[0].name].shape == (1, 70)


@flower
def test_row_average_divides_a_row_by_the_stores_that_touched_it(monkeypatch):
    """Store A (weight 3) moved row 1, store B (weight 1) row 2, both moved row 3: plain FedAvg gives
    0.75, 0.5 and 1.5; the row-aware average keeps each store's own row and averages the shared one.
    FedAdam's server step then works on the corrected average (the mixin sits below FedOpt)."""
    from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict

    from flwr.supercore.task_identity import TaskIdentity

    from edgeopt.federate import strategy

    for key in ("_run_id", "_node_id", "_task_id"):  # what a running ServerApp has set for its messages
        monkeypatch.setattr(TaskIdentity, key, 1, raising=False)
    g = np.zeros((4, 2), np.float32)
    dense = np.zeros(3, np.float32)

    def reply(rows, delta, weight, dense_value):
        w = g.copy()
        w[rows] += delta
        content = RecordDict({"arrays": ArrayRecord({"t": Array(w), "d": Array(dense + dense_value)}),
                              "metrics": MetricRecord({"num-examples": weight}),
                              "rows": ConfigRecord({"t": rows})})
        return Message(content, dst_node_id=1, message_type=MessageType.TRAIN)

    s = strategy.make("fedavg", tables=["t"], fraction=1.0, min_stores=2)
    s.rounds.append(strategy.RoundLog(1, sampled=2))
    s._sent = ArrayRecord({"t": Array(g), "d": Array(dense)})
    arrays, _ = s.aggregate_train(1, [reply([1, 3], np.float32(1), 3, 1.0), reply([2, 3], np.float32([[2], [3]]), 1, 5.0)])
    t = arrays["t"].numpy()
    np.testing.assert_allclose(t[:, 0], [0, 1, 2, 1.5])
    np.testing.assert_allclose(arrays["d"].numpy(), 2.0)  # dense weights: Flower's weighted mean, untouched
    assert s.rounds[-1].rows_rescaled == {"t": 2} and s.rounds[-1].replied == 2
    adam = strategy.make("fedadam", tables=["t"], fraction=1.0, min_stores=2)
    names = [c.__name__ for c in type(adam).__mro__]
    assert names.index("FedOpt") < names.index("RowAverage") < names.index("FedAvg")
    with pytest.raises(Exception, match="does not exist"):
        strategy.make("fedsgd", tables=[], fraction=1.0, min_stores=2)


@flower
def test_gate_refuses_and_writes_nothing(world, tmp_path):
    """Stores whose walks contradict the old ones (every label shifted): the global model forgets,
    --max-forgetting 0 refuses it with exit 1, and OUT is not created."""
    stores = tmp_path / "stores"
    stores.mkdir()
    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        x, y = _walks(rng, 1, 50, 200)
        np.savez(stores / f"{name}.npz", item_ids=x, labels=1 + (y - 1 + 7) % 49)
    out = tmp_path / "out"
    r = run_cli(*_base(world, out, "--stores", stores, "--old-data", world / "old.npz", "--rounds", "1",
                       "--local-epochs", "3", "--max-forgetting", "0"), timeout=300)
    assert r.returncode == 1, r.stderr[-3000:]
    assert "forgot too much" in r.stderr and not out.exists()


@flower
def test_a_store_that_drops_out_does_not_stall_or_corrupt_the_round(world, tmp_path):
    """A store whose data vanished after the checks fails inside its round: Flower reports the
    failure, the round aggregates the stores that answered, and the run finishes in time (here
    with FedProx and Flower's client-side DP, whose parameters the report records)."""
    import shutil
    import time

    from edgeopt.federate.job import Privacy
    from edgeopt.federate.run import prepare, simulate

    stores = tmp_path / "stores"
    shutil.copytree(world / "stores", stores)
    job = prepare(model=world / "gru.pt", arch=GRU, arch_kwargs=GRU_KW, inputs=[SPEC], stores=stores,
                  out=tmp_path / "out", rounds=2, round_timeout=120, strategy="fedprox", proximal_mu=0.1,
                  dp=Privacy(clip=5.0, epsilon=50.0))
    (stores / "c.npz").unlink()  # store c drops out
    t0 = time.perf_counter()
    rep = simulate(job)
    assert time.perf_counter() - t0 < 120
    for row in rep["rounds"]:
        assert row["sampled"] == 3 and row["replied"] == 2 and row["failed"] == 1
    assert rep["privacy"]["clip"] == 5.0 and rep["privacy"]["epsilon"] == 50.0 and rep["privacy"]["delta"] == 1e-5
    assert rep["strategy"] == "fedprox" and rep["settings"]["proximal_mu"] == 0.1
    import torch

    state = torch.export.load(tmp_path / "out" / "model.pt2").state_dict
    assert all(torch.isfinite(v).all() for v in state.values())


def _bad(world, tmp_path, case):
    stores = tmp_path / "stores"
    stores.mkdir()
    x, y = _walks(np.random.default_rng(2), 1, 50, 50)
    np.savez(stores / "a.npz", item_ids=x, labels=y)
    extra = []
    if case == "schema":
        np.savez(stores / "b.npz", features=np.zeros((10, 5), np.float32), labels=np.zeros(10, np.int64))
    elif case == "empty":
        np.savez(stores / "b.npz", item_ids=np.zeros((0, 5), np.int64), labels=np.zeros(0, np.int64))
    elif case == "ids":
        np.savez(stores / "b.npz", item_ids=x + 100, labels=y)
        extra = ["--id-space", "80"]
    else:
        np.savez(stores / "b.npz", item_ids=x, labels=y)
        extra = {"strategy": ["--strategy", "fedsgd"], "method": ["--method", "ewc"], "flower": []}[case]
    return _base(world, tmp_path / "out", "--stores", stores, *extra)


@pytest.mark.parametrize("case, expect", [("schema", "the model needs"), ("empty", "is empty"),
                                          ("ids", "past the agreed --id-space 80"), ("strategy", "does not exist"),
                                          ("method", "finetune or lwf")])
def test_bad_input(world, tmp_path, case, expect):
    r = run_cli(*_bad(world, tmp_path, case))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], r.stderr
    assert not (tmp_path / "out").exists()


def test_flower_missing(world, tmp_path, monkeypatch):
    """Without flwr (or its simulation engine): one line naming the extra, exit 2, nothing written."""
    from click.testing import CliRunner

    from edgeopt.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("flwr", "ray") else real(name, *a))
    r = CliRunner().invoke(main, [str(a) for a in _bad(world, tmp_path, "flower")])
    assert r.exit_code == 2, r.output
    assert "edgeopt[federate]" in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc, seconds: float) -> None:
    import socket
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert proc.poll() is None, "the SuperLink exited while starting"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {seconds} s")


@flower
@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["--secagg"]], ids=["plain", "secagg"])
def test_deployment_engine_on_loopback(world, tmp_path, extra):
    """The same app on Flower's deployment engine: `federate --flower-app` writes the Flower App, a
    SuperLink and 3 SuperNodes (one store each) run as processes on 127.0.0.1, `flwr run` submits
    2 rounds, and the SuperLink's ServerApp writes OUT, all within a bounded time; also with
    SecAgg+ (the module-level apps read --secagg from the run config)."""
    import subprocess

    bin_dir = Path(sys.executable).parent
    out, app, home = tmp_path / "out", tmp_path / "app", tmp_path / "flwr-home"
    r = run_cli(*_base(world, out, "--stores", world / "stores", "--old-data", world / "old.npz", "--rounds", "2",
                       "--round-timeout", "120", "--flower-app", app, *extra))
    assert r.returncode == 0 and (app / "pyproject.toml").is_file(), r.stderr
    assert not out.exists()
    link = _free_port()
    home.mkdir()
    (home / "config.toml").write_text(f'[superlink]\ndefault = "local"\n\n[superlink.local]\n'
                                      f'address = "127.0.0.1:{link}"\ninsecure = true\n')
    env = {**os.environ, "FLWR_HOME": str(home), "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    procs = []
    try:
        procs.append(subprocess.Popen([bin_dir / "flower-superlink", "--insecure", "--host", "127.0.0.1", "--port",
                                       str(link), "--database", ":flwr-in-memory:",
                                       "--disable-runtime-dependency-installation"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        _wait_listening(link, procs[0], 60)
        for store in sorted((world / "stores").glob("*.npz")):
            procs.append(subprocess.Popen([bin_dir / "flower-supernode", "--insecure", "--superlink",
                                           f"127.0.0.1:{link}", "--host", "127.0.0.1", "--port", str(_free_port()),
                                           "--node-config", f"store='{store}'"], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True))
        run = subprocess.run([bin_dir / "flwr", "run", app, "local", "--stream"], env=env, capture_output=True,
                             text=True, timeout=300)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    finally:  # each Flower process leads its own group: its SuperExec / app children end with it
        import signal

        def signal_group(p, sig):
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:  # the whole group has ended already
                pass

        for p in procs:
            signal_group(p, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                signal_group(p, signal.SIGKILL)
    rep = json.loads((out / "report.json").read_text())
    assert [(row["sampled"], row["replied"]) for row in rep["rounds"]] == [(3, 3), (3, 3)]
    assert rep["forgetting"] is not None and (out / "model.pt2").is_file()
    assert bool(rep["secure_aggregation"]) == bool(extra)


@flower
@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "yoochoose").is_dir(), reason="shared data missing: ../shared/data/yoochoose")
def test_yoochoose_benchmark_smoke(tmp_path):
    import subprocess

    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "federate_yoochoose.py"), "--limit", "600",
                        "--stores", "3", "--rounds", "1", "--epochs", "1", "--update-epochs", "1",
                        "--wires", "rows,compact", "--json", str(tmp_path / "r.json")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "r.json").read_text())
    assert set(res["runs"]) >= {"federated", "centralized update (pooled stores)", "stores alone (mean)"}
    assert len(res["runs"]["stores alone (each)"]) == 3 and res["data"]["items_new_in_later_period"] > 0
    fed, compact = (res["runs"][k]["bytes_per_store_per_round"] for k in ("federated", "federated --wire compact"))
    assert fed["down"] > fed["up"] > compact["up"] > 0 and res["runs"]["federated"]["wire"] == "rows"


@flower
@pytest.mark.slow
def test_global_model_exports_and_ships_as_a_delta_bundle(world, tmp_path):
    """OUT is written like an update: it exports, and packages as a delta bundle against the
    previous version's bundle. The run samples a fraction of the stores per round."""
    import torch

    from edgeopt.bundle import keygen, package
    from edgeopt.federate import federate
    from edgeopt.models.pt2_folder import write_pt2_folder
    from edgeopt.spec import parse_input

    sys.path.insert(0, str(ROOT / "tests"))
    from update_models import SessionGRU

    base = SessionGRU(**GRU_KW)
    base.load_state_dict(torch.load(world / "gru.pt"))
    write_pt2_folder(tmp_path / "v1" / "recsys", base.eval(), (torch.zeros(2, 5, dtype=torch.long),),
                     [parse_input(SPEC)], task="classify")
    r = federate(model=world / "gru.pt", arch=GRU, arch_kwargs=GRU_KW, inputs=[SPEC], stores=world / "stores",
                 out=tmp_path / "v2" / "recsys", rounds=1, lr=1e-2, batch_size=16, fraction=0.5, min_stores=2)
    assert r.report["rounds"][0]["sampled"] == 2  # --fraction 0.5 of 3 stores, at least --min-stores 2
    for v in ("v1", "v2"):
        r = run_cli("export", tmp_path / v / "recsys", "--to", "onnx", "-o", tmp_path / f"exp-{v}")
        assert r.returncode == 0, r.stderr
    keygen(out=tmp_path / "k")
    package(out=tmp_path / "exp-v1", bundle=tmp_path / "v1.edgepkg", sign_key=tmp_path / "k.key", version="1.0")
    delta = package(out=tmp_path / "exp-v2", bundle=tmp_path / "v2.edgepkg", sign_key=tmp_path / "k.key",
                    version="1.1", base=tmp_path / "v1.edgepkg")
    assert delta.delta and (tmp_path / "v2.edgepkg").stat().st_size > 0
