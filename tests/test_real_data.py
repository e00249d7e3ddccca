"""The real-benchmark path through the pipeline stages, on small copies the tests build: folder and archive sources,
the CLIP weights path, and IRRA's paper preset end to end on a tiny CLIP."""
import json, shutil
from pathlib import Path
import pytest
from tbpr.core import resolve_params, TbprError, DEFAULTS
from tbpr.data import write_fixture, fixture_entries, SCHEMAS
from tbpr.sources import OFFICIAL
from tbpr import pipeline as P

REPO = Path(__file__).resolve().parents[1]


def test_params_yaml_is_the_defaults(tmp_path):
    """Presets apply to keys left at their defaults, so the shipped params.yaml must say exactly DEFAULTS. The committed
    file is checked: `dvc exp run -S ...` leaves its values in the workspace's copy, which is the user's to change."""
    import subprocess
    shipped = subprocess.run(["git", "show", "HEAD:params.yaml"], cwd=REPO, capture_output=True, text=True)
    path = REPO / "params.yaml"
    if shipped.returncode == 0: (path := tmp_path / "params.yaml").write_text(shipped.stdout)
    assert resolve_params(path) == resolve_params(None)


def _fixture(raw, name):
    schema = SCHEMAS[name]
    entries = fixture_entries(n_train_ids=4, n_test_ids=3, id_base=schema.id_base, key=schema.image_key)
    if name == "icfgpedes":
        entries = [dict(e, captions=e["captions"][:1]) for e in entries if e["split"] != "val"]
    return write_fixture(Path(raw) / OFFICIAL[name]["folder"], entries, name)


@pytest.mark.parametrize("name,archive", [("cuhkpedes", None), ("rstpreid", "zip"), ("icfgpedes", "gztar")])
def test_download_and_preprocess_real_schemas(tmp_path, monkeypatch, name, archive):
    monkeypatch.chdir(tmp_path)
    folder = _fixture(tmp_path / "data", name)
    if archive:
        shutil.make_archive(str(folder), archive, folder.parent, folder.name); shutil.rmtree(folder)
    params = resolve_params(None, {"data": {"name": name}, "model": {"image_size": [48, 16], "patch_size": 8}})
    P.stage_download(params); P.stage_preprocess(params)
    ds = json.loads((tmp_path / "artifacts/cache/dataset.json").read_text())
    assert ds["name"] == name and ds["train"]["pids"][0] == 0
    assert (ds["val"] is None) == (name == "icfgpedes")
    manifest = json.loads((tmp_path / "artifacts/dataset/manifest.json").read_text())
    assert manifest["counts"]["train"][0] == 4 and len(manifest["sha256"]) == 64


def test_missing_real_dataset_names_the_place(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.yaml").write_text("data:\n  name: icfgpedes\n")
    assert P.main(["download", "--params", "p.yaml"]) == 2
    err = capsys.readouterr().err
    assert "data/ICFG-PEDES" in err and "dvc add data" in err and not (tmp_path / "artifacts/dataset").exists()


def test_paper_preset_end_to_end_on_a_tiny_clip(tmp_path, monkeypatch):
    "preset=irra-paper with a tiny CLIP checkpoint in model.init: 384x128, CLIP tokenizer, interpolated grid, bf16 autocast."
    from tbpr.pretrained import write_tiny_clip
    from tbpr.model import load_encoder, load_encoder_tokenizer
    monkeypatch.chdir(tmp_path)
    clip = write_tiny_clip(tmp_path / "data/weights/tiny-clip",
                           words=("a", "man", "woman", "wearing", "with", "and", "black", "white", "red", "blue", "shirt"))
    params = resolve_params(None, {"preset": "irra-paper", "synthetic": {"size": "tiny", "height": 96, "width": 32},
                                   "model": {"init": str(clip)},
                                   "train": {"epochs": 1, "batch_size": 16, "cmt_depth": 1, "cmt_heads": 2},
                                   "eval": {"grid_queries": 2}})
    assert params["model"]["image_size"] == [384, 128] and params["train"]["lr"] == 1e-5 and params["train"]["epochs"] == 1
    P.stage_download(params); P.stage_preprocess(params)
    summary = P.stage_train(params)
    metrics = P.stage_evaluate(params)
    enc, meta = load_encoder(tmp_path / "artifacts/model")
    assert enc.cfg.grid == (24, 8) and enc.cfg.vision_width == 64 and enc.cfg.max_length == 77
    tok = load_encoder_tokenizer(tmp_path / "artifacts/model", meta)
    assert tok.mask_token == "<|mask|>" and enc.cfg.eos_token_id == tok.eos_token_id
    assert summary["epochs"] == 1 and 0 <= metrics["R1"] <= 100
