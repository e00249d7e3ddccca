"""The documentation site: built from the notebooks by `tbpr docs`, opened from file:// in headless Chromium (Debian's
`chromium` package, driven by Playwright), every page loads without errors, search finds an API name, a screenshot
is saved. Set TBPR_CHROMIUM to use another Chromium binary."""
import os, shutil, subprocess, sys
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname
import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("TBPR_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    "The site, built by the documented command into a scratch folder."
    out = tmp_path_factory.mktemp("docs") / "site"
    done = subprocess.run([sys.executable, "-m", "tbpr.cli", "docs", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's package (apt-get install chromium) or set TBPR_CHROMIUM")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def open_page(browser, url):
    "Load `url`; return the page and every page error, console error and failed request it caused."
    page, problems = browser.new_page(), []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("requestfailed", lambda r: problems.append(f"failed request: {r.url}"))
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    page.goto(url, wait_until="load")
    return page, problems


def test_every_page_loads_without_errors(site, browser):
    attached = lambda p: any(part.endswith("_files") for part in p.parts)   # a page's own files
    pages = sorted(p for p in site.rglob("*.html")
                   if "assets" not in p.parts and p.name != "404.html" and not attached(p))
    assert len(pages) >= 20, pages
    expected = {"index", "core", "data", "model", "train", "pipeline", "bilma", "ivt", "lcr2s", "rde", "search", "docs", "api",
                "report"}
    assert expected <= {p.stem for p in pages}
    for path in pages:
        page, problems = open_page(browser, path.as_uri())
        assert not problems, f"{path.name}: {problems}"
        assert page.locator("nav.md-nav").count() > 0 and page.locator("article h1").count() == 1, path.name
        broken = page.evaluate("""() => [...document.querySelectorAll('article img')]
                                  .filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)""")
        assert not broken, f"{path.name}: images that do not load: {broken}"
        page.close()


def test_home_is_the_readme_and_links_resolve(site, browser):
    page, problems = open_page(browser, (site / "index.html").as_uri())
    assert "dvc repro" in page.inner_text("article") and not problems
    links = page.evaluate("() => [...document.querySelectorAll('nav a.md-nav__link')].map(a => a.href)")
    local = {l.split("#")[0] for l in links if l.startswith("file://")}
    missing = [l for l in local if not Path(url2pathname(urlparse(l).path)).exists()]
    assert len(local) >= 20 and not missing, missing


def test_search_finds_an_api_name(site, browser, tmp_path):
    page, problems = open_page(browser, (site / "index.html").as_uri())
    page.set_viewport_size({"width": 1280, "height": 800})
    page.click("input.md-search__input")
    page.keyboard.type("GalleryIndex")
    results = page.locator(".md-search-result__item a")
    results.first.wait_for(timeout=15000)
    hrefs = [results.nth(i).get_attribute("href") for i in range(results.count())]
    assert any("search.html" in h for h in hrefs), hrefs
    shot = REPO / "artifacts" / "docs_screenshot.png"
    shot.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(shot), full_page=False)
    assert shot.stat().st_size > 10_000 and not problems, problems
    page.click(".md-search-result__item a >> nth=0")            # the result opens its entry
    page.wait_for_load_state("load")
    assert urlparse(page.url).path.endswith("/search.html") and "GalleryIndex" in page.inner_text("article")


def test_pages_show_the_notebooks_outputs(site, browser):
    "The notebooks are stored without outputs; `tbpr docs` runs them, so examples show what they print and draw."
    page, problems = open_page(browser, (site / "metrics.html").as_uri())
    assert "'mAP': 41.66" in page.inner_text("article") and not problems        # the worked example's result
    assert len(list((site / "synthetic_files").glob("*.png"))) >= 3              # the generated crops, drawn


def test_api_index_links_land_on_entries(site, browser):
    page, problems = open_page(browser, (site / "api.html").as_uri())
    links = page.evaluate("() => [...document.querySelectorAll('article td a')].map(a => a.getAttribute('href'))")
    assert len(links) > 100 and not problems
    ids = {}
    for href in links:
        name, anchor = href.split("#")
        if name not in ids:
            p, _ = open_page(browser, (site / name).as_uri())
            ids[name] = set(p.evaluate("() => [...document.querySelectorAll('[id]')].map(e => e.id)")); p.close()
    missing = [h for h in links if h.split("#")[1] not in ids[h.split("#")[0]]]
    assert not missing, f"{len(missing)} API links land nowhere, e.g. {missing[:5]}"


def test_formulas_are_drawn_as_mathml(site, browser):
    "TeX in the notebooks reaches the pages as MathML, which the browser draws without a script."
    for name, least in (("metrics", 30), ("ivt", 4)):
        page, problems = open_page(browser, (site / f"{name}.html").as_uri())
        text = page.inner_text("article")
        assert page.locator("article math").count() >= least and not problems, name
        assert "\\frac" not in text and "$$" not in text and "\\mathrm" not in text, name


def test_experiment_pages_show_results(site, browser):
    "An ablation's page shows results: its executed notebook, or else those committed from a run."
    page, problems = open_page(browser, (site / "bilma_ablation.html").as_uri())
    assert page.locator("article table").count() >= 1 and not problems
    assert page.locator("article img").count() >= 1
    executed = REPO / "artifacts/ablations/bilma/report/bilma_ablation.ipynb"
    assert executed.exists() or "committed" in page.inner_text("article")


def test_navigation_groups_the_library_by_part(site, browser):
    page, problems = open_page(browser, (site / "index.html").as_uri())
    nav = page.inner_text("nav.md-nav--primary")
    for part in ("Data", "Model", "Training and evaluation", "Methods", "Search", "Site", "Experiments"):
        assert part in nav, part
    assert not problems


def test_names_in_the_prose_link_to_their_entries(site, browser):
    page, problems = open_page(browser, (site / "metrics.html").as_uri())
    hrefs = page.evaluate("""() => [...document.querySelectorAll('article a')]
                             .filter(a => a.querySelector('code')).map(a => a.getAttribute('href'))""")
    assert any(h.startswith("metrics.html#rank_metrics") for h in hrefs), hrefs
    assert not problems
