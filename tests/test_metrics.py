"""Randomised checks of `tbpr.metrics` against a brute-force reference written from the definitions."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tbpr.metrics import naive_rank_metrics, rank_metrics, rank_metrics_from_scores, topk_gallery

KEYS = ('R1', 'R5', 'R10', 'mAP', 'mINP')


# ---------------------------------------------------------------- reference, one query at a time, from the definitions
def reference(scores, q_pids, g_pids, max_rank=50):
    "IRRA's protocol in plain Python loops; ties by lower gallery index (stable descending sort)."
    scores = np.asarray(scores, dtype=np.float64)
    n_q, n_g = scores.shape
    hit_at = np.zeros(n_g)              # how many queries have their first hit within rank k (index k-1)
    aps, inps = [], []
    for i in range(n_q):
        s = scores[i]
        order = sorted(range(n_g), key=lambda j: (-s[j], j))
        m = [1 if g_pids[j] == q_pids[i] else 0 for j in order]
        n_rel = sum(m)
        assert n_rel > 0
        first = m.index(1)
        hit_at[first:] += 1
        ap, seen = 0.0, 0
        for k, mk in enumerate(m, start=1):
            seen += mk
            ap += mk * seen / k
        aps.append(ap / n_rel)
        last = max(k for k, mk in enumerate(m, start=1) if mk)
        inps.append(n_rel / last)
    cmc = list(100 * hit_at / n_q)
    return {'R1': cmc[0], 'R5': cmc[min(5, n_g) - 1], 'R10': cmc[min(10, n_g) - 1],
            'mAP': 100 * float(np.mean(aps)), 'mINP': 100 * float(np.mean(inps)),
            'cmc': cmc[:min(max_rank, n_g)], 'num_queries': n_q, 'num_gallery': n_g}


@pytest.fixture(params=['compiled', 'tensor'])
def each_ranking_path(request, monkeypatch):
    """Run a test through both ways of counting ranks: the compiled pass the CPU takes, and the
    tensor operations a GPU takes (forced here on the CPU)."""
    if request.param == 'tensor':
        import tbpr.metrics
        monkeypatch.setattr(tbpr.metrics, '_fuses', lambda sims: False)
    return request.param


def assert_same(got, want):
    assert set(got) == {'R1', 'R5', 'R10', 'mAP', 'mINP', 'cmc', 'num_queries', 'num_gallery'}
    for k in KEYS:
        assert isinstance(got[k], float), k
        assert got[k] == pytest.approx(want[k], abs=1e-4), k
    assert len(got['cmc']) == len(want['cmc'])
    assert got['cmc'] == pytest.approx(want['cmc'], abs=1e-4)
    assert (got['num_queries'], got['num_gallery']) == (want['num_queries'], want['num_gallery'])


def make_pids(rng, n_q, n_g, n_ids):
    "Gallery pids covering all ids (n_ids <= n_g), queries drawn from the gallery's ids."
    g = np.concatenate([np.arange(n_ids), rng.integers(0, n_ids, n_g - n_ids)])
    rng.shuffle(g)
    return rng.choice(g, n_q), g


def cosine(q, g):
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    g = g / np.linalg.norm(g, axis=1, keepdims=True)
    return q @ g.T


# ---------------------------------------------------------------- a hand-computed example
def test_hand_example():
    # query 0 (pid 1): ranking 1,2,0,3 -> m=(0,1,1,0): AP=(1/2+2/3)/2, INP=2/3, first hit at rank 2
    # query 1 (pid 3): ranking 2,0,1,3 (tie at .3 by index) -> m=(0,0,0,1): AP=INP=1/4, first hit at rank 4
    r = rank_metrics_from_scores([[.2, .9, .5, .1], [.3, .3, .8, .3]], [1, 3], [1, 2, 1, 3])
    assert r['cmc'] == [0.0, 50.0, 50.0, 100.0]
    assert (r['R1'], r['R5'], r['R10']) == (0.0, 100.0, 100.0)
    assert r['mAP'] == pytest.approx(100 * (7 / 12 + 1 / 4) / 2, abs=1e-9)      # 41.666...
    assert r['mINP'] == pytest.approx(100 * (2 / 3 + 1 / 4) / 2, abs=1e-9)     # 45.833...
    assert (r['num_queries'], r['num_gallery']) == (2, 4)


def test_hand_example_features():
    # one query along x; gallery: x (pid 0), y (pid 1), -x (pid 1), x+y (pid 0)
    g = np.array([[1., 0], [0, 1], [-1, 0], [1, 1]])
    r = rank_metrics(np.array([[2., 0]]), g, [1], [0, 1, 1, 0])
    # cosines 1, 0, -1, .707 -> ranking 0,3,1,2 -> m=(0,0,1,1): AP=(1/3+2/4)/2, INP=2/4
    assert r['cmc'] == [0.0, 0.0, 100.0, 100.0]
    assert r['mAP'] == pytest.approx(100 * (1 / 3 + 2 / 4) / 2, abs=1e-6)
    assert r['mINP'] == pytest.approx(50.0, abs=1e-6)


def test_tie_rule_is_gallery_order():
    # all scores equal: the ranking is the gallery order, so the relevant image at index j is at rank j+1
    g_pids = [5, 6, 7, 8, 9]
    for j, pid in enumerate(g_pids):
        r = rank_metrics_from_scores(np.zeros((1, 5)), [pid], g_pids)
        assert r['mAP'] == pytest.approx(100 / (j + 1))
    # -0.0 and 0.0 are equal scores
    r = rank_metrics_from_scores([[-0.0, 0.0]], [1], [0, 1])
    assert r['R1'] == 0.0 and r['mAP'] == 50.0


# ---------------------------------------------------------------- random data against the reference
SHAPES = [(1, 1, 1), (3, 2, 2), (17, 11, 4), (40, 25, 25), (64, 120, 30), (150, 60, 7)]


@pytest.mark.usefixtures('each_ranking_path')
@pytest.mark.parametrize('n_q,n_g,n_ids', SHAPES)
def test_random_scores(n_q, n_g, n_ids):
    rng = np.random.default_rng(n_q * 1000 + n_g)
    qp, gp = make_pids(rng, n_q, n_g, n_ids)
    s = rng.standard_normal((n_q, n_g))
    assert_same(rank_metrics_from_scores(s, qp, gp, chunk_size=16), reference(s, qp, gp))


@pytest.mark.usefixtures('each_ranking_path')
@pytest.mark.parametrize('n_q,n_g,n_ids', SHAPES)
def test_random_features(n_q, n_g, n_ids):
    rng = np.random.default_rng(7 + n_q + n_g)
    qp, gp = make_pids(rng, n_q, n_g, n_ids)
    q, g = rng.standard_normal((n_q, 32)), rng.standard_normal((n_g, 32))
    want = reference(cosine(q, g), qp, gp)
    assert_same(rank_metrics(q, g, qp, gp, chunk_size=16), want)
    # torch inputs, un-normalised scale, other dtypes: same result
    assert_same(rank_metrics(torch.tensor(q * 3.0), torch.tensor(g), torch.tensor(qp),
                             torch.tensor(gp, dtype=torch.int32), chunk_size=5), want)


def test_grad_and_device_arguments():
    rng = np.random.default_rng(4)
    qp, gp = make_pids(rng, 12, 9, 3)
    q, g = rng.standard_normal((12, 6)), rng.standard_normal((9, 6))
    qt = torch.tensor(q, dtype=torch.float32, requires_grad=True)
    r = rank_metrics(qt, torch.tensor(g), qp, gp, device='cpu')
    assert_same(r, reference(cosine(q, g), qp, gp))
    s, i = topk_gallery(qt, g, k=3)
    assert not s.requires_grad and i.shape == (12, 3)


def test_normalize_false_is_raw_dot_product():
    rng = np.random.default_rng(3)
    qp, gp = make_pids(rng, 30, 20, 6)
    q, g = rng.standard_normal((30, 8)).astype(np.float32), rng.standard_normal((20, 8)).astype(np.float32)
    assert_same(rank_metrics(q, g, qp, gp, normalize=False, chunk_size=7), reference(q @ g.T, qp, gp))


@pytest.mark.usefixtures('each_ranking_path')
@pytest.mark.parametrize('levels', [2, 4])
def test_many_ties(levels):
    rng = np.random.default_rng(levels)
    qp, gp = make_pids(rng, 90, 70, 9)
    s = rng.integers(0, levels, (90, 70))          # integer scores 0..levels-1: ties everywhere
    want = reference(s, qp, gp)
    for cs in (1, 7, 1000):
        assert_same(rank_metrics_from_scores(s, qp, gp, chunk_size=cs), want)
    assert_same(rank_metrics_from_scores(s.astype(np.float32), qp, gp), want)
    assert_same(rank_metrics_from_scores(torch.tensor(s, dtype=torch.float64), qp, gp), want)


@pytest.mark.usefixtures('each_ranking_path')
def test_ties_in_features():
    # small integer features without normalisation: every dot product is exact in float32, so duplicated gallery
    # images tie exactly whatever matmul kernel a chunk size selects (normalised duplicates may differ in the last bit)
    rng = np.random.default_rng(11)
    base = rng.integers(-2, 3, (6, 16)).astype(np.float32)
    g = base[rng.integers(0, 6, 40)]
    gp = rng.integers(0, 4, 40)
    q = rng.integers(-2, 3, (25, 16)).astype(np.float32)
    qp = rng.choice(gp, 25)
    want = reference(q.astype(np.float64) @ g.T, qp, gp)
    for cs in (1, 7, 1000):
        assert_same(rank_metrics(q, g, qp, gp, chunk_size=cs, normalize=False), want)


@pytest.mark.usefixtures('each_ranking_path')
def test_many_positives_per_query():
    rng = np.random.default_rng(5)
    qp, gp = make_pids(rng, 50, 80, 2)              # ~40 relevant images per query
    s = rng.standard_normal((50, 80))
    assert_same(rank_metrics_from_scores(s, qp, gp, chunk_size=9), reference(s, qp, gp))
    s = rng.integers(0, 3, (50, 80))
    assert_same(rank_metrics_from_scores(s, qp, gp, chunk_size=9), reference(s, qp, gp))


def test_single_positive_per_query():
    rng = np.random.default_rng(6)
    gp = rng.permutation(60) + 1000                 # every person once in the gallery
    qp = rng.choice(gp, 45)
    s = rng.standard_normal((45, 60))
    r = rank_metrics_from_scores(s, qp, gp)
    assert_same(r, reference(s, qp, gp))
    # with one relevant image, AP = INP = 1/rank
    ranks = [1 + int((s[i] > s[i, list(gp).index(qp[i])]).sum()) for i in range(45)]
    assert r['mAP'] == pytest.approx(100 * np.mean([1 / k for k in ranks]), abs=1e-9)
    assert r['mINP'] == pytest.approx(r['mAP'], abs=1e-9)


def test_all_gallery_relevant():
    r = rank_metrics_from_scores(np.random.default_rng(0).standard_normal((4, 6)), [1] * 4, [1] * 6)
    assert all(r[k] == pytest.approx(100.0) for k in KEYS) and r['cmc'] == [100.0] * 6


def test_chunk_size_does_not_matter():
    rng = np.random.default_rng(8)
    qp, gp = make_pids(rng, 37, 29, 5)
    q, g = rng.standard_normal((37, 12)), rng.standard_normal((29, 12))
    s = rng.integers(0, 4, (37, 29))
    want_f, want_s = reference(cosine(q, g), qp, gp), reference(s, qp, gp)
    for cs in (1, 7, 36, 37, 38, 10_000):
        assert_same(rank_metrics(q, g, qp, gp, chunk_size=cs), want_f)
        assert_same(rank_metrics_from_scores(s, qp, gp, chunk_size=cs), want_s)


def test_gallery_smaller_than_max_rank():
    rng = np.random.default_rng(9)
    qp, gp = make_pids(rng, 20, 8, 3)
    s = rng.standard_normal((20, 8))
    r = rank_metrics_from_scores(s, qp, gp, max_rank=50)
    assert len(r['cmc']) == 8 and r['cmc'][-1] == 100.0
    assert r['R10'] == 100.0 and r['R5'] == r['cmc'][4]
    assert_same(r, reference(s, qp, gp))


def test_max_rank_below_10_still_gives_r10():
    rng = np.random.default_rng(10)
    qp, gp = make_pids(rng, 30, 40, 10)
    s = rng.standard_normal((30, 40))
    want = reference(s, qp, gp, max_rank=3)
    r = rank_metrics_from_scores(s, qp, gp, max_rank=3)
    assert len(r['cmc']) == 3
    assert_same(r, want)
    assert r['R10'] == pytest.approx(reference(s, qp, gp)['cmc'][9])


def test_cmc_is_monotone_and_matches_rank_k():
    rng = np.random.default_rng(12)
    qp, gp = make_pids(rng, 100, 90, 20)
    r = rank_metrics_from_scores(rng.standard_normal((100, 90)), qp, gp, max_rank=20)
    assert len(r['cmc']) == 20 and all(a <= b for a, b in zip(r['cmc'], r['cmc'][1:]))
    assert (r['R1'], r['R5'], r['R10']) == (r['cmc'][0], r['cmc'][4], r['cmc'][9])


# ---------------------------------------------------------------- the naive baseline
@pytest.mark.parametrize('n_q,n_g,n_ids', [(1, 1, 1), (50, 30, 10), (200, 150, 40)])
def test_naive_agrees_on_tie_free_data(n_q, n_g, n_ids):
    rng = np.random.default_rng(n_q)
    qp, gp = make_pids(rng, n_q, n_g, n_ids)
    q, g = rng.standard_normal((n_q, 64)), rng.standard_normal((n_g, 64))
    a, b = naive_rank_metrics(q, g, qp, gp), rank_metrics(q, g, qp, gp, chunk_size=13)
    for k in KEYS: assert a[k] == pytest.approx(b[k], abs=1e-4), k
    assert a['cmc'] == pytest.approx(b['cmc'], abs=1e-4)
    assert (a['num_queries'], a['num_gallery']) == (b['num_queries'], b['num_gallery'])


# ---------------------------------------------------------------- top-k
def check_topk(q, g, sims, normalize):
    n_q, n_g = sims.shape
    for k, cs in [(1, 1), (7, 5), (10, 100), (n_g, 7), (n_g + 30, 4)]:
        s, i = topk_gallery(q, g, k=k, chunk_size=cs, normalize=normalize)
        kk = min(k, n_g)
        assert s.shape == i.shape == (n_q, kk) and i.dtype == torch.int64
        for r in range(n_q):
            want = sorted(range(n_g), key=lambda j: (-sims[r, j], j))[:kk]
            assert i[r].tolist() == want
            assert s[r].tolist() == pytest.approx(sims[r, want].tolist(), abs=1e-6)


def test_topk_gallery_with_ties():
    rng = np.random.default_rng(13)
    base = rng.integers(-2, 3, (5, 8)).astype(np.float32)
    g = base[rng.integers(0, 5, 50)]                # many exactly tied (exact integer) scores
    q = rng.integers(-2, 3, (23, 8)).astype(np.float32)
    check_topk(q, g, q.astype(np.float64) @ g.T, normalize=False)


def test_topk_gallery_random():
    rng = np.random.default_rng(14)
    q, g = rng.standard_normal((19, 16)), rng.standard_normal((41, 16))
    check_topk(q, g, cosine(q, g), normalize=True)


# ---------------------------------------------------------------- errors
def test_errors():
    s, qp, gp = np.zeros((2, 3)), [1, 2], [1, 2, 2]
    with pytest.raises(ValueError, match=r"2 of 3 queries have no relevant gallery image.*first: \[7, 9\]"):
        rank_metrics_from_scores(np.zeros((3, 3)), [7, 1, 9], gp)
    with pytest.raises(ValueError, match="no queries"):
        rank_metrics_from_scores(np.zeros((0, 3)), [], gp)
    with pytest.raises(ValueError, match="empty gallery"):
        rank_metrics_from_scores(np.zeros((2, 0)), qp, [])
    with pytest.raises(ValueError, match="query_pids has 3 entries but scores has 2 rows"):
        rank_metrics_from_scores(s, [1, 2, 2], gp)
    with pytest.raises(ValueError, match="gallery_pids has 2 entries"):
        rank_metrics_from_scores(s, qp, [1, 2])
    for bad in (np.nan, np.inf, -np.inf):
        b = s.copy(); b[1, 2] = bad
        with pytest.raises(ValueError, match=r"non-finite.*rows \[1\]"):
            rank_metrics_from_scores(b, qp, gp, chunk_size=1)
    with pytest.raises(ValueError, match="2-D"):
        rank_metrics_from_scores(np.zeros(3), [1], gp)
    with pytest.raises(ValueError, match="integer person ids"):
        rank_metrics_from_scores(s, [1.0, 2.0], gp)
    for kw in ({'chunk_size': 0}, {'max_rank': 0}, {'chunk_size': 1.5}):
        with pytest.raises(ValueError, match="positive integer"):
            rank_metrics_from_scores(s, qp, gp, **kw)


def test_feature_errors():
    q, g, qp, gp = np.ones((2, 4)), np.ones((3, 4)), [1, 2], [1, 2, 2]
    with pytest.raises(ValueError, match="dimension 4 but gallery_feats have 5"):
        rank_metrics(q, np.ones((3, 5)), qp, gp)
    with pytest.raises(ValueError, match="empty gallery"):
        rank_metrics(q, np.ones((0, 4)), qp, [])
    with pytest.raises(ValueError, match="no queries"):
        rank_metrics(np.ones((0, 4)), g, [], gp)
    with pytest.raises(ValueError, match="query_pids has 1 entries but query_feats has 2"):
        rank_metrics(q, g, [1], gp)
    with pytest.raises(ValueError, match="1 of 2 queries"):
        rank_metrics(q, g, [1, 5], gp)
    bad = q.copy(); bad[0, 1] = np.nan
    with pytest.raises(ValueError, match="query_feats contain non-finite"):
        rank_metrics(bad, g, qp, gp)
    with pytest.raises(ValueError, match="non-finite"):      # overflow to inf in the scores without normalisation
        rank_metrics(q * 1e30, g * 1e30, qp, gp, normalize=False)
    with pytest.raises(ValueError, match="gallery_feats contain non-finite"):
        topk_gallery(q, g * np.inf, k=2)


# ------------------------------------------------- the counting ranks against a stable sort, ties and many positives
def score_cases(rng):
    "Score blocks with pids that stress the counting: heavy ties, signed zeros, skewed and huge groups."
    for trial in range(120):
        c, n_g = int(rng.integers(1, 40)), int(rng.integers(1, 70))
        gp = rng.integers(0, int(rng.integers(1, 9)), n_g)
        if trial % 5 == 4:
            gp[: n_g * 3 // 4] = 0                      # one person holds most of the gallery
        qp = gp[rng.integers(0, n_g, c)]
        kind = trial % 4
        if kind == 0:
            s = rng.standard_normal((c, n_g)).astype(np.float32)
        elif kind == 1:
            s = rng.integers(-2, 3, (c, n_g)).astype(np.float32)
        elif kind == 2:
            s = np.where(rng.random((c, n_g)) < 0.4, -0.0, 0.0).astype(np.float32)
        else:
            s = (rng.integers(0, 2, (c, n_g)) * 0.5 - 1e-30).astype(np.float32)
        yield torch.tensor(s), torch.tensor(qp), torch.tensor(gp)


def test_counting_ranks_equal_sorting_ranks():
    from tbpr.metrics import _GalleryGroups, _count_ranks, _sort_ranks
    for s, qp, gp in score_cases(np.random.default_rng(21)):
        want, n_want = _sort_ranks(s, qp, gp)
        got, n_got = _count_ranks(s, *_GalleryGroups.of(gp).relevant(qp))
        assert torch.equal(n_got, n_want)
        assert torch.equal(got[:, :want.shape[1]], want)


def test_compiled_pass_equals_sorting():
    "The compiled pass: ranks as the stable sort gives them, the top k as `_topk_chunk` does."
    from tbpr.metrics import _GalleryGroups, _fused_ranks, _sort_ranks, _topk_chunk
    for s, qp, gp in score_cases(np.random.default_rng(24)):
        want, n_want = _sort_ranks(s, qp, gp)
        k = int(np.random.default_rng(len(s)).integers(0, s.shape[1] + 1))
        got, n_got, best = _fused_ranks(s, *_GalleryGroups.of(gp).relevant(qp), k)
        assert torch.equal(n_got, n_want)
        assert torch.equal(got[:, :want.shape[1]], want)
        if k:
            top_scores, top_cols = _topk_chunk(s, k)
            assert torch.equal(best[0], top_scores) and torch.equal(best[1], top_cols)
        else:
            assert best is None


@pytest.mark.usefixtures('each_ranking_path')
def test_counting_metrics_equal_the_reference():
    for s, qp, gp in list(score_cases(np.random.default_rng(22)))[:40]:
        assert_same(rank_metrics_from_scores(s, qp, gp, chunk_size=7), reference(s.numpy(), qp, gp))


@pytest.mark.usefixtures('each_ranking_path')
def test_top_k_from_the_metrics_pass():
    rng = np.random.default_rng(23)
    qp, gp = make_pids(rng, 40, 30, 6)
    q = rng.integers(-1, 2, (40, 4)).astype(np.float32)     # few distinct scores: ties at the k-th
    g = rng.integers(-1, 2, (30, 4)).astype(np.float32)
    for k in (1, 3, 10, 30, 50):
        r = rank_metrics(q, g, qp, gp, normalize=False, chunk_size=7, top_k=k)
        s, i = topk_gallery(q, g, k=k, normalize=False, chunk_size=11)
        assert torch.equal(r['topk_indices'], i) and torch.equal(r['topk_scores'], s)
        order = [sorted(range(30), key=lambda j: (-float(q[a] @ g[j]), j))[:k] for a in range(40)]
        assert r['topk_indices'].tolist() == order
    assert 'topk_indices' not in rank_metrics(q, g, qp, gp)
    with pytest.raises(ValueError, match='top_k'):
        rank_metrics(q, g, qp, gp, top_k=-1)
