"""End to end: every stage of `dvc repro` on the tiny synthetic benchmark with a tiny encoder, in a scratch folder."""
import json
from pathlib import Path
import pytest
import torch
from tbpr.core import TbprError
from tbpr.plugins import resolve_params
from tbpr import pipeline as P, runs as R, ablation as A, cli as C, cross as X

REPO = Path(__file__).resolve().parents[1]
TINY = {"synthetic": {"size": "tiny", "height": 96, "width": 32},
        "model": {"image_size": [48, 16], "patch_size": 8, "embed_dim": 32, "vision_width": 32, "vision_layers": 1,
                  "vision_heads": 2, "text_width": 32, "text_layers": 1, "text_heads": 2, "max_length": 48},
        "train": {"epochs": 2, "batch_size": 16, "num_instance": 2, "cmt_depth": 1, "cmt_heads": 2, "warmup_epochs": 1,
                  "augment": {"pad": 2}},
        "eval": {"grid_queries": 2}}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    "Run download, preprocess, train, evaluate and report once, in a scratch working directory."
    work = tmp_path_factory.mktemp("pipeline")
    mp = pytest.MonkeyPatch(); mp.chdir(work)
    params = resolve_params(None, TINY)
    P.stage_download(params); P.stage_preprocess(params); summary = P.stage_train(params)
    metrics = P.stage_evaluate(params)
    P.stage_report(params, notebook=REPO / "nbs/experiments/report.ipynb")
    yield work, params, summary, metrics
    mp.undo()


def test_outputs_of_every_stage(run):
    work, _, summary, metrics = run
    for f in ("dataset/reid_raw.json", "cache/images.npy", "cache/dataset.json", "model/model.safetensors",
              "model/config.json", "checkpoints/last/trainer_state.json", "train_live/metrics.json",
              "eval/metrics.json", "eval/cmc.csv", "eval/cmc.png", "eval/retrieval_grid.png",
              "report/report.ipynb", "report/report.html"):
        assert (work / "artifacts" / f).exists(), f
    assert {"R1", "R5", "R10", "mAP", "mINP", "chance_R1"} <= set(metrics)
    assert 0 <= metrics["R1"] <= metrics["R5"] <= metrics["R10"] <= 100
    assert summary["select"] == "val" and 1 <= summary["selected_epoch"] <= 2
    assert json.loads((work / "artifacts/eval/metrics.json").read_text())["R1"] == metrics["R1"]
    assert not list((work / "artifacts").glob(".*.tmp")), "temporary folders left behind"


def test_report_needs_evaluate_first(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TbprError, match="nothing to report yet"): P.stage_report(resolve_params(None, TINY))
    assert not (tmp_path / "artifacts/report").exists()


def test_report_shows_metrics(run):
    from PIL import Image
    html = (run[0] / "artifacts/report/report.html").read_text()
    assert "R1" in html and "chance" in html and "<img" in html
    assert "https://cdnjs" not in html and "TqdmWarning" not in html      # reads offline, no warning boxes
    with Image.open(run[0] / "artifacts/eval/retrieval_grid.png") as grid:
        assert grid.width <= 760, grid.size                               # a page's width: text stays legible


def test_cross_dataset_runs_beside_in_domain(run, capsys):
    """The cross stage: the tiny model on the two default targets (another seed; another seed, harder), as tiny as the
    training data; a run recorded per target, apart from the in-domain ones; the same again replaces them; the report's
    generalisation table; `tbpr cross` on a model folder, and its errors in one line."""
    import yaml
    work, params, *_ = run
    found = X.stage_cross(params)
    assert list(found) == ["synthetic-seed1", "synthetic-seed2-hard"] and all(0 <= m["R1"] <= 100 for m in found.values())
    cross = work / "artifacts/cross_runs"
    records = R.load_runs(cross, cross=True)
    assert {r["target"] for r in records} == set(found)
    assert {r["trained_on"]["run"] for r in records} == {R.run_id(params, work / "artifacts/cache")}
    assert R.load_runs(cross) == [] and len(R.load_runs(work / "artifacts/runs")) == 1   # in-domain readers never mix them
    hard = next(r for r in records if r["target"] == "synthetic-seed2-hard")
    meta = json.loads((work / "artifacts/cross/synthetic-seed2-hard/dataset/reid_raw.json").read_text())
    assert hard["target_params"]["difficulty"] == 0.8 and {e["split"] for e in meta} == {"test"}
    capsys.readouterr()
    X.stage_cross(params)                                       # the same parameters: reused splits, replaced records
    assert capsys.readouterr().out.count("(reused)") == 2 and len(list(cross.glob("*/run.json"))) == 2
    P.stage_report(params, notebook=REPO / "nbs/experiments/report.ipynb")
    nb = json.loads((work / "artifacts/report/report.ipynb").read_text())
    outputs = lambda heading: json.dumps([c.get("outputs") for c in nb["cells"][[i for i, c in enumerate(nb["cells"])
                                          if heading in "".join(c["source"])][0] + 1:][:1]])
    table = outputs("## Generalisation to other datasets")
    assert "synthetic (in-domain)" in table and "synthetic-seed2-hard" in table
    assert "synthetic-seed1" not in outputs("## Every method trained on this dataset")
    (work / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    tiny = ["--params", str(work / "tiny.yaml")]
    assert C.main(["cross", *tiny, "--model", "artifacts/model", "--data", "synthetic", "-S", "seed=5"]) == 0
    assert "synthetic-seed5" in {r["target"] for r in R.load_runs(cross, cross=True)}
    for argv, says in ((["--data", "market"], "'market' is neither a dataset nor a target of cross.targets"),
                       (["--data", "icfgpedes"], "cross target icfgpedes: icfgpedes: no dataset found"),
                       (["--model", "nowhere"], "nowhere: not a model folder"),
                       (["-S", "seed=3"], "it needs --data")):
        capsys.readouterr()
        assert C.main(["cross", *tiny, *argv]) == 2, argv
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err, err


def test_report_compares_every_trained_method(run, capsys):
    "A second method (two seeds) trained in the same workspace: the report compares it with the first, figure by figure."
    import numpy as np
    work, params, *_ = run
    bilma = resolve_params(None, {**TINY, "train": {**TINY["train"], "method": "bilma", "epochs": 1, "seeds": 2}})
    P.stage_train(bilma); P.stage_evaluate(bilma); P.stage_report(bilma, notebook=REPO / "nbs/experiments/report.ipynb")
    runs = R.load_runs(work / "artifacts/runs", R.dataset_id(work / "artifacts/cache"))
    assert [r["method"] for r in runs] == ["irra", "bilma"] and [r["stats"]["n_seeds"] for r in runs] == [1, 2]
    n_test = len(json.loads((work / "artifacts/cache/dataset.json").read_text())["test"]["captions"])
    assert np.load(runs[1]["dir"] / "topk.npy").shape == (n_test, 10)
    curves = (runs[1]["dir"] / "curves.csv").read_text()
    assert "train,loss_mim" in curves and "val,R1" in curves and {l.split(",")[0] for l in curves.splitlines()[1:]} == {"0", "1"}
    nb = json.loads((work / "artifacts/report/report.ipynb").read_text())
    text = json.dumps(nb)
    assert [r["name"] for r in runs] == ["irra", "bilma"] and "train.epochs=1" in ", ".join(runs[1]["changes"])
    assert "2 run(s)" in text and ", ".join(runs[1]["changes"]) in text and " \\u00b1 " in text
    compare = nb["cells"][[i for i, c in enumerate(nb["cells"]) if "Every method trained" in "".join(c["source"])][0]:]
    images = [o for c in compare for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 3, "CMC curves, the retrieval grid across methods, the training curves"
    capsys.readouterr()
    P.stage_evaluate(bilma)                                     # the same run again replaces its record
    assert len(list((work / "artifacts/runs").glob("*/run.json"))) == 2
    printed = capsys.readouterr().out                           # evaluate prints the recorded runs, baseline beside bilma
    table = printed[printed.index("runs recorded on this test split (2"):].splitlines()
    assert table[2].startswith("irra ") and table[3].startswith("bilma ") and " ± " in table[3]
    broken = work / "artifacts/runs/irra-broken"; broken.mkdir()
    (broken / "run.json").write_text('{"method": "irra"}')     # a record from elsewhere: skipped, and said so
    assert len(R.load_runs(work / "artifacts/runs")) == 2
    assert "skipping" in capsys.readouterr().out
    import shutil; shutil.rmtree(broken)


def test_failed_preprocess_keeps_previous_cache(run):
    work, params, *_ = run
    before = (work / "artifacts/cache/dataset.json").read_bytes()
    victim = next((work / "artifacts/dataset/imgs").rglob("*.jpg"))
    good = victim.read_bytes(); victim.write_bytes(good[:100])           # truncate one image
    try:
        with pytest.raises(TbprError, match="unreadable image"):
            P.stage_preprocess(params)
    finally: victim.write_bytes(good)
    assert (work / "artifacts/cache/dataset.json").read_bytes() == before


def test_cli_reports_errors_without_traceback(run, capsys):
    work, *_ = run
    (work / "bad.yaml").write_text("data:\n  name: market\n")
    assert C.main(["download", "--params", str(work / "bad.yaml")]) == 2
    err = capsys.readouterr().err
    assert "data.name='market'" in err and "Traceback" not in err


def test_several_seeds_give_mean_and_std(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = resolve_params(None, {**TINY, "train": {**TINY["train"], "epochs": 1, "seeds": 2}})
    P.stage_download(params); P.stage_preprocess(params); P.stage_train(params)
    assert (tmp_path / "artifacts/seeds/seed1/model/model.safetensors").exists()
    metrics = P.stage_evaluate(params)
    assert metrics["seeds"]["n_seeds"] == 2 and set(metrics["per_seed"]) == {"0", "1"}
    assert metrics["per_seed"]["0"]["R1"] == metrics["R1"] and metrics["seeds"]["R1_std"] >= 0
    P.stage_report(params, notebook=REPO / "nbs/experiments/report.ipynb")
    assert "over 2 seeds" in (tmp_path / "artifacts/report/report.html").read_text()
    one = resolve_params(None, {**TINY, "train": {**TINY["train"], "epochs": 1, "seeds": 1}})
    P.stage_train(one)                                   # back to one seed: the stale extra seed is removed
    assert not (tmp_path / "artifacts/seeds/seed1").exists()


def test_bilma_ablation_notebook_runs(run):
    "The ablation notebook end to end on the tiny cache: two variants, one seed, one epoch; finished runs are reused."
    import yaml
    work, params, *_ = run
    (work / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    nb = REPO / "nbs/experiments/bilma_ablation.ipynb"
    A.run_ablation("bilma", work / "tiny.yaml", epochs=1, seeds=[0], variants=["MLM only", "both"], notebook=nb)
    out = work / "artifacts/ablations/bilma"
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"MLM only", "both"} and 0 <= summary["both"]["R1"]["mean"] <= 100
    html = (out / "report/bilma_ablation.html").read_text()
    assert "one seed gives no spread to judge a difference by" in html and "<img" in html
    first = (out / "both/seed0/test.json").stat().st_mtime
    A.run_ablation("bilma", work / "tiny.yaml", epochs=1, seeds=[0], variants=["MLM only", "both"], notebook=nb)
    assert (out / "both/seed0/test.json").stat().st_mtime == first
    # a finished run trained with other parameters is not reused: two epochs retrain it, and the record says so
    A.run_ablation("bilma", work / "tiny.yaml", epochs=2, seeds=[0], variants=["both"], notebook=nb)
    again = json.loads((out / "both/seed0/test.json").read_text())
    assert again["epochs"] == 2 and (out / "both/seed0/test.json").stat().st_mtime > first
    # the sensitivity study: its centre point (m 0.15, b 1) is the ablation's `both` run, reused; one more ratio
    trained = (out / "both/seed0/test.json").stat().st_mtime
    A.run_ablation("bilma-sensitivity", work / "tiny.yaml", epochs=2, seeds=[0],
                   notebook=REPO / "nbs/experiments/bilma_sensitivity.ipynb", ratios=[0.15, 0.5], weights=[1.0],
                   reference_dir=str(out / "both"))
    assert (out / "both/seed0/test.json").stat().st_mtime == trained
    sens = work / "artifacts/ablations/bilma-sensitivity"
    runs = __import__("pandas").read_csv(sens / "runs.csv")
    assert sorted(runs["mask ratio"]) == [0.15, 0.5] and (sens / "sensitivity.png").exists()
    assert runs["MIM accuracy"].between(0, 100).all() and (sens / "m0.5_b1.0/seed0/test.json").exists()


def test_ivt_trains_and_evaluates_through_the_pipeline(tmp_path, monkeypatch):
    "IVT with every level, token dropping and overlapping patches: trained by the shared loop, shipped, loaded, evaluated."
    monkeypatch.chdir(tmp_path)
    params = resolve_params(None, {**TINY, "model": {**TINY["model"], "patch_stride": 6},
                                   "train": {**TINY["train"], "method": "ivt", "epochs": 1}})
    P.stage_download(params); P.stage_preprocess(params)
    assert (tmp_path / "artifacts/cache/attributes.json").exists()
    summary = P.stage_train(params)
    config = json.loads((tmp_path / "artifacts/model/config.json").read_text())
    assert config["encoder"]["arch"] == "shared" and config["encoder"]["patch_stride"] == 6 and summary["method"] == "ivt"
    metrics = P.stage_evaluate(params)
    assert metrics["method"] == "ivt" and 0 <= metrics["R1"] <= 100


def test_ivt_ablation_notebook_runs(run):
    import yaml
    work, params, *_ = run
    (work / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    A.run_ablation("ivt", work / "tiny.yaml", epochs=1, seeds=[0], variants=["sentence", "+ BMM"],
                   notebook=REPO / "nbs/experiments/ivt_ablation.ipynb")
    out = work / "artifacts/ablations/ivt"
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"sentence", "+ BMM"}
    assert "seed spread" in (out / "report/ivt_ablation.html").read_text()


def test_recipes_notebook_runs(run):
    "The recipes experiment (IRRA's group): fp32 against fp16 weights, and the one-step weight movement."
    import csv, yaml
    work, params, *_ = run
    (work / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    A.run_ablation("recipes", work / "tiny.yaml", epochs=1, seeds=[0], group="irra",
                   variants=["IRRA (fp32)", "IRRA, fp16 weights"], notebook=REPO / "nbs/experiments/recipes.ipynb")
    out = work / "artifacts/ablations/recipes/irra"
    assert set(json.loads((out / "summary.json").read_text())) == {"IRRA (fp32)", "IRRA, fp16 weights"}
    moved = {(r["lr"], r["weights"]): float(r["share moved (%)"]) for r in csv.DictReader(open(out / "weights_moved.csv"))}
    assert moved["1e-05", "fp32"] > 90 > moved["1e-05", "fp16"]


LCR2S = {**TINY["train"], "method": "lcr2s", "epochs": 1, "num_instance": 4, "support_size": 3}


def test_lcr2s_trains_teacher_then_student_and_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    params = resolve_params(None, {**TINY, "train": LCR2S})
    P.stage_download(params); P.stage_preprocess(params)
    P.stage_train(params)
    out = capsys.readouterr().out
    assert "phase 1 of 2" in out and "support sets (K=3," in out and "no identity is dropped" in out
    teacher = json.loads((tmp_path / "artifacts/checkpoints/teacher/model/config.json").read_text())
    shipped = json.loads((tmp_path / "artifacts/model/config.json").read_text())
    assert teacher["encoder"]["arch"] == "support" and teacher["method"] == "lcr2s-teacher"
    assert shipped["encoder"]["arch"] == "clip" and shipped["method"] == "lcr2s"      # only the student is shipped
    stamp = (tmp_path / "artifacts/checkpoints/teacher/checkpoints/last/trainer_state.json").stat().st_mtime
    P.stage_train(params)                                                                # both phases are done: nothing retrains
    assert (tmp_path / "artifacts/checkpoints/teacher/checkpoints/last/trainer_state.json").stat().st_mtime == stamp
    assert "epoch 1:" not in capsys.readouterr().out                                       # no epoch was trained again
    assert 0 <= P.stage_evaluate(params)["R1"] <= 100


def test_lcr2s_ablation_notebook_runs(run):
    import yaml
    work, params, *_ = run
    (work / "tiny.yaml").write_text(yaml.safe_dump({**TINY, "train": {**LCR2S, "method": "irra"}}))
    A.run_ablation("lcr2s", work / "tiny.yaml", epochs=1, seeds=[0], variants=["student alone", "+ both (LCR²S)"],
                   notebook=REPO / "nbs/experiments/lcr2s_ablation.ipynb")
    summary = json.loads((work / "artifacts/ablations/lcr2s/summary.json").read_text())
    assert set(summary) == {"student alone", "+ both (LCR²S)", "teacher alone", "teacher + oracle supports"}


def test_rde_ablation_notebook_runs(run):
    """`tbpr ablation rde` on the pipeline's cache: IRRA and RDE on clean and shuffled captions (a cache
    per noise rate, made from the pipeline's dataset), CCD scored against the shuffled pairs, one variant."""
    work, *_ = run
    (work / "tiny.yaml").write_text(json.dumps(TINY))
    A.run_ablation("rde", work / "tiny.yaml", epochs=1, seeds=[0], variants=["no CCD"],
                   noise_rates=[0.0, 0.5], notebook=REPO / "nbs/experiments/rde_ablation.ipynb")
    out = work / "artifacts/ablations/rde"
    noisy = json.loads((out / "caches/noise50/cache.json").read_text())["noise"]
    assert noisy["rate"] == 0.5 and noisy["moved"] > 0
    runs = (out / "noise_runs.csv").read_text().splitlines()
    assert len(runs) == 1 + 4 and {"IRRA", "RDE"} <= {r.split(",")[0] for r in runs[1:]}
    ccd = (out / "ccd.csv").read_text().splitlines()
    header, rows = ccd[0].split(","), [dict(zip(ccd[0].split(","), r.split(","))) for r in ccd[1:]]
    assert "ccd_recall" in header and any(r["noise (%)"] == "50" and r["ccd_recall"] for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"RDE", "no CCD"}
    assert (out / "noise.png").exists() and (out / "ccd.png").exists() and (out / "report/rde_ablation.html").exists()


def test_search_command_on_the_trained_model(run, capsys):
    "`tbpr search` with the pipeline's model on the synthetic test crops: top-k printed, grid written, cache reused."
    work, params, *_ = run
    gallery = work / "artifacts/dataset/imgs/test"
    args = ["search", "--model", str(work / "artifacts/model"), "--images", str(gallery), "--query",
            "a woman in a red coat", "--k", "4", "--out", str(work / "search.png"), "--cache", str(work / "search_cache")]
    assert C.main(args) == 0
    out = capsys.readouterr().out
    n = len(list(gallery.rglob("*.jpg")))
    assert out.count("  0.") + out.count("  -0.") >= 4 and (work / "search.png").exists() and f"{n} encoded, 0 from the cache" in out
    assert C.main(args) == 0 and f" 0 encoded, {n} from the cache" in capsys.readouterr().out
    assert C.main(args[:-6] + ["--query", " "]) == 2 and "the query is empty" in capsys.readouterr().err
    assert C.main(["search", "--model", str(work / "artifacts/model"), "--images", str(work / "nowhere"), "--query", "x"]) == 2


@pytest.mark.parametrize("method", ["bilma", "ivt", "lcr2s"])
def test_augmenting_on_the_device_trains_the_same_model(tmp_path, monkeypatch, method):
    """`train.augment_on: device` (pending uint8 views, augmented in batch in the loop) trains the
    same model as the loader's per-image path: parsing maps (bilma), several views and IVT's noise
    erasing (ivt), support images with blank slots (lcr2s)."""
    from safetensors.torch import load_file
    from tbpr.train import fit_method
    monkeypatch.chdir(tmp_path)
    train = {**TINY["train"], "method": method, "epochs": 1, "num_instance": 4, "support_size": 3,
             "augment": {"pad": 2, "erase": 0.8, "erase_fill": "noise" if method == "ivt" else "mean"}}
    params = resolve_params(None, {**TINY, "train": train})
    P.stage_download(params); P.stage_preprocess(params)
    weights = {}
    for on in ("loader", "device"):
        p = resolve_params(None, {**TINY, "train": {**train, "augment_on": on}})
        run = tmp_path / on
        fit_method(p, "artifacts/cache", run / "model", run / "ckpt", run / "live")
        weights[on] = load_file(run / "model" / "model.safetensors")
    assert weights["loader"].keys() == weights["device"].keys()
    for k, v in weights["loader"].items():
        assert torch.equal(v, weights["device"][k]), k


def test_zero_shot_clip_in_evaluate_report_and_search(run):
    """A pretrained CLIP as it is (a tiny random one, saved as a hub snapshot is): evaluate gives its
    zero-shot row, the report shows it beside the trained method, and search ranks with it."""
    from tbpr.pretrained import write_tiny_clip
    work, *_ = run
    clip = write_tiny_clip(work / "data/clip")
    shipped = json.loads((work / "artifacts/model/config.json").read_text())["method"]   # another test's
    overrides = {"train": {**TINY["train"], "method": shipped}, "eval": {**TINY["eval"], "zero_shot": str(clip)}}
    params = resolve_params(None, {**TINY, **overrides})
    row = P.stage_evaluate(params)["zero_shot"]
    assert row["init"] == str(clip) and 0 <= row["R1"] <= row["R10"] <= 100
    P.stage_report(params, notebook=REPO / "nbs/experiments/report.ipynb")
    assert "zero-shot CLIP" in (work / "artifacts/report/report.html").read_text()
    gallery = work / "artifacts/dataset/imgs/test"
    args = ["search", "--model", str(clip), "--images", str(gallery), "--query", "a man",
            "--k", "3", "--out", str(work / "zero_shot.png"), "--cache", str(work / "zs_cache")]
    assert C.main(args) == 0 and (work / "zero_shot.png").exists()


def test_noisy_pairs_through_the_pipeline(tmp_path, monkeypatch, capsys):
    """`data.noise_rate` (RDE's protocol, nbs/02g_noise): preprocess writes the noisy pairs and their record into the
    cache, so a run's fingerprint changes with them; evaluate, the run records, the report and the printed table say
    the rate, beside the clean run on the same test split. A noise file disagreeing with the rate is refused by the
    check stage; back at 0 the cache is byte for byte the clean one."""
    import numpy as np
    from tbpr.noise import draw_noise_index, noisy_mask
    from tbpr.train import fingerprint_parts
    from tbpr.cache import load_cached_dataset
    monkeypatch.chdir(tmp_path)
    with_noise = lambda **data: resolve_params(None, {**TINY, "data": data, "train": {**TINY["train"], "epochs": 1}})
    cache, clean = tmp_path / "artifacts/cache", with_noise()
    P.stage_download(clean); P.stage_preprocess(clean); P.stage_train(clean)
    assert P.stage_evaluate(clean)["noise_rate"] == 0.0
    files = ("dataset.json", "cache.json", "attributes.json")
    before, inputs, split = {f: (cache / f).read_bytes() for f in files}, fingerprint_parts(clean, cache), R.dataset_id(cache)
    assert "noise" not in json.loads(before["cache.json"])

    noisy = with_noise(noise_rate=0.2)
    P.stage_check(noisy); capsys.readouterr()
    P.stage_preprocess(noisy)
    assert "noisy pairs: " in capsys.readouterr().out
    ds, _ = load_cached_dataset(cache)
    record, n = json.loads((cache / "cache.json").read_text())["noise"], len(ds.train)
    assert record["moved"] == int(0.2 * n) == noisy_mask(ds.train).sum() and record["seed"] == 0
    assert fingerprint_parts(noisy, cache)["inputs"] != inputs["inputs"] and R.dataset_id(cache) == split
    P.stage_train(noisy)
    metrics = P.stage_evaluate(noisy)
    assert metrics["noise_rate"] == 0.2 and metrics["noise_moved_share"] == round(int(0.2 * n) / n, 6)
    assert json.loads((tmp_path / "artifacts/eval/metrics.json").read_text())["noise_rate"] == 0.2
    table = capsys.readouterr().out.split("runs recorded on this test split (2")[1].splitlines()
    column = table[1].index("noise")
    assert table[1].split()[:3] == ["run", "seeds", "noise"] and "[noise 0.2]" in table[3]
    assert [table[2][column:].split()[0], table[3][column:].split()[0]] == ["0", "0.2"]
    runs = R.load_runs(tmp_path / "artifacts/runs", split)
    assert [r["noise"]["rate"] for r in runs] == [0.0, 0.2] and runs[1]["noise"]["moved"] == int(0.2 * n)
    P.stage_report(noisy, notebook=REPO / "nbs/experiments/report.ipynb")
    html = (tmp_path / "artifacts/report/report.html").read_text()
    assert "noisy pairs" in html and "data.noise_rate: 0.2" in html and "2 run(s)" in html

    np.save(tmp_path / "tiny_0.5.npy", draw_noise_index(n, 0.5, seed=4))
    with pytest.raises(TbprError, match="set data.noise_rate to 0.5"):
        P.stage_check(with_noise(noise_rate=0.2, noise_file="tiny_0.5.npy"))
    P.stage_preprocess(with_noise(noise_rate=0.5, noise_seed=9, noise_file="tiny_0.5.npy"))
    record = json.loads((cache / "cache.json").read_text())["noise"]
    assert (record["seed"], record["file"], record["moved"]) == (None, "tiny_0.5.npy", int(0.5 * n))
    P.stage_preprocess(clean)
    assert {f: (cache / f).read_bytes() for f in files} == before
