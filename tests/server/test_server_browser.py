"""The web page in headless Chromium against the real server on loopback: a person searches
a movie, opens its similar movies, rates a few movies, asks for recommendations, and
opens the run report."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from recfit.recommender import Recommender

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,1000",
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def driver() -> Iterator[object]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip(
            "chromium and chromedriver are not installed (Debian: chromium chromium-driver)"
        )
    from selenium import webdriver  # a dev dependency: missing selenium is a failure
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="recfit-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in FLAGS:
        opts.add_argument(f)
    opts.add_argument(f"--user-data-dir={profile}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    drv.set_page_load_timeout(60)
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait(drv: object, cond: object, timeout: float = 20) -> object:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(
        drv, timeout, poll_frequency=0.05, ignored_exceptions=[StaleElementReferenceException]
    )
    return wait.until(cond)


def _titles(drv: object, list_id: str) -> list[str]:
    """The movie titles a list shows now (read in one step, so a re-render cannot interleave)."""
    sel = f"#{list_id} li .title, #{list_id} li .rated-title"
    return list(
        drv.execute_script(  # type: ignore[attr-defined]
            "return [...document.querySelectorAll(arguments[0])].map(e => e.innerText)", sel
        )
    )


def _click(drv: object, list_id: str, title: str, button: str) -> None:
    """Click ``button`` (a CSS selector) in the row of ``title`` in a list; retried while the
    list re-renders under the pointer."""
    from selenium.webdriver.common.by import By

    def attempt(d: object) -> bool:
        for li in d.find_elements(By.CSS_SELECTOR, f"#{list_id} li"):  # type: ignore[attr-defined]
            if li.find_element(By.CSS_SELECTOR, ".title, .rated-title").text == title:
                li.find_element(By.CSS_SELECTOR, button).click()
                return True
        return False

    _wait(drv, attempt)


def _search_and_rate(drv: object, query: str, title: str, stars: int) -> None:
    from selenium.webdriver.common.by import By

    box = drv.find_element(By.ID, "search")  # type: ignore[attr-defined]
    box.clear()
    box.send_keys(query)
    _wait(drv, lambda d: title in _titles(d, "search-results"))
    # the star button sits in a group labelled with the movie's title
    _click(
        drv,
        "search-results",
        title,
        f'[role="group"][aria-label="Rate {title}"] '
        f'button[aria-label="{stars} star{"s" if stars > 1 else ""}"]',
    )
    _wait(drv, lambda d: title in _titles(d, "ratings"))


def test_search_similar_rate_recommend_report(
    driver: object, live_url: str, ml_rec: Recommender, ml_run: Path
) -> None:
    from selenium.webdriver.common.by import By

    drv = driver
    drv.get(live_url + "/")  # type: ignore[attr-defined]
    _wait(drv, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
    assert "943 users" in drv.find_element(By.ID, "model-info").text  # type: ignore[attr-defined]
    assert drv.find_element(By.ID, "recommend").get_attribute("disabled") is not None  # type: ignore[attr-defined]
    # the search box has a visible label
    label = drv.find_element(By.CSS_SELECTOR, 'label[for="search"]')  # type: ignore[attr-defined]
    assert label.text == "Search by title"

    # 1. type a title, click the result, see similar movies
    box = drv.find_element(By.ID, "search")  # type: ignore[attr-defined]
    box.send_keys("star wars")
    _wait(drv, lambda d: "Star Wars (1977)" in _titles(d, "search-results"))
    assert "found" in drv.find_element(By.ID, "search-status").text  # type: ignore[attr-defined]
    _click(drv, "search-results", "Star Wars (1977)", "button.title")
    _wait(drv, lambda d: len(_titles(d, "similar")) == 10)
    status = drv.find_element(By.ID, "similar-status").text  # type: ignore[attr-defined]
    assert status == "Movies similar to Star Wars (1977)"
    expected_similar = ml_rec.similar_items(50, n=10)[0].neighbours
    assert _titles(drv, "similar") == [s.title for s in expected_similar]
    assert "Star Wars (1977)" not in _titles(drv, "similar")

    # 2. rate a handful of movies (search results and the similar list)
    _search_and_rate(drv, "star wars", "Star Wars (1977)", 5)
    _search_and_rate(drv, "empire strikes", "Empire Strikes Back, The (1980)", 5)
    _search_and_rate(drv, "raiders of the lost", "Raiders of the Lost Ark (1981)", 4)
    _search_and_rate(drv, "sleepless in", "Sleepless in Seattle (1993)", 1)
    already = set(_titles(drv, "ratings"))
    sim_title = next(t for t in _titles(drv, "similar") if t not in already)
    _click(drv, "similar", sim_title, 'button[aria-label="3 stars"]')
    _wait(drv, lambda d: sim_title in _titles(d, "ratings"))
    rated = _titles(drv, "ratings")
    assert len(rated) == 5
    # the same movie shows the same rating everywhere (5 lit stars on Star Wars in results)
    star_row = next(
        li
        for li in drv.find_elements(By.CSS_SELECTOR, "#search-results li, #ratings li")  # type: ignore[attr-defined]
        if "Sleepless in Seattle (1993)" in li.text
    )
    assert len(star_row.find_elements(By.CSS_SELECTOR, "button.star.on")) == 1

    # 3. ask for recommendations and check what a person sees
    drv.find_element(By.ID, "recommend").click()  # type: ignore[attr-defined]
    _wait(drv, lambda d: len(_titles(d, "recommendations")) == 10)
    status = drv.find_element(By.ID, "recs-status").text  # type: ignore[attr-defined]
    assert status == "Based on your 5 ratings"
    shown = _titles(drv, "recommendations")
    assert not set(shown) & set(rated)
    given = {
        "Star Wars (1977)": 5,
        "Empire Strikes Back, The (1980)": 5,
        "Raiders of the Lost Ark (1981)": 4,
        "Sleepless in Seattle (1993)": 1,
        sim_title: 3,
    }
    assert set(rated) == set(given)
    ratings = {ml_rec.resolve_item(t): r for t, r in given.items()}
    assert shown == ml_rec.recommend_for_ratings(ratings, n=10).titles
    body = httpx.post(
        live_url + "/recommend",
        json={"ratings": [{"item": k, "rating": v} for k, v in ratings.items()], "n": 10},
    ).json()
    assert shown == [x["title"] for x in body["items"]]
    scores = [
        el.text
        for el in drv.find_elements(By.CSS_SELECTOR, "#recommendations li .score")  # type: ignore[attr-defined]
    ]
    assert all(s.startswith("predicted ") and s.endswith("★") for s in scores)

    # a movie typed that does not exist gets a clear message, not an empty page
    box = drv.find_element(By.ID, "search")  # type: ignore[attr-defined]
    box.clear()
    box.send_keys("qqqqzzzzxxxx")
    _wait(drv, lambda d: "No movie matches" in d.find_element(By.ID, "search-status").text)

    # 4. the report link and the report itself
    link = drv.find_element(By.ID, "report-link")  # type: ignore[attr-defined]
    assert link.is_displayed()
    link.click()
    _wait(drv, lambda d: d.current_url.endswith("/report"))
    h1 = drv.find_element(By.TAG_NAME, "h1").text  # type: ignore[attr-defined]
    assert h1 == "recfit run report: svdpp on ml-100k"
    h2 = [e.text for e in drv.find_elements(By.TAG_NAME, "h2")]  # type: ignore[attr-defined]
    for heading in ("Configuration", "Metrics", "Training curves", "Sample recommendations"):
        assert heading in h2
    ref = drv.find_element(By.ID, "metrics").text  # type: ignore[attr-defined]
    assert "Protocol R1" in ref and "0.8115" in ref
    imgs = drv.find_elements(By.CSS_SELECTOR, "#curves img")  # type: ignore[attr-defined]
    assert len(imgs) == 2
    for img in imgs:
        _wait(drv, lambda d, img=img: d.execute_script("return arguments[0].complete", img))
        assert drv.execute_script("return arguments[0].naturalWidth", img) > 100  # type: ignore[attr-defined]
        assert img.get_attribute("alt")
    samples = drv.find_element(By.ID, "samples").text  # type: ignore[attr-defined]
    assert "Most similar to Star Wars (1977)" in samples

    # no script errors, blocked resources or CSP violations along the way
    logs = drv.get_log("browser")  # type: ignore[attr-defined]
    severe = [e for e in logs if e["level"] == "SEVERE" and "favicon" not in e["message"]]
    assert not severe, severe
