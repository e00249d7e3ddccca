"""Faults of training, the model folder and search, as users met them: corrupt weights, a disk that
fills up while a checkpoint or the result grid is written, a query longer than the model reads,
model folders with a broken config.json, re-shipping identical weights, resumed curves, and loss
weights that are all 0. Each runs on the tiny configuration of nbs/07_train in a few seconds."""

import builtins
import contextlib
import copy
import errno
import hashlib
import io
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import tbpr.train as T
from tbpr.checkpoints import checkpoint_problem, disk_full_behind
from tbpr.core import TbprError, read_json
from tbpr.plugins import resolve_params
from tbpr.data import fixture_entries, load_dataset, write_fixture
from tbpr.cache import build_cache
from tbpr.model import DIGESTS, WEIGHTS, load_encoder
from tbpr.search import GalleryIndex, grid_caption, plot_ranked, search

TINY = {
    "model": {
        "image_size": [48, 16],
        "patch_size": 8,
        "embed_dim": 16,
        "vision_width": 32,
        "vision_layers": 1,
        "vision_heads": 2,
        "text_width": 32,
        "text_layers": 1,
        "text_heads": 2,
        "max_length": 16,
    },
    "train": {
        "epochs": 2,
        "batch_size": 8,
        "num_instance": 2,
        "cmt_depth": 1,
        "cmt_heads": 2,
        "warmup_epochs": 1,
        "augment": {"pad": 2},
    },
}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    "A tiny dataset, its cache, and one finished two-epoch run in `a/`."
    work = tmp_path_factory.mktemp("faults")
    ds = load_dataset(
        write_fixture(work / "ds", fixture_entries(n_train_ids=6, n_test_ids=3, per_id=3))
    )
    build_cache(ds, work / "cache", (48, 16))
    fit(work, "a")
    return work


def params():
    return resolve_params(None, copy.deepcopy(TINY))


def dirs(work, run):
    return work / run / "model", work / run / "ckpt", work / run / "live"


def fit(work, run, p=None):
    "Train `run` (or resume it), returning what it printed."
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        T.fit(p or params(), work / "cache", *dirs(work, run))
    return out.getvalue()


def copy_run(work, src, dst):
    shutil.rmtree(work / dst, ignore_errors=True)
    shutil.copytree(work / src, work / dst)


def flip_middle(f, n=64):
    "Invert `n` bytes in the middle of `f`: its length and header stay, its content changes."
    data = bytearray(f.read_bytes())
    mid = len(data) // 2
    data[mid : mid + n] = bytes(b ^ 0xFF for b in data[mid : mid + n])
    f.write_bytes(bytes(data))


def snapshot(folder):
    "(name, modification time, sha256) of every file in `folder`."
    return [
        (f.name, f.stat().st_mtime_ns, hashlib.sha256(f.read_bytes()).hexdigest())
        for f in sorted(Path(folder).iterdir())
    ]


def temporaries(folder):
    return sorted(p.name for p in Path(folder).rglob("*.tmp"))


# 1. corrupt weights


def test_flipped_checkpoint_is_named_and_the_previous_one_resumed(work):
    copy_run(work, "a", "d")
    f = work / "d/ckpt/last" / WEIGHTS
    flip_middle(f)
    text = fit(work, "d")
    assert f"{f}: corrupt: its content changed after it was written" in text, text
    assert "going on from" in text and "resuming after epoch 1" in text, text
    wa, wd = (load_file(work / run / "ckpt/last" / WEIGHTS) for run in ("a", "d"))
    assert all(torch.equal(wa[k], wd[k]) for k in wa), "not the uninterrupted run's weights"


def test_flipped_shipped_weights_are_refused_with_the_way_back(work):
    copy_run(work, "a", "e")
    f = work / "e/model" / WEIGHTS
    flip_middle(f)
    with pytest.raises(TbprError) as err:
        load_encoder(work / "e/model")
    assert f"{f}: corrupt" in str(err.value) and "dvc checkout --force artifacts/model" in err.value.fix
    gallery = work / "ds/imgs/test"
    with pytest.raises(TbprError, match="model.safetensors: corrupt"):
        search(work / "e/model", gallery, "a man", cache_dir=work / "e/cache", out=work / "e/g.png")
    assert not (work / "e/g.png").exists()
    # a folder without digests (older, or written by other tools) loads as before
    shutil.copy(work / "a/model" / WEIGHTS, f)
    (work / "e/model" / DIGESTS).unlink()
    load_encoder(work / "e/model")


# 2. a full disk while a checkpoint is written


def test_full_disk_during_a_checkpoint_is_named_and_keeps_the_last_one(work, monkeypatch):
    from accelerate import Accelerator

    real_save, real_usage = Accelerator.save_state, shutil.disk_usage
    calls, full = [], []

    def filling(self, output_dir=None, **kw):  # the second checkpoint meets a full disk
        calls.append(output_dir)
        if len(calls) < 2:
            return real_save(self, output_dir, **kw)
        (Path(output_dir) / WEIGHTS).write_bytes(b"\0" * 1000)  # what got written
        full.append(True)
        raise RuntimeError(
            "[enforce fail at inline_container.cc:664] . unexpected pos 1152 vs 1040"
        )

    def usage(path):
        return real_usage(path)._replace(free=0) if full else real_usage(path)

    monkeypatch.setattr(Accelerator, "save_state", filling)
    monkeypatch.setattr(shutil, "disk_usage", usage)
    ckpt = work / "f/ckpt"
    with pytest.raises(TbprError) as err:
        fit(work, "f")
    assert str(ckpt) in err.value.message and "disk filled up" in err.value.message
    assert "needed" in err.value.message and err.value.fix
    assert not (ckpt / "next").exists() and temporaries(ckpt) == []
    assert checkpoint_problem(ckpt / "last") is None
    assert read_json(ckpt / "last/trainer_state.json")["epoch"] == 0
    monkeypatch.undo()
    assert "resuming after epoch 1" in fit(work, "f")


def test_other_errors_while_writing_are_not_taken_for_a_full_disk(tmp_path):
    room = pytest.raises(RuntimeError, match="unexpected pos")
    with room, disk_full_behind(tmp_path, needed=1000):
        raise RuntimeError("unexpected pos 1 vs 2")  # the disk has room: another cause


# 3. a full disk while the result grid is written


@contextlib.contextmanager
def disk_full_for(suffix, after=100):
    "Files ending in `suffix` opened for writing take `after` bytes, then the disk is full."
    real_open = builtins.open

    class Filling:
        def __init__(self, f):
            self.f, self.n = f, 0

        def write(self, data):
            if self.n + len(data) > after:
                self.f.write(bytes(data)[: after - self.n])
                self.n = after
                raise OSError(errno.ENOSPC, "No space left on device")
            self.n += len(data)
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *_):
            self.f.close()

    def fake_open(file, mode="r", *args, **kw):
        f = real_open(file, mode, *args, **kw)
        return Filling(f) if "w" in mode and str(file).endswith(suffix) else f

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(builtins, "open", fake_open)
        mp.setattr(io, "open", fake_open)
        yield


def test_full_disk_while_the_grid_is_written(work, tmp_path):
    gallery = work / "ds/imgs/test"
    results = [(p.name, 0.5) for p in sorted(gallery.iterdir())[:3]]
    out = tmp_path / "grid/result.png"
    with disk_full_for(".png"), pytest.raises(TbprError) as err:
        plot_ranked("a man", results, gallery, out)
    assert str(out) in err.value.message and "disk filled up" in err.value.message
    assert not out.exists() and temporaries(tmp_path) == []


# 4. a query longer than the model reads


def test_a_long_query_is_said_to_be_cut(work):
    g = GalleryIndex(work / "a/model", work / "ds/imgs/test", work / "a/search-cache")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        short = g.query_features("a man in a red coat")
    assert out.getvalue() == ""
    long = " ".join(["a man in a red coat with a black backpack"] * 1200)  # 10,800 words
    with contextlib.redirect_stdout(out):
        g.query_features(long)
    said = out.getvalue()
    assert "the query was cut to its first 14 tokens of" in said, said
    assert "the model reads at most 16" in said, said
    caption = grid_caption(long)
    assert len(caption.splitlines()) == 3 and caption.endswith("\u2026"), caption
    assert max(map(len, caption.splitlines())) <= 110
    assert short.shape == (16,)


# 5. misleading model-folder errors


def edited_config(work, run, edit):
    copy_run(work, "a", run)
    f = work / run / "model/config.json"
    meta = read_json(f)
    edit(meta)
    f.write_text(__import__("json").dumps(meta))
    return work / run / "model"


def test_a_config_missing_a_key_is_named(work):
    folder = edited_config(work, "g", lambda m: m["encoder"].pop("vision_width"))
    with pytest.raises(TbprError) as err:
        load_encoder(folder)
    assert f"{folder / 'config.json'}: encoder.vision_width is missing" in err.value.message
    assert WEIGHTS not in err.value.message


def test_a_config_without_encoder_is_named_before_anything_loads(work, capsys):
    folder = edited_config(work, "h", lambda m: m.pop("encoder"))
    with pytest.raises(TbprError) as err:
        GalleryIndex(folder, work / "ds/imgs/test", work / "h/cache")
    assert f"{folder / 'config.json'}: no `encoder` section" in err.value.message
    assert capsys.readouterr().out.count("\n") < 3  # no load report


def test_evaluate_names_a_config_without_encoder_too(work, capsys):
    "Evaluate loads through `load_retrieval_model`: a tbpr config without `encoder` is no CLIP."
    from tbpr.pretrained import load_retrieval_model

    folder = edited_config(work, "h2", lambda m: m.pop("encoder"))
    with pytest.raises(TbprError) as err:
        load_retrieval_model(folder)
    assert f"{folder / 'config.json'}: no `encoder` section" in err.value.message
    assert capsys.readouterr().out.count("\n") < 3  # no load report


def test_an_unknown_encoder_key_is_named(work):
    folder = edited_config(work, "i", lambda m: m["encoder"].update(vision_widht=32))
    with pytest.raises(TbprError, match="encoder.vision_widht is not an encoder setting"):
        load_encoder(folder)


# 6. re-shipping identical weights


def test_reshipping_identical_weights_changes_no_file(work):
    copy_run(work, "a", "j")
    before = snapshot(work / "j/model")
    text = fit(work, "j")  # finished: resumes after the last epoch and ships again
    assert snapshot(work / "j/model") == before
    assert "unchanged" in text, text


# 7. resumed curves keep their line endings


def test_resumed_curves_keep_lf(work, monkeypatch):
    real_save = T.save_checkpoint

    def killed_before_second(ckpt_dir, acc, state):
        if state["epoch"] == 1:
            raise KeyboardInterrupt("simulated kill")
        return real_save(ckpt_dir, acc, state)

    monkeypatch.setattr(T, "save_checkpoint", killed_before_second)
    with pytest.raises(KeyboardInterrupt):
        fit(work, "k")
    monkeypatch.undo()
    fit(work, "k")  # drops the row logged after the checkpoint, logs epoch 2 again
    curves = sorted((work / "k/live/plots/metrics").rglob("*.tsv"))
    assert curves and all(b"\r" not in f.read_bytes() for f in curves)
    assert (work / "k/live/plots/metrics/train/loss_total.tsv").read_text().count("\n") == 3


# 8. loss weights all 0


def test_all_zero_loss_weights_are_refused_before_training(work):
    p = params()
    p["train"]["loss_weights"] = {k: 0.0 for k in ("sdm", "id", "mlm")}
    with pytest.raises(TbprError, match="train.loss_weights are all 0"):
        fit(work, "z", p)
    assert not (work / "z").exists()


def test_full_disk_while_the_model_folder_is_written(work, monkeypatch):
    import safetensors.torch

    def filling(model, filename, metadata=None):  # what safetensors raises on a full disk
        Path(filename).write_bytes(b"\0" * 100)
        raise RuntimeError(
            "Error while serializing: I/O error: No space left on device (os error 28)"
        )

    copy_run(work, "a", "m")
    before = snapshot(work / "m/model")
    monkeypatch.setattr(safetensors.torch, "save_model", filling)
    p = params()
    p["train"]["select"] = "last"  # ships the encoder itself (not a copy of best/'s weights)
    with pytest.raises(TbprError) as err:
        fit(work, "m", p)
    assert f"{work / 'm/model'}: the disk filled up while writing a model folder" in str(err.value)
    assert snapshot(work / "m/model") == before and temporaries(work / "m") == []
