"""The real DVC pipeline: `dvc repro` of this repository's dvc.yaml, in a scratch git repository on the tiny parameters of
test_pipeline.py; then a no-op repro, an experiment, metrics and plots (the HTML page drawn offline in headless Chromium).
And dvc.yaml's dependencies: every tbpr module a stage imports, found statically (from each stage function, through the
functions it can call) and at run time (an import logger in the stages' processes), must be one of its deps."""
import ast, json, os, re, shutil, subprocess, sys, time
from pathlib import Path
import pytest, yaml

REPO = Path(__file__).resolve().parents[1]
STAGES = ("check", "download", "parse", "preprocess", "train", "evaluate", "cross", "report")
REPORT_NOTEBOOK = "nbs/experiments/report.ipynb"
CHROMIUM = os.environ.get("TBPR_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"     # as tests/test_docs.py
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]

# Written next to (not into) the scratch repository and put on PYTHONPATH: in the process of a stage (`tbpr <stage>`) and
# in its children (the report's notebook kernel), every tbpr module loaded (by an import statement or by importlib) is
# appended to $TBPR_IMPORT_LOG.
SITECUSTOMIZE = '''
import os, sys
class _LogTbprImports:                      # first on sys.meta_path: asked about every module not yet loaded, finds none
    def __init__(self, stage, log): self.stage, self.log = stage, log
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tbpr":
            with open(self.log, "a") as f: f.write(f"{self.stage} {name}\\n")
        return None
if os.environ.get("TBPR_IMPORT_LOG"):
    if os.path.basename(sys.argv[0]) == "tbpr" and len(sys.argv) > 1: os.environ["TBPR_STAGE"] = sys.argv[1]
    if os.environ.get("TBPR_STAGE"): sys.meta_path.insert(0, _LogTbprImports(os.environ["TBPR_STAGE"], os.environ["TBPR_IMPORT_LOG"]))
'''


def tiny_params() -> dict:
    "TINY of tests/test_pipeline.py (read from its source: importing it would load torch here for nothing)."
    tree = ast.parse((REPO / "tests/test_pipeline.py").read_text())
    found = [n.value for n in tree.body if isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "TINY" for t in n.targets)]
    assert found, "tests/test_pipeline.py defines no TINY parameters"
    return ast.literal_eval(found[0])


def merge(base: dict, over: dict) -> dict:
    return {**base, **{k: merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
                       for k, v in over.items()}}


def shown(p) -> str:
    return f"\n$ {' '.join(map(str, p.args))}\n--- stdout\n{p.stdout[-6000:]}\n--- stderr\n{p.stderr[-6000:]}"


class Workspace:
    "The scratch repository and how to run dvc (or git) in it."
    def __init__(self, root: Path, env: dict, log: Path):
        self.root, self.env, self.log = root, env, log

    def run(self, *args, check=True, timeout=600):
        p = subprocess.run(list(map(str, args)), cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout)
        assert not check or p.returncode == 0, f"exit status {p.returncode}" + shown(p)
        return p

    def dvc(self, *args, **kw): return self.run(sys.executable, "-m", "dvc", *args, **kw)
    def git(self, *args): return self.run("git", "-c", "commit.gpgsign=false", *args)
    def json(self, path): return json.loads((self.root / path).read_text())


def copy_repository(root: Path, leave_out=("artifacts",)) -> None:
    """The repository's files (tracked, and new ones git does not ignore) copied into `root`, but those under the
    folders `leave_out`; a file deleted in the working tree is skipped."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if any(rel.startswith(folder + "/") for folder in leave_out) or not src.is_file():
            continue
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, root / rel)


def committed_params() -> dict:
    "params.yaml as committed (HEAD), whatever the working tree holds."
    shown_file = subprocess.run(["git", "show", "HEAD:params.yaml"], cwd=REPO, capture_output=True, text=True,
                                check=True)
    return yaml.safe_load(shown_file.stdout)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A copy of the repository's files (tracked, and new ones git does not ignore; nothing of artifacts/) committed in
    a fresh git repository, params.yaml the committed one with TINY over it; then `dvc repro`, committed too."""
    top = tmp_path_factory.mktemp("dvc")
    root, hooks, log = top / "repo", top / "hooks", top / "imports.log"
    copy_repository(root)
    (root / "params.yaml").write_text(yaml.safe_dump(merge(committed_params(), tiny_params()), sort_keys=False))
    hooks.mkdir(); (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           # the stages run the copied tbpr (before the editable install's finder), the code dvc hashed as their deps
           "PYTHONPATH": os.pathsep.join(filter(None, [str(hooks), str(root), os.environ.get("PYTHONPATH")])),
           "TBPR_IMPORT_LOG": str(log), "DVC_NO_ANALYTICS": "1", "TQDM_DISABLE": "1",
           "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
           "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com"}
    env.pop("TBPR_STAGE", None)
    w = Workspace(root, env, log)
    w.git("init", "-q", "-b", "main"); w.git("add", "-A"); w.git("commit", "-q", "-m", "tiny pipeline")
    start = time.monotonic()
    w.first = w.dvc("repro")
    print(f"dvc repro: {time.monotonic() - start:.0f} s")
    w.git("add", "-A"); w.git("commit", "-q", "-m", "dvc repro")                   # the baseline of the experiment below
    return w


def test_repro_runs_every_stage(ws):
    out = ws.first.stdout
    ran = [s for s in STAGES if f"Running stage '{s}'" in out]
    assert ran == list(STAGES), f"stages run: {ran}" + shown(ws.first)
    metrics = ws.json("artifacts/eval/metrics.json")
    assert {"R1", "mAP", "chance_R1"} <= set(metrics) and 0 <= metrics["R1"] <= 100, metrics
    assert set(yaml.safe_load((ws.root / "dvc.lock").read_text())["stages"]) == set(STAGES)
    for f in ("artifacts/report/report.html", "artifacts/eval/cmc.csv", "artifacts/eval/cmc.png",
              "artifacts/eval/retrieval_grid.png", "artifacts/train_live/metrics.json"):
        assert (ws.root / f).is_file(), f"{f} missing" + shown(ws.first)


def test_second_repro_runs_nothing(ws):
    again = ws.dvc("repro")
    assert "Running stage" not in again.stdout, "a stage ran again with nothing changed" + shown(again)
    skipped = [s for s in STAGES if f"Stage '{s}' didn't change, skipping" in again.stdout]
    assert skipped == list(STAGES), f"skipped: {skipped}" + shown(again)
    status = ws.dvc("status", "--json", "dvc.yaml")          # data.dvc is left out: a fresh clone has no data/
    assert json.loads(status.stdout) == {}, "dvc status is not clean" + shown(status)


def test_every_module_a_stage_loaded_is_a_dep(ws):
    "What the stages' processes (and the report's kernel) really imported, during the `dvc repro` above."
    loaded = {}
    for line in ws.log.read_text().splitlines():
        stage, module = line.split()
        if module != "tbpr" and module not in ("tbpr.methods",):                           # a package's empty __init__
            loaded.setdefault(stage, set()).add("/".join(module.split(".")) + ".py")
    assert set(loaded) == set(STAGES), f"no import recorded for {set(STAGES) - set(loaded)}: was the logging sitecustomize.py loaded?"
    assert "tbpr/pipeline.py" in loaded["report"] and "tbpr/train.py" in loaded["train"]
    inputs = ws.root / "artifacts/stage_inputs"
    missing = {s: not_covered(loaded[s], stage_deps(ws.root / "dvc.yaml", s) | fingerprinted(s, inputs)) for s in STAGES}
    assert not any(missing.values()), f"imported by a stage but not in its deps in dvc.yaml: {missing}"
    graph = ImportGraph(ws.root / "tbpr")                       # and the static analysis below saw them all coming
    unseen = {s: sorted(loaded[s] - stage_modules(graph, s, ws.root)) for s in STAGES}
    assert not any(unseen.values()), f"imports the static analysis (ImportGraph) misses: {unseen}"


def test_metrics_show_has_retrieval_metrics(ws):
    shown_metrics = ws.dvc("metrics", "show", "--json")
    revs = json.loads(shown_metrics.stdout)
    data = (revs.get("workspace") or revs.get("") or {}).get("data", {})     # the workspace is "" when no rev is asked for
    assert {"R1", "mAP"} <= set(data["artifacts/eval/metrics.json"]["data"]), shown(shown_metrics)
    assert "artifacts/train_live/metrics.json" in data, shown(shown_metrics)


def test_plots_show_json_lists_every_plot(ws):
    p = ws.dvc("plots", "show", "--json")
    out = json.loads(p.stdout)
    assert not out.get("errors"), out.get("errors")
    names = set(out["data"])
    expected = ["artifacts/eval/cmc.csv", "artifacts/eval/cmc.png", "artifacts/eval/retrieval_grid.png"]
    assert set(expected) <= names, f"plots: {sorted(names)}"
    curves = {n for n in names if n.startswith("artifacts/train_live/plots/metrics/")}
    assert any(n.endswith("/loss_total.tsv") for n in curves) and any(n.endswith("val/R1.tsv") for n in curves), sorted(names)
    assert all(out["data"][n][0]["type"] == "vega" for n in ["artifacts/eval/cmc.csv", *curves])


@pytest.fixture(scope="module")
def plots_page(ws):
    "`dvc plots show` into dvc_plots/ of the scratch repository: the page and how many Vega charts it has."
    p = ws.dvc("plots", "show")
    page = ws.root / "dvc_plots/index.html"
    assert page.is_file(), shown(p)
    return page, page.read_text().count("vegaEmbed(")


def test_plots_page_loads_no_remote_script(plots_page):
    page, charts = plots_page
    html = page.read_text()
    remote = re.findall(r"<script[^>]*\bsrc\s*=\s*[\"']?(?:https?:)?//[^\"'\s>]*", html, flags=re.I)
    assert not remote and "cdn.jsdelivr.net" not in html, f"remote scripts: {remote}"
    assert "{plot_divs}" not in html and "{scripts}" not in html
    for lib in ("vega@5.", "vega-lite@5.", "vega-embed@6."):
        assert f"<script>/* {lib}" in html, f"{lib} is not inlined: is plots.html_template set in .dvc/config?"
    assert charts >= 3, f"{charts} Vega charts: expected the CMC and the training curves"


# Before the page's scripts: keep the view of every chart vegaEmbed draws, for its scenegraph.
KEEP_VIEWS = """window.__views = []; let embed;
Object.defineProperty(window, 'vegaEmbed', {configurable: true, set(f) { embed = f; },
    get() { return embed && ((...args) => { const p = embed(...args); p.then(r => window.__views.push(r.view)); return p; }); }});"""
# Per chart: how many data marks (line, point, circle: role 'mark', not axes or legends) its scenegraph holds.
DATA_MARKS = """() => window.__views.map(v => {
    const walk = node => {
        let n = node.marktype && node.role === 'mark' && ['line', 'symbol'].includes(node.marktype) ? node.items.length : 0;
        for (const item of node.items || []) for (const child of item.items || []) n += walk(child);
        return n; };
    return walk(v.scenegraph().root); })"""


def test_plots_draw_offline_in_chromium(plots_page):
    "Every Vega chart draws its data, with every request outside file:// refused, and no error in the console."
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's package (apt-get install chromium) or set TBPR_CHROMIUM")
    from playwright.sync_api import sync_playwright
    page_file, charts = plots_page
    problems, remote = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page()
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(("file:", "data:"))
                       else (remote.append(route.request.url), route.abort()))
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("requestfailed", lambda r: problems.append(f"failed request: {r.url}"))
            page.add_init_script(KEEP_VIEWS)
            page.goto(page_file.as_uri(), wait_until="load")
            try: page.wait_for_function("n => window.__views.length >= n", arg=charts, timeout=20000)
            except Exception: pass                                    # reported below, with what was drawn
            drawn = page.evaluate("() => document.querySelectorAll('.vega-embed canvas.marks, .vega-embed svg.marks').length")
            marks = page.evaluate(DATA_MARKS)
            images = page.evaluate("() => [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
        finally:
            browser.close()
    assert not remote, f"requests outside file://: {remote}"
    assert drawn == charts == len(marks), f"{drawn} of {charts} Vega charts drawn ({len(marks)} embedded); {problems}"
    assert min(marks) > 0, f"charts without data (data marks per chart: {marks}); {problems}"
    assert not images, f"images that do not load: {images}"
    assert not problems, problems


def test_bad_value_fails_before_any_output_is_removed(ws):
    "A value only training would refuse stops `dvc exp run` in the check stage: the previous model is still there."
    model = (ws.root / "artifacts/model/model.safetensors").read_bytes()
    for bad, says in (("train.method=foo", "train.method='foo' is not a valid choice"),
                      ("train.temperature=0", "train.temperature=0 must be a number in (0, inf]"),
                      ("train.epochs=true", "train.epochs=True must be an integer"),
                      ("train.lr=abc", "train.lr='abc' must be a number")):
        p = ws.dvc("exp", "run", "-S", bad, check=False)
        ws.git("checkout", "params.yaml")
        assert p.returncode != 0 and says in p.stdout + p.stderr, shown(p)
        assert "Running stage 'train'" not in p.stdout, shown(p)
        assert (ws.root / "artifacts/model/model.safetensors").read_bytes() == model, f"{bad}: model lost"
    again = ws.dvc("repro")                      # the check passes again, and its unchanged note re-runs nothing
    ran = [s for s in STAGES if f"Running stage '{s}'" in again.stdout]
    assert ran == ["check"], f"stages run after the failed checks: {ran}" + shown(again)


def test_code_edit_restarts_training(ws):
    "An edited training module re-runs train from scratch, saying why, instead of resuming the old checkpoints."
    f = ws.root / "tbpr/model.py"
    f.write_text(f.read_text() + "\nEDITED_FOR_A_TEST = True\n")
    p = ws.dvc("repro")
    assert "Running stage 'train'" in p.stdout and "the code changed (tbpr/model.py)" in p.stdout, shown(p)
    assert "resuming" not in p.stdout, shown(p)
    ws.git("add", "-A"); ws.git("commit", "-q", "-m", "an edited module")         # the baseline of the test below


def test_exp_run_changes_train_metrics(ws):
    "Last: the experiment's results are left in the workspace."
    before = ws.json("artifacts/train_live/metrics.json")
    exp = ws.dvc("exp", "run", "-S", "train.epochs=1")
    assert "Running stage 'train'" in exp.stdout and "Running stage 'download'" not in exp.stdout, shown(exp)
    assert yaml.safe_load((ws.root / "params.yaml").read_text())["train"]["epochs"] == 1
    after = ws.json("artifacts/train_live/metrics.json")
    assert after != before, f"train metrics unchanged by train.epochs=1: {after}"
    last = tiny_params()["train"]["epochs"] - 1                                     # dvclive's last step: epochs - 1
    assert (before.get("step"), after.get("step")) == (last, 0), f"dvclive's step before and after: {before}, {after}"
    listed = ws.dvc("exp", "show", "--json")
    epochs = [r["data"]["params"]["params.yaml"]["data"]["train"]["epochs"]
              for base in json.loads(listed.stdout) for e in base.get("experiments") or [] for r in e["revs"]]
    assert epochs == [1], "`dvc exp show` should list the one experiment, train.epochs=1" + shown(listed)


# --- dvc.yaml's deps against the imports, statically: every stage function and whatever it can reach -------------------

def stage_deps(dvc_yaml: Path, stage: str) -> set:
    return {d if isinstance(d, str) else next(iter(d)) for d in yaml.safe_load(dvc_yaml.read_text())["stages"][stage]["deps"]}


def fingerprinted(stage: str, inputs: Path | None = None) -> set:
    """The modules whose code the stage's file in artifacts/stage_inputs/ fingerprints (it is a dep of the stage): the
    train stage's training code, as written there (`inputs`) or, without it, for every installed method."""
    if stage != "train":
        return set()
    every_method = {str(p.relative_to(REPO)) for p in (REPO / "tbpr/methods").glob("*.py")}   # loaded by the registry;
    if inputs is not None:                                              # the run's own method's code is fingerprinted
        return set(json.loads((inputs / "train.json").read_text())["code"]) | every_method
    from tbpr.train import code_fingerprint, training_modules
    return set(code_fingerprint(training_modules()))


def not_covered(files: set, deps: set) -> list:
    "The `files` that no dep names: neither itself nor a folder above it (`tbpr/methods`: every method's module)."
    return sorted(f for f in files if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps))


class ImportGraph:
    """The tbpr modules that code can load, read from the sources in `pkg` (the folder of package `tbpr`, with its
    subpackages: `methods.ivt` is tbpr/methods/ivt.py). Conservative by name: a name used by reached code reaches every
    function, method, class (all of its code) and module-level assignment of that name in a loaded module; a module's
    import-time code is reached when it loads. Imports count wherever they are (in functions: lazy), relative ones from
    their module's package, and so do strings naming a module ('tbpr.x', for importlib) or a subpackage: the registry's
    entry-point group, 'tbpr.methods', loads every module of tbpr/methods/."""

    def __init__(self, pkg: Path):
        self.pkg = Path(pkg)
        dotted = lambda p: ".".join(p.relative_to(self.pkg).with_suffix("").parts)
        self.names = {dotted(p) for p in self.pkg.rglob("*.py") if p.stem != "__init__"}
        self.packages = {dotted(p.parent) for p in self.pkg.rglob("*/__init__.py")}
        self.parsed = {}

    def _named(self, dotted: str) -> set:
        "The modules a dotted name under tbpr loads: itself, or every module of a subpackage."
        if dotted in self.names: return {dotted}
        if dotted in self.packages: return {n for n in self.names if n.startswith(dotted + ".")}
        return set()

    def _modules(self, node, here: str) -> set:
        "tbpr modules an import statement (in module `here`) or a string constant names."
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            m = re.fullmatch(r"tbpr\.([\w.]+)", node.value)
            return self._named(m[1]) if m else set()
        if isinstance(node, ast.Import):
            return {n for a in node.names if a.name.startswith("tbpr.") for n in self._named(a.name[5:]) if n in self.names and n == a.name[5:]}
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[:-1][:len(here.split(".")) - node.level]      # the package `..` names
                parts = base + (node.module.split(".") if node.module else [])
            elif (node.module or "").split(".")[0] == "tbpr":
                parts = node.module.split(".")[1:]
            else:
                return set()
            module = ".".join(parts)
            if module in self.names: return {module}
            return {f"{module}.{a.name}".lstrip(".") for a in node.names} & self.names      # from . import x
        return set()

    def _uses(self, node, here: str) -> tuple:
        "(modules, names) that `node` (in module `here`) uses; a function's own arguments and variables are not names of anything else."
        local = set()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            local = {a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)}
            local |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        mods, names = set(), set()
        for n in ast.walk(node):
            mods |= self._modules(n, here)
            if isinstance(n, ast.Name) and n.id not in local: names.add(n.id)
            elif isinstance(n, ast.Attribute): names.add(n.attr)
            elif isinstance(n, ast.ImportFrom): names |= {a.name for a in n.names if a.asname}   # used under another name
        return mods, names

    def _parse(self, name: str) -> tuple:
        "(code run on import, {name: definitions}) of module `name`."
        if name not in self.parsed:
            tree, top, defs = ast.parse((self.pkg / f"{name.replace('.', '/')}.py").read_text()), [], {}
            targets = lambda n: n.targets if isinstance(n, ast.Assign) else [n.target]
            for n in tree.body:
                if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    defs.setdefault(n.name, []).append(n)
                    top += n.decorator_list + (n.bases if isinstance(n, ast.ClassDef) else [])
                    if isinstance(n, ast.ClassDef):
                        for m in n.body:
                            if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)): defs.setdefault(m.name, []).append(m)
                elif isinstance(n, (ast.Assign, ast.AnnAssign)) and all(isinstance(t, ast.Name) for t in targets(n)):
                    for t in targets(n): defs.setdefault(t.id, []).append(n)        # its value: when the name is used
                    top += [c for c in ast.walk(n) if isinstance(c, ast.Call)]      # but its calls run on import
                elif not (isinstance(n, ast.If) and "__main__" in ast.unparse(n.test)):
                    top.append(n)
            self.parsed[name] = (top, defs)
        return self.parsed[name]

    def reach(self, functions=(), code=()) -> set:
        """Modules (as `tbpr/<path>.py`) loaded by calling `functions` ((module, name) pairs) or running `code` (AST
        nodes, of a notebook: absolute imports only)."""
        loaded, names, seen, todo = set(), set(), set(), [("", c) for c in code]
        def load(m):
            if m not in loaded: loaded.add(m); todo.extend((m, n) for n in self._parse(m)[0])
        for m, name in functions: load(m); names.add(name)
        while True:
            while todo:
                mods, used = self._uses(*reversed(todo.pop())); names |= used
                for m in mods: load(m)
            new = [(m, d) for m in sorted(loaded) for n in sorted(names) for d in self._parse(m)[1].get(n, []) if id(d) not in seen]
            if not new: return {f"tbpr/{m.replace('.', '/')}.py" for m in loaded}
            seen.update(id(d) for _, d in new); todo.extend(new)


def notebook_code(path: Path) -> list:
    "The code cells of a notebook, as statements (IPython magics left out)."
    cells = ["".join(c["source"]) for c in json.loads(Path(path).read_text())["cells"] if c["cell_type"] == "code"]
    lines = [l for c in cells for l in c.splitlines() if not l.lstrip().startswith(("%", "!"))]
    return ast.parse("\n".join(lines)).body


def stage_modules(graph: ImportGraph, stage: str, repo: Path = REPO) -> set:
    """What `tbpr <stage>` can load: `main` reads the parameters (`resolve_params`) and calls `stage_<stage>`; the report
    stage runs its notebook too. (tbpr/__init__.py holds only the version.)"""
    code = notebook_code(repo / REPORT_NOTEBOOK) if stage == "report" else []
    entry = ("cross", "cross_command") if stage == "cross" else ("pipeline", f"stage_{stage}")   # cli.run_command
    found = graph.reach([entry, ("plugins", "resolve_params")], code) | {"tbpr/cli.py"}
    if stage == "check":                # stage_inputs fingerprints the training code, named in train.TRAINING_CODE
        found |= fingerprinted("train")
    return found


def test_import_graph_finds_lazy_and_indirect_imports(tmp_path):
    "The analysis itself, on a made-up package: what it must find, and what it must not."
    files = {
        "pipeline.py": "from .core import helper\nimport argparse\n"
                       "def stage_a(p):\n    from tbpr.lazy import go\n    return go(helper(p))\n"
                       "def stage_b(p):\n    main = 1\n    return main\n"
                       "def main():\n    from tbpr.cli_only import x\n"
                       "STAGES = {'a': stage_a, 'b': stage_b}\n"
                       "if __name__ == '__main__': main()\n",
        "core.py": "def helper(p): return p\n",
        "lazy.py": "from . import deep\ndef go(p):\n    return Registry().load(p)\n"
                   "class Registry:\n    def load(self, p):\n        import importlib; return importlib.import_module(MODS[0])\n"
                   "MODS = ('tbpr.plugin',)\n",
        "deep.py": "x = 1\n", "plugin.py": "y = 2\n", "cli_only.py": "z = 3\n",
        "registry.py": "GROUP = 'tbpr.methods'\ndef find():\n    return GROUP\n",
        "methods/__init__.py": "", "methods/one.py": "from ..core import helper\nfrom .two import y\n",
        "methods/two.py": "y = 2\n"}
    for name, src in files.items(): (tmp_path / name).parent.mkdir(exist_ok=True); (tmp_path / name).write_text(src)
    g = ImportGraph(tmp_path)
    assert g.reach([("pipeline", "stage_a")]) == {f"tbpr/{m}.py" for m in ("pipeline", "core", "lazy", "deep", "plugin")}
    assert g.reach([("registry", "find")]) == {f"tbpr/{m}.py" for m in ("registry", "methods/one", "methods/two", "core")}
    assert g.reach([("pipeline", "stage_b")]) == {"tbpr/pipeline.py", "tbpr/core.py"}    # `main` here is a variable


def test_every_module_a_stage_can_import_is_a_dep():
    graph = ImportGraph(REPO / "tbpr")
    found = {s: stage_modules(graph, s) for s in STAGES}
    assert {"tbpr/sources.py", "tbpr/synthetic.py", "tbpr/core.py"} <= found["download"]       # the analysis sees lazy imports
    assert {"tbpr/methods/ivt.py", "tbpr/methods/lcr2s.py", "tbpr/train.py"} <= found["evaluate"]   # entry points, _run_params
    missing = {s: not_covered(found[s], stage_deps(REPO / "dvc.yaml", s) | fingerprinted(s)) for s in STAGES}
    assert not any(missing.values()), f"tbpr modules a stage can import that are not in its deps in dvc.yaml: {missing}"
