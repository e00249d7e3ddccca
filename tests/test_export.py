"""`tbpr export` on every encoder architecture: CLIP's dual encoder and each one a registered method provides
(`Method.encoders`), a tiny random model of each built through the registry (`build_encoder`), saved as a model folder,
exported, and its ONNX files run by onnxruntime against the torch encoder on inputs the export was not checked on
(another batch size, captions of other lengths)."""
import contextlib, io
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tbpr.plugins import REGISTRY, discover
from tbpr.model import ENCODERS, EncoderConfig, build_encoder, save_encoder
from tbpr.tokenizer import load_tokenizer, tokenize
from tbpr.augment import to_tensor
from tbpr.export import export_model
from tbpr.search import OnnxBackend

discover()
ARCHS = sorted({*ENCODERS, *(arch for m in REGISTRY.values() for arch in m.encoders)})
TINY = dict(image_size=(48, 16), patch_size=8, embed_dim=32, vision_width=32, vision_layers=1, vision_heads=2,
            text_width=32, text_layers=1, text_heads=2, max_length=24)
CAPTIONS = ["a man", "a woman in a long red coat with a black backpack and white shoes, walking fast"]


def test_every_registered_architecture_is_tested():
    assert {"clip", "shared", "support", "rde"} <= set(ARCHS)      # tbpr's own methods' encoders at least


@pytest.mark.parametrize("arch", ARCHS)
def test_export_matches_torch(arch, tmp_path):
    tok = load_tokenizer()
    torch.manual_seed(0)
    enc = build_encoder(EncoderConfig(arch=arch, vocab_size=len(tok), **TINY)).eval()
    save_encoder(enc, tmp_path / "model", tok=tok)
    said = io.StringIO()
    with contextlib.redirect_stdout(said):
        manifest = export_model(tmp_path / "model", tmp_path / "onnx")
    assert "largest absolute difference" in said.getvalue()
    assert max(manifest["max_abs_difference"].values()) < 1e-4, manifest["max_abs_difference"]
    onnx = OnnxBackend(tmp_path / "onnx")
    assert onnx.embed_dim == enc.embed_dim
    pixels = to_tensor(np.random.default_rng(1).integers(0, 255, (5, 48, 16, 3), dtype=np.uint8), *onnx.pixel_norm)
    ids = tokenize(tok, CAPTIONS, TINY["max_length"])
    with torch.no_grad():
        want_image = F.normalize(enc.encode_image(pixels)[0].float(), dim=-1).numpy()
        want_text = F.normalize(enc.encode_text(ids)[0].float(), dim=-1).numpy()
    np.testing.assert_allclose(onnx.encode_images(pixels), want_image, atol=1e-4)
    np.testing.assert_allclose(onnx.encode_texts(ids), want_text, atol=1e-4)
    short = tokenize(tok, CAPTIONS[:1], TINY["max_length"])              # a caption alone: its own, shorter length
    np.testing.assert_allclose(onnx.encode_texts(short), want_text[:1], atol=1e-4)
