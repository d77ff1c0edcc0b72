"""The web playground end to end: headless Chromium types a function and reads the docstring."""

import shutil
from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi", reason="the serve extra is not installed")
playwright = pytest.importorskip(
    "playwright.sync_api", reason="Playwright for Python is not installed: pip install playwright"
)

from codemt.generation import GenerationSettings  # noqa: E402
from codemt.serve.app import create_app, playground_html, running_server  # noqa: E402
from codemt.translate import Translator  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FUNCTION = "def add(a, b):\n    total = a + b\n    return total\n"


def test_the_page_is_self_contained():
    page = playground_html()
    assert "<script src" not in page and "<link" not in page and "http" not in page.lower()


@pytest.mark.skipif(
    not CHROMIUM.exists() and not shutil.which("chromium"),
    reason="Chromium is not installed: apt-get install -y chromium",
)
def test_playground_writes_a_docstring(tiny_model, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model on a busy machine
    translator = Translator.load(tiny_model, device="cpu")
    executable = str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium"))
    try:
        with (
            running_server(create_app(translator)) as url,
            playwright.sync_playwright() as driver,
        ):
            browser = driver.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(url)
            # The model's identity comes from GET /v1/model.
            playwright.expect(page.locator("#model")).to_contain_text("preset tiny")
            page.locator("#source").fill("")
            page.locator("#source").press_sequentially(FUNCTION)
            playwright.expect(page.locator("#source")).to_have_value(FUNCTION)
            playwright.expect(page.locator("#highlight .kw").first).to_have_text("def")
            page.select_option("#target", "docstring")
            page.select_option("#style", "summary")
            page.locator("#beams").fill("1")
            page.locator("#max-tokens").fill("12")
            page.locator("#generate").click()
            playwright.expect(page.locator("#latency")).to_contain_text("ms round trip")
            shown = page.locator("#result").text_content()
            page.screenshot(path=str(tmp_path / "playground.png"), full_page=True)
            assert page.locator("#error").text_content() == ""
            browser.close()
    finally:
        torch.set_num_threads(threads)
    expected = translator.translate(
        FUNCTION, "docstring", settings=GenerationSettings(num_beams=1, max_new_tokens=12)
    )
    assert shown == expected
    assert (tmp_path / "playground.png").stat().st_size > 10_000
