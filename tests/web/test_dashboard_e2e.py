"""The dashboard page end to end: a real headless Chromium (Debian's, driven by Playwright; no
browser is downloaded) against a server on a simulated, processed project (fixtures in
``tests/web/conftest.py``).

Screenshots go to ``$CRYOWARP_TEST_ARTEFACTS`` (default ``<repo>/test-artefacts/dashboard/``).
The browser is Debian's ``chromium`` (or ``chromium-browser``, or ``$CRYOWARP_CHROMIUM``); the
module is skipped when it or the ``playwright`` package is missing. API: docs/dashboard_api.md.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cryowarp.pipeline.export import project_sources
from cryowarp.pipeline.project import SETTINGS_FILE, open_project
from cryowarp.preprocess.export.filters import apply_filters

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed (pip install playwright)"
)

pytestmark = pytest.mark.slow

_REPO = Path(__file__).resolve().parents[2]
_CHROMIUM = (
    os.environ.get("CRYOWARP_CHROMIUM")
    or shutil.which("chromium")
    or shutil.which("chromium-browser")
)
if not _CHROMIUM:
    pytest.skip(
        "no Chromium found (install Debian's chromium or set CRYOWARP_CHROMIUM); "
        "the tests never download a browser",
        allow_module_level=True,
    )

_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
_TIMEOUT_MS = 20_000


def _artefacts() -> Path:
    folder = Path(os.environ.get("CRYOWARP_TEST_ARTEFACTS", _REPO / "test-artefacts" / "dashboard"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=_CHROMIUM, args=_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page (1500 × 950 CSS px) whose script errors fail the test."""
    context = browser.new_context(viewport={"width": 1500, "height": 950})
    new_page = context.new_page()
    errors: list[str] = []
    new_page.on("pageerror", lambda error: errors.append(str(error)))
    new_page.set_default_timeout(_TIMEOUT_MS)
    yield new_page
    context.close()
    assert not errors, f"script errors on the page: {errors}"


def _api(base: str, path: str) -> Any:
    with urllib.request.urlopen(base + path, timeout=30) as answer:
        return json.loads(answer.read())


def _open(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_function("document.body.dataset.ready === '1'")


def _open_item(page: Any, base: str, name: str) -> None:
    page.goto(f"{base}#/item/{name}")
    page.wait_for_function(f"document.body.dataset.itemReady === {json.dumps(name)}")


def _filters(folder: Path) -> dict[str, Any]:
    filters: dict[str, Any] = json.loads((folder / SETTINGS_FILE).read_text())["filters"]
    return filters


def _wait_until(check: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _count(page: Any, selector: str) -> int:
    return int(page.inner_text(selector))


def test_overview_shows_every_item_and_one_plot_per_metric(
    processed_project: Any, dashboard_server: Callable[..., str], page: Any
) -> None:
    folder = processed_project.folder
    base = dashboard_server(folder)
    _open(page, base)
    overview = _api(base, "api/overview")
    n_records = len(list((folder / "items").glob("*.json")))
    assert n_records >= 3
    assert _count(page, "#item-count") == n_records == len(overview["items"]["name"])
    assert _count(page, "#count-done") == overview["counts"]["done"]
    assert _count(page, "#count-selected") == overview["counts"]["accepted"]
    assert page.evaluate("document.body.dataset.version") == overview["version"]
    plots = page.locator(".metric-plot")
    assert plots.count() == 6
    keys = [plots.nth(i).get_attribute("data-metric") for i in range(6)]
    assert keys == [m["key"] for m in overview["metrics"]]
    # titles carry the units; the defocus plot has both handles, astigmatism only a maximum
    assert page.inner_text(".metric-plot[data-metric=defocus_um] .plot-title") == "Defocus (µm)"
    assert page.locator(".metric-plot[data-metric=defocus_um] .handle-min").count() == 1
    assert page.locator(".metric-plot[data-metric=astigmatism_um] .handle-min").count() == 0
    assert page.locator(".metric-plot[data-metric=astigmatism_um] .handle-max").count() == 1
    assert page.locator("#recent-items tbody tr").count() == n_records
    page.screenshot(path=str(_artefacts() / "overview.png"), full_page=True)

    # hovering a point names the item and its value; clicking it opens the item view
    name, value = overview["items"]["name"][1], overview["items"]["ctf_resolution_a"][1]
    point = page.evaluate(
        "document.querySelector('.metric-plot[data-metric=ctf_resolution_a]').pointPosition(1)"
    )
    page.mouse.move(point["x"], point["y"])
    page.wait_for_selector("#tooltip:not([hidden])")
    tip = page.inner_text("#tooltip")
    assert name in tip
    assert f"CTF resolution: {value:.2f}" in tip or f"CTF resolution: {value:.3f}" in tip
    page.mouse.click(point["x"], point["y"])
    page.wait_for_function(f"document.body.dataset.itemReady === {json.dumps(name)}")
    assert page.evaluate("location.hash") == f"#/item/{name}"


def test_page_helpers_preview_counts_and_interpolate(
    processed_project: Any, dashboard_server: Callable[..., str], page: Any
) -> None:
    """The preview count while dragging (tightening and loosening a range, manual choices)
    and the bilinear local-defocus map, run in the page's own modules."""
    base = dashboard_server(processed_project.folder)
    page.goto(base)
    results = page.evaluate(
        """async () => {
            const { previewCount } = await import('./static/overview.js');
            const { bilinear } = await import('./static/overlay.js');
            const data = {
                metrics: [
                    {key: 'defocus_um', min_key: 'defocus_min_um', max_key: 'defocus_max_um'},
                    {key: 'particles', min_key: 'particles_min', max_key: 'particles_max'},
                ],
                filters: {defocus_min_um: null, defocus_max_um: 2.0, particles_min: 10},
                items: {
                    name: ['a', 'b', 'c', 'd', 'e', 'f'],
                    state: ['done', 'done', 'done', 'done', 'done', 'failed'],
                    defocus_um: [1.0, 1.9, 2.5, 2.6, 3.0, null],
                    particles: [50, 50, 50, 5, 50, null],
                    accepted: [true, true, false, false, true, false],
                    selection: ['auto', 'auto', 'auto', 'auto', 'include', 'auto'],
                },
            };
            const grid = [[1, 2], [3, 5]];
            return {
                unchanged: previewCount(data, 'defocus_um', null, 2.0),
                tighter: previewCount(data, 'defocus_um', null, 1.5),
                looser: previewCount(data, 'defocus_um', null, 2.55),
                loosest: previewCount(data, 'defocus_um', null, 9),
                withMin: previewCount(data, 'defocus_um', 1.5, 9),
                corners: [bilinear(grid, 0, 0), bilinear(grid, 1, 0), bilinear(grid, 0, 1),
                          bilinear(grid, 1, 1)],
                centre: bilinear(grid, 0.5, 0.5),
                edge: bilinear(grid, 0.25, 1),
            };
        }"""
    )
    # a, b pass; c is rejected only by the defocus maximum; d also by particles; e is forced in
    assert results["unchanged"] == 3
    assert results["tighter"] == 2  # a and e
    assert results["looser"] == 4  # c joins
    assert results["loosest"] == 4  # d stays out (particles 5 < 10)
    assert results["withMin"] == 3  # b, c and e
    assert results["corners"] == [1, 2, 3, 5]
    assert results["centre"] == pytest.approx(2.75)
    assert results["edge"] == pytest.approx(3.5)


def _drag_max_handle_until_count_drops(page: Any, metric: str) -> tuple[int, int]:
    """Drag the maximum of ``metric`` down until the live count drops; (before, preview)."""
    before = _count(page, "#count-selected")
    handle = page.locator(f".metric-plot[data-metric={metric}] .handle-max")
    box = handle.bounding_box()
    x, y = box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    preview = before
    for dy in range(1, 160):
        page.mouse.move(x, y + dy)
        preview = _count(page, "#count-selected")
        if preview < before:
            break
    page.mouse.up()
    return before, preview


def test_dragging_a_filter_range_changes_the_selection_and_is_saved(
    processed_project: Any, dashboard_server: Callable[..., str], page: Any, tmp_path: Path
) -> None:
    folder = processed_project.copy_to(tmp_path / "proj")
    base = dashboard_server(folder)
    _open(page, base)
    defocus = _api(base, "api/overview")["items"]["defocus_um"]
    before, preview = _drag_max_handle_until_count_drops(page, "defocus_um")
    assert preview < before, "dragging the maximum down to the data never selected fewer items"

    _wait_until(lambda: _filters(folder)["defocus_max_um"] is not None, "the saved filter")
    limit = _filters(folder)["defocus_max_um"]
    within = sum(v is not None and v <= limit for v in defocus)
    assert 0 < within < before
    page.wait_for_function(
        f"document.querySelector('#count-selected').textContent === '{within}' "
        "&& !document.querySelector('#count-selected').classList.contains('preview')"
    )
    assert preview == within  # the live preview was the server's answer
    assert page.locator(".metric-plot[data-metric=defocus_um] .handle-max.set").count() == 1
    page.screenshot(path=str(_artefacts() / "overview_filtered.png"), full_page=True)

    # still there after a reload, and what export decides
    handle_top = page.locator(".metric-plot[data-metric=defocus_um] .handle-max").bounding_box()
    page.reload()
    page.wait_for_function("document.body.dataset.ready === '1'")
    assert _count(page, "#count-selected") == within
    reloaded = page.locator(".metric-plot[data-metric=defocus_um] .handle-max.set")
    assert reloaded.count() == 1
    assert abs(reloaded.bounding_box()["y"] - handle_top["y"]) < 2
    assert page.inner_text(".metric-plot[data-metric=defocus_um] .range-text").startswith("≤")
    project = open_project(folder)
    assert project.settings.filters.defocus_max_um == limit
    decisions = apply_filters(project_sources(project).sources, project.settings.filters)
    assert sum(d.accepted for d in decisions) == within

    # × clears the range again
    page.click(".metric-plot[data-metric=defocus_um] .clear-range")
    _wait_until(lambda: _filters(folder)["defocus_max_um"] is None, "the cleared filter")
    page.wait_for_function(f"document.querySelector('#count-selected').textContent === '{before}'")


def _pixels_drawn(page: Any, selector: str) -> int:
    return int(
        page.evaluate(
            """(selector) => {
                const canvas = document.querySelector(selector);
                const data = canvas.getContext('2d')
                    .getImageData(0, 0, canvas.width, canvas.height).data;
                let n = 0;
                for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
                return n;
            }""",
            selector,
        )
    )


def _picks_threshold_that_changes_the_count(base: str, name: str, default: float) -> float:
    n_default = _api(base, f"api/items/{name}/picks?threshold={default:.2f}")["n_picks"]
    for t in (0.1, 0.2, 0.3, 0.7, 0.8, 0.9):
        if _api(base, f"api/items/{name}/picks?threshold={t:.2f}")["n_picks"] != n_default:
            return t
    raise AssertionError(f"the picks of {name} are the same at every threshold")


def test_item_view_shows_spectrum_picks_and_takes_keys(
    processed_project: Any, dashboard_server: Callable[..., str], page: Any, tmp_path: Path
) -> None:
    folder = processed_project.copy_to(tmp_path / "proj")
    base = dashboard_server(folder)
    names = _api(base, "api/overview")["items"]["name"]
    name = names[0]
    _open_item(page, base, name)
    assert page.inner_text("#item-name") == name

    page.wait_for_function("document.querySelector('#spectrum-image').complete")
    assert page.evaluate("document.querySelector('#spectrum-image').naturalWidth") > 0
    spectrum = _api(base, f"api/items/{name}/spectrum")
    plot = page.locator("#spectrum-plot")
    assert int(plot.get_attribute("data-n-points")) == len(spectrum["frequencies_per_a"]) > 10
    assert _pixels_drawn(page, "#spectrum-plot") > 2000

    default = _api(base, "api/overview")["picking"]["threshold"]
    assert float(page.input_value("#pick-threshold")) == pytest.approx(default)
    expected = _api(base, f"api/items/{name}/picks?threshold={default:.2f}")["n_picks"]
    overlay = page.locator("#micrograph-overlay")
    assert int(overlay.get_attribute("data-n-picks")) == expected > 0
    assert _count(page, "#pick-count") == expected
    assert _pixels_drawn(page, "#micrograph-overlay") > 0

    # another threshold: the overlay draws what the API gives at that threshold
    other = _picks_threshold_that_changes_the_count(base, name, default)
    n_other = _api(base, f"api/items/{name}/picks?threshold={other:.2f}")["n_picks"]
    page.evaluate(
        """(t) => { const s = document.querySelector('#pick-threshold');
                    s.value = String(t); s.dispatchEvent(new Event('input')); }""",
        other,
    )
    page.wait_for_function(
        f"document.querySelector('#micrograph-overlay').dataset.nPicks === '{n_other}'"
    )
    assert float(overlay.get_attribute("data-threshold")) == pytest.approx(other)
    assert _count(page, "#pick-count") == n_other != expected

    # images: the average with every overlay, then the denoised view
    page.keyboard.press("f")  # local defocus on
    assert page.is_checked("#show-defocus")
    for _ in range(3):
        if page.get_attribute("#image-kind", "data-value") == "average":
            break
        page.keyboard.press("d")
    assert page.get_attribute("#image-kind", "data-value") == "average"
    page.wait_for_function(
        "(() => { const i = document.querySelector('#micrograph-image');"
        " return i.complete && i.naturalWidth > 0 && i.src.endsWith('/image/average'); })()"
    )
    page.screenshot(path=str(_artefacts() / "item_view.png"), full_page=True)
    page.keyboard.press("f")
    for _ in range(3):
        if page.get_attribute("#image-kind", "data-value") == "denoised":
            break
        page.keyboard.press("d")
    assert page.get_attribute("#image-kind", "data-value") == "denoised"
    page.wait_for_function(
        "(() => { const i = document.querySelector('#micrograph-image');"
        " return i.complete && i.naturalWidth > 0 && i.src.endsWith('/image/denoised'); })()"
    )
    page.screenshot(path=str(_artefacts() / "item_denoised.png"), full_page=True)

    # keyboard: next item, exclude it, back to auto
    page.keyboard.press("ArrowRight")
    page.wait_for_function(f"document.body.dataset.itemReady === {json.dumps(names[1])}")
    assert page.inner_text("#item-name") == names[1]
    assert page.evaluate("location.hash") == f"#/item/{names[1]}"
    page.keyboard.press("x")
    _wait_until(lambda: names[1] in _filters(folder)["exclude"], "the exclusion to be saved")
    page.wait_for_function("document.querySelector('#item-selection').textContent === 'exclude'")
    assert _api(base, f"api/items/{names[1]}")["accepted"] is False
    page.keyboard.press("a")
    _wait_until(lambda: names[1] not in _filters(folder)["exclude"], "the exclusion to be undone")
    page.wait_for_function("document.querySelector('#item-selection').textContent === 'auto'")
    page.keyboard.press("ArrowLeft")
    page.wait_for_function(f"document.body.dataset.itemReady === {json.dumps(name)}")
    page.keyboard.press("Escape")
    page.wait_for_function("document.body.dataset.view === 'overview'")


def test_a_token_in_the_url_opens_the_page_and_its_requests(
    processed_project: Any, dashboard_server: Callable[..., str], page: Any
) -> None:
    folder = processed_project.folder
    base = dashboard_server(folder, token="s3cret-token")
    with pytest.raises(urllib.error.HTTPError, match="401"):
        _api(base, "api/overview")
    _open(page, f"{base}?token=s3cret-token")  # the assets and the API go by the cookie
    assert _count(page, "#item-count") == len(list((folder / "items").glob("*.json")))
    assert page.inner_text("#status-line") == ""


def test_unknown_item_shows_the_server_error(
    processed_project: Any, dashboard_server: Callable[..., str], page: Any
) -> None:
    base = dashboard_server(processed_project.folder)
    _open_item(page, base, "no_such_item")
    status = page.inner_text("#status-line")
    assert "404" in status
    assert "no_such_item" in status
    assert page.inner_text("#item-name") == "no_such_item"


def _synthetic_overview(
    template: dict[str, Any], filters: dict[str, Any], n: int
) -> dict[str, Any]:
    """An overview answer of ``n`` made-up items (every 40th failed, one in 500 included or
    excluded by hand) decided by ``filters`` as the server would: done, not excluded, and
    forced in or within the defocus range."""
    rng = random.Random(5)
    names = [f"item_{i:05d}" for i in range(n)]
    done = [i % 40 != 7 for i in range(n)]
    selection = [
        "include" if i % 500 == 3 else "exclude" if i % 500 == 4 else "auto" for i in range(n)
    ]
    columns: dict[str, list[Any]] = {
        "name": names,
        "state": ["done" if d else "failed" for d in done],
    }
    columns["acquired_at"] = [1.7e9 + 30.0 * i for i in range(n)]
    spans = {
        "defocus_um": (0.5, 3.0),
        "astigmatism_um": (0.0, 0.2),
        "ctf_resolution_a": (3, 9),
        "early_motion_a_per_frame": (0.5, 6),
        "particles": (0, 300),
        "masked_fraction": (0, 0.3),
    }
    for key, (lo, hi) in spans.items():
        values = [round(rng.uniform(lo, hi), 4) for _ in range(n)]
        if key == "particles":
            values = [round(v) for v in values]
        columns[key] = [v if d else None for v, d in zip(values, done, strict=True)]
    top = filters.get("defocus_max_um")
    columns["accepted"] = [
        d and s != "exclude" and (s == "include" or top is None or v <= top)
        for d, s, v in zip(done, selection, columns["defocus_um"], strict=True)
    ]
    columns["selection"] = selection
    columns["reason"] = [None if a else "rejected" for a in columns["accepted"]]
    n_done, n_accepted = sum(done), sum(columns["accepted"])
    return {
        **template,
        "version": f"synthetic-{top}",
        "items": columns,
        "filters": {**template["filters"], **filters},
        "counts": {
            "items": n,
            "done": n_done,
            "failed": n - n_done,
            "pending": 0,
            "accepted": n_accepted,
            "filtered": n_done - n_accepted,
            "excluded_manually": selection.count("exclude"),
            "exported": None,
        },
    }


def test_overview_of_5000_items_stays_responsive(
    processed_project: Any, dashboard_server: Callable[..., str], page: Any
) -> None:
    base = dashboard_server(processed_project.folder)
    template = _api(base, "api/overview")
    n = 5000
    filters: dict[str, Any] = {}
    puts: list[dict[str, Any]] = []

    def overview(route: Any) -> None:
        document = _synthetic_overview(template, filters, n)
        if f"since={document['version']}" in route.request.url:
            document = {"version": document["version"], "unchanged": True}
        route.fulfill(status=200, content_type="application/json", body=json.dumps(document))

    def put_filters(route: Any) -> None:
        body = json.loads(route.request.post_data)
        puts.append(body)
        filters.update(body)
        answer = {"filters": {**template["filters"], **filters}, "version": "x"}
        route.fulfill(status=200, content_type="application/json", body=json.dumps(answer))

    page.route("**/api/overview*", overview)
    page.route("**/api/filters", put_filters)
    started = time.monotonic()
    _open(page, base)
    assert time.monotonic() - started < 15
    assert _count(page, "#item-count") == n
    assert page.locator("#recent-items tbody tr").count() == 50
    assert page.inner_text("#recent-items tbody tr:first-child .name") == f"item_{n - 1:05d}"
    draw_ms = page.evaluate(
        "[...document.querySelectorAll('.metric-plot')].map(p => Number(p.dataset.drawMs))"
    )
    assert len(draw_ms) == 6
    assert max(draw_ms) < 150, draw_ms  # about 5 ms on a laptop

    # drag the defocus maximum into the data: the live count is the server's decision
    handle = page.locator(".metric-plot[data-metric=defocus_um] .handle-max")
    box = handle.bounding_box()
    x, y = box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    for dy in range(0, 60, 4):
        page.mouse.move(x, y + dy)
    preview = _count(page, "#count-selected")
    drag_ms = float(page.get_attribute(".metric-plot[data-metric=defocus_um]", "data-draw-ms"))
    page.mouse.up()
    for _ in range(200):  # route handlers run while Playwright waits, not during sleep()
        if puts:
            break
        page.wait_for_timeout(50)
    assert list(puts[0]) == ["defocus_max_um"]
    expected = _synthetic_overview(template, puts[0], n)["counts"]["accepted"]
    assert 0 < expected < _synthetic_overview(template, {}, n)["counts"]["accepted"]
    assert preview == expected
    page.wait_for_function(
        f"document.querySelector('#count-selected').textContent === '{expected}' "
        "&& !document.querySelector('#count-selected').classList.contains('preview')"
    )
    assert drag_ms < 150
    page.screenshot(path=str(_artefacts() / "overview_5000.png"), full_page=True)


def test_a_new_item_appears_without_reload(
    processed_project: Any, dashboard_server: Callable[..., str], page: Any
) -> None:
    folder = processed_project.folder
    base = dashboard_server(folder)
    _open(page, base)
    before = _count(page, "#item-count")
    page.evaluate("window.__notReloaded = true")
    name = processed_project.process_new_item()
    page.wait_for_function(
        f"document.querySelector('#item-count').textContent === '{before + 1}'", timeout=30_000
    )
    row = f"#recent-items tr[data-name={json.dumps(name)}] .state"
    page.wait_for_function(
        f"document.querySelector({json.dumps(row)})?.textContent === 'done'", timeout=30_000
    )
    assert page.evaluate("window.__notReloaded") is True
    assert _count(page, "#item-count") == len(list((folder / "items").glob("*.json")))
    page.screenshot(path=str(_artefacts() / "overview_new_item.png"), full_page=True)
