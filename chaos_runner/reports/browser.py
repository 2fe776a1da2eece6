"""Opening an HTML report in a real headless browser: Debian's Chromium, driven through its
chromedriver by Selenium. What rendered (every figure, its plot and its fault bands),
what the console said, how long the page took, and screenshots. Used by the report's
browser test and its benchmark; it reads a file:// page and opens no network connection.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos_runner.errors import ConfigError

CHROMEDRIVER = "/usr/bin/chromedriver"
# A figure has rendered when Plotly drew its SVG; bands are its layout's rectangles.
FIGURES_JS = """
return Array.from(document.querySelectorAll('.figure')).map(function (div) {
  var shapes = (div.layout && div.layout.shapes) || [];
  return {id: div.id, expected_bands: Number(div.dataset.bands || 0),
          drawn: div.querySelectorAll('.main-svg').length > 0,
          bands: shapes.filter(function (s) { return s.type === 'rect'; }).length,
          points: (div.data || []).reduce(function (n, t) { return n + ((t.x || []).length); }, 0)};
});
"""


@dataclass
class Rendered:
    # Seconds until the page was loaded and the figures in its first view were drawn
    # (figures are drawn as they come near the viewport), and until every figure was,
    # scrolling through the page.
    load_s: float
    all_drawn_s: float
    figures: list[dict[str, Any]]
    console: list[dict[str, Any]]
    screenshots: list[Path] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return [str(e.get("message")) for e in self.console if e.get("level") == "SEVERE"]


VISIBLE_DRAWN_JS = """
var h = window.innerHeight;
return document.readyState === 'complete' &&
  Array.from(document.querySelectorAll('.figure')).every(function (div) {
    var r = div.getBoundingClientRect();
    return r.top > h || r.bottom < 0 || div.querySelectorAll('.main-svg').length > 0;
  });
"""


def open_report(
    page: Path, screenshot_dir: Path | None = None, width: int = 1400, timeout_s: float = 120
) -> Rendered:
    """Load `page` (file://) headless: wait until the figures of the first view are drawn,
    then bring each figure into view until it is drawn; read back what rendered and the
    console. With `screenshot_dir`, a screenshot of the page's top and of each scenario's
    section."""
    if shutil.which("chromium") is None or not Path(CHROMEDRIVER).exists():
        raise ConfigError(
            "no Chromium to open the report with: install Debian's chromium and "
            "chromium-driver (scripts/setup.sh does)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},1600", "--disable-extensions", "--no-first-run",
                "--disable-background-networking"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(timeout_s)
        started = time.monotonic()
        deadline = started + timeout_s
        driver.get(page.resolve().as_uri())
        while not driver.execute_script(VISIBLE_DRAWN_JS) and time.monotonic() < deadline:
            time.sleep(0.02)
        load_s = time.monotonic() - started
        for div in driver.find_elements("css selector", ".figure"):
            driver.execute_script("arguments[0].scrollIntoView();", div)
            while (
                not driver.execute_script(
                    "return arguments[0].querySelectorAll('.main-svg').length > 0", div
                )
                and time.monotonic() < deadline
            ):
                time.sleep(0.02)
        all_drawn_s = time.monotonic() - started
        figures: list[dict[str, Any]] = driver.execute_script(FIGURES_JS)
        console = list(driver.get_log("browser"))  # type: ignore[no-untyped-call]
        rendered = Rendered(round(load_s, 3), round(all_drawn_s, 3), figures, console)
        if screenshot_dir is not None:
            screenshot_dir.mkdir(parents=True, exist_ok=True)
            driver.execute_script("window.scrollTo(0, 0);")
            top = screenshot_dir / "report.png"
            driver.save_screenshot(str(top))
            rendered.screenshots.append(top)
            for section in driver.find_elements("css selector", ".scenario"):
                path = screenshot_dir / f"{section.get_attribute('id')}.png"
                driver.execute_script("arguments[0].scrollIntoView();", section)
                section.screenshot(str(path))
                rendered.screenshots.append(path)
        return rendered
    finally:
        driver.quit()
