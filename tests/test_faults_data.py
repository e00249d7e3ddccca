"""Dataset and image faults met on real crops in the CUHK-PEDES layout, each through the `tbpr`
command as a user runs it: the stage stops with the file and the entry named and a fix (exit status
2, no traceback), or warns, and keeps what it had. The last test runs `dvc repro -f download` in a
scratch copy of the repository."""

import json, os, struct, subprocess, sys
from pathlib import Path
import numpy as np
import pytest, yaml
from PIL import Image
from tbpr.data import fixture_entries, write_fixture
from tbpr.batches import IdentitySampler
from tbpr.core import TbprError
from tbpr import cli as C
from test_dvc import committed_params, copy_repository

REPO = Path(__file__).resolve().parents[1]
PARAMS = "data:\n  name: cuhkpedes\nmodel:\n  image_size: [48, 16]\n  patch_size: 8\n"


def _dataset(tmp_path, monkeypatch, entries=None) -> Path:
    "A small CUHK-PEDES copy in data/ and the parameters to read it in p.yaml; returns its images."
    monkeypatch.chdir(tmp_path)
    folder = write_fixture(
        tmp_path / "data/CUHK-PEDES", entries or fixture_entries(n_train_ids=3, n_test_ids=3)
    )
    (tmp_path / "p.yaml").write_text(PARAMS)
    return folder / "imgs"


def _tbpr(capsys, *stages) -> tuple:
    "Run the stages in order, stopping at the first that fails: (exit status, stdout, stderr)."
    capsys.readouterr()
    for stage in stages:
        rc = C.main([stage, "--params", "p.yaml"])
        if rc:
            break
    out = capsys.readouterr()
    return rc, out.out, out.err


def _refused(rc, err, *parts):
    assert rc == 2 and "Traceback" not in err and "How to fix" in err, err
    for part in parts:
        assert part in err, err


def float_tiff(path, pixels: np.ndarray) -> Path:
    """A baseline little-endian TIFF of float32 `pixels` (H, W, 3), uncompressed, in one strip: what
    scientific and HDR tools write. PIL can neither write one (its mode F has one channel) nor
    open it."""
    h, w, c = pixels.shape
    data = pixels.astype("<f4").tobytes()
    tags = 11
    bits_at = 8 + 2 + 12 * tags + 4
    formats_at, data_at = bits_at + 2 * c, bits_at + 4 * c
    # tag, type (3 short, 4 long), count, value or offset; 258: 32 bits a sample; 339: 3, float
    entries = [
        (256, 4, 1, w),
        (257, 4, 1, h),
        (258, 3, c, bits_at),
        (259, 3, 1, 1),
        (262, 3, 1, 2),
        (273, 4, 1, data_at),
        (277, 3, 1, c),
        (278, 4, 1, h),
        (279, 4, 1, len(data)),
        (284, 3, 1, 1),
        (339, 3, c, formats_at),
    ]
    out = b"II*\x00" + struct.pack("<IH", 8, tags)
    for tag, kind, count, value in entries:
        value = struct.pack("<I", value) if kind == 4 or count > 2 else struct.pack("<HH", value, 0)
        out += struct.pack("<HHI", tag, kind, count) + value
    out += struct.pack("<I", 0) + struct.pack(f"<{c}H", *[32] * c) + struct.pack(f"<{c}H", *[3] * c)
    Path(path).write_bytes(out + data)
    return Path(path)


def test_image_past_the_decompression_bomb_limit_is_named(tmp_path, monkeypatch, capsys):
    """PIL's DecompressionBombError (a 20000x20000 image; the limit is lowered to keep the file
    small) was a traceback; between the limit and twice it PIL only warned, and it was decoded."""
    imgs = _dataset(tmp_path, monkeypatch)
    Image.new("L", (400, 300)).save(imgs / "test/0007_1.jpg", "PNG")
    # PIL errors past twice its limit: 179M pixels by default, 100,000 here
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50_000)
    rc, out, err = _tbpr(capsys, "download", "preprocess")
    _refused(
        rc, err, "test/0007_1.jpg: image too large to decode safely", "120,000 pixels", "shrink it"
    )
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)  # 120,000 pixels: PIL only warns
    rc, out, err = _tbpr(capsys, "preprocess")
    _refused(rc, err, "test/0007_1.jpg: image too large to decode safely", "more than the 100,000")
    assert (
        not (tmp_path / "artifacts/cache").exists()
        and (tmp_path / "artifacts/dataset/manifest.json").exists()
    )


@pytest.mark.parametrize("bad_id", [2**70, -(2**63) - 1])
def test_id_beyond_int64_is_refused_at_download(tmp_path, monkeypatch, capsys, bad_id):
    "An id of 2**70 in the test split passed download and crashed evaluation after training."
    entries = fixture_entries(n_train_ids=3, n_test_ids=3)
    k = next(i for i, e in enumerate(entries) if e["split"] == "test")
    entries[k]["id"] = bad_id
    _dataset(tmp_path, monkeypatch, entries)
    rc, out, err = _tbpr(capsys, "download")
    _refused(
        rc,
        err,
        "reid_raw.json",
        f"#{k} ({entries[k]['file_path']}): {bad_id}",
        "64-bit integer range",
        "renumber the identities",
    )
    assert not (tmp_path / "artifacts/dataset").exists()


@pytest.mark.parametrize("caption", ["...", "\u200b", "\u200b\u200c\ufeff", " ?! -- "])
def test_caption_without_a_word_is_refused(tmp_path, monkeypatch, capsys, caption):
    "Punctuation-only and zero-width-only captions (Unicode Cf) passed as text."
    entries = fixture_entries(n_train_ids=3, n_test_ids=3)
    entries[3]["captions"][1] = caption
    _dataset(tmp_path, monkeypatch, entries)
    rc, out, err = _tbpr(capsys, "download")
    _refused(
        rc, err, "reid_raw.json", f"#3 ({entries[3]['file_path']}): {caption!r}", "only punctuation"
    )
    assert not (tmp_path / "artifacts/dataset").exists()


def test_exif_rotated_photo_is_cached_upright(tmp_path, monkeypatch, capsys):
    "A photo stored lying down with an EXIF orientation tag was cached sideways."
    imgs = _dataset(tmp_path, monkeypatch)
    stored = np.zeros((16, 48, 3), np.uint8)
    stored[:, :12] = 255  # lying down: white on the left
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = 6  # viewed rotated 90 degrees clockwise: white on top
    im.save(imgs / "test/0007_1.jpg", exif=exif, quality=95)
    rc, out, err = _tbpr(capsys, "download", "preprocess")
    assert rc == 0, err
    paths = json.loads((tmp_path / "artifacts/cache/cache.json").read_text())["paths"]
    cached = np.load(tmp_path / "artifacts/cache/images.npy")[paths.index("test/0007_1.jpg")]
    assert cached[:8].mean() > 240 and cached[-24:].mean() < 15, (
        cached[:8].mean(),
        cached[-24:].mean(),
    )


def test_tiny_crops_are_counted_and_named(tmp_path, monkeypatch, capsys):
    "1x1 crops were cached without a word."
    imgs = _dataset(tmp_path, monkeypatch)
    for k, name in enumerate(("train/0002_0.jpg", "test/0007_1.jpg")):
        Image.new("RGB", (1, 1), (90, 10 + 80 * k, 10)).save(imgs / name)
    rc, out, err = _tbpr(capsys, "download", "preprocess")
    assert rc == 0, err
    assert "warning: 2 of 18 image(s) are smaller than 16x16 pixels" in out, out
    assert "train/0002_0.jpg (1x1), test/0007_1.jpg (1x1)" in out, out


@pytest.mark.parametrize("sampler", ["random", "identity"])
def test_one_training_identity_is_refused_whatever_the_sampler(
    tmp_path, monkeypatch, capsys, sampler
):
    "The identity sampler's advice (train.sampler: random) trained a model with an ID loss of 0."
    entries = [
        e
        for e in fixture_entries(n_train_ids=3, n_test_ids=3)
        if not (e["split"] == "train" and e["id"] > 1)
    ]
    _dataset(tmp_path, monkeypatch, entries)
    (tmp_path / "p.yaml").write_text(PARAMS + f"train:\n  sampler: {sampler}\n")
    rc, out, err = _tbpr(capsys, "download")
    _refused(rc, err, "reid_raw.json: the train split holds 1 identity", "at least two identities")
    assert not (tmp_path / "artifacts/dataset").exists()


def test_identity_sampler_advice_fits_the_identities():
    "The advice names a batch size that works, and never train.sampler: random for one identity."
    with pytest.raises(TbprError) as few:
        IdentitySampler([0, 0, 1, 1, 2, 2], 16, 4)
    assert (
        "only 3 identities" in str(few.value)
        and "lower train.batch_size to at most 12" in few.value.fix
    )
    with pytest.raises(TbprError) as one:
        IdentitySampler([0] * 8, 8, 4)
    assert "holds 1 identity" in str(one.value) and "use train.sampler: random" not in one.value.fix


def test_float_rgb_tiff_is_named_for_what_it_is(tmp_path, monkeypatch, capsys):
    "A float32 RGB TIFF (which PIL cannot open) was called corrupt or truncated."
    imgs = _dataset(tmp_path, monkeypatch)
    float_tiff(imgs / "test/0007_1.jpg", np.random.default_rng(0).random((48, 16, 3)))
    rc, out, err = _tbpr(capsys, "download", "preprocess")
    _refused(
        rc,
        err,
        "test/0007_1.jpg: a 32-bit floating-point image (TIFF, 3 samples per pixel)",
        "not supported",
        "convert it to 8-bit RGB",
    )
    assert "corrupt" not in err


def _scratch_repository(root: Path) -> dict:
    """The repository's files (tracked, and new ones git does not ignore; not artifacts/, nbs/,
    benchmarks/) in a fresh git repository, params.yaml the committed one reading CUHK-PEDES."""
    copy_repository(root, leave_out=("artifacts", "nbs", "benchmarks"))
    params = committed_params()
    params["data"]["name"] = "cuhkpedes"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
        "DVC_NO_ANALYTICS": "1",
        "TQDM_DISABLE": "1",
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    git = ["git", "-c", "commit.gpgsign=false"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "scratch"]):
        subprocess.run(git + args, cwd=root, env=env, check=True, capture_output=True)
    return env


def test_dvc_repro_f_download_counts_changed_images(tmp_path):
    """`dvc repro -f download` deletes the stage's outputs (images.sha256 among them) before running
    it: the count of changed images the README promises was never printed. And data/ that data.dvc
    does not record is warned about."""
    root = tmp_path / "repo"
    env = _scratch_repository(root)
    imgs = (
        write_fixture(root / "data/CUHK-PEDES", fixture_entries(n_train_ids=3, n_test_ids=3))
        / "imgs"
    )
    dvc = lambda *args: subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    first = dvc("repro", "download")
    assert first.returncode == 0, first.stdout + first.stderr
    # the same name, new pixels
    Image.new("RGB", (16, 48), (250, 250, 0)).save(imgs / "test/0007_0.jpg")
    again = dvc("repro", "-f", "download")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "since the last download: 1 image(s) changed, 0 new, 0 gone" in again.stdout, (
        again.stdout
    )
    assert "data.dvc records" in first.stdout and "Run `dvc add data`" in first.stdout, first.stdout
