"""Run every library notebook's own tests through nbdev's runner, one pytest test per notebook."""
import json, os
from pathlib import Path
import pytest
import nbdev.test as nbt                     # not `from nbdev.test import test_nb`: pytest would collect it
from nbdev.config import get_config
from nbdev.doclinks import nbglob

CFG = get_config()
NOTEBOOKS = sorted(p for p in nbglob(CFG.nbs_path, as_path=True) if not (p.parent / ".notest").exists())


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook(nb):
    ok, secs = nbt.test_nb(nb, skip_flags=CFG.tst_flags.split(), force_flags=os.environ.get("NBDEV_FLAGS", "").split(),
                           basepath=CFG.config_path, do_print=False)
    assert ok, f"{nb.name} failed its tests"


def test_notebooks_found():
    names = {p.stem for p in NOTEBOOKS}
    assert {"00_core", "02_data", "03_model", "07_train", "index"} <= names, names


def test_experiment_notebooks_keep_papermill_parameters_tag():
    "nbdev_clean strips cell metadata unless settings.ini allows `tags`: without the tag papermill silently uses defaults."
    for nb in Path(CFG.nbs_path, "experiments").glob("*.ipynb"):
        cells = json.loads(nb.read_text())["cells"]
        assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in cells), nb
