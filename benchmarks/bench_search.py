"""Benchmark: searching a large gallery with the faiss index of `tbpr.search` against exact chunked search, on synthetic
L2-normalised embeddings (clustered like identities, so the neighbours are meaningful).

Printed, from one run: index build time; bytes per image of the index vs the float32 dense matrix; query time of each
path; recall@10 of the index path (the share of the exact top 10 it returns), and how many images of the query's own
identity each path puts in its top 10 (the exact top 10 beyond them is near-tied noise, so recall@10 understates).

    python benchmarks/bench_search.py [--n 1000000] [--dim 512] [--queries 50]
"""
import argparse, os, tempfile, time
import numpy as np


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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--nprobe", type=int, default=512)
    ap.add_argument("--rerank", type=int, default=4000)
    args = ap.parse_args()
    import faiss
    from tbpr.search import build_index, exact_topk, index_spec, index_topk
    emb, pids, centres, rng = make_gallery(args.n, args.dim)
    with tempfile.TemporaryDirectory() as d:           # as in the cache: a memory-mapped float16 file
        np.save(f"{d}/emb.npy", emb); del emb
        emb = np.load(f"{d}/emb.npy", mmap_mode="r")
        t = time.perf_counter(); index = build_index(emb); build = time.perf_counter() - t
        faiss.write_index(index, f"{d}/index.faiss"); index_bytes = os.path.getsize(f"{d}/index.faiss")
        q_ids = rng.integers(0, len(centres), args.queries)
        qs = centres[q_ids] + 0.8 * rng.standard_normal((args.queries, args.dim)).astype(np.float32)
        qs /= np.linalg.norm(qs, axis=1, keepdims=True)
        t_exact = t_index = 0.0; recall, hits_exact, hits_index = [], [], []
        for q, qid in zip(qs, q_ids):
            t = time.perf_counter(); _, exact = exact_topk(emb, q, 10); t_exact += time.perf_counter() - t
            t = time.perf_counter(); _, approx = index_topk(index, emb, q, 10, args.nprobe, args.rerank); t_index += time.perf_counter() - t
            recall.append(len(set(exact) & set(approx)) / 10)
            hits_exact.append(int((pids[exact] == qid).sum())); hits_index.append(int((pids[approx] == qid).sum()))
    print(f"gallery: {args.n:,} images x {args.dim}-d, index {index_spec(args.n, args.dim)}, {faiss.omp_get_max_threads()} threads")
    print(f"index build: {build:.1f} s")
    print(f"memory per image: index {index_bytes / args.n:.1f} B, float16 embeddings on disk {2 * args.dim} B, "
          f"dense float32 matrix {4 * args.dim} B (index / dense = {index_bytes / (4 * args.dim * args.n):.3f})")
    print(f"query: exact {1000 * t_exact / len(qs):.1f} ms, index {1000 * t_index / len(qs):.1f} ms "
          f"(exact / index = {t_exact / max(t_index, 1e-9):.1f}x)")
    print(f"nprobe {args.nprobe}, {args.rerank} candidates re-scored: recall@10 against exact {np.mean(recall):.3f}; "
          f"same-identity images in the top 10: exact {np.mean(hits_exact):.2f}, index {np.mean(hits_index):.2f} "
          f"(of {args.n / len(centres):.1f} per identity), over {len(qs)} queries")


if __name__ == "__main__":
    main()
