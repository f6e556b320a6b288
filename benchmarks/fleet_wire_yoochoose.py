"""Bytes on the wire for a fleet update of the session recommender (issue 32's target: the delta,
not the full bundle), on real YOOCHOOSE clicks.

    PYTHONPATH=$PWD python benchmarks/fleet_wire_yoochoose.py [--epochs 2] [--update-epochs 3] [--limit N]
        [--json FILE]

A GRU4Rec-style model (benchmarks/update_yoochoose.py) is trained on the earlier period and updated
on the later one with `edgeopt update --method replay --compact-delta`; both are exported to ONNX and
packaged as signed bundles: 1.0 full, 1.1 full and 1.1 delta against 1.0. A TUF repository
(`edgeopt repo init`, `edgeopt publish`) is served on 127.0.0.1 by a static file server that counts
every byte it sends; one device (`edgeopt agent --once`, a real process) installs 1.0, then takes
1.1. Reported: the bytes each poll moved (TUF metadata and bundles apart) against the full bundle.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import update_yoochoose as uy  # noqa: E402


class _Counting(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def copyfile(self, source, outputfile):  # every body the server sends (headers are not counted)
        shutil.copyfileobj(source, outputfile)
        size = source.tell()
        kind = "bundles" if self.path.endswith(".edgepkg") else "metadata"
        self.server.sent[kind] += size
        self.server.files.append((self.path, size))


def _serve(folder: Path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Counting, directory=str(folder)))
    server.sent, server.files = {"metadata": 0, "bundles": 0}, []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2, help="base model (bytes, not quality, are measured)")
    ap.add_argument("--update-epochs", type=int, default=3)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--limit", type=int, help="sessions per period (smoke tests)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    if not uy.DATA.is_dir():
        print(f"shared data missing: {uy.DATA} (see ../shared/data/SOURCES.md)", file=sys.stderr)
        return 2
    import torch

    from edgeopt.bundle import keygen, package
    from edgeopt.models.pt2_folder import write_pt2_folder
    from edgeopt.update import update

    torch.set_num_threads(1)
    old_s = uy.read(uy.DATA / "yoochoose-clicks-100k_train_full.txt")
    new_s = uy.read(uy.DATA / "yoochoose-clicks-100k_test.txt")
    if args.limit:
        old_s, new_s = old_s[:args.limit], new_s[:args.limit]
    ids, _, n_items = uy.number_items(old_s, new_s)
    (old_tr, _), (new_tr, new_te) = uy.split(old_s, 0), uy.split(new_s, 0)
    work = Path(tempfile.mkdtemp(prefix="fleet-wire-"))
    for k, v in (("old_train", old_tr), ("new_train", new_tr), ("new_eval", new_te)):
        x, y = uy.prefixes(v, ids)
        np.savez(work / f"{k}.npz", item_ids=x, labels=y)
    base = uy.session_gru(n_items, args.dim)
    with np.load(work / "old_train.npz") as f:
        uy.train(base, f["item_ids"], f["labels"], epochs=args.epochs, lr=1e-3, batch=64, seed=0)
    torch.save(base.state_dict(), work / "base.pt")
    arch = f"{ROOT / 'benchmarks' / 'update_yoochoose.py'}:session_gru"
    update(model=work / "base.pt", arch=arch, arch_kwargs={"n_items": n_items, "dim": args.dim}, inputs=uy._spec(),
           data=work / "new_train.npz", eval_data=work / "new_eval.npz", old_data=work / "old_train.npz",
           method="replay", metric="recall@20", epochs=args.update_epochs, batch_size=64, seed=0,
           compact_delta=True, progress=False, out=work / "v2" / "recsys")
    write_pt2_folder(work / "v1" / "recsys", base.eval(), (torch.zeros(2, uy.L, dtype=torch.long),), uy._spec(),
                     task="classify")
    edgeopt = str(Path(sys.executable).parent / "edgeopt")
    for v in ("v1", "v2"):
        subprocess.run([edgeopt, "export", str(work / v / "recsys"), "--to", "onnx", "-o", str(work / f"exp-{v}")],
                       check=True, capture_output=True)
    key = keygen(out=work / "k")
    b1 = package(out=work / "exp-v1", bundle=work / "1.0.edgepkg", sign_key=key.private_key, version="1.0").bundle
    b2 = package(out=work / "exp-v2", bundle=work / "1.1.edgepkg", sign_key=key.private_key, version="1.1").bundle
    d2 = package(out=work / "exp-v2", bundle=work / "1.1-delta.edgepkg", sign_key=key.private_key, version="1.1",
                 base=b1).bundle
    repo, keys = work / "repo", work / "repo-keys"
    run = functools.partial(subprocess.run, check=True, capture_output=True, text=True)
    run([edgeopt, "repo", "init", "--repo", str(repo), "--keys", str(keys)])
    run([edgeopt, "publish", str(b1), "--repo", str(repo), "--keys", str(keys)])
    server = _serve(repo)
    agent = [edgeopt, "agent", "--repo", f"http://127.0.0.1:{server.server_address[1]}", "--root",
             str(repo / "metadata" / "root.json"), "--public-key", str(key.public_key), "--dest", str(work / "dest"),
             "--device-id", "store-1", "--once", "--json"]
    polls = {}
    for label, bundles in (("install 1.0", [b1]), ("update to 1.1", [b2, d2])):
        if label != "install 1.0":
            for b in bundles:
                run([edgeopt, "publish", str(b), "--repo", str(repo), "--keys", str(keys)])
        server.sent.update(metadata=0, bundles=0)
        report = json.loads(run(agent).stdout.splitlines()[-1])
        polls[label] = {"report_kind": report["kind"], "current": report["current"], **server.sent}
        print(label, polls[label], file=sys.stderr)
    server.shutdown()
    full, delta = b2.stat().st_size, d2.stat().st_size
    upd = polls["update to 1.1"]
    results = {"settings": vars(args), "full_bundle_bytes": full, "delta_bundle_bytes": delta, "polls": polls,
               "update_wire_bytes": upd["metadata"] + upd["bundles"],
               "update_wire_vs_full": round((upd["metadata"] + upd["bundles"]) / full, 3)}
    return uy.finish(results, args.json, work)


if __name__ == "__main__":
    sys.exit(main())
