"""The README's Python snippet, exactly as written, in a fresh interpreter (nothing of tbpr imported but
what the snippet imports) over a tiny model folder laid out as the default run leaves it."""
import re, subprocess, sys
from pathlib import Path
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def readme_snippet(marker: str) -> str:
    "The README's python code block that contains `marker`."
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    found = [b for b in blocks if marker in b]
    assert len(found) == 1, f"README.md: {len(found)} python blocks contain {marker!r}"
    return found[0]


def tiny_run_layout(where: Path) -> None:
    "artifacts/model (a tiny trained-layout folder) and five test crops under artifacts/dataset."
    from tbpr.model import DualEncoder, EncoderConfig, save_encoder
    from tbpr.tokenizer import load_tokenizer

    tok = load_tokenizer("minilm")
    sizes = dict(embed_dim=16, vision_width=32, vision_layers=1, vision_heads=2, text_width=32,
                 text_layers=1, text_heads=2, max_length=24)
    cfg = EncoderConfig(image_size=(48, 16), patch_size=8, vocab_size=len(tok),
                        eos_token_id=tok.sep_token_id, **sizes)
    save_encoder(DualEncoder(cfg), where / "artifacts/model", tok=tok, tokenizer="minilm")
    for n in range(5):
        crop = where / f"artifacts/dataset/imgs/test/{n:05d}/{n:05d}_front_0.jpg"
        crop.parent.mkdir(parents=True)
        pixels = np.random.default_rng(n).integers(0, 255, (192, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(crop)


def test_readme_model_folder_snippet_runs(tmp_path):
    tiny_run_layout(tmp_path)
    code = readme_snippet('AutoModel.from_pretrained("artifacts/model")')
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [line for line in run.stdout.splitlines() if line.strip()]
    assert rows[0].startswith("tensor([[") and len(rows) == 2, run.stdout   # 2 texts x 5 crops
    probs = np.array(re.findall(r"\d\.\d+(?:e-\d+)?", run.stdout), float)
    assert probs.size == 10 and np.allclose(probs.reshape(2, 5).sum(1), 1, atol=1e-3), run.stdout


def test_import_tbpr_is_light_and_registers_the_model_type():
    "`import tbpr` loads neither torch nor transformers; the Auto classes know `tbpr` once imported."
    code = ("import sys, tbpr; assert 'torch' not in sys.modules, 'torch'; "
            "from transformers import AutoConfig; "
            "from transformers.models.auto.configuration_auto import CONFIG_MAPPING; "
            "assert 'tbpr' in CONFIG_MAPPING")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
