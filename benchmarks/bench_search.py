"""Benchmark: searching a large gallery with faiss indexes against exact chunked search, on synthetic
L2-normalised float16 embeddings (clustered like identities, about 4 images each, so the neighbours are
meaningful), read memory-mapped as in tbpr's cache.

Each index type is built once; then every (nprobe, rerank) pair is timed on single queries (batch 1, as a
user types them; faiss uses the machine's threads) and scored against the exact top 10. Printed: the
coarse k-means time, then a table of index, build s, bytes per image, nprobe, re-scored candidates,
ms per query, recall@10 against exact, and the images of the query's own identity in the top 10 (exact /
index). `*` marks the Pareto front of (ms per query, recall@10). `--compare` instead builds two specs with
tbpr's `build_index` and times them in one run, for ratios that hold under a shared CPU.

    python benchmarks/bench_search.py [--n 1000000] [--dim 512] [--queries 50]
    python benchmarks/bench_search.py --compare "IVF4000,PQ64:512:4000" "default"

Timings on a shared CPU are noisy: compare rows of one run (`--compare` for two chosen configurations).
On 2 cores shared with other jobs, 1,000,000 x 512-d: the exact scan took 3.7 s a query (4.44 same-identity
images in its top 10) and the coarse k-means of 4,000 centroids 1,253 s, so a full sweep takes hours there;
the index rows of that run are not recorded here yet. At 250,000 x 512-d on the same loaded cores (nlist 2000,
build s include the shared 950 s k-means; exact top 10 holds 3.90 same-identity images):

    index              build s B/image nprobe rerank ms/query recall@10 same-id index
    IVF2000,PQ64          1633    90.5    500   4000    150.6     0.784  3.88
    IVF2000,PQ64          1633    90.5   1000   4000    190.0     0.880  3.90
    IVF2000,PQ64x4fs      1099    60.5   1000   4000    104.6     0.802  3.90 *
    IVF2000,PQ128x4fs     1121    96.3    500   4000    104.6     0.796  3.88 *
    IVF2000,PQ128x4fs     1121    96.3   1000   4000    118.1     0.904  3.90 *
    IVF2000,PQ128x4fs     1121    96.3   1000  16000    314.0     0.910  3.90 *
"""
import argparse, os, tempfile, time
import numpy as np

SPECS = ("IVF{nlist},PQ64", "IVF{nlist},PQ64x4fs", "IVF{nlist},PQ128x4fs", "IVF{nlist},SQ8")
NPROBE_SHARES = (1 / 16, 1 / 8, 1 / 4, 1 / 2)
RERANKS = (1000, 4000, 16000)


def make_gallery(n, dim, seed=0, ids=None):
    "float16 embeddings: identity centres plus noise, normalised; queries are other noisy views of random identities."
    rng = np.random.default_rng(seed)
    ids = ids or max(1, n // 4)
    centres = rng.standard_normal((ids, dim)).astype(np.float32)
    emb, pids = np.empty((n, dim), np.float16), rng.integers(0, ids, n)
    for s in range(0, n, 100_000):
        x = centres[pids[s:s + 100_000]] + 0.8 * rng.standard_normal((len(pids[s:s + 100_000]), dim)).astype(np.float32)
        emb[s:s + 100_000] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return emb, pids, centres, rng


def make_queries(centres, rng, count):
    "Noisy views of `count` random identities, normalised, with their identity ids."
    q_ids = rng.integers(0, len(centres), count)
    qs = centres[q_ids] + 0.8 * rng.standard_normal((count, centres.shape[1])).astype(np.float32)
    return qs / np.linalg.norm(qs, axis=1, keepdims=True), q_ids


def train_sample(emb, nlist, seed=0):
    "The rows tbpr's build_index trains on (as many as it draws), sorted for the memory map."
    rng = np.random.default_rng(seed)
    n = len(emb)
    return np.sort(rng.choice(n, size=min(n, 256 * nlist, 200_000), replace=False))


def build_shared(emb, spec, centroids, chunk=100_000):
    "An index of `spec` whose coarse quantizer gets the already trained `centroids` (k-means once per run)."
    import faiss
    index = faiss.index_factory(emb.shape[1], spec, faiss.METRIC_INNER_PRODUCT)
    faiss.extract_index_ivf(index).quantizer.add(centroids)  # trained: train() skips the k-means
    index.train(np.asarray(emb[train_sample(emb, len(centroids))], np.float32))
    for s in range(0, len(emb), chunk):
        index.add(np.asarray(emb[s:s + chunk], np.float32))
    return index


def score(index, emb, qs, q_ids, pids, exact, nprobe, rerank, index_topk):
    "ms per query, recall@10 against `exact`, same-identity images in the index's top 10."
    t, recall, hits = 0.0, [], []
    index_topk(index, emb, qs[0], 10, nprobe, rerank)  # warm the lists' pages
    for q, qid, ex in zip(qs, q_ids, exact):
        t0 = time.perf_counter(); _, rows = index_topk(index, emb, q, 10, nprobe, rerank); t += time.perf_counter() - t0
        recall.append(len(set(ex) & set(rows)) / 10); hits.append(int((pids[rows] == qid).sum()))
    return 1000 * t / len(qs), float(np.mean(recall)), float(np.mean(hits))


def pareto(rows):
    "Marks the rows no other row beats on both ms per query and recall@10."
    return ["*" if not any(o["ms"] <= r["ms"] and o["recall"] >= r["recall"] and (o["ms"], o["recall"]) != (r["ms"], r["recall"])
                           for o in rows) else " " for r in rows]


def parse_config(text, n, dim):
    "'SPEC:NPROBE:RERANK', or 'default' for tbpr's own index_spec and index_topk defaults."
    from tbpr.search import PROBE_SHARE, RERANK, index_nlist, index_spec
    if text == "default":
        return index_spec(n, dim), max(1, int(index_nlist(n) * PROBE_SHARE)), RERANK
    spec, nprobe, rerank = text.rsplit(":", 2)
    return spec, int(nprobe), int(rerank)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--specs", nargs="+", default=list(SPECS), help="faiss factory strings; {nlist} is index_spec's")
    ap.add_argument("--reranks", nargs="+", type=int, default=list(RERANKS))
    ap.add_argument("--shares", nargs="+", type=float, default=list(NPROBE_SHARES), help="nprobe / nlist")
    ap.add_argument("--compare", nargs="+", help="SPEC:NPROBE:RERANK or 'default': built with build_index, timed in one run")
    args = ap.parse_args()
    import faiss
    from tbpr.search import build_index, exact_topk, index_nlist, index_topk
    emb, pids, centres, rng = make_gallery(args.n, args.dim)
    qs, q_ids = make_queries(centres, rng, args.queries)
    nlist = index_nlist(args.n)
    with tempfile.TemporaryDirectory() as d:           # as in the cache: a memory-mapped float16 file
        np.save(f"{d}/emb.npy", emb); del emb
        emb = np.load(f"{d}/emb.npy", mmap_mode="r")
        t0 = time.perf_counter(); exact = [exact_topk(emb, q, 10)[1] for q in qs]; t_exact = (time.perf_counter() - t0) / len(qs)
        hits_exact = np.mean([(pids[e] == i).sum() for e, i in zip(exact, q_ids)])
        print(f"gallery: {args.n:,} images x {args.dim}-d ({args.n / len(centres):.1f} per identity), "
              f"{faiss.omp_get_max_threads()} faiss threads, {len(qs)} single queries; nlist {nlist}")
        print(f"exact scan of the float16 memory map: {1000 * t_exact:.0f} ms a query, {hits_exact:.2f} same-identity images "
              f"in its top 10; float16 embeddings {2 * args.dim} B/image, dense float32 {4 * args.dim} B/image")
        rows = []
        if args.compare:
            for text in args.compare:
                spec, nprobe, rerank = parse_config(text, args.n, args.dim)
                t0 = time.perf_counter(); index = build_index(emb, spec=spec); build = time.perf_counter() - t0
                size = faiss.serialize_index(index).nbytes / args.n
                ms, rec, hits = score(index, emb, qs, q_ids, pids, exact, nprobe, rerank, index_topk)
                rows.append(dict(spec=spec, build=build, bytes=size, nprobe=nprobe, rerank=rerank, ms=ms, recall=rec, hits=hits))
                del index
        else:
            t0 = time.perf_counter()
            ivf = faiss.extract_index_ivf(faiss.index_factory(args.dim, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT))
            quantizer = faiss.IndexFlatIP(args.dim)                       # faiss IVF's own k-means
            faiss.Clustering(args.dim, nlist, ivf.cp).train(np.asarray(emb[train_sample(emb, nlist)], np.float32), quantizer)
            centroids = quantizer.reconstruct_n(0, nlist)
            t_km = time.perf_counter() - t0
            print(f"coarse k-means ({nlist} centroids, shared by the specs below): {t_km:.0f} s; build s = k-means + the rest")
            for template in args.specs:
                spec = template.format(nlist=nlist)
                t0 = time.perf_counter(); index = build_shared(emb, spec, centroids); build = t_km + time.perf_counter() - t0
                size = faiss.serialize_index(index).nbytes / args.n
                for share in args.shares:
                    for rerank in args.reranks:
                        nprobe = max(1, round(share * nlist))
                        ms, rec, hits = score(index, emb, qs, q_ids, pids, exact, nprobe, rerank, index_topk)
                        rows.append(dict(spec=spec, build=build, bytes=size, nprobe=nprobe, rerank=rerank, ms=ms, recall=rec, hits=hits))
                        print(f"  {spec} nprobe {nprobe} rerank {rerank}: {ms:.1f} ms, recall {rec:.3f}", flush=True)
                del index
    print(f"\n{'index':<24} {'build s':>7} {'B/image':>7} {'nprobe':>6} {'rerank':>6} {'ms/query':>8} "
          f"{'recall@10':>9} {'same-id exact/index':>19}")
    for mark, r in zip(pareto(rows), rows):
        print(f"{r['spec']:<24} {r['build']:>7.0f} {r['bytes']:>7.1f} {r['nprobe']:>6} {r['rerank']:>6} {r['ms']:>8.1f} "
              f"{r['recall']:>9.3f} {hits_exact:>9.2f} / {r['hits']:.2f} {mark}")


if __name__ == "__main__":
    main()
