"""A method from another package: a single module outside tbpr, declared through an entry point of group
`tbpr.methods` (the `.dist-info` folder pip would write, on PYTHONPATH), trains one epoch through `dvc repro` in a copy
of this repository with no edit but `train.method` in params.yaml; `tbpr check` refuses its own parameter rule; and a
package whose method cannot be loaded is refused by name, without a traceback."""
import os, subprocess, sys, textwrap
from pathlib import Path
import pytest, yaml
from test_dvc import REPO, Workspace, merge, shown, tiny_params

METHOD = '''
"A throw-away method: IRRA's SDM alone on the CLIP dual encoder, with a rule of its own."
from tbpr.core import TbprError
from tbpr.model import DualEncoder
from tbpr.objectives import SDM, Method, RetrievalModel, register


def check_temperature(params):
    "SDM alone learns nothing at a temperature above 0.1 (this method's own rule)."
    t = params["train"]["temperature"]
    if t > 0.1:
        raise TbprError(f"train.temperature={t} is above 0.1", fix="sdm_only needs train.temperature <= 0.1")


def build_sdm_only(cfg, train, num_ids, **context):
    return RetrievalModel(DualEncoder(cfg), {"sdm": SDM(train["temperature"])}, train["loss_weights"])


register(Method("sdm_only", build_sdm_only, objectives=("sdm",), rules=(check_temperature,)))
'''


def package(site: Path, dist: str, module: str, code: str, method: str) -> Path:
    "What `pip install` of a one-module package declaring `method` in group tbpr.methods leaves in `site`."
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[tbpr.methods]\n{method} = {module}\n")
    (site / f"{module}.py").write_text(textwrap.dedent(code))
    return site


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    "A copy of the repository (tracked and new files), params.yaml on the tiny sizes and `train.method: sdm_only`."
    top = tmp_path_factory.mktemp("plugin")
    root, site = top / "repo", package(top / "site", "sdm-only", "sdm_only_method", METHOD, "sdm_only")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, listed):
        if rel.split("/")[0] == "artifacts" or not (REPO / rel).is_file(): continue
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes((REPO / rel).read_bytes())
    committed = yaml.safe_load(subprocess.run(["git", "show", "HEAD:params.yaml"], cwd=REPO, capture_output=True,
                                              text=True, check=True).stdout)
    tiny = tiny_params()
    tiny["train"] = {**tiny["train"], "method": "sdm_only", "epochs": 1, "warmup_epochs": 0}
    (root / "params.yaml").write_text(yaml.safe_dump(merge(committed, tiny), sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(site), str(root), os.environ.get("PYTHONPATH")])),
           "DVC_NO_ANALYTICS": "1", "TQDM_DISABLE": "1", "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "t@example.com"}
    w = Workspace(root, env, top / "unused.log")
    w.site = site
    w.git("init", "-q", "-b", "main"); w.git("add", "-A"); w.git("commit", "-q", "-m", "tiny pipeline")
    return w


def test_a_method_from_another_package_trains_through_dvc_repro(ws):
    run = ws.dvc("repro", "evaluate")
    assert "Running stage 'train'" in run.stdout, shown(run)
    config = ws.json("artifacts/model/config.json")
    assert config["method"] == "sdm_only", config
    assert [e["epoch"] for e in ws.json("artifacts/checkpoints/last/trainer_state.json")["history"]] == [1]
    metrics = ws.json("artifacts/eval/metrics.json")
    assert 0 <= metrics["R1"] <= 100, metrics


def test_its_own_rule_is_refused_by_check(ws):
    params = yaml.safe_load((ws.root / "params.yaml").read_text())
    params["train"]["temperature"] = 0.5
    (ws.root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        p = ws.run("tbpr", "check", check=False)
    finally:
        ws.git("checkout", "params.yaml")
    assert p.returncode == 2, shown(p)
    assert "train.temperature=0.5 is above 0.1" in p.stderr and "sdm_only needs" in p.stderr, shown(p)
    assert "Traceback" not in p.stderr, shown(p)


def test_a_broken_method_package_is_named(ws, tmp_path):
    broken = package(tmp_path / "site", "broken-method", "broken_method", "import no_such_module_here\n", "broken")
    env = {**ws.env, "PYTHONPATH": os.pathsep.join([str(broken), ws.env["PYTHONPATH"]])}
    p = subprocess.run(["tbpr", "check"], cwd=ws.root, env=env, capture_output=True, text=True)
    assert p.returncode == 2, shown(p)
    assert "entry point broken = broken_method (group tbpr.methods) of distribution broken-method" in p.stderr, shown(p)
    assert "No module named 'no_such_module_here'" in p.stderr and "Traceback" not in p.stderr, shown(p)


def test_hooks_before_and_after_each_epoch_keep_their_state_across_a_resume(tmp_path, monkeypatch):
    """A method's hooks run before and after every epoch with the model, the training split and the accelerator at hand;
    the per-sample state they keep is saved in each checkpoint and given back when an interrupted run resumes."""
    from test_pipeline import TINY
    from tbpr import pipeline as P
    from tbpr.core import read_json
    from tbpr.plugins import resolve_params
    from tbpr.methods.irra import build_irra
    from tbpr.plugins import REGISTRY, Method, register
    from tbpr.train import fit
    calls, crash = [], {"at": 1}

    def before(ctx):
        calls.append(("before", ctx.epoch, list(ctx.state.get("seen", []))))
        assert ctx.accelerator.device.type in ("cpu", "cuda") and ctx.model.encoder is not None
        if ctx.epoch == crash.get("at"):
            crash.clear()
            raise RuntimeError("interrupted by the test")
        ctx.state["seen"] = [s + 1 for s in ctx.state.get("seen", [0] * len(ctx.split))]     # one number per sample

    def after(ctx):
        calls.append(("after", ctx.epoch, list(ctx.state["seen"])))
        return {"hooked": float(ctx.epoch)}

    def build_hooked(cfg, train, num_ids, **context):
        return build_irra(cfg, train, num_ids, **context)

    register(Method("irra-hooked", build_hooked, objectives=("sdm", "id", "mlm"), before_epoch=before, after_epoch=after))
    try:
        monkeypatch.chdir(tmp_path)
        params = resolve_params(None, {**TINY, "train": {**TINY["train"], "method": "irra-hooked", "epochs": 2}})
        P.stage_download(params); P.stage_preprocess(params)
        n = len(P.load_cached_dataset("artifacts/cache")[0].train)
        with pytest.raises(RuntimeError, match="interrupted by the test"):
            fit(params, "artifacts/cache", "model", "ckpt", "live")
        assert calls == [("before", 0, []), ("after", 0, [1] * n), ("before", 1, [1] * n)], calls[:4]
        saved = read_json(tmp_path / "ckpt/last/trainer_state.json")
        assert saved["method_state"]["seen"] == [1] * n and saved["history"][0]["hooked"] == 0.0
        calls.clear()
        summary = fit(params, "artifacts/cache", "model", "ckpt", "live")                    # resumes after epoch 1
        assert calls == [("before", 1, [1] * n), ("after", 1, [2] * n)], calls
        assert read_json(tmp_path / "ckpt/last/trainer_state.json")["method_state"]["seen"] == [2] * n
        assert [h["hooked"] for h in summary["history"]] == [0.0, 1.0], summary["history"]
    finally:
        REGISTRY.pop("irra-hooked", None)
