"""Training on two processes (torchrun, gloo on the CPU): the multi-GPU code path without GPUs. In-batch SDM over the
gathered features, accelerate's sharded identity batches, DDP, checkpoints and the shipped model, end to end."""
import json, os, subprocess, sys
from pathlib import Path
import pytest
import yaml
from tbpr.plugins import resolve_params
from tbpr import pipeline as P
from test_pipeline import TINY


@pytest.mark.parametrize("method", ["irra", "lcr2s"])
def test_two_process_training(tmp_path, monkeypatch, method):
    "Both processes train; with lcr2s, the student phase starts only once the teacher's model is written."
    monkeypatch.chdir(tmp_path)
    config = {**TINY, "train": {**TINY["train"], "method": method, "num_instance": 4, "support_size": 3}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    params = resolve_params(tmp_path / "tiny.yaml")
    P.stage_download(params); P.stage_preprocess(params)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "tbpr.cli",
                          "train", "--params", "tiny.yaml"], capture_output=True, text=True, env=env, timeout=600)
    errors = [l for l in (run.stdout + run.stderr).splitlines() if "Error" in l or "[rank1]" in l]   # the failing rank's own words
    assert run.returncode == 0, "\n".join(errors[-40:]) + "\n" + run.stderr[-2000:]
    last = tmp_path / "artifacts/checkpoints" / ("student/last" if method == "lcr2s" else "last")
    state = json.loads((last / "trainer_state.json").read_text())
    assert state["epoch"] == TINY["train"]["epochs"] - 1 and len(state["history"]) == TINY["train"]["epochs"]
    assert (tmp_path / "artifacts/model/model.safetensors").exists()
    metrics = P.stage_evaluate(params)                     # the model trained on two processes loads and evaluates
    assert 0 <= metrics["R1"] <= 100
