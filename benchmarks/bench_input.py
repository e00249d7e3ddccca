"""Benchmark: the training input path, images per second, at the paper size (384 x 128) by default.

`loader`: what `train.augment_on: loader` does per item in a data-loader process (normalise, flip,
pad and crop, erase, one image at a time) and the collate that stacks a batch. `device`: what the
loader still does with `train.augment_on: device` (the per-item draws and the stacking of uint8
pixels), then `augment_batch` applying the whole batch where it trains: on this CPU with one
thread and with all cores, and on the GPU when there is one. Both give the same images (checked
here on the first batch). The loader side runs on one thread: per core is what a data-loader
worker delivers.

    python benchmarks/bench_input.py [--size 384 128] [--batch 64] [--batches 8] [--erase-fill mean]
"""
import argparse
import os
import time

import numpy as np
import torch

from tbpr.data import TrainSplit
from tbpr.augment import Augment, augment_pending
from tbpr.cache import ImageStore
from tbpr.batches import Collate, TrainData
from tbpr.tokenizer import load_tokenizer


def fake_data(n: int, size: tuple, seed: int = 0) -> tuple:
    "A split of `n` captions over `n` random uint8 images of `size`, in an in-memory store."
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (n, *size, 3), dtype=np.uint8)
    paths = [f"img{i}.jpg" for i in range(n)]
    split = TrainSplit(pids=list(range(n)), image_ids=list(range(n)), img_paths=paths,
                       captions=["a person"] * n)
    return split, ImageStore(paths, size, array=pixels)


def to_device(batch: dict, device) -> dict:
    "The tensors of `batch` (and of its pending views) on `device`."
    move = lambda v: v.to(device) if torch.is_tensor(v) else v
    return {k: {kk: move(vv) for kk, vv in v.items()} if isinstance(v, dict) else move(v)
            for k, v in batch.items()}


def rate(fn, images: int, repeat: int = 3) -> float:
    "Images per second of `fn()` (which handles `images` images), best of `repeat`."
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return images / best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, nargs=2, default=[384, 128])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--pad", type=int, default=10)
    ap.add_argument("--erase-fill", default="mean", choices=["mean", "noise"])
    args = ap.parse_args()
    n = args.batch * args.batches
    split, store = fake_data(n, tuple(args.size))
    aug = Augment(pad=args.pad, erase=0.5, erase_fill=args.erase_fill)
    collate = Collate(load_tokenizer(), 16)
    data = {on: TrainData(split, store, aug, 0, augment_on=on) for on in ("loader", "device")}
    batch_of = lambda on, b: collate([data[on][i] for i in range(b * args.batch,
                                                                 (b + 1) * args.batch)])
    loader_side = lambda on: [batch_of(on, b) for b in range(args.batches)]
    cores = os.cpu_count()
    print(f"bench_input: {args.size[0]}x{args.size[1]}, batch {args.batch}, {args.batches} "
          f"batches, pad {args.pad}, erasing p 0.5 filled with {args.erase_fill}, {cores} cores")
    torch.set_num_threads(1)
    rows = [("loader: per-image augment + collate", "1 CPU thread", rate(
        lambda: loader_side("loader"), n))]
    rows.append(("device: draws + collate of uint8", "1 CPU thread", rate(
        lambda: loader_side("device"), n)))
    pending = loader_side("device")
    want = batch_of("loader", 0)["images"]
    assert torch.equal(augment_pending(pending[0], aug)["images"], want), "paths differ"
    apply = lambda batches: [augment_pending(b, aug)["images"] for b in batches]
    rows.append(("device: augment_batch", "1 CPU thread", rate(lambda: apply(pending), n)))
    torch.set_num_threads(cores)
    rows.append(("device: augment_batch", f"{cores} CPU threads", rate(lambda: apply(pending), n)))
    if torch.cuda.is_available():
        on_gpu = [to_device(b, "cuda") for b in pending]

        def gpu():
            apply(on_gpu)
            torch.cuda.synchronize()
        rows.append(("device: augment_batch", torch.cuda.get_device_name(), rate(gpu, n)))
        got = augment_pending(on_gpu[0], aug)["images"].cpu()
        print(f"GPU against the loader's images: max |diff| {(got - want).abs().max():.2e}")
    print("\n| path | where | images/s |\n|---|---|---:|")
    for what, where, r in rows:
        print(f"| {what} | {where} | {r:,.0f} |")


if __name__ == "__main__":
    main()
