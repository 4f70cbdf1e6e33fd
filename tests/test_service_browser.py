"""The web page in a real browser (Debian's chromium driven by Playwright) against a real server.

A manipulated photo (the demo's splice: chelsea's face pasted on astronaut) is dropped on the page;
the original must come first as the host, with the verdict, the heatmap overlay, the outlines of
the changed regions, the aligned original and the vote map shown; the comparisons are asked for
when a match is shown, naming the query by its `query_token` (the image is uploaded once). The
same on a phone-sized screen, with the image pasted. The page must load nothing from anywhere but the server.

`IMGPROV_UPDATE_SCREENSHOT=1` writes the result page to docs/screenshot-search.png; otherwise the
screenshots go to pytest's temporary directory.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image

from imgprov.demo import make_queries, skimage_data_dir
from imgprov.service.app import create_app
from imgprov.service.server import background_server
from imgprov.service.settings import ServiceSettings

pytestmark = pytest.mark.slow  # chromium against a real server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SCREENSHOT = Path(__file__).parents[1] / "docs" / "screenshot-search.png"
RESULT_TIMEOUT_MS = 180_000
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="the Python package `playwright` is not installed (make test installs it)"
)
if not os.access(CHROMIUM, os.X_OK):
    pytest.skip(
        f"Debian's chromium is not installed at {CHROMIUM}: `make test` installs it with apt-get "
        "(`apt-get update && apt-get install -y chromium`), which failed or could not run here",
        allow_module_level=True,
    )

GIVE_FILE = """async ([eventName, name, encoded]) => {
  const bytes = Uint8Array.from(atob(encoded), (character) => character.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], name, { type: "image/jpeg" }));
  const event = eventName === "paste"
    ? new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true, cancelable: true })
    : new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true });
  document.getElementById("drop-zone").dispatchEvent(event);
}"""

LOADED = "(image) => image.complete && image.naturalWidth > 0"


@dataclass
class PageWatch:
    """What a page did besides rendering: console errors, requests to anywhere else, and the forms
    it posted to the API (by path)."""

    base_url: str
    errors: list[str] = field(default_factory=list)
    foreign_requests: list[str] = field(default_factory=list)
    posted: list[tuple[str, bytes]] = field(default_factory=list)

    def attach(self, page) -> None:
        page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("request", self._request)

    def _request(self, request) -> None:
        if not request.url.startswith((self.base_url, "data:", "blob:")):
            self.foreign_requests.append(request.url)
        elif request.method == "POST":
            path = request.url[len(self.base_url) :].split("?")[0]
            self.posted.append((path, request.post_data_buffer or b""))

    def uploads_once(self) -> None:
        """The image went to one search; each comparison named it by its `query_token` (a form
        with a file, which Playwright does not show, would have no token here)."""
        assert [path for path, _ in self.posted].count("/v1/search") == 1
        compares = [body for path, body in self.posted if path == "/v1/compare"]
        assert len(compares) >= 2 and all(b'name="query_token"' in body for body in compares)
        assert not any(b'name="query"' in body for body in compares)


@pytest.fixture(scope="module")
def server_url(photo_db) -> Iterator[str]:
    with background_server(create_app(ServiceSettings(db=photo_db))) as url:
        yield url


@pytest.fixture(scope="module")
def spliced_jpeg(tmp_path_factory) -> bytes:
    queries = {
        query.path.stem: query.path
        for query in make_queries(skimage_data_dir(), tmp_path_factory.mktemp("q"))
    }
    return queries["spliced"].read_bytes()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


def open_page(browser, server_url: str, viewport: dict[str, int]):
    context = browser.new_context(viewport=viewport, device_scale_factor=1)
    page = context.new_page()
    watch = PageWatch(server_url)
    watch.attach(page)
    page.goto(server_url + "/")
    playwright_api.expect(page.get_by_test_id("collection-status")).to_have_text(
        "14 originals in the collection"
    )
    return context, page, watch


def give_image(page, event_name: str, jpeg: bytes) -> None:
    page.evaluate(GIVE_FILE, [event_name, "spliced.jpg", base64.b64encode(jpeg).decode("ascii")])


def wait_for_comparison(page) -> None:
    expect = playwright_api.expect
    expect(page.get_by_test_id("detail")).to_be_visible(timeout=RESULT_TIMEOUT_MS)
    for test_id in ("query-picture", "heatmap", "aligned-original", "vote-map"):
        page.get_by_test_id(test_id).wait_for(state="attached")
        page.wait_for_function(f"() => ({LOADED})(document.querySelector('[data-testid={test_id}]'))")


def save_for_docs(screenshot: Path, target: Path) -> None:
    """A 256-colour copy of the screenshot: a third of the bytes, no visible difference."""
    with Image.open(screenshot) as image:
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)


def test_dropped_splice_shows_original_first_with_overlay(browser, server_url, spliced_jpeg, tmp_path):
    expect = playwright_api.expect
    context, page, watch = open_page(browser, server_url, DESKTOP)
    give_image(page, "drop", spliced_jpeg)
    wait_for_comparison(page)

    cards = page.get_by_test_id("match")
    expect(cards.first.get_by_test_id("match-name")).to_have_text("astronaut.png")
    expect(cards.first.get_by_test_id("role")).to_have_text("host")
    expect(cards.nth(1).get_by_test_id("match-name")).to_have_text("chelsea.png")
    expect(cards.nth(1).get_by_test_id("role")).to_have_text("donor")
    expect(cards.first).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_test_id("verdict")).to_contain_text("Manipulated")
    expect(page.get_by_test_id("verdict")).to_contain_text("probability")
    assert page.locator("#outline polygon").count() >= 1
    assert page.locator("#outline rect.region").count() >= 1
    expect(page.get_by_test_id("original-metadata")).to_contain_text("astronaut.png")
    expect(page.get_by_test_id("provenance")).to_contain_text("No provenance information")

    page.get_by_test_id("opacity").fill("30")
    assert page.get_by_test_id("heatmap").evaluate("(image) => image.style.opacity") == "0.3"
    page.get_by_test_id("opacity").fill("70")
    page.get_by_test_id("opacity").blur()
    shot = tmp_path / SCREENSHOT.name
    bottom = page.get_by_test_id("detail").evaluate(
        "(d) => d.getBoundingClientRect().bottom + window.scrollY"
    )
    page.screenshot(path=str(shot), full_page=True, clip={**DESKTOP, "x": 0, "y": 0, "height": bottom + 16})
    assert shot.stat().st_size > 10_000
    if os.environ.get("IMGPROV_UPDATE_SCREENSHOT") == "1":
        save_for_docs(shot, SCREENSHOT)

    page.evaluate("showProvenance({signer: 'Example News', actions: ['c2pa.created', 'c2pa.edited']})")
    expect(page.get_by_test_id("provenance")).to_contain_text("Example News")
    expect(page.get_by_test_id("provenance")).to_contain_text("c2pa.edited")

    cards.nth(1).click()
    expect(page.locator("#detail-title")).to_contain_text("chelsea.png", timeout=RESULT_TIMEOUT_MS)
    expect(cards.nth(1)).to_have_attribute("aria-pressed", "true")
    watch.uploads_once()
    assert not watch.foreign_requests, watch.foreign_requests
    assert not watch.errors, watch.errors
    context.close()


def test_pasted_image_on_a_phone_screen(browser, server_url, spliced_jpeg, tmp_path):
    expect = playwright_api.expect
    context, page, watch = open_page(browser, server_url, PHONE)
    give_image(page, "paste", spliced_jpeg)
    wait_for_comparison(page)
    expect(page.get_by_test_id("match").first.get_by_test_id("match-name")).to_have_text("astronaut.png")
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow} px wider than a phone screen"
    stage = page.get_by_test_id("query-stage").bounding_box()
    assert stage["width"] <= PHONE["width"]
    page.screenshot(path=str(tmp_path / "screenshot-phone.png"), full_page=True)
    assert not watch.foreign_requests, watch.foreign_requests
    assert not watch.errors, watch.errors
    context.close()


def test_api_docs_page_renders_locally(browser, server_url):
    context, page, watch = open_page(browser, server_url, DESKTOP)
    page.goto(server_url + "/docs")
    playwright_api.expect(page.get_by_test_id("api-docs")).to_contain_text("POST /v1/search")
    assert not watch.foreign_requests and not watch.errors, (watch.foreign_requests, watch.errors)
    context.close()
