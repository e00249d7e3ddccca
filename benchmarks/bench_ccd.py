"""Benchmark: the cost of RDE's clean/noisy division (CCD) against the epoch it prepares.

CCD passes once over the training split before every epoch, forward only, in eval mode and
without gradients: one forward of each training pair, the same images and captions an epoch
trains on, so its time should be about a third of an epoch's (a training step is a forward and a
backward, the backward about twice the forward), plus the two Gaussian-mixture fits, which take
milliseconds. This trains RDE through the real loop (`tbpr.train.fit`) for `--epochs` epochs on
the pipeline's preprocess cache (the CPU default of `params.yaml`; made first, with the
pipeline's own stages, when it is missing) and prints, per epoch, the CCD pass's seconds, the
epoch's training seconds and their ratio, with the number of forward passes of each. One run,
one process: both figures come from the same machine under the same load.

    python benchmarks/bench_ccd.py [--epochs 2] [--noise 0.0] [--params params.yaml]
"""
import argparse
import json
import math
import tempfile
from pathlib import Path

from tbpr import pipeline as P
from tbpr.plugins import resolve_params
from tbpr.runs import PATHS
from tbpr.train import fit


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--noise", type=float, default=0.0, help="data.noise_rate of the cache")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()
    more = {"train": {"method": "rde", "epochs": args.epochs, "select": "last"}}
    if args.noise:
        more["data"] = {"noise_rate": args.noise}
    params = resolve_params(args.params, more)
    if not (PATHS["cache"] / "dataset.json").exists():
        P.stage_download(params)
        P.stage_preprocess(params)
    train = params["train"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        fit(params, PATHS["cache"], out / "model", out / "ckpt", out / "live")
        history = json.loads((out / "ckpt/last/trainer_state.json").read_text())["history"]
    n = len(json.loads((PATHS["cache"] / "dataset.json").read_text())["train"]["captions"])
    ccd_batches = math.ceil(n / train["batch_size"])
    steps = n // train["batch_size"]
    print(f"{n} training pairs; CCD: {ccd_batches} forward batches (no backward); "
          f"an epoch: {steps} steps (forward + backward), batch {train['batch_size']}")
    print("epoch  CCD s  epoch s  CCD / epoch")
    for row in history:
        ratio = row["ccd_secs"] / row["epoch_secs"]
        print(f"{row['epoch']:5d}  {row['ccd_secs']:5.1f}  {row['epoch_secs']:7.1f}  {ratio:11.2f}")
    ratios = [r["ccd_secs"] / r["epoch_secs"] for r in history]
    share = [r["ccd_secs"] / (r["ccd_secs"] + r["epoch_secs"]) for r in history]
    print(f"CCD costs {sum(ratios) / len(ratios):.2f} of an epoch's training time "
          f"({100 * sum(share) / len(share):.0f}% of the time the two take together)")


if __name__ == "__main__":
    main()
