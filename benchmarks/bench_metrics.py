"""Benchmark: chunked `rank_metrics` against the naive full-matrix baseline (IRRA's `rank`), at the test-set sizes of
CUHK-PEDES (6,156 captions x 3,074 images) and ICFG-PEDES (19,848 x 19,848), 1,000 identities each.

Each (dataset, implementation) runs in a fresh subprocess (this script with `--child`), so that its peak memory is
the increase of `ru_maxrss` over a baseline taken after the inputs exist (and after a tiny warm-up call), which counts
torch's CPU allocations honestly. Wall time is the call itself (best of --repeat calls on the same inputs). The
metrics of both implementations are compared (to 1e-3 percent) in the same run.

    python benchmarks/bench_metrics.py [--mem-cap-gib 12] [--chunk-size 1024] [--datasets cuhk,icfg]
"""
import argparse, gc, json, os, resource, subprocess, sys, time

DIM, N_IDS, SEED = 512, 1000, 0
DATASETS = {  # name: (queries = captions, gallery = images, captions per image)
    'cuhk': ('CUHK-PEDES', 6156, 3074),
    'icfg': ('ICFG-PEDES', 19848, 19848),
}
KEYS = ('R1', 'R5', 'R10', 'mAP', 'mINP')
GIB = 2 ** 30


def naive_bytes(n_q, n_g):
    "Peak estimate of the naive baseline: float32 scores, int64 argsort, bool matches, int64 cumsum, 2 float32 products."
    return n_q * n_g * (4 + 8 + 1 + 8 + 4 + 4)


def chunked_bytes(n_q, n_g, chunk):
    "Peak estimate of one chunk: float32 scores, sort values + int64 indices, three bool masks (the rest is O(c))."
    c = min(chunk, n_q)
    return c * n_g * (4 + 4 + 8 + 1 + 1 + 1)


def make_inputs(n_q, n_g):
    """Random L2-normalised 512-d features with a realistic pid layout: every identity has at least one image, images
    are grouped by identity, every image has n_q // n_g captions (a few get one more); a caption is its person's
    centre plus noise, an image likewise, so the metrics are neither 0 nor 100."""
    import torch
    import torch.nn.functional as F
    gen = torch.Generator().manual_seed(SEED)
    g_pids = torch.cat([torch.arange(N_IDS), torch.randint(0, N_IDS, (n_g - N_IDS,), generator=gen)]).sort().values
    per = n_q // n_g
    cap_img = torch.cat([torch.arange(n_g).repeat_interleave(per),
                         torch.randperm(n_g, generator=gen)[:n_q - per * n_g]]).sort().values
    q_pids = g_pids[cap_img]
    centres = torch.randn(N_IDS, DIM, generator=gen)

    def feats(pids, noise):     # filled in blocks so that no large temporaries raise ru_maxrss before the baseline
        out = torch.empty(len(pids), DIM)
        for i in range(0, len(pids), 2048):
            p = pids[i:i + 2048]
            out[i:i + 2048] = F.normalize(centres[p] + noise * torch.randn(len(p), DIM, generator=gen), dim=1)
        return out
    return feats(q_pids, 2.5), feats(g_pids, 2.5), q_pids, g_pids


def vmrss_bytes():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'): return int(line.split()[1]) * 1024
    return 0


def child(dataset, impl, chunk, repeat):
    import torch
    torch.set_num_threads(os.cpu_count())
    from tbpr.metrics import naive_rank_metrics, rank_metrics
    fn = (lambda *a: rank_metrics(*a, chunk_size=chunk)) if impl == 'chunked' else naive_rank_metrics
    _, n_q, n_g = DATASETS[dataset]
    inputs = make_inputs(n_q, n_g)
    tiny = make_inputs(N_IDS + 200, N_IDS + 100)
    fn(*tiny); del tiny; gc.collect()                       # warm-up: first-call overheads out of the timing
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    rss = vmrss_bytes()
    walls = []
    for _ in range(repeat):                                 # the same inputs again: peak memory is unaffected
        t0 = time.perf_counter()
        res = fn(*inputs)
        walls.append(time.perf_counter() - t0)
    wall = min(walls)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print('RESULT ' + json.dumps({'wall_s': wall, 'walls': walls, 'peak_bytes': peak - base, 'base_maxrss': base, 'base_rss': rss,
                                  'threads': torch.get_num_threads(), 'metrics': res}), flush=True)


def run_child(dataset, impl, chunk, repeat):
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), '--child', dataset, impl, '--chunk-size', str(chunk),
                           '--repeat', str(repeat)],
                          capture_output=True, text=True)
    lines = [l for l in proc.stdout.splitlines() if l.startswith('RESULT ')]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{dataset}/{impl} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}")
    out = json.loads(lines[-1][len('RESULT '):])
    if out['base_maxrss'] - out['base_rss'] > 64 * 2 ** 20:
        print(f"  note: baseline maxrss exceeds current rss by {(out['base_maxrss'] - out['base_rss']) / 2**20:.0f} MiB;"
              " the peak increase may be understated by up to that much")
    return out


def default_mem_cap_gib() -> float:
    "80% of the memory available now (so the naive run is skipped rather than killed on a small machine), at most 12 GiB."
    try:            # Linux's estimate of what can be allocated without swapping (free memory plus reclaimable cache)
        with open('/proc/meminfo') as f:
            available = next(int(l.split()[1]) * 1024 for l in f if l.startswith('MemAvailable:'))
    except (OSError, StopIteration, ValueError): return 12.0
    return round(min(12.0, 0.8 * available / GIB), 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--mem-cap-gib', type=float, default=default_mem_cap_gib(),
                    help='skip the naive run if its estimated peak is above this (default: 80%% of the memory available now, at most 12)')
    ap.add_argument('--chunk-size', type=int, default=1024)
    ap.add_argument('--datasets', default='cuhk,icfg')
    ap.add_argument('--repeat', type=int, default=None,
                    help='timed calls per run, best reported (default: 3 below 50M query-gallery pairs, else 1)')
    ap.add_argument('--child', nargs=2, metavar=('DATASET', 'IMPL'), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child: return child(*args.child, args.chunk_size, args.repeat or 1)

    print(f"bench_metrics: {os.cpu_count()} CPU cores, torch threads = cores, chunk_size={args.chunk_size}, "
          f"naive memory cap {args.mem_cap_gib:g} GiB, {DIM}-d features, {N_IDS} ids, seed {SEED}")
    rows = []
    for ds in args.datasets.split(','):
        name, n_q, n_g = DATASETS[ds]
        est_n, est_c = naive_bytes(n_q, n_g), chunked_bytes(n_q, n_g, args.chunk_size)
        print(f"\n{name}: {n_q:,} queries x {n_g:,} gallery; estimated peak: naive {est_n / GIB:.2f} GiB "
              f"(29 B per pair), chunked {est_c / GIB:.3f} GiB")
        res, repeat = {}, args.repeat or (3 if n_q * n_g < 50_000_000 else 1)
        for impl in ('chunked', 'naive'):
            if impl == 'naive' and est_n > args.mem_cap_gib * GIB:
                print(f"  naive: SKIPPED, estimated {est_n / GIB:.2f} GiB > cap {args.mem_cap_gib:g} GiB "
                      "(raise --mem-cap-gib to run it)")
                continue
            r = res[impl] = run_child(ds, impl, args.chunk_size, repeat)
            m = r['metrics']
            print(f"  {impl:8s} {r['wall_s']:7.2f} s (best of {repeat})  peak +{r['peak_bytes'] / GIB:6.3f} GiB   "
                  + '  '.join(f"{k} {m[k]:.3f}" for k in KEYS))
        if 'naive' in res:
            a, b = res['chunked']['metrics'], res['naive']['metrics']
            for k in KEYS:
                assert abs(a[k] - b[k]) <= 1e-3, f"{name}: {k} differs: chunked {a[k]} vs naive {b[k]}"
            assert len(a['cmc']) == len(b['cmc']) and max(abs(x - y) for x, y in zip(a['cmc'], b['cmc'])) <= 1e-3
            print(f"  metrics agree to 1e-3 (max |diff| {max(abs(a[k] - b[k]) for k in KEYS):.1e})")
        rows.append((name, n_q, n_g, res, est_n))

    print("\n| dataset | Q x G | impl | wall s | peak GiB | naive/chunked time | naive/chunked memory |")
    print("|---|---|---|---:|---:|---:|---:|")
    for name, n_q, n_g, res, est_n in rows:
        c = res['chunked']
        print(f"| {name} | {n_q:,} x {n_g:,} | chunked | {c['wall_s']:.2f} | {c['peak_bytes'] / GIB:.3f} | | |")
        if 'naive' in res:
            n = res['naive']
            print(f"| {name} | {n_q:,} x {n_g:,} | naive | {n['wall_s']:.2f} | {n['peak_bytes'] / GIB:.3f} | "
                  f"{n['wall_s'] / c['wall_s']:.2f}x | {n['peak_bytes'] / max(c['peak_bytes'], 1):.1f}x |")
        else:
            print(f"| {name} | {n_q:,} x {n_g:,} | naive | skipped (est. {est_n / GIB:.1f} GiB) | | | |")


if __name__ == '__main__':
    main()
