"""RDE on the shared loop, end to end on a tiny dataset: CCD before every epoch (its labels in the
run's state and its figures in the logs), a resumed run that divides and trains as the
uninterrupted one, and a shipped model folder that ranks by the mean of the two cosines."""

import contextlib
import copy
import io
import shutil

import pytest
import torch
from safetensors.torch import load_file

import tbpr.train as T
from tbpr.cache import build_cache
from tbpr.core import read_json
from tbpr.data import fixture_entries, load_dataset, write_fixture
from tbpr.model import WEIGHTS, load_encoder, load_encoder_tokenizer
from tbpr.plugins import resolve_params
from tbpr.methods.rde import cosines
from test_faults_train import TINY as FAULTS_TINY

TINY = {  # test_faults_train's tiny model and loop, with RDE's small TSE and the fine GMM fit
    "model": FAULTS_TINY["model"],
    "train": {**FAULTS_TINY["train"], "method": "rde", "sampler": "random"},
    "rde": {"tse_dim": 24, "gmm": "fine"},
}


def fit(work, run, more=None):
    "Train `run` of RDE (or resume it), returning what it printed."
    p = resolve_params(None, {**copy.deepcopy(TINY), **(more or {})})
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        T.fit(p, work / "cache", work / run / "model", work / run / "ckpt", work / run / "live")
    return out.getvalue()


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    "A tiny dataset, its cache, and one finished two-epoch RDE run in `a/`."
    work = tmp_path_factory.mktemp("rde")
    ds = load_dataset(
        write_fixture(work / "ds", fixture_entries(n_train_ids=6, n_test_ids=3, per_id=3))
    )
    build_cache(ds, work / "cache", (48, 16))
    fit(work, "a")
    return work


def test_ccd_divides_before_every_epoch_and_logs_it(work):
    state = read_json(work / "a/ckpt/last/trainer_state.json")
    labels = state["method_state"]["ccd_labels"]
    n = len(read_json(work / "cache/dataset.json")["train"]["captions"])
    assert len(labels) == n and set(labels) <= {0, 1}
    for row in state["history"]:  # every epoch, from the first
        assert 0 <= row["ccd_noisy_share"] <= 100 and row["ccd_secs"] > 0
        assert {"loss_bge", "loss_tse"} <= set(row)


def test_a_resumed_run_divides_and_trains_as_the_uninterrupted_one(work):
    shutil.copytree(work / "a", work / "b")
    f = work / "b/ckpt/last" / WEIGHTS
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    text = fit(work, "b")
    assert "resuming after epoch 1" in text, text
    wa, wb = (load_file(work / r / "ckpt/last" / WEIGHTS) for r in ("a", "b"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa), "not the uninterrupted run's weights"
    sa, sb = (read_json(work / r / "ckpt/last/trainer_state.json") for r in ("a", "b"))
    assert sa["method_state"]["ccd_labels"] == sb["method_state"]["ccd_labels"]


def test_the_shipped_model_ranks_by_the_mean_of_both_cosines(work):
    encoder, meta = load_encoder(work / "a/model")
    tok = load_encoder_tokenizer(work / "a/model", meta)
    assert meta["encoder"]["arch"] == "rde" and meta["encoder"]["options"]["tse_dim"] == 24
    ids = tok(["a woman in a red coat", "blue jeans"], padding=True, return_tensors="pt")
    images = torch.randn(3, 3, 48, 16)
    with torch.no_grad():
        text, image = encoder.encode_text(ids["input_ids"])[0], encoder.encode_image(images)[0]
        tb, tt, _ = encoder.text_parts(ids["input_ids"])
        ib, it, _ = encoder.image_parts(images)
    assert text.shape == (2, 16 + 24) and torch.allclose(text.norm(dim=1), torch.ones(2))
    assert torch.allclose(text @ image.T, (cosines(tb, ib) + cosines(tt, it)) / 2, atol=1e-5)


def test_ccd_off_trains_every_pair_and_one_embedding_alone(work):
    fit(work, "c", {"rde": {**TINY["rde"], "ccd": False, "embeddings": "bge"}})
    state = read_json(work / "c/ckpt/last/trainer_state.json")
    assert "ccd_labels" not in state["method_state"]
    assert "loss_bge" in state["history"][0] and "loss_tse" not in state["history"][0]
    encoder, _ = load_encoder(work / "c/model")
    assert encoder.embed_dim == 16


def test_ccd_is_scored_against_the_shuffled_pairs(work):
    "On a cache with half the captions shuffled, each epoch logs how well CCD found them."
    from tbpr.cache import load_cached_dataset
    from tbpr.noise import add_noise, noisy_mask

    ds, _ = load_cached_dataset(work / "cache")
    noisy, record = add_noise(ds, {"noise_rate": 0.5, "noise_seed": 0, "noise_file": ""})
    build_cache(noisy, work / "noisy", (48, 16), noise=record)
    p = resolve_params(None, {**copy.deepcopy(TINY), "data": {"noise_rate": 0.5}})
    T.fit(p, work / "noisy", *(work / "n" / d for d in ("model", "ckpt", "live")))
    state = read_json(work / "n/ckpt/last/trainer_state.json")
    labels = torch.tensor(state["method_state"]["ccd_labels"])
    injected = torch.as_tensor(noisy_mask(noisy.train))
    found = ((labels == 0) & injected).sum().item()
    last = state["history"][-1]
    assert last["ccd_recall"] == pytest.approx(100 * found / injected.sum().item())
    assert last["ccd_precision"] == pytest.approx(100 * found / (labels == 0).sum().item())
