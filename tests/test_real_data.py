"""The real-benchmark path through the pipeline stages, on small copies the tests build: folder and archive sources,
the CLIP weights path, and IRRA's paper preset end to end on a tiny CLIP."""
import json, shutil
from pathlib import Path
import pytest
from tbpr.core import TbprError, DEFAULTS
from tbpr.plugins import resolve_params
from tbpr.data import write_fixture, fixture_entries, SCHEMAS
from tbpr.sources import OFFICIAL
from tbpr import pipeline as P, cli as C

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


def test_an_image_replaced_in_place_reaches_the_cache(tmp_path, monkeypatch, capsys):
    "The download manifest hashes every image: replaced pixels change it, so preprocess re-caches them."
    from PIL import Image
    import numpy as np
    monkeypatch.chdir(tmp_path)
    folder = _fixture(tmp_path / "data", "cuhkpedes")
    params = resolve_params(None, {"data": {"name": "cuhkpedes"}, "model": {"image_size": [48, 16], "patch_size": 8}})
    P.stage_download(params); P.stage_preprocess(params)
    manifest = json.loads((tmp_path / "artifacts/dataset/manifest.json").read_text())
    ds = json.loads((tmp_path / "artifacts/cache/dataset.json").read_text())
    path = ds["test"]["img_paths"][0]
    Image.new("RGB", (16, 48), (250, 250, 0)).save(folder / "imgs" / path)      # same name, new pixels
    capsys.readouterr()
    P.stage_download(params)                                                     # `dvc repro -f download`
    assert "1 image(s) changed, 0 new, 0 gone" in capsys.readouterr().out
    again = json.loads((tmp_path / "artifacts/dataset/manifest.json").read_text())
    assert again["images_sha256"] != manifest["images_sha256"] and again["sha256"] == manifest["sha256"]
    P.stage_preprocess(params)
    paths = json.loads((tmp_path / "artifacts/cache/cache.json").read_text())["paths"]
    cached = np.load(tmp_path / "artifacts/cache/images.npy")[paths.index(path)]
    assert np.abs(cached.reshape(-1, 3).mean(0) - [250, 250, 0]).max() < 3        # JPEG rounds a little


def test_missing_real_dataset_names_the_place(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.yaml").write_text("data:\n  name: icfgpedes\n")
    assert C.main(["download", "--params", "p.yaml"]) == 2
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


# ---- CLIP from OpenAI's files and from the Hugging Face cache (nbs/03a_pretrained) ----
import hashlib, os, subprocess, sys
import torch

WORDS = ("a", "man", "woman", "wearing", "with", "and", "black", "white", "red", "blue", "shirt")


def _openai_pt(hf_folder, path, half=False) -> Path:
    """The weights of a Hugging Face CLIP folder written as OpenAI's `ViT-B-16.pt` holds them: OpenAI's naming, fp16 if `half`,
    and the three size entries OpenAI's TorchScript archive carries besides the weights. The file holds no head count
    (readers take width // 64, as `clip.model.build_model` does), so the folder must have 64-wide heads."""
    from transformers import CLIPModel
    from tbpr.pretrained import hf_to_openai
    sd = hf_to_openai(CLIPModel.from_pretrained(hf_folder).state_dict())
    if half: sd = {k: v.half() for k, v in sd.items()}
    sd.update(input_resolution=torch.tensor(224), context_length=torch.tensor(77), vocab_size=torch.tensor(len(sd["token_embedding.weight"])))
    Path(path).parent.mkdir(parents=True, exist_ok=True); torch.save(sd, path)
    return Path(path)


def test_paper_preset_from_openai_pt_with_a_tokenizer_folder(tmp_path, monkeypatch):
    """preset=irra-paper from an OpenAI-format .pt (which carries no tokenizer) with model.tokenizer naming a CLIP tokenizer
    folder that has no mask token (the README's recipe): the folder must get <|mask|> so that IRR trains, then evaluate.
    The preset gives it IRRA's id, the one before <|startoftext|> (the last merge's), so the vocabulary keeps its size."""
    from transformers import AutoTokenizer
    from tbpr.pretrained import write_tiny_clip
    from tbpr.tokenizer import write_tiny_clip_tokenizer
    from tbpr.model import load_encoder, load_encoder_tokenizer
    monkeypatch.chdir(tmp_path)
    pt = _openai_pt(write_tiny_clip(tmp_path / "hf-clip", heads=1, words=WORDS), tmp_path / "data/weights/tiny-ViT-B-16.pt", half=True)
    tokdir = write_tiny_clip_tokenizer(tmp_path / "data/weights/clip-tokenizer", words=WORDS)
    vocab = len(AutoTokenizer.from_pretrained(tokdir))
    assert AutoTokenizer.from_pretrained(tokdir).mask_token is None            # the case that crashed at the first batch
    params = resolve_params(None, {"preset": "irra-paper", "synthetic": {"size": "tiny", "height": 96, "width": 32},
                                   "model": {"init": "data/weights/tiny-ViT-B-16.pt", "init_sha256": hashlib.sha256(pt.read_bytes()).hexdigest(),
                                             "tokenizer": "data/weights/clip-tokenizer"},
                                   "train": {"epochs": 1, "batch_size": 16, "cmt_depth": 1, "cmt_heads": 2},
                                   "eval": {"grid_queries": 2}})
    assert params["train"]["mlm_prob"] > 0 and params["train"]["method"] == "irra"
    P.stage_download(params); P.stage_preprocess(params)
    summary = P.stage_train(params)
    metrics = P.stage_evaluate(params)
    enc, meta = load_encoder(tmp_path / "artifacts/model")
    tok = load_encoder_tokenizer(tmp_path / "artifacts/model", meta)
    assert tok.mask_token == "<|mask|>" and tok.mask_token_id == tok.bos_token_id - 1 == vocab - 3 and len(tok) == vocab
    assert (enc.cfg.vocab_size, enc.cfg.max_length, enc.cfg.grid, enc.cfg.eos_token_id) == (vocab, 77, (24, 8), tok.eos_token_id)
    assert summary["epochs"] == 1 and summary["history"][0]["loss_mlm"] > 0 and 0 <= metrics["R1"] <= 100


def test_hf_folder_and_openai_pt_load_into_the_same_encoder(tmp_path):
    """The same tiny weights as a `save_pretrained` folder and as an OpenAI-format .pt give the same encoder at 384x128:
    equal state dicts and features (fp32), close ones from the fp16 file OpenAI ships; text features equal CLIPModel's."""
    from transformers import CLIPModel
    from tbpr.pretrained import write_tiny_clip, load_pretrained, init_encoder
    from tbpr.tokenizer import load_clip_tokenizer
    from tbpr.model import DualEncoder
    from tbpr.train import encoder_config
    folder = write_tiny_clip(tmp_path / "hf-clip", layers=2, heads=1, words=WORDS)
    pres = {"hf": load_pretrained(str(folder)), "pt": load_pretrained(str(_openai_pt(folder, tmp_path / "fp32.pt"))),
            "pt16": load_pretrained(str(_openai_pt(folder, tmp_path / "fp16.pt", half=True)))}
    assert pres["hf"].dims == pres["pt"].dims == pres["pt16"].dims
    tok = load_clip_tokenizer(str(folder))
    model_params = resolve_params(None, {"preset": "irra-paper"})["model"]
    torch.manual_seed(0)
    encs = {k: init_encoder(DualEncoder(encoder_config(model_params, tok, pre)), pre).eval() for k, pre in pres.items()}
    ref = encs["hf"].state_dict()
    assert ref.keys() == encs["pt"].state_dict().keys()
    for k, v in encs["pt"].state_dict().items(): assert torch.equal(v, ref[k]), k
    for k, v in encs["pt16"].state_dict().items(): assert torch.allclose(v, ref[k], atol=2e-3, rtol=1e-2), k
    img = torch.randn(2, 3, 384, 128)
    ids = tok(["a man wearing a red shirt", "a woman with a blue and white shirt"], padding=True, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        feats = {k: (e.encode_image(img)[0], e.encode_text(ids)[0]) for k, e in encs.items()}
        want = CLIPModel.from_pretrained(folder).eval().get_text_features(input_ids=ids)
    want = getattr(want, "pooler_output", want)
    assert torch.equal(feats["pt"][0], feats["hf"][0]) and torch.equal(feats["pt"][1], feats["hf"][1])
    assert torch.allclose(feats["pt16"][0], feats["hf"][0], atol=1e-2) and torch.allclose(feats["pt16"][1], feats["hf"][1], atol=1e-2)
    assert torch.allclose(feats["hf"][1], want, atol=1e-5)


def _fake_hub_cache(hf_home: Path, repo_id: str, folder: Path) -> Path:
    "The layout huggingface_hub keeps under HF_HOME: hub/models--org--name/{blobs/<sha256>, snapshots/<commit>/<file> -> blob, refs/main}."
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    snap = repo / "snapshots" / commit; snap.mkdir(parents=True); (repo / "blobs").mkdir(); (repo / "refs").mkdir()
    for f in sorted(folder.iterdir()):
        blob = repo / "blobs" / hashlib.sha256(f.read_bytes()).hexdigest()
        blob.write_bytes(f.read_bytes()); (snap / f.name).symlink_to(os.path.relpath(blob, snap))
    (repo / "refs" / "main").write_text(commit)
    return snap


def test_hub_id_loads_from_the_local_cache_offline(tmp_path):
    """preset=irra-paper's model.init (the hub id) and model.tokenizer=clip resolve from a Hugging Face cache snapshot under
    HF_HOME with HF_HUB_OFFLINE=1, in a fresh process (huggingface_hub reads both at import); a hub id that is not in
    the cache names the on-disk alternatives."""
    from tbpr.pretrained import write_tiny_clip, load_pretrained
    from tbpr.tokenizer import load_clip_tokenizer, CLIP_HUB_ID, OPENAI_BPE
    folder = write_tiny_clip(tmp_path / "src", words=WORDS)
    init = resolve_params(None, {"preset": "irra-paper"})["model"]["init"]
    assert init == CLIP_HUB_ID
    _fake_hub_cache(tmp_path / "hf_home", init, folder)
    script = """if True:
        import json
        from tbpr.core import TbprError
        from tbpr.plugins import resolve_params
        from tbpr.pretrained import load_pretrained
        from tbpr.tokenizer import load_tokenizer
        model = resolve_params(None, {"preset": "irra-paper"})["model"]
        pre = load_pretrained(model["init"])
        tok = load_tokenizer(model["tokenizer"], clip_dir=pre.tokenizer_dir)
        try: load_pretrained("openai/clip-vit-large-patch14"); missing_model = ""
        except TbprError as err: missing_model = str(err)
        try: load_tokenizer("clip", clip_dir="openai/clip-vit-large-patch14"); missing_tok = ""
        except TbprError as err: missing_tok = str(err)
        print(json.dumps({"source": pre.source, "tokenizer_dir": pre.tokenizer_dir, "dims": pre.dims,
                          "sums": {k: float(v.double().sum()) for k, v in pre.state.items()}, "mask": tok.mask_token,
                          "len": len(tok), "ids": tok("a man wearing a red shirt")["input_ids"],
                          "missing_model": missing_model, "missing_tok": missing_tok}))
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    pre, tok = load_pretrained(str(folder)), load_clip_tokenizer(str(folder))
    assert (got["source"], got["tokenizer_dir"]) == (CLIP_HUB_ID, CLIP_HUB_ID)
    assert got["dims"] == json.loads(json.dumps(pre.dims))
    assert got["sums"] == {k: float(v.double().sum()) for k, v in pre.state.items()}
    assert (got["mask"], got["len"], got["ids"]) == ("<|mask|>", len(tok), tok("a man wearing a red shirt")["input_ids"])
    assert "data/weights/" in got["missing_model"] and OPENAI_BPE in got["missing_tok"]


def test_every_clip_tokenizer_form_gets_a_mask_token(tmp_path):
    """model.tokenizer as a CLIP folder without a mask token, as OpenAI's bpe_simple_vocab_16e6.txt.gz, and `clip` with that
    file beside an OpenAI .pt: one vocabulary, one set of ids, <|mask|> appended, 77 positions.
    Needs the new `load_tokenizer` of nbs/01a_tokenizer."""
    from tbpr.pretrained import write_tiny_clip, load_pretrained
    from tbpr.tokenizer import write_tiny_clip_tokenizer, write_tiny_openai_bpe
    from tbpr.tokenizer import load_tokenizer
    folder = write_tiny_clip_tokenizer(tmp_path / "clip-tokenizer", words=WORDS)
    gz = write_tiny_openai_bpe(tmp_path / "weights", words=WORDS)
    pt = _openai_pt(write_tiny_clip(tmp_path / "hf-clip", heads=1, words=WORDS), tmp_path / "weights" / "tiny.pt")
    pre = load_pretrained(str(pt))
    assert pre.tokenizer_dir == str(gz)
    toks = {"folder": load_tokenizer(str(folder)), "gz": load_tokenizer(str(gz)), "beside-pt": load_tokenizer("clip", clip_dir=pre.tokenizer_dir)}
    n = len(json.loads((folder / "vocab.json").read_text()))
    caption = "A man wearing a black shirt, with a blue-and-white bag."
    for name, tok in toks.items():
        assert (tok.mask_token, tok.mask_token_id, len(tok), tok.model_max_length) == ("<|mask|>", n, n + 1, 77), name
        assert tok.get_vocab() == toks["folder"].get_vocab() and tok(caption)["input_ids"] == toks["folder"](caption)["input_ids"], name


def test_irr_refuses_a_tokenizer_without_mask_token(tmp_path):
    "IRR's masking needs a mask token: a tokenizer without one is refused when the collate is built, naming the fix. Needs the new `Collate`."
    from transformers import AutoTokenizer
    from tbpr.tokenizer import write_tiny_clip_tokenizer
    from tbpr.batches import Collate
    tok = AutoTokenizer.from_pretrained(write_tiny_clip_tokenizer(tmp_path / "tok"))
    assert tok.mask_token is None
    with pytest.raises(TbprError, match="no mask token") as err: Collate(tok, 77, mlm_prob=0.15)
    assert "train.mlm_prob=0" in str(err.value) and str(tmp_path / "tok") in str(err.value)
    Collate(tok, 77, mlm_prob=0.0)                            # without IRR it is fine


def test_random_replacements_are_never_special_tokens(tmp_path):
    """BERT's 10% random replacements come from the tokenizer's regular ids: never CLIP's <|startoftext|>, <|endoftext|> or
    <|mask|>, nor WordPiece's [CLS]/[SEP]/[PAD]/[MASK]/[unusedN]. Needs the new `mask_tokens` / `replacement_ids`."""
    from tbpr.tokenizer import write_tiny_clip_tokenizer, load_clip_tokenizer
    from tbpr.tokenizer import mask_tokens, replacement_ids
    from tbpr.tokenizer import load_tokenizer
    clip = load_clip_tokenizer(str(write_tiny_clip_tokenizer(tmp_path / "tok", words=WORDS)))
    pool = set(replacement_ids(clip).tolist())
    # id 0 is left out too, as IRRA does (0 is the "not masked" label)
    assert pool == set(range(1, len(clip))) - {clip.bos_token_id, clip.eos_token_id, clip.mask_token_id}
    ids = clip(["a man wearing a red shirt and blue"] * 400, return_tensors="pt")["input_ids"]
    masked, labels = mask_tokens(ids, clip, 0.5, torch.Generator().manual_seed(0))
    replaced = (labels != 0) & (masked != clip.mask_token_id) & (masked != ids)
    assert replaced.sum() > 50 and set(masked[replaced].tolist()) <= pool
    assert set(masked[labels == 0].tolist()) == set(ids[labels == 0].tolist())           # unselected tokens untouched
    wp = load_tokenizer("minilm"); wpool = replacement_ids(wp)
    assert wpool.min().item() == wp.convert_tokens_to_ids("!") and not set(wpool.tolist()) & set(wp.all_special_ids)
    assert not any(t.startswith("[unused") for t in wp.convert_ids_to_tokens(wpool.tolist()))


def test_bilma_paper_preset_parses_then_trains_on_a_real_schema(tmp_path, monkeypatch):
    """preset=bilma-paper on a CUHK-PEDES-shaped copy that ships no parsing maps: the parse stage makes them with a
    (tiny, random) parser loaded through transformers from data/parsers/, preprocess caches them with the parser's
    labels, and BiLMa trains through IRR's module, logging held-out MIM accuracy; then evaluate."""
    from tbpr.pretrained import write_tiny_clip
    from tbpr.parsing import write_tiny_parser, ATR_LABELS
    monkeypatch.chdir(tmp_path)
    _fixture(tmp_path / "data", "cuhkpedes")
    clip = write_tiny_clip(tmp_path / "data/weights/tiny-clip", words=WORDS)
    parser = write_tiny_parser(tmp_path / "data/parsers/tiny-parser")
    over = {"preset": "bilma-paper", "data": {"name": "cuhkpedes", "parser": str(parser)},
            "model": {"init": str(clip)}, "eval": {"grid_queries": 2},
            "train": {"epochs": 1, "seeds": 1, "batch_size": 8, "cmt_depth": 1, "cmt_heads": 2}}
    params = resolve_params(None, over)
    assert (params["train"]["method"], params["bilma"]["mim_cross"], params["train"]["lr"]) == ("bilma", "shared", 1e-5)
    P.stage_check(params); P.stage_download(params); P.stage_parse(params)
    record = json.loads((tmp_path / "artifacts/parsing/parsing.json").read_text())
    assert record["status"] == "made" and record["made_now"] == record["maps"] and record["labels"] == ATR_LABELS
    P.stage_preprocess(params)
    assert len(json.loads((tmp_path / "artifacts/cache/cache.json").read_text())["paths"]) == record["maps"]
    assert json.loads((tmp_path / "artifacts/cache/parsing.json").read_text())["labels"] == ATR_LABELS
    summary = P.stage_train(params)
    state = json.loads((tmp_path / "artifacts/checkpoints/last/trainer_state.json").read_text())
    assert {"val_mim_acc", "val_mim_majority"} <= set(state["history"][0])
    assert summary["epochs"] == 1 and 0 <= P.stage_evaluate(params)["R1"] <= 100
    # a second parse keeps every map; irra needs none, and says why
    P.stage_parse(params)
    assert json.loads((tmp_path / "artifacts/parsing/parsing.json").read_text())["made_now"] == 0
    P.stage_parse(resolve_params(None, {**over, "preset": "irra-paper"}))
    assert "trains on no parsing maps" in json.loads((tmp_path / "artifacts/parsing/parsing.json").read_text())["reason"]


def test_a_missing_parser_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _fixture(tmp_path / "data", "cuhkpedes")
    params = resolve_params(None, {"data": {"name": "cuhkpedes"}, "train": {"method": "bilma"}})
    P.stage_download(params)
    with pytest.raises(TbprError, match="could not load a segmentation model") as err:
        P.stage_parse(params)
    assert "--local-dir data/parsers/segformer_b2_clothes" in str(err.value)
    assert not (tmp_path / "artifacts/cache").exists()
