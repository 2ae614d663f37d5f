"""A real report, opened in headless Chromium (Debian's package, driven by Playwright)."""

from __future__ import annotations

from digitlab import jobs
from digitlab.spec import mlp
from digitlab.train import TrainConfig


def test_every_image_of_a_report_loads_in_chromium(browser, mnist, tmp_path):
    run = tmp_path / "r"
    jobs.start(run, mlp([32], name="mlp-32"), "numpy", TrainConfig(epochs=2), limit=2000)
    jobs.evaluate_run(run)
    page = browser.new_page()
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto((run / "report.html").as_uri())
    page.wait_for_load_state("load")
    images = page.eval_on_selector_all(
        "img", "els => els.map(e => ({ok: e.complete && e.naturalWidth > 0, w: e.naturalWidth}))"
    )
    assert len(images) == 6 and all(i["ok"] for i in images), images
    assert page.title() == "mlp-32 on mnist"
    assert "accuracy" in page.inner_text("body")
    assert all(u.startswith(("file:", "data:")) for u in requests), requests  # nothing fetched
    page.close()
