"""The search page of `tbpr serve` in headless Chromium (Debian's `chromium`, driven by Playwright, as in
test_docs.py), against a uvicorn server on a free localhost port: a description ranks the crops in the order the API
returns, with their scores and names; a crop opens large; an empty description shows its message; the page loads
nothing from elsewhere. Screenshots go to artifacts/ (TBPR_SERVE_SHOTS=nbs/_static refreshes the site's figures)."""
import json, os, time
from pathlib import Path
from urllib.parse import urlencode
from urllib.error import HTTPError
from urllib.request import Request, urlopen
import pytest
from test_docs import CHROMIUM, FLAGS

REPO = Path(__file__).resolve().parents[1]
SHOTS = REPO / os.environ.get("TBPR_SERVE_SHOTS", "artifacts")
QUERY = "a woman in a red coat with a black backpack"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A tiny random model over synthetic crops, served from a thread; yields the page's address. The folders are
    given relative to the scratch folder, as a user would type them, so the screenshots show short names."""
    from tbpr.model import DualEncoder, EncoderConfig, save_encoder
    from tbpr.serve import SearchService, make_app, running_server
    from tbpr.synthetic import generate_synthetic
    from tbpr.tokenizer import load_tokenizer
    import torch
    work = tmp_path_factory.mktemp("serve")
    generate_synthetic(work / "benchmark", seed=0, num_ids={"train": 2, "val": 2, "test": 8}, difficulty=0.1)
    tok = load_tokenizer()
    cfg = EncoderConfig(image_size=(48, 16), patch_size=8, embed_dim=16, vision_width=32, vision_layers=1,
                        vision_heads=2, text_width=32, text_layers=1, text_heads=2, max_length=24, vocab_size=len(tok))
    torch.manual_seed(0)  # the same random model, so the same screenshots
    save_encoder(DualEncoder(cfg), work / "tiny-model", tok=tok)
    (work / "benchmark/imgs/test").rename(work / "gallery")
    before = Path.cwd()
    os.chdir(work)
    try:
        service = SearchService("tiny-model", "gallery", "cache")
        assert service.load(), service.error
        with running_server(make_app(service, k=10, allowed_hosts=("127.0.0.1",))) as url:
            yield url
    finally:
        os.chdir(before)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's package (apt-get install chromium) or set TBPR_CHROMIUM")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def test_search_page(server, browser):
    page, problems, requests = browser.new_page(viewport={"width": 1280, "height": 600}), [], []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("requestfailed", lambda r: problems.append(f"failed request: {r.url}"))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(server, wait_until="load")
    page.wait_for_function("() => document.getElementById('info').textContent.includes('crops in')", timeout=10000)
    with urlopen(server + "api/status") as reply:
        assert f"{json.load(reply)['count']} crops in gallery" in page.inner_text("#info")

    page.fill("#q", QUERY)
    page.select_option("#k", "10")
    page.press("#q", "Enter")
    page.wait_for_function("() => document.querySelectorAll('#results .hit').length === 10", timeout=10000)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth)",
        timeout=10000)
    with urlopen(server + "api/search?" + urlencode({"q": QUERY, "k": 10})) as reply:
        api = json.load(reply)["results"]
    shown = page.evaluate("""() => [...document.querySelectorAll('#results .hit')].map(li => ({
        rank: li.querySelector('.rank').textContent, score: li.querySelector('.score').textContent,
        name: li.querySelector('.name').textContent, src: li.querySelector('img').getAttribute('src')}))""")
    assert shown == [{"rank": f"#{r['rank']}", "score": f"{r['score']:.3f}", "name": r["path"], "src": r["url"]}
                     for r in api]
    assert [r["rank"] for r in api] == list(range(1, 11))
    assert "seems barely trained" in page.inner_text("#warning")        # a random model says so
    assert page.is_hidden("#error") and page.is_hidden("#note")
    assert "?q=" in page.url                                             # the query stays in the address
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "serve_results.png"))

    page.click("#results .hit >> nth=1")                                 # the second crop, large
    page.wait_for_selector("#overlay", state="visible")
    assert page.evaluate("document.getElementById('big').getAttribute('src')") == api[1]["url"]
    page.wait_for_function("() => document.getElementById('big').naturalWidth > 0", timeout=5000)
    assert api[1]["path"] in page.inner_text("#bigcaption")
    page.screenshot(path=str(SHOTS / "serve_large.png"))
    page.keyboard.press("Escape")
    page.wait_for_selector("#overlay", state="hidden")

    page.fill("#q", "   ")                                               # an empty description
    page.click("#go")
    page.wait_for_selector("#error", state="visible")
    assert "the query is empty" in page.inner_text("#error .msg")
    assert "How to fix: type a description" in page.inner_text("#error .fix")
    assert page.locator("#results .hit").count() == 0
    # the one error the page was meant to show (400 for the empty query) is the only console error
    assert [p for p in problems if "400" not in p] == [] and len(problems) <= 1, problems
    outside = [u for u in requests if not u.startswith(server)]
    assert not outside, outside


def test_a_broken_gallery_shows_its_error_and_recovers(tmp_path, browser, monkeypatch):
    "An unreadable crop: the page shows the error and its fix, no traceback; once the file is gone, a reload searches."
    from PIL import Image
    from tbpr.pretrained import write_tiny_clip
    from tbpr.serve import SearchService, make_app, running_server
    monkeypatch.chdir(tmp_path)                                 # short names in the screenshot
    write_tiny_clip("clip")                                     # the zero-shot baseline's kind of folder
    Path("gallery").mkdir()
    Image.new("RGB", (32, 96), (200, 30, 30)).save("gallery/red.jpg")
    Path("gallery/broken.jpg").write_bytes(b"not a jpeg")
    service = SearchService("clip", "gallery", "cache")
    with running_server(make_app(service)) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 300})
        page.goto(url, wait_until="load")
        page.wait_for_selector("#error", state="visible")
        text = page.inner_text("#error")
        assert "1 unreadable image(s)" in text and "broken.jpg" in text and "How to fix: remove or re-save" in text
        assert "Then reload this page" in text and "Traceback" not in page.content()
        page.screenshot(path=str(SHOTS / "serve_error.png"))   # SHOTS is absolute: REPO / ...
        Path("gallery/broken.jpg").unlink()                     # the user fixes the folder, then reloads
        page.reload(wait_until="load")
        page.wait_for_function("() => document.getElementById('info').textContent.includes('1 crops in')")
        page.fill("#q", "a man in red")
        page.press("#q", "Enter")
        page.wait_for_selector("#results .hit")
        assert page.inner_text("#results .name") == "red.jpg" and page.is_hidden("#error")


def test_the_command_reuses_the_cache_and_stops_on_ctrl_c(tmp_path):
    """`tbpr serve` as a user runs it: it finds the cache an earlier index wrote (nothing encoded again), prints the
    page's address, serves it on this machine only, and stops on Ctrl-C without a traceback."""
    import signal, socket, subprocess, sys
    from PIL import Image
    from tbpr.model import DualEncoder, EncoderConfig, save_encoder
    from tbpr.search import GalleryIndex
    from tbpr.tokenizer import load_tokenizer
    tok = load_tokenizer()
    cfg = EncoderConfig(image_size=(48, 16), patch_size=8, embed_dim=16, vision_width=32, vision_layers=1,
                        vision_heads=2, text_width=32, text_layers=1, text_heads=2, max_length=24, vocab_size=len(tok))
    save_encoder(DualEncoder(cfg), tmp_path / "model", tok=tok)
    (tmp_path / "crops").mkdir()
    for i in range(3):
        Image.new("RGB", (32, 96), (80 * i, 40, 200 - 60 * i)).save(tmp_path / f"crops/{i}.jpg")
    GalleryIndex(tmp_path / "model", tmp_path / "crops", tmp_path / "cache").update()   # an earlier run's cache
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "tbpr.cli", "serve", "--model", "model", "--images", "crops",
               "--cache-dir", "cache", "--port", str(port), "--k", "2"]
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        said = [proc.stdout.readline(), proc.stdout.readline()]
        assert said[0].strip() == "gallery crops: 3 images, 0 encoded, 3 from the cache", said
        assert said[1].startswith(f"search page: http://127.0.0.1:{port}/"), said
        for _ in range(100):                                   # the address is printed just before uvicorn binds
            try:
                with urlopen(f"http://127.0.0.1:{port}/api/search?q=a+man") as reply:
                    assert len(json.load(reply)["results"]) == 2   # --k
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("the page never answered")
        rebound = Request(f"http://127.0.0.1:{port}/api/status", headers={"Host": f"rebound.example:{port}"})
        with pytest.raises(HTTPError) as refused:                 # only this machine's names are answered
            urlopen(rebound)
        assert refused.value.code == 400
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in err, err
