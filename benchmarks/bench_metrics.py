"""Benchmark: `rank_metrics` (ranks counted, no sort) against IRRA's `rank` (the full score matrix
and a full argsort) and against the similarity matmul alone, at the test-set sizes of CUHK-PEDES
(6,156 captions x 3,074 images) and ICFG-PEDES (19,848 x 19,848), 1,000 identities each.

`counting` is what an evaluation runs: the metrics and each query's top 10 (`top_k=10`) from one
pass over the score blocks. `matmul` computes the same blocks of `q @ g.T` and nothing else: the
floor. `naive` is IRRA's `rank` (`naive_rank_metrics`). Each (dataset, implementation) runs in a
fresh subprocess (this script with `--child`), so its peak memory is the increase of `ru_maxrss`
over a baseline taken after the inputs exist (and after a tiny warm-up call), which counts torch's
CPU allocations honestly. Wall time is the call itself, best of --repeat calls on the same inputs.
The metrics of `counting` and `naive` are compared in the same run. With `--device cuda` the
children run on the GPU and report torch's peak allocated memory instead.

    python benchmarks/bench_metrics.py [--chunk-size 1024] [--datasets cuhk,icfg] [--device cpu]
"""
import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time

DIM, N_IDS, SEED = 512, 1000, 0
DATASETS = {  # name: (queries = captions, gallery = images)
    'cuhk': ('CUHK-PEDES', 6156, 3074),
    'icfg': ('ICFG-PEDES', 19848, 19848),
}
KEYS = ('R1', 'R5', 'R10', 'mAP', 'mINP')
IMPLS = ('matmul', 'counting', 'naive')
TOP_K = 10
GIB = 2 ** 30


def naive_bytes(n_q, n_g):
    """Peak estimate of the naive baseline: float32 scores, int64 argsort, bool matches, int64
    cumsum, 2 float32 products."""
    return n_q * n_g * (4 + 8 + 1 + 8 + 4 + 4)


def make_inputs(n_q, n_g):
    """Random L2-normalised 512-d features with a realistic pid layout: every identity has at least
    one image, images are grouped by identity, every image has n_q // n_g captions (a few get one
    more); a caption is its person's centre plus noise, an image likewise, so the metrics are
    neither 0 nor 100."""
    import torch
    import torch.nn.functional as F
    gen = torch.Generator().manual_seed(SEED)
    extra = torch.randint(0, N_IDS, (n_g - N_IDS,), generator=gen)
    g_pids = torch.cat([torch.arange(N_IDS), extra]).sort().values
    per = n_q // n_g
    cap_img = torch.cat([torch.arange(n_g).repeat_interleave(per),
                         torch.randperm(n_g, generator=gen)[:n_q - per * n_g]]).sort().values
    q_pids = g_pids[cap_img]
    centres = torch.randn(N_IDS, DIM, generator=gen)

    def feats(pids, noise):
        "Filled in blocks, so no large temporaries raise ru_maxrss before the baseline."
        out = torch.empty(len(pids), DIM)
        for i in range(0, len(pids), 2048):
            p = pids[i:i + 2048]
            noisy = centres[p] + noise * torch.randn(len(p), DIM, generator=gen)
            out[i:i + 2048] = F.normalize(noisy, dim=1)
        return out
    return feats(q_pids, 2.5), feats(g_pids, 2.5), q_pids, g_pids


def vmrss_bytes():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) * 1024
    return 0


def implementation(impl: str, chunk: int):
    "The callable `(q, g, q_pids, g_pids)` that `impl` names."
    from tbpr.metrics import _feature_chunks, naive_rank_metrics, rank_metrics
    if impl == 'naive':
        return naive_rank_metrics
    if impl == 'counting':
        return lambda *a: rank_metrics(*a, chunk_size=chunk, top_k=TOP_K)

    def matmul_only(q, g, *_):
        for _, sims in _feature_chunks(q, g, chunk):
            del sims
        return None
    return matmul_only


def child(dataset, impl, chunk, repeat, device):
    import torch
    torch.set_num_threads(os.cpu_count())
    fn = implementation(impl, chunk)
    sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
    _, n_q, n_g = DATASETS[dataset]
    inputs = [x.to(device) for x in make_inputs(n_q, n_g)]
    tiny = [x.to(device) for x in make_inputs(N_IDS + 200, N_IDS + 100)]
    fn(*tiny)                                   # warm-up: first-call overheads out of the timing
    del tiny
    gc.collect()
    sync()
    if device == 'cuda':
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    rss = vmrss_bytes()
    walls = []
    for _ in range(repeat):                     # the same inputs again: peak memory is unaffected
        t0 = time.perf_counter()
        res = fn(*inputs)
        sync()
        walls.append(time.perf_counter() - t0)
    if device == 'cuda':
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if res is not None:
        res = {k: v for k, v in res.items() if not k.startswith('topk')}
    out = {'wall_s': min(walls), 'walls': walls, 'peak_bytes': peak - base, 'base_maxrss': base,
           'base_rss': rss, 'threads': torch.get_num_threads(), 'metrics': res}
    print('RESULT ' + json.dumps(out), flush=True)


def run_child(dataset, impl, chunk, repeat, device):
    cmd = [sys.executable, os.path.abspath(__file__), '--child', dataset, impl,
           '--chunk-size', str(chunk), '--repeat', str(repeat), '--device', device]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith('RESULT ')]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{dataset}/{impl} failed (exit {proc.returncode}):\n{proc.stdout}\n"
                           f"{proc.stderr[-3000:]}")
    out = json.loads(lines[-1][len('RESULT '):])
    gap = out['base_maxrss'] - out['base_rss']
    if device == 'cpu' and gap > 64 * 2 ** 20:
        print(f"  note: baseline maxrss exceeds current rss by {gap / 2**20:.0f} MiB; the peak "
              "increase may be understated by up to that much")
    return out


def default_mem_cap_gib() -> float:
    """80% of the memory available now (so the naive run is skipped rather than killed on a small
    machine), at most 12 GiB."""
    try:            # Linux's estimate of what can be allocated without swapping
        with open('/proc/meminfo') as f:
            lines = [line for line in f if line.startswith('MemAvailable:')]
        available = int(lines[0].split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        return 12.0
    return round(min(12.0, 0.8 * available / GIB), 1)


def compare(name, res):
    "Assert that counting and naive give the same metrics; print the largest difference."
    a, b = res['counting']['metrics'], res['naive']['metrics']
    diff = max(abs(a[k] - b[k]) for k in KEYS)
    assert diff <= 1e-3, f"{name}: metrics differ by {diff}: counting {a} vs naive {b}"
    assert len(a['cmc']) == len(b['cmc'])
    assert max(abs(x - y) for x, y in zip(a['cmc'], b['cmc'])) <= 1e-3
    print(f"  counting and naive agree: max |diff| over {', '.join(KEYS)} {diff:.1e} "
          "(float64 against IRRA's float32 sums)")


def summary_rows(rows):
    yield ("| dataset | Q x G | matmul s | counting s | naive s | naive / counting "
           "| counting / matmul | counting peak GiB | naive peak GiB |")
    yield "|---|---|---:|---:|---:|---:|---:|---:|---:|"
    for name, n_q, n_g, res in rows:
        m, c, n = res['matmul'], res['counting'], res.get('naive')
        naive = f"{n['wall_s']:.2f}" if n else "skipped"
        speedup = f"{n['wall_s'] / c['wall_s']:.1f}x" if n else ""
        naive_mem = f"{n['peak_bytes'] / GIB:.3f}" if n else ""
        yield (f"| {name} | {n_q:,} x {n_g:,} | {m['wall_s']:.2f} | {c['wall_s']:.2f} | {naive} | "
               f"{speedup} | {c['wall_s'] / m['wall_s']:.2f}x | {c['peak_bytes'] / GIB:.3f} | "
               f"{naive_mem} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--mem-cap-gib', type=float, default=default_mem_cap_gib(),
                    help='skip the naive run if its estimated peak is above this (default: 80%% '
                         'of the memory available now, at most 12)')
    ap.add_argument('--chunk-size', type=int, default=1024)
    ap.add_argument('--datasets', default='cuhk,icfg')
    ap.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    ap.add_argument('--repeat', type=int, default=None,
                    help='timed calls per run, best reported (default: 3, 1 for naive above '
                         '50M query-gallery pairs)')
    ap.add_argument('--child', nargs=2, metavar=('DATASET', 'IMPL'), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(*args.child, args.chunk_size, args.repeat or 1, args.device)

    print(f"bench_metrics: {os.cpu_count()} CPU cores, torch threads = cores, device "
          f"{args.device}, chunk_size={args.chunk_size}, naive memory cap {args.mem_cap_gib:g} "
          f"GiB, {DIM}-d features, {N_IDS} ids, seed {SEED}, counting with top_k={TOP_K}")
    rows = []
    for ds in args.datasets.split(','):
        name, n_q, n_g = DATASETS[ds]
        est = naive_bytes(n_q, n_g)
        print(f"\n{name}: {n_q:,} queries x {n_g:,} gallery; naive needs about {est / GIB:.2f} GiB")
        res = {}
        for impl in IMPLS:
            if impl == 'naive' and est > args.mem_cap_gib * GIB:
                print(f"  naive: SKIPPED, estimated {est / GIB:.2f} GiB > cap "
                      f"{args.mem_cap_gib:g} GiB (raise --mem-cap-gib to run it)")
                continue
            big = impl == 'naive' and n_q * n_g > 50_000_000
            repeat = args.repeat or (1 if big else 3)
            r = res[impl] = run_child(ds, impl, args.chunk_size, repeat, args.device)
            m = r['metrics'] or {}
            print(f"  {impl:8s} {r['wall_s']:7.2f} s (best of {repeat})  peak "
                  f"+{r['peak_bytes'] / GIB:6.3f} GiB   "
                  + '  '.join(f"{k} {m[k]:.3f}" for k in KEYS if k in m))
        if 'naive' in res:
            compare(name, res)
        rows.append((name, n_q, n_g, res))
    print()
    print("\n".join(summary_rows(rows)))


if __name__ == '__main__':
    main()
