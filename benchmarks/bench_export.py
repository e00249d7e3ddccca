"""Benchmark: images and queries encoded per second by the torch encoders and by their ONNX export (`tbpr export`) run
with onnxruntime (CPUExecutionProvider), in one run on this machine's CPU, on the same inputs.

A random model of the default size (params.yaml's model section), or with --vit-b16 one of CLIP ViT-B/16's size
(768/512 wide, 12 layers each, 384x128 crops, 77 text positions: IRRA's model), is saved as a model folder and
exported through the real path (`export_model`, which also prints the largest difference it measured). Images go in
batches of --batch (as search encodes a gallery), queries one at a time (as search encodes a query). Both run with
--threads CPU threads (torch.set_num_threads, onnxruntime's intra-op threads): on a machine shared with other work,
more threads than idle cores slow torch far more than onnxruntime, so compare at the same, idle count.

    python benchmarks/bench_export.py [--vit-b16] [--threads 1] [--images 256] [--batch 32] [--queries 200]
"""
import argparse, contextlib, io, os, tempfile, time
from dataclasses import fields
from pathlib import Path
import numpy as np
import torch

VIT_B16 = dict(image_size=(384, 128), patch_size=16, embed_dim=512, vision_width=768, vision_layers=12,
               vision_heads=12, text_width=512, text_layers=12, text_heads=8, max_length=77)
QUERIES = ["a woman in a red coat with a black backpack", "a young man wearing a white shirt, blue jeans and black "
           "shoes, carrying a brown bag over his left shoulder", "a man in a grey hoodie"]


def default_config(tok, vit_b16: bool):
    "The encoder config of params.yaml's model section (or ViT-B/16's sizes), sized for `tok`."
    from tbpr.plugins import resolve_params
    from tbpr.model import EncoderConfig
    model = resolve_params(None)["model"]
    keys = {f.name for f in fields(EncoderConfig)} - {"arch", "options"}
    cfg = {k: v for k, v in model.items() if k in keys}
    cfg.update(VIT_B16 if vit_b16 else {})
    return EncoderConfig(**cfg, vocab_size=len(tok), bos_token_id=tok.cls_token_id or 101,
                         eos_token_id=tok.sep_token_id or 102, pad_token_id=tok.pad_token_id or 0)


def rate(fn, items, per_call: int) -> float:
    "Items per second of `fn` over `items` (one call warms up first)."
    fn(items[0])
    t = time.perf_counter()
    for x in items:
        fn(x)
    return len(items) * per_call / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vit-b16", action="store_true", help="CLIP ViT-B/16-sized random weights")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()
    from tbpr.model import DualEncoder, save_encoder
    from tbpr.tokenizer import load_tokenizer, tokenize
    from tbpr.export import export_model
    from tbpr.search import ONNX_FILES, OnnxBackend, TorchBackend
    import onnxruntime
    torch.set_num_threads(args.threads)
    tok = load_tokenizer()
    torch.manual_seed(0)
    enc = DualEncoder(default_config(tok, args.vit_b16)).eval()
    cfg = enc.cfg
    with tempfile.TemporaryDirectory() as d:
        save_encoder(enc, Path(d) / "model", tok=tok)
        t = time.perf_counter()
        export_model(Path(d) / "model", Path(d) / "onnx")
        export_s = time.perf_counter() - t
        backends = {"torch": TorchBackend(Path(d) / "model", device="cpu"), "onnxruntime": OnnxBackend(Path(d) / "onnx")}
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
        backends["onnxruntime"].sessions = {
            part: onnxruntime.InferenceSession(str(Path(d) / "onnx" / name), options, providers=["CPUExecutionProvider"])
            for part, name in ONNX_FILES.items()}
        g = torch.Generator().manual_seed(0)
        batches = [torch.randn(args.batch, 3, *cfg.image_size, generator=g)
                   for _ in range(max(1, args.images // args.batch))]
        queries = [tokenize(tok, [QUERIES[i % len(QUERIES)]], cfg.max_length) for i in range(args.queries)]
        mb = sum(f.stat().st_size for f in (Path(d) / "onnx").glob("*.onnx")) / 2**20
        print(f"model: {sum(p.numel() for p in enc.parameters()) / 1e6:.1f} M parameters, images "
              f"{cfg.image_size[0]}x{cfg.image_size[1]}, {cfg.vision_layers}+{cfg.text_layers} layers of "
              f"{cfg.vision_width}/{cfg.text_width}; export {export_s:.1f} s, ONNX files {mb:.0f} MB")
        print(f"CPU threads: {args.threads} each (torch {torch.get_num_threads()}, onnxruntime intra-op "
              f"{options.intra_op_num_threads}); {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
        for name, b in backends.items():
            with contextlib.redirect_stdout(io.StringIO()):
                img = rate(b.encode_images, batches, args.batch)
                txt = rate(b.encode_texts, queries, 1)
            print(f"{name:12s} images/s {img:8.1f} (batches of {args.batch})   queries/s {txt:8.1f} (one at a time)")
        same = np.abs(backends["torch"].encode_images(batches[0]) - backends["onnxruntime"].encode_images(batches[0]))
        print(f"largest difference on a benchmark batch: {same.max():.2e}")


if __name__ == "__main__":
    main()
