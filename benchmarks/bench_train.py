"""Training throughput of the configured run (params.yaml), in images per second, through the real training loop.

Trains `--epochs` epochs with `tbpr.train.fit` (accelerate, the method's objectives, gradient clipping, the schedule,
per-epoch validation and checkpoints) on the pipeline's preprocess cache, in a scratch folder, and prints the loop's own
images/s per epoch (the training steps only, as logged to dvclive). Then it times the data path alone (cache read,
augmentation, tokenization, MLM masking) for as many batches, to show whether training waits for data.
Usage: python benchmarks/bench_train.py [--epochs 1] [--params params.yaml] [--cache artifacts/cache]
"""
import argparse, tempfile, time
from pathlib import Path
import torch
from tbpr.core import TbprError, resolve_params
from tbpr.data import Augment, Collate, TrainData, load_cached_dataset, load_tokenizer
from tbpr.train import fit_method, make_loader


def data_path_rate(params: dict, cache: Path, batches: int, model_dir: Path) -> float:
    "Images per second the data path alone delivers (no model), over `batches` batches, with the trained model's tokenizer."
    train = params["train"]
    ds, store = load_cached_dataset(cache)
    tok = load_tokenizer(str(model_dir / "tokenizer"))
    data = TrainData(ds.train, store, Augment(**train["augment"]), params["seed"])
    loader = make_loader(data, Collate(tok, params["model"]["max_length"], train["mlm_prob"], params["seed"]), train, params["seed"])
    images, t0 = 0, time.perf_counter()
    for i, batch in enumerate(loader):
        images += len(batch["pids"])
        if i + 1 == batches: break
    return images / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=1); ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--cache", default="artifacts/cache")
    args = ap.parse_args()
    cache = Path(args.cache)
    if not (cache / "dataset.json").exists():
        raise SystemExit(f"{cache}: no preprocess cache; run `dvc repro preprocess` (or `tbpr preprocess`) first")
    params = resolve_params(args.params, {"train": {"epochs": args.epochs, "seeds": 1}})
    train = params["train"]
    with tempfile.TemporaryDirectory() as d:        # fit_method: a method with a teacher (lcr2s) trains both, the student is timed
        try:
            summary = fit_method(params, cache, Path(d) / "model", Path(d) / "ckpt", Path(d) / "live")
            history = summary["history"]
            steps = len(history) and round(history[0]["images_per_s"] * history[0]["epoch_secs"] / train["batch_size"])
            data_rate = data_path_rate(params, cache, max(1, steps), Path(d) / "model")
        except TbprError as err: raise SystemExit(f"bench_train: {err}")
    print(f"method {train['method']}, batch {train['batch_size']}, input {params['model']['image_size'][0]}x"
          f"{params['model']['image_size'][1]}, {torch.get_num_threads()} threads, mixed precision {train['mixed_precision']}, "
          f"device {'cuda' if torch.cuda.is_available() and train['device'] != 'cpu' else 'cpu'}")
    print(f"{'epoch':>5} {'images/s':>9} {'s/epoch':>8}")
    for h in history: print(f"{h['epoch']:>5} {h['images_per_s']:>9.1f} {h['epoch_secs']:>8.1f}")
    print(f"data path alone: {data_rate:.0f} images/s, {data_rate / history[-1]['images_per_s']:.1f}x what training consumes")


if __name__ == "__main__":
    main()
