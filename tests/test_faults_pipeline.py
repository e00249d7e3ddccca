"""Pipeline-level faults: what `tbpr <stage>` and `dvc repro` do when a user errs or interrupts.

Each test failed before its fix: the restore hint named a bare `dvc checkout` (which can replace
an unrecorded data/ by the placeholder data.dvc records); the check stage did not re-run for a key
no stage names (`-S +foo=1`) and let all-zero loss weights through to train; the temporaries of a
killed run stayed under artifacts/; the report notebook drew its figures into a
`tempfile.mkdtemp()` folder that nothing removed."""

import os, re, shlex, sys
from pathlib import Path
import pytest, yaml

from test_dvc import REPO, Workspace, committed_params, copy_repository, merge, shown, tiny_params

ENV = {
    "DVC_NO_ANALYTICS": "1",
    "TQDM_DISABLE": "1",
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}


def scratch_repo(root: Path) -> Workspace:
    "An empty git + DVC repository at `root`."
    root.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        **ENV,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    w = Workspace(root, env, root.parent / "imports.log")
    w.git("init", "-q", "-b", "main")
    w.dvc("init", "-q")
    return w


def test_restore_hint_restores_outputs_and_keeps_data(tmp_path, monkeypatch):
    """The command the hint prints, run by the real dvc, brings back a stage's removed output and
    leaves a data/ that differs from data.dvc as it is; the hint says to `dvc add data`."""
    from tbpr.cli import restore_hint

    w = scratch_repo(tmp_path / "repo")
    (w.root / "data").mkdir()
    (w.root / "data/README.md").write_text("Put licensed datasets here, then run `dvc add data`.\n")
    w.dvc("add", "-q", "data")  # the repository's placeholder data.dvc
    (w.root / "dvc.yaml").write_text(
        yaml.safe_dump(
            {
                "stages": {
                    "train": {
                        "cmd": "mkdir -p artifacts/model && echo weights > artifacts/model/w.bin",
                        "outs": ["artifacts/model"],
                    }
                }
            }
        )
    )
    w.dvc("repro", "-q")
    w.git("add", "-A")
    w.git("commit", "-q", "-m", "placeholder data and a trained model")
    (w.root / "data/README.md").unlink()  # the user's own data, never `dvc add`ed
    (w.root / "data/CUHK-PEDES/imgs").mkdir(parents=True)
    (w.root / "data/CUHK-PEDES/imgs/0001.jpg").write_bytes(b"licensed image")
    (w.root / "artifacts/model/w.bin").unlink()  # what DVC does before running a stage
    monkeypatch.setenv("DVC_STAGE", "train")
    monkeypatch.chdir(w.root)
    hint = restore_hint("train")
    print(hint)
    commands = re.findall(r"`(dvc checkout[^`]*)`", hint)
    assert commands and all(c.split()[2:] for c in commands), f"a bare `dvc checkout` in: {hint}"
    assert "`dvc add data`" in hint and "data.dvc records 1 file" in hint, hint
    for c in commands:
        w.dvc(*shlex.split(c)[1:])
    assert (w.root / "artifacts/model/w.bin").read_text() == "weights\n"
    assert (w.root / "data/CUHK-PEDES/imgs/0001.jpg").read_bytes() == b"licensed image"
    assert not (w.root / "data/README.md").exists(), "the placeholder came back into data/"


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    """A copy of the repository (as tests/test_dvc.py makes it, TINY parameters), committed after
    `dvc repro check`."""
    w = scratch_repo(tmp_path_factory.mktemp("check") / "repo")
    copy_repository(w.root, leave_out=("artifacts", ".dvc"))
    (w.root / "params.yaml").write_text(
        yaml.safe_dump(merge(committed_params(), tiny_params()), sort_keys=False)
    )
    w.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(w.root), os.environ.get("PYTHONPATH")]))
    w.git("add", "-A")
    w.git("commit", "-q", "-m", "tiny")
    w.dvc("repro", "check")
    w.git("add", "-A")
    w.git("commit", "-q", "-m", "checked")
    return w


def test_unknown_top_level_key_reruns_check(checked):
    "`dvc exp run -S +foo=1`: check depends on all of params.yaml, so it runs and refuses the key."
    p = checked.dvc("exp", "run", "check", "-S", "+foo=1", check=False)
    checked.git("checkout", "params.yaml")
    assert "Running stage 'check'" in p.stdout, "check did not re-run for a new key" + shown(p)
    assert p.returncode != 0 and "unknown key 'foo'" in p.stdout + p.stderr, shown(p)
    assert "Traceback" not in p.stdout + p.stderr, shown(p)


def test_all_loss_weights_zero_refused_by_check(checked):
    "Every objective of irra switched off: refused by `dvc exp run` in check, without a traceback."
    zero = [a for k in ("sdm", "id", "mlm") for a in ("-S", f"+train.loss_weights.{k}=0")]
    p = checked.dvc("exp", "run", "check", *zero, check=False)
    checked.git("checkout", "params.yaml")
    out = p.stdout + p.stderr
    assert p.returncode != 0 and "every objective of method irra is switched off" in out, shown(p)
    assert "sdm=0, id=0, mlm=0" in out and "Traceback" not in out, shown(p)


def test_stage_removes_stale_temporaries(tmp_path, monkeypatch):
    "A stage first removes what killed runs left under artifacts/; a running process's stays."
    from tbpr.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("seed: 0\n")
    dead = tmp_path / "artifacts/model/.model.safetensors.999999999-abcdefgh.tmp"
    live = tmp_path / f"artifacts/.cache.{os.getpid()}-abcdefgh.tmp"
    dead.mkdir(parents=True)
    (dead / "model.safetensors").write_bytes(b"half")
    live.mkdir()
    assert main(["check"]) == 0
    assert not dead.exists() and live.exists()


def test_report_notebook_draws_into_its_own_folder(tmp_path):
    """The report notebook takes `figures_dir` (run_notebook sets it inside the report's folder)
    instead of drawing into a `tempfile.mkdtemp()` folder that every `tbpr report` left behind."""
    import nbformat

    report = REPO / "nbs/experiments/report.ipynb"
    assert "mkdtemp" not in report.read_text()
    from tbpr.notebooks import notebook_parameters, run_notebook

    assert "figures_dir" in notebook_parameters(report)
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('figures_dir = "nowhere"')
    params.metadata["tags"] = ["parameters"]
    draw = nbformat.v4.new_code_cell(
        "from pathlib import Path\nPath(figures_dir).mkdir(parents=True)\n"
        "(Path(figures_dir) / 'f.png').write_bytes(b'png')"
    )
    nb.cells = [params, draw]
    nbformat.write(nb, str(tmp_path / "n.ipynb"))
    out = run_notebook(tmp_path / "n.ipynb", tmp_path / "report", {})
    assert (out / "figures/f.png").read_bytes() == b"png" and not (tmp_path / "nowhere").exists()
