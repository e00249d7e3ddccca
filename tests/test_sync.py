"""tests/sync_check.sh: the library against what the notebooks export, checked on a copy that never touches the tree."""
import os, shutil, subprocess
from pathlib import Path
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def tree(tmp_path):
    "A git repository with this one's files (tracked, and new ones git does not ignore), all committed."
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, listed):
        wanted = rel.split("/")[0] in ("tbpr", "nbs", "tests") or rel in ("settings.ini", ".gitignore")
        if wanted and (REPO / rel).is_file():
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, tmp_path / rel)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*git, "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "copy"], cwd=tmp_path, check=True)
    return tmp_path


def check(tree, **env):
    return subprocess.run(["bash", "tests/sync_check.sh"], cwd=tree, capture_output=True, text=True,
                          env={**os.environ, **env})


def test_in_sync(tree):
    p = check(tree)
    assert p.returncode == 0, p.stderr


def test_an_edit_in_the_library_is_reported_and_kept(tree):
    "An uncommitted edit of tbpr/ (not of its notebook) is reported, and is still there afterwards."
    core = tree / "tbpr/core.py"
    edited = core.read_text() + "\nMY_UNCOMMITTED_EDIT = 1\n"
    core.write_text(edited)
    notebook = (tree / "nbs/00_core.ipynb").read_text()
    p = check(tree, IN_TEST="1")        # as inside this suite, once nbdev has run a notebook in this process
    assert p.returncode == 1 and "tbpr/core.py" in p.stderr and "changed nothing" in p.stderr, p.stderr
    assert core.read_text() == edited and (tree / "nbs/00_core.ipynb").read_text() == notebook


def test_an_unclean_notebook_is_reported_and_kept(tree):
    nb = tree / "nbs/00_core.ipynb"
    text = nb.read_text().replace('"metadata": {}', '"metadata": {"collapsed": true}', 1)
    nb.write_text(text)
    p = check(tree)
    assert p.returncode == 1 and "nbs/00_core.ipynb" in p.stderr, p.stderr
    assert nb.read_text() == text
