"""Browser UI latency: the time from a label submit to the next item on screen (prefetch hit), and
the data browser's items-table page time on a project of 100,000 items.

A fresh SQLite database (in a temporary data dir) gets two projects, written directly with Core
(this measures reading, not importing):

* ``big``: ``--items`` items, 4 classes; 2% labeled by humans, 30% auto-labeled, 0.5% skipped, the
  rest unlabeled; a model version whose predictions cover every item no human labeled;
* ``labeling``: ``--labels`` + 200 short unlabeled items for the labeling screen.

Then a real ``labella serve`` runs on that data dir and Debian's Chromium (headless, Playwright)
drives the pages:

1. **Submit → next item** on the labeling screen: ``--labels`` times a class key and Enter (real
   key events). Measured in the page from the Enter keydown's timestamp to the frame after the next
   item's text is in the DOM; each swap is also counted as a prefetch hit (drawn from the local
   queue) or a miss (it had to wait for the server). Baseline, same run, same server: a screen
   without prefetch, i.e. after Enter it POSTs the label and GETs ``/next?n=1`` before drawing
   (run from the same page with fetch).
2. **Items-table page** at 100,000 items: for each filter, the first page and a page 90% of the way
   through (``after_id``), by HTTP (what the browser waits for) and in-process
   (``browse.list_items``), against a baseline in the same process on the same database: the
   filters as one query over the joined rows, paged with ``OFFSET``, with an exact ``COUNT(*)``.
   Plus the browser's own time from "Next page" to the new rows on screen.

    python benchmarks/ui_latency.py --items 100000 --labels 100
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sqlalchemy import Select, and_, exists, func, insert, select
from sqlalchemy.orm import aliased

from labella.config import Settings
from labella.services import browse
from labella.services import projects as project_service
from labella.storage.db import Database
from labella.storage.migrate import upgrade_database
from labella.storage.models import (
    Item,
    Label,
    LabelValue,
    ModelVersion,
    Prediction,
    utcnow,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
CLASSES = ("business", "politics", "sport", "tech")
PAGE_TARGET_MS = 100.0
SENTENCE = (
    "market shares rose after the bank said growth would slow while the minister promised new "
    "rules for energy prices and the club signed a striker before the final as the phone maker "
    "launched a faster chip and voters went to the polls in a tight race"
)
WORDS = SENTENCE.split(" ")
CHUNK = 5000


# -- data -----------------------------------------------------------------------------------------
def _texts(rng: np.random.Generator, n: int, prefix: str) -> list[str]:
    lengths = rng.integers(8, 40, size=n)
    picks = rng.integers(0, len(WORDS), size=int(lengths.sum()))
    texts, at = [], 0
    for i, length in enumerate(lengths):
        texts.append(f"{prefix} {i}: " + " ".join(WORDS[j] for j in picks[at : at + length]))
        at += length
    return texts


def _insert(db: Database, table: Any, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), CHUNK):
        with db.transaction() as session:
            session.execute(insert(table), rows[start : start + CHUNK])


def build_big_project(db: Database, *, n_items: int, seed: int) -> int:
    rng = np.random.default_rng(seed)
    project = project_service.create_project(
        db,
        project_service.ProjectSpec(
            name="big", classes=[project_service.ClassSpec(name=c) for c in CLASSES]
        ),
    )
    class_ids = [c.id for c in sorted(project.classes, key=lambda c: c.position)]
    texts = _texts(rng, n_items, "big")
    with db.transaction() as session:
        first_id = int(session.scalar(select(func.coalesce(func.max(Item.id), 0))) or 0) + 1
        model = ModelVersion(
            project_id=project.id,
            version=1,
            head="linear",
            encoder="bench",
            n_labels=int(n_items * 0.02),
            metrics={"class_ids": class_ids, "accuracy": 0.8},
            artifact_path="bench",
        )
        session.add(model)
        session.flush()
        model_id = model.id
    ids = np.arange(first_id, first_id + n_items)
    # statuses: 2% human, 30% auto, 0.5% skipped, the rest unlabeled, spread over the table
    draw = rng.random(n_items)
    status = np.where(
        draw < 0.02,
        "labeled",
        np.where(draw < 0.32, "auto", np.where(draw < 0.325, "skipped", "unlabeled")),
    )
    probs = rng.dirichlet(np.full(len(CLASSES), 0.6), size=n_items)
    predicted = probs.argmax(axis=1)
    confidence = probs.max(axis=1)
    now = utcnow()
    _insert(
        db,
        Item,
        [
            {
                "id": int(ids[i]),
                "project_id": project.id,
                "text": texts[i],
                "external_id": f"big-{i}",
                "content_hash": f"big-{i}",
                "status": str(status[i]),
                "random_key": float(rng.random()),
                "embedded": True,
            }
            for i in range(n_items)
        ],
    )
    labels, values, predictions = [], [], []
    label_id = 0
    with db.reader() as session:
        label_id = int(session.scalar(select(func.coalesce(func.max(Label.id), 0))) or 0)
    for i in range(n_items):
        kind = status[i]
        if kind != "labeled":
            predictions.append(
                {
                    "item_id": int(ids[i]),
                    "project_id": project.id,
                    "model_version_id": model_id,
                    "probs": [round(float(p), 4) for p in probs[i]],
                    "predicted": [class_ids[int(predicted[i])]],
                    "confidence": float(confidence[i]),
                }
            )
        if kind == "unlabeled":
            continue
        label_id += 1
        human = kind != "auto"
        labels.append(
            {
                "id": label_id,
                "project_id": project.id,
                "item_id": int(ids[i]),
                "source": "human" if human else "model",
                "skipped": kind == "skipped",
                "annotator": "alice" if human else None,
                "model_version_id": None if human else model_id,
                "confidence": None if human else float(confidence[i]),
                "is_current": True,
                "created_at": now - timedelta(seconds=n_items - i),
            }
        )
        if kind != "skipped":
            cls = class_ids[int(rng.integers(len(CLASSES)))] if human else class_ids[predicted[i]]
            values.append({"label_id": label_id, "class_id": cls})
    _insert(db, Label, labels)
    _insert(db, LabelValue, values)
    _insert(db, Prediction, predictions)
    return project.id


def build_labeling_project(db: Database, *, n_items: int, seed: int) -> int:
    rng = np.random.default_rng(seed + 1)
    project = project_service.create_project(
        db,
        project_service.ProjectSpec(
            name="labeling",
            classes=[project_service.ClassSpec(name=c) for c in CLASSES],
            retrain_every=1_000_000,  # no training in the middle of the measurement
        ),
    )
    texts = _texts(rng, n_items, "label me")
    _insert(
        db,
        Item,
        [
            {
                "project_id": project.id,
                "text": text,
                "content_hash": f"label-{i}",
                "status": "unlabeled",
                "random_key": float(rng.random()),
                "embedded": False,
            }
            for i, text in enumerate(texts)
        ],
    )
    return project.id


# -- statistics -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stats:
    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p95(self) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]

    @property
    def worst(self) -> float:
        return max(self.samples)

    def brief(self) -> str:
        return f"median {self.median:7.2f} ms, p95 {self.p95:7.2f} ms, max {self.worst:7.2f} ms"


def timed(fn: Callable[[], Any], repeats: int) -> Stats:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return Stats(samples)


# -- items table ----------------------------------------------------------------------------------
SCENARIOS: list[tuple[str, dict[str, Any]]] = [
    ("no filter", {}),
    ("status=unlabeled", {"status": "unlabeled"}),
    ("status=auto", {"status": "auto"}),
    ("source=human (2%)", {"source": "human"}),
    ("label=sport", {"label": "sport"}),
    ("confidence >= 0.9", {"min_confidence": 0.9}),
    ("confidence 0.30-0.32", {"min_confidence": 0.30, "max_confidence": 0.32}),
    ("label+human+conf (none)", {"label": "tech", "source": "human", "max_confidence": 0.5}),
]


def deep_after_id(db: Database, pid: int) -> int:
    """The id 90% of the way through the project's items."""
    with db.reader() as session:
        low, high = session.execute(
            select(func.min(Item.id), func.max(Item.id)).where(Item.project_id == pid)
        ).one()
    return int(low + 0.9 * (high - low))


def obvious_query(pid: int, flt: browse.ItemFilter) -> Select[Any]:
    """The filters as one query over the joined rows (the obvious SQL for an items table)."""
    current = aliased(Label)
    columns: list[Any] = [Item.id, Item.text, Item.status, current.source, Prediction.confidence]
    query: Select[Any] = (
        select(*columns)
        .outerjoin(current, and_(current.item_id == Item.id, current.is_current.is_(True)))
        .outerjoin(Prediction, Prediction.item_id == Item.id)
        .where(Item.project_id == pid)
    )
    statuses = browse._statuses(flt)
    if statuses is not None:
        query = query.where(Item.status.in_(statuses))
    if flt.label is not None:
        query = query.where(
            exists().where(LabelValue.label_id == current.id, LabelValue.class_id == flt.label)
        )
    if flt.min_confidence is not None:
        query = query.where(Prediction.confidence >= flt.min_confidence)
    if flt.max_confidence is not None:
        query = query.where(Prediction.confidence <= flt.max_confidence)
    return query


def offset_baseline(db: Database, pid: int, flt: browse.ItemFilter, offset: int) -> None:
    """The obvious query paged by OFFSET, with an exact COUNT(*)."""
    with db.reader() as session:
        query = obvious_query(pid, flt)
        session.execute(query.order_by(Item.id).offset(offset).limit(browse.DEFAULT_PAGE)).all()
        session.scalar(select(func.count()).select_from(query.subquery()))


def offset_of(db: Database, pid: int, flt: browse.ItemFilter, after_id: int) -> int:
    with db.reader() as session:
        query = obvious_query(pid, flt).where(Item.id <= after_id)
        return int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)


def bench_items_table(
    db: Database, server_url: str, pid: int, repeats: int
) -> list[dict[str, Any]]:
    with db.reader() as session:
        from labella.storage import repositories as repo

        project = repo.get_project(session, pid)
    deep = deep_after_id(db, pid)
    results = []
    with api_client(server_url) as http:
        for name, params in SCENARIOS:
            flt = browse.parse_filter(project, **params)
            for where, after in (("first page", None), ("at 90%", deep)):
                query = {**params, **({"after_id": after} if after is not None else {})}

                def over_http(query: dict[str, Any] = query) -> None:
                    response = http.get(f"/api/projects/{pid}/items", params=query)
                    response.raise_for_status()

                def in_process(flt: browse.ItemFilter = flt, after: int | None = after) -> None:
                    browse.list_items(db, pid, flt=flt, after_id=after)

                offset = 0 if after is None else offset_of(db, pid, flt, after)

                def baseline(flt: browse.ItemFilter = flt, offset: int = offset) -> None:
                    offset_baseline(db, pid, flt, offset)

                over_http()  # warm the connection and the page cache
                page = http.get(f"/api/projects/{pid}/items", params=query).json()
                results.append(
                    {
                        "scenario": name,
                        "page": where,
                        "rows": len(page["items"]),
                        "total": f"{page['total']:,}{'' if page['total_exact'] else '+'}",
                        "http": timed(over_http, repeats),
                        "service": timed(in_process, repeats),
                        "baseline": timed(baseline, repeats),
                    }
                )
    return results


# -- the browser ----------------------------------------------------------------------------------
INSTRUMENT = """
() => {
  window.__swaps = [];
  let start = null;
  const onKey = (e) => { if (e.key === "Enter") start = e.timeStamp; };
  document.addEventListener("keydown", onKey, true);
  const text = document.getElementById("item-text");
  new MutationObserver(() => {
    if (start === null) return;
    const began = start;
    start = null;
    const dom = performance.now();
    const source = document.body.dataset.lastSwap;
    requestAnimationFrame(() => setTimeout(() => {
      window.__swaps.push({ dom: dom - began, painted: performance.now() - began, source });
    }, 0));
  }).observe(text, { attributes: true, attributeFilter: ["data-item-id"] });
}
"""

# A labeling screen without prefetch: on submit, send the label, then fetch the next item, then
# draw it. Same page, same server, same annotator flow.
NO_PREFETCH = """
async ({ base, rounds, classId }) => {
  const box = document.createElement("p");
  document.body.append(box);
  const next = async () => {
    const r = await fetch(`${base}/next?n=1&annotator=no-prefetch`);
    return (await r.json()).items[0];
  };
  let item = await next();
  const samples = [];
  for (let i = 0; i < rounds && item; i++) {
    const began = performance.now();
    await fetch(`${base}/items/${item.item_id}/label`, {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        "X-CSRF-Token": document.querySelector('meta[name="csrf-token"]').content,
      },
      body: JSON.stringify({ classes: [classId] }),
    });
    item = await next();
    box.textContent = item ? item.text : "";
    await new Promise((done) => requestAnimationFrame(() => setTimeout(done, 0)));
    samples.push(performance.now() - began);
  }
  box.remove();
  return samples;
}
"""


def emulate_latency(page: Any, latency_ms: float) -> None:
    """Add a round-trip latency to every request of the page (Chrome DevTools protocol)."""
    if latency_ms <= 0:
        return
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": latency_ms, "downloadThroughput": -1, "uploadThroughput": -1},
    )


@dataclass(frozen=True)
class SwapResult:
    latency_ms: float
    painted: Stats  # prefetch hits: Enter → the next item painted
    in_dom: Stats  # prefetch hits: Enter → the next item in the DOM
    no_prefetch: Stats  # baseline: Enter → POST, GET, next item painted
    sources: dict[str, int]  # "prefetch" (hits) and "wait" (misses)


def bench_label_screen(
    browser: Any, server_url: str, pid: int, labels: int, latency_ms: float
) -> SwapResult:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    sign_in(page, server_url)
    emulate_latency(page, latency_ms)
    page.goto(f"{server_url}/projects/{pid}/label")
    page.wait_for_function("document.getElementById('item-text').dataset.itemId !== ''")
    page.wait_for_function("Number(document.getElementById('stat-queue').textContent) >= 5")
    page.evaluate(INSTRUMENT)
    for k in range(labels):
        page.keyboard.press(str(1 + k % len(CLASSES)))
        page.keyboard.press("Enter")
        page.wait_for_function(f"window.__swaps.length >= {k + 1}", timeout=30_000)
        # an annotator reads before the next key: a short pause, as reading would give
        page.wait_for_timeout(150)
    swaps = page.evaluate("window.__swaps")
    page.wait_for_function(
        "document.getElementById('conn').dataset.pending === '0'", timeout=60_000
    )
    sources: dict[str, int] = {}
    for swap in swaps:
        sources[swap["source"]] = sources.get(swap["source"], 0) + 1
    hits = [s for s in swaps if s["source"] == "prefetch"]
    with api_client(server_url) as http:
        class_id = http.get(f"/api/projects/{pid}").json()["classes"][0]["id"]
    baseline = page.evaluate(
        NO_PREFETCH, {"base": f"/api/projects/{pid}", "rounds": labels, "classId": class_id}
    )
    context.close()
    return SwapResult(
        latency_ms=latency_ms,
        painted=Stats([s["painted"] for s in hits]),
        in_dom=Stats([s["dom"] for s in hits]),
        no_prefetch=Stats(baseline),
        sources=sources,
    )


PAGE_INSTRUMENT = """
() => {
  window.__pages = [];
  let start = null;
  const onKey = (e) => { if (e.key === "Enter") start = e.timeStamp; };
  document.getElementById("next-page").addEventListener("keydown", onKey, true);
  new MutationObserver(() => {
    if (start === null) return;
    const began = start;
    start = null;
    requestAnimationFrame(() => setTimeout(() => {
      window.__pages.push(performance.now() - began);
    }, 0));
  }).observe(document.getElementById("summary"), {
    childList: true, characterData: true, subtree: true,
  });
}
"""


def bench_table_in_browser(page: Any, server_url: str, pid: int, pages: int) -> Stats:
    """Keyboard on "Next →": from the Enter keydown to the frame after the new rows are drawn."""
    page.goto(f"{server_url}/projects/{pid}/items")
    page.locator("#summary").filter(has_text="Items 1–").wait_for()
    page.evaluate(PAGE_INSTRUMENT)
    page.locator("#next-page").focus()
    for k in range(pages):
        page.keyboard.press("Enter")
        page.wait_for_function(f"window.__pages.length >= {k + 1}", timeout=30_000)
    first = (pages * browse.DEFAULT_PAGE) + 1
    page.locator("#summary").filter(has_text=f"Items {first:,}–").wait_for()
    return Stats(page.evaluate("window.__pages"))


# -- the server -----------------------------------------------------------------------------------
# The server's first start creates this site owner; requests sign in as them.
OWNER = "bench"
OWNER_PASSWORD = "ui latency benchmark password"


def sign_in(page: Any, server_url: str) -> None:
    """Sign the page's browser context in (its session cookie)."""
    response = page.context.request.post(
        f"{server_url}/api/auth/login", data={"username": OWNER, "password": OWNER_PASSWORD}
    )
    assert response.status == 200, response.text()


def api_client(server_url: str) -> httpx.Client:
    """An HTTP client signed in as the owner (a fresh session, whose CSRF token it sends)."""
    http = httpx.Client(base_url=server_url, timeout=60)
    signed_in = http.post("/api/auth/login", json={"username": OWNER, "password": OWNER_PASSWORD})
    signed_in.raise_for_status()
    http.headers["X-CSRF-Token"] = signed_in.json()["csrf_token"]
    return http


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve(data_dir: Path) -> Iterator[str]:
    port = _free_port()
    script = Path(sys.executable).with_name("labella")
    command = [str(script)] if script.exists() else [shutil.which("labella") or "labella"]
    env = {
        **os.environ,
        "LABELLA_DATA_DIR": str(data_dir),
        "HF_HUB_OFFLINE": "1",
        "LABELLA_OWNER_USERNAME": OWNER,
        "LABELLA_OWNER_PASSWORD": OWNER_PASSWORD,
    }
    env.pop("LABELLA_DATABASE_URL", None)
    log = (data_dir / "server.log").open("wb")
    process = subprocess.Popen(
        [*command, "serve", "--host", "127.0.0.1", "--port", str(port), "--no-worker"],
        cwd=data_dir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise RuntimeError((data_dir / "server.log").read_text()[-3000:])
            try:
                if httpx.get(f"{url}/login", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


# -- main -----------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--labels", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--latency-ms",
        type=float,
        nargs="*",
        default=[0.0, 50.0],
        help="round-trip latencies to emulate for the labeling screen (one run each)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    print(
        f"# UI latency: {platform.platform()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory(prefix="labella-ui-bench-") as tmp:
        data_dir = Path(tmp)
        settings = Settings(data_dir=data_dir, _env_file=None)  # type: ignore[call-arg]
        settings.ensure_dirs()
        db = Database.from_settings(settings)
        upgrade_database(db.engine)
        started = time.perf_counter()
        big = build_big_project(db, n_items=args.items, seed=args.seed)
        # each run labels `labels` items on the screen and as many in the baseline
        small_items = 2 * args.labels * len(args.latency_ms) + 100
        small = build_labeling_project(db, n_items=small_items, seed=args.seed)
        seconds = time.perf_counter() - started
        print(f"built {args.items:,} + {small_items} items in {seconds:.1f} s (SQLite)")
        with serve(data_dir) as url:
            table = bench_items_table(db, url, big, args.repeats)
            with chromium() as browser:
                swaps = [
                    bench_label_screen(browser, url, small, args.labels, latency)
                    for latency in args.latency_ms
                ]
                page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
                sign_in(page, url)
                browser_pages = bench_table_in_browser(page, url, big, 10)
        db.dispose()
    report(args, table, swaps, browser_pages)


def report(
    args: argparse.Namespace,
    table: list[dict[str, Any]],
    swaps: list[SwapResult],
    browser_pages: Stats,
) -> None:
    print()
    print(f"## Label submit → next item on screen ({args.labels} labels a run, real key events)")
    print(
        "| network latency | prefetch hits | misses | next item in DOM | painted | "
        "no prefetch (POST, GET, paint) | speed-up |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for run in swaps:
        print(
            f"| {run.latency_ms:.0f} ms | {run.sources.get('prefetch', 0)} | "
            f"{run.sources.get('wait', 0)} | {run.in_dom.median:.1f} ms | "
            f"{run.painted.median:.1f} ms (p95 {run.painted.p95:.1f}) | "
            f"{run.no_prefetch.median:.1f} ms (p95 {run.no_prefetch.p95:.1f}) | "
            f"{run.no_prefetch.median / run.painted.median:.1f}x |"
        )
    print()
    print(
        f"## Items table at {args.items:,} items, {browse.DEFAULT_PAGE} rows a page "
        f"(median of {args.repeats}, ms)"
    )
    print("| filter | page | rows | total | HTTP | in-process | OFFSET + COUNT | speed-up |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for row in table:
        ours, base = row["service"].median, row["baseline"].median
        print(
            f"| {row['scenario']} | {row['page']} | {row['rows']} | {row['total']} | "
            f"{row['http'].median:.1f} | {ours:.1f} | {base:.1f} | {base / ours:.1f}x |"
        )
    worst = max(row["http"].median for row in table)
    verdict = "under" if worst < PAGE_TARGET_MS else "OVER"
    print(
        f"slowest page by HTTP (median): {worst:.1f} ms, {verdict} the {PAGE_TARGET_MS:.0f} ms goal"
    )
    print(f"in the browser, Enter on Next → the new rows painted: {browser_pages.brief()}")


if __name__ == "__main__":
    main()
