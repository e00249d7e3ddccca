"""Training throughput of the default configuration (params.yaml), in images per second.

Runs warm-up steps, then times `--steps` optimiser steps of the configured method on batches drawn through the real
data path (preprocess cache, augmentation, tokenization, MLM masking) when `artifacts/cache` exists, else on random
images with real captions. Prints one table. Usage: python benchmarks/bench_train.py [--steps 20] [--params params.yaml]
"""
import argparse, time
from pathlib import Path
import torch
from tbpr.core import resolve_params, seed_everything
from tbpr.data import (Augment, Collate, TrainData, TrainSplit, ImageStore, load_cached_dataset, load_tokenizer)
from tbpr.objectives import build_model
from tbpr.train import encoder_config, make_loader, param_groups


def batches(params, tok, cfg):
    train = params["train"]
    cache = Path("artifacts/cache")
    if cache.exists():
        ds, store = load_cached_dataset(cache); split, source = ds.train, "preprocess cache"
    else:
        n = 64 * 8
        split = TrainSplit([i % 64 for i in range(n)], list(range(n)), [f"{i}" for i in range(n)],
                           ["a woman in a navy coat with a black backpack and white shoes"] * n)
        store = ImageStore(split.img_paths, cfg.image_size, array=torch.randint(0, 255, (n, *cfg.image_size, 3), dtype=torch.uint8).numpy())
        source = "random images"
    data = TrainData(split, store, Augment(**train["augment"]), params["seed"])
    loader = make_loader(data, Collate(tok, cfg.max_length, train["mlm_prob"], params["seed"]), train, params["seed"])
    return loader, split, source


def main():
    ap = argparse.ArgumentParser(); ap.add_argument("--steps", type=int, default=20); ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()
    params = resolve_params(args.params); train = params["train"]
    seed_everything(0); torch.set_num_threads(torch.get_num_threads())
    tok = load_tokenizer(params["model"]["tokenizer"]); cfg = encoder_config(params["model"], tok)
    loader, split, source = batches(params, tok, cfg)
    model = build_model(train["method"], cfg, train, split.num_ids)
    opt = torch.optim.Adam(param_groups(model, train["lr"], train["weight_decay"], train["lr_factor"], train["bias_lr_factor"]))
    it = iter(loader); timings = {"data": 0.0, "step": 0.0}; images = 0
    for i in range(args.steps + 3):
        t0 = time.perf_counter()
        try: batch = next(it)
        except StopIteration: it = iter(loader); batch = next(it)
        t1 = time.perf_counter()
        losses = model(batch); total = model.total(losses)
        opt.zero_grad(); total.backward(); opt.step()
        t2 = time.perf_counter()
        if i >= 3: timings["data"] += t1 - t0; timings["step"] += t2 - t1; images += len(batch["pids"])
    secs = timings["data"] + timings["step"]
    print(f"method {train['method']}, batch {train['batch_size']}, input {cfg.image_size[0]}x{cfg.image_size[1]}, "
          f"{torch.get_num_threads()} threads, batches from {source}")
    print(f"{'steps':>6} {'images/s':>9} {'s/step':>7} {'data share':>10}")
    print(f"{args.steps:>6} {images / secs:>9.1f} {secs / args.steps:>7.3f} {timings['data'] / secs:>10.1%}")


if __name__ == "__main__":
    main()
