"""Training throughput against the machine's limit: images/s, FLOP/s and MFU, peak memory.

For each configuration (the CPU default and the paper presets, at their architecture and input
size, randomly initialised: no weights are needed), each precision and with or without
torch.compile, one child process trains `--steps` steps through the real loop
(`tbpr.train.fit_method`: the method's objectives, the optimiser, clipping, accelerate). The FLOPs
of a step, forward and backward, are counted by `torch.utils.flop_counter` on the first step from
the shapes that run (matmuls, convolutions, attention; eager, and reused for the compiled run).
Each configuration's small synthetic dataset and preprocess cache, at its input size, is made once
(in a child of its own, so that no run's peak memory includes it) and shared by its runs. A step's
time is the median of the steps after the warm-up ones (1 eager, 4 compiled: compiling goes on over
the first steps), and includes loading its batch. MFU is the FLOP/s achieved over this machine's
matmul rate in the precision the step computes in, or in float32 when that is faster (a CPU without
native half precision; measured here: square matmuls of 2048 (512 for half precision on a CPU),
fp16-weights computing in fp32 on a CPU). Peak memory: the process's resident peak on a CPU,
torch's peak allocation on a GPU. An LCR²S configuration trains its teacher, then its student: both
are timed.

    python benchmarks/bench_train.py [--configs cpu,irra-paper,bilma-paper,ivt-paper,lcr2s-paper]
        [--precisions fp32,bf16,fp16-weights] [--compile off,on] [--steps 4] [--preset-batch 4]
        [--clip-bpe path/to/bpe_simple_vocab_16e6.txt.gz]
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

SIZES = {"cpu": None}      # None: params.yaml's size; the presets' come from the preset
OFFLINE = {"init": "", "init_vision": "", "init_text": "", "init_ivt": ""}


def matmul_rate(dtype_name: str, device: str) -> float:
    """FLOP/s of an n x n x n matmul in `dtype_name` on `device`, best of 5: n = 2048, or 512 for
    half precision on a CPU (without native support it runs ~100x slower than float32)."""
    import torch
    dtype = getattr(torch, dtype_name)
    n = 2048 if device == "cuda" or dtype == torch.float32 else 512
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    a @ b
    sync()
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def config_params(config: str, precision: str, compiled: bool, batch: int, clip_bpe: str) -> dict:
    "The parameters of one run: the configuration, offline (random init), on synthetic data."
    from tbpr.plugins import resolve_params
    over = {"train": {"epochs": 1, "seeds": 1, "mixed_precision": precision, "compile": compiled,
                      "eval_every": 1, "log_every": 1000}}
    if config != "cpu":
        over["preset"] = config
        over["train"].update(batch_size=batch, num_instance=max(1, min(4, batch // 2)))
        over["eval"] = {"batch_size": 64}
    if precision == "fp16-weights":
        over["train"]["adam_eps"] = 1e-3       # IRRA's: fp16 moments cannot hold a smaller one
    p = resolve_params("params.yaml" if config == "cpu" else None, over)
    # a preset sets the keys left at their defaults: these go in after it
    p["model"].update(OFFLINE)
    p["ivt"]["loss_groups"] = 1              # a small batch holds too few identities for IVT's 4
    if p["model"]["tokenizer"] == "clip" and clip_bpe:
        p["model"]["tokenizer"] = clip_bpe          # OpenAI's BPE file: CLIP's 49,408 ids, offline
    elif p["model"]["tokenizer"] not in ("minilm", "clip"):
        p["model"]["tokenizer"] = "minilm"          # BERT's uncased WordPiece vocabulary, offline
    h, w = p["model"]["image_size"]
    p["data"]["name"] = "synthetic"
    # the default's batch of 64 needs 16 identities; a preset's small batch fits the tiny set
    p["synthetic"].update(size="small" if config == "cpu" else "tiny", height=h, width=w)
    return p


class StepClock:
    "The loader's first `steps` batches; the time each step takes, the first one's FLOPs counted."
    def __init__(self, loader, steps: int, record: dict):
        self.loader, self.steps, self.record = loader, steps, record

    def __len__(self):
        return min(self.steps, len(self.loader))

    def __iter__(self):
        from torch.utils.flop_counter import FlopCounterMode
        times = self.record.setdefault("phases", [])
        marks = []
        times.append(marks)
        for i, batch in enumerate(self.loader):
            if i == len(self):
                break
            marks.append(time.perf_counter())
            if i == 0 and self.record.get("count", True):
                with FlopCounterMode(display=False) as counter:
                    yield batch                 # the loop's forward, backward and step run here
                self.record.setdefault("flops", []).append(counter.get_total_flops())
            else:
                yield batch
        marks.append(time.perf_counter())


def child(args):
    import torch
    from tbpr import pipeline as P
    from tbpr import train as T
    p = config_params(args.config, args.precision, args.compile == "on", args.batch, args.clip_bpe)
    record = {"count": args.compile == "off", "batch": p["train"]["batch_size"],
              "image_size": p["model"]["image_size"], "method": p["train"]["method"]}
    real = T._epoch

    def timed_epoch(model, loader, opt, accelerator, epoch, train):
        return real(model, StepClock(loader, args.steps, record), opt, accelerator, epoch, train)
    T._epoch = timed_epoch
    os.chdir(args.work)                   # the configuration's data, made by `prepare`
    gpu = torch.cuda.is_available() and p["train"]["device"] != "cpu"
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory(dir=".") as run:
        T.fit_method(p, "artifacts/cache", f"{run}/model", f"{run}/ckpt", f"{run}/live")
    peak = (torch.cuda.max_memory_allocated() if gpu
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    warm = 1 if args.compile == "off" else 4    # compiling goes on over the first steps
    steps = []
    for marks in record["phases"]:
        dts = [b - a for a, b in zip(marks, marks[1:])]
        steps.append(statistics.median(dts[warm:]) if len(dts) > warm else None)
    out = {**record, "step_s": steps, "peak_bytes": peak, "device": "cuda" if gpu else "cpu",
           "threads": torch.get_num_threads()}
    print("RESULT " + json.dumps(out), flush=True)


def prepare(args):
    "Make one configuration's synthetic data and preprocess cache in `args.work`, for its runs."
    from tbpr import pipeline as P
    p = config_params(args.config, "fp32", False, args.batch, args.clip_bpe)
    os.makedirs(args.work, exist_ok=True)
    os.chdir(args.work)
    P.stage_download(p)
    P.stage_preprocess(p)


def run_child(config, precision, compiled, steps, batch, clip_bpe, work):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", config, precision, compiled,
           "--steps", str(steps), "--preset-batch", str(batch), "--clip-bpe", clip_bpe,
           "--work", os.path.join(work, config)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=os.getcwd())
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        return {"error": " / ".join(tail)[-300:]}
    return json.loads(lines[-1][len("RESULT "):])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="cpu,irra-paper,bilma-paper,ivt-paper,lcr2s-paper")
    ap.add_argument("--precisions", default="fp32,bf16,fp16-weights")
    ap.add_argument("--compile", default="off,on")
    ap.add_argument("--steps", type=int, default=4, help="steps per run, warm-up included")
    ap.add_argument("--preset-batch", dest="batch", type=int, default=4,
                    help="batch size of the paper presets (the CPU default keeps params.yaml's)")
    ap.add_argument("--clip-bpe", default="",
                    help="OpenAI's bpe_simple_vocab_16e6.txt.gz (in the clip and open_clip packages) "
                         "for the CLIP presets; without it, they are refused offline")
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--prepare", metavar="CONFIG", help=argparse.SUPPRESS)
    ap.add_argument("--child", nargs=3, metavar=("CONFIG", "PRECISION", "COMPILE"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.config, args.precision, args.compile = args.child
        return child(args)
    if args.prepare:
        args.config = args.prepare
        return prepare(args)
    import torch
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rates = {d: matmul_rate(d, device) for d in ("float32", "bfloat16", "float16")}
    print(f"bench_train: {device} ({torch.cuda.get_device_name() if device == 'cuda' else ''}"
          f"{os.cpu_count()} cores), matmul rate 2048^3: "
          + ", ".join(f"{d} {r / 1e9:.1f} GFLOP/s" for d, r in rates.items()))
    compute = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16",
               "fp16-weights": "float16" if device == "cuda" else "float32"}
    print("\n| config | method | batch | input | precision | compile | phase | step s | images/s "
          "| GFLOP/step | GFLOP/s | MFU | peak GiB |")
    print("|---|---|---:|---|---|---|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="bench_train-") as work:
        for config in args.configs.split(","):
            bench_config(config, args, rates, compute, work)


def bench_config(config, args, rates, compute, work):
    "Every (precision, compile) row of one configuration, on data made once for it."
    made = subprocess.run([sys.executable, os.path.abspath(__file__), "--prepare", config,
                           "--work", os.path.join(work, config), "--preset-batch", str(args.batch),
                           "--clip-bpe", args.clip_bpe], capture_output=True, text=True)
    if made.returncode != 0:
        tail = (made.stdout + made.stderr).strip().splitlines()[-3:]
        print(f"| {config} | | | | | | failed: {' / '.join(tail)[-300:]} | | | | | | |")
        return
    for precision in args.precisions.split(","):
        flops = None                      # counted without compile, reused for the compiled run
        for compiled in args.compile.split(","):
            t0 = time.perf_counter()
            r = run_child(config, precision, compiled, args.steps, args.batch, args.clip_bpe,
                          work)
            took = time.perf_counter() - t0
            if "error" in r:
                print(f"| {config} | | | | {precision} | {compiled} | failed: {r['error']} "
                      "| | | | | | |", flush=True)
                continue
            flops = r.get("flops") or flops
            limit = max(rates[compute[precision]], rates["float32"])
            print_rows(config, precision, compiled, r, flops, limit)
            print(f"<!-- {config} {precision} compile {compiled}: {took:.0f} s in all -->",
                  flush=True)


def print_rows(config, precision, compiled, r, flops, limit):
    "One table row per phase of a run (LCR²S has a teacher and a student phase)."
    for i, step in enumerate(r["step_s"]):
        phase = ("teacher", "student")[i] if len(r["step_s"]) > 1 else "train"
        f = flops[i] if flops and i < len(flops) else None
        rate = f / step if f and step else None
        mfu = rate / limit if rate else None
        cells = [config, r["method"], r["batch"], "x".join(map(str, r["image_size"])),
                 precision, compiled, phase,
                 f"{step:.3f}" if step else "-",
                 f"{r['batch'] / step:.1f}" if step else "-",
                 f"{f / 1e9:.1f}" if f else "-",
                 f"{rate / 1e9:.1f}" if rate else "-",
                 f"{mfu:.1%}" if mfu else "-",
                 f"{r['peak_bytes'] / 2 ** 30:.2f}"]
        print("| " + " | ".join(map(str, cells)) + " |", flush=True)


if __name__ == "__main__":
    main()
