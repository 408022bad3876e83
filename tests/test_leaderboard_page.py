"""The leaderboard page (index.html): its content from a small store, its escaping, and a real browser.

The browser test starts headless Chromium itself on the page written by ``write_report``, reads the DOM
after the page's script has run (the claims table, the figures, the sortable headers), clicks headers
through an injected script and saves a screenshot. It is skipped, saying why, where Chromium is absent.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from metarl_agents.leaderboard.claims import CLAIMS, Table
from metarl_agents.leaderboard.grid import RunSpec
from metarl_agents.leaderboard.html_page import CSP, SCRIPT, claims_section, inline_html
from metarl_agents.leaderboard.report import write_report
from metarl_agents.leaderboard.store import ResultStore

BUDGET, EVERY = 1_500_000, 500_000
SEEDS = (73, 20, 3)
# Paper configuration of T-LS: SplAgger far above AMRL far above RNN, on every seed.
FINALS = {"SplAgger": (15.9, 16.0, 15.95), "AMRL": (10.0, 10.1, 10.2), "RNN": (2.0, 2.1, 2.2)}
RNN_FAILS = "The plain RNN fails to learn T-LS within the budget (stays below 15.5 of the optimal 16)"
HIGHEST = "On T-LS, SplAgger has the highest return"  # needs CNP and PEARL-GRU too: not run
MACHINE = {"hostname": "page-box", "cpu": "Test CPU", "cpu_count": 2, "platform": "Linux-test"}
VERSIONS = {"metarl": "0.1.0", "torch": "2.13.0"}


def spec(agent: str, seed: int, frames: int = BUDGET, **extra) -> RunSpec:
    return RunSpec(env_id="MetaTMaze-v0", agent=agent, seed=seed, learning_rate=1e-3, frames=frames, paper_frames=BUDGET,
                   preset_name="MetaTMaze-v0", preset_hash="abc", eval_every=frames // 3, n_eval_tasks=16, **extra)


def add(store: ResultStore, run: RunSpec, finals: float) -> None:
    record = store.register_run(run.store_fields())
    store.mark_running(record.id, MACHINE, VERSIONS)
    points = {run.frames // 3: finals / 3, 2 * run.frames // 3: finals / 2, run.frames: finals}
    for i, (frames, value) in enumerate(points.items()):
        store.record_evaluation(record.id, frames, value, [value], 1.0, None, finished=i == len(points) - 1)


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    """index.html of a store with two groups: the paper's T-LS (claims) and a 10-cell T-maze demo run."""
    tmp = tmp_path_factory.mktemp("page")
    with ResultStore(tmp / "r.db") as store:
        for agent, finals in FINALS.items():
            for seed, final in zip(SEEDS, finals, strict=True):
                add(store, spec(agent, seed), final)
        for agent, final in (("SplAgger", 16.0), ("RNN", 2.0)):
            add(store, spec(agent, 2, frames=22_400, env_kwargs={"length": 10}), final)
    write_report(tmp / "r.db", tmp / "out")
    return tmp / "out" / "index.html"


class Dom(HTMLParser):
    """The few things the tests read from a page: tables (with their section), figures and attributes."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: list[dict] = []  # {"section": id, "header": [...], "rows": [[...]], "header_attrs": [...]}
        self.figures = 0
        self.svgs_in_figures = 0
        self.script_ready = True
        self._section = None
        self._cell: list[str] | None = None
        self._in_figure = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self._section = attrs.get("id")
        elif tag == "table":
            self.tables.append({"section": self._section, "header": [], "rows": [], "header_attrs": []})
        elif tag == "tr" and self.tables:
            self.tables[-1]["rows"].append([])
        elif tag in ("th", "td"):
            self._cell = []
            if tag == "th":
                self.tables[-1]["header_attrs"].append(attrs)
        elif tag == "figure":
            self.figures += 1
            self._in_figure = True
        elif tag == "svg" and self._in_figure:
            self.svgs_in_figures += 1

    def handle_endtag(self, tag):
        if tag in ("th", "td") and self._cell is not None:
            text = " ".join("".join(self._cell).split())
            table = self.tables[-1]
            (table["header"] if tag == "th" else table["rows"][-1]).append(text)
            self._cell = None
        elif tag == "figure":
            self._in_figure = False
        elif tag == "table":
            self.tables[-1]["rows"] = [row for row in self.tables[-1]["rows"] if row]

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def table(self, section: str, index: int = 0) -> dict:
        return [t for t in self.tables if t["section"] == section][index]


def claims_rows(dom: Dom) -> dict[str, dict[str, str]]:
    table = dom.table("claims")
    rows = [dict(zip(table["header"], row, strict=True)) for row in table["rows"]]
    return {row["claim"]: row for row in rows}


def test_page_holds_the_claims_tables_figures_and_provenance(page):
    text = page.read_text()
    dom = Dom(text)
    claims = claims_rows(dom)
    assert list(claims) == [claim.text for claim in CLAIMS]
    assert claims[RNN_FAILS]["verdict"] == "reproduced (68 %); holds at 95 %"
    assert claims[HIGHEST]["verdict"] == "not run"
    assert claims[RNN_FAILS]["plot"] == "plot"
    # each seed's mean over its last 3 evaluations (final / 3, final / 2, final): 2.1 * 11 / 18 on average
    assert claims[RNN_FAILS]["final statistic: mean [68 % CI; 95 % CI]"].startswith("RNN 1.283 [68 %: ")
    assert '<td class="verdict reproduced"><strong>reproduced</strong> (68 %); holds at 95 %</td>' in text
    assert 'href="#MetaTMaze-v0__frames1.5M-curves"' in text  # the claim's plot link stays on the page
    assert dom.figures == dom.svgs_in_figures == 2
    ranked = dom.table("group-MetaTMaze-v0__frames1.5M")
    assert ranked["header"][:4] == ["rank", "agent", "best lr", "final return"]
    assert [row[1] for row in ranked["rows"]] == ["SplAgger", "AMRL", "RNN"]
    assert ranked["rows"][0][3].startswith("15.950 [")  # the markdown report's numbers, to the digit:
    assert "| 1 | SplAgger | 0.001 | " + " | ".join(ranked["rows"][0][3:5]) in page.with_name("leaderboard.md").read_text()
    # the demo's group is named with its env kwargs, in the heading, the contents, the captions and the plot
    assert text.count("MetaTMaze-v0 (length=10) — 22.4k frames (REDUCED BUDGET; paper: 1.5M)") == 2
    assert "MetaTMaze-v0 (length=10), 22,400 frames per run" in text
    # budget, machine and versions right above every table (3 per group, and above the claims table)
    for table in re.findall(r"<h3[^>]*>[^<]*</h3>\s*<p class=\"caption\">(.*?)</p>\s*<table", text):
        assert "frames per run" in table and "page-box" in table and "torch 2.13.0" in table
    assert len(re.findall(r"<h3[^>]*>[^<]*</h3>\s*<p class=\"caption\">(.*?)</p>\s*<table", text)) == 6
    above_claims = text[text.index('<section id="claims">'):text.index("<table")]
    assert "Runs behind this table" in above_claims and "page-box" in above_claims


def test_titles_name_the_env_kwargs_of_the_group(page):
    """A run on a 10-cell T-maze is not the paper's T-maze: the markdown headings, captions and plot say so."""
    markdown = page.with_name("leaderboard.md").read_text()
    assert "## MetaTMaze-v0 (length=10) — 22.4k frames (REDUCED BUDGET; paper: 1.5M)" in markdown
    assert "_MetaTMaze-v0 (length=10), 22,400 frames per run" in markdown
    assert "![MetaTMaze-v0 (length=10) learning curves](MetaTMaze-v0__frames22.4k-REDUCED.png)" in markdown
    assert "## MetaTMaze-v0 — 1.5M frames" in markdown  # no kwargs: the id alone
    assert re.search(r"<text[^>]*>MetaTMaze-v0 \(length=10\), 22.4k frames</text>", page.read_text())


def test_page_loads_nothing_and_runs_only_its_own_script(page):
    text = page.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", text)
    assert "<link" not in text and "@import" not in text and "url(http" not in text
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in CSP and f'content="{CSP}"' in text
    assert text.count("<script>") == 1
    ids = re.findall(r'\bid="([^"]+)"', text)  # two inlined figures must not share clip paths or markers
    assert len(ids) == len(set(ids))


def test_hostile_store_values_are_escaped_in_the_page(tmp_path):
    hostile = RunSpec(env_id="MetaTMaze-v0", agent="<img src=x onerror=alert(1)>", seed=1, learning_rate=1e-3, frames=1000,
                      paper_frames=BUDGET, preset_name="p", preset_hash="abc", eval_every=250, n_eval_tasks=16,
                      env_kwargs={"k<script>": "`` ](http://evil) </code><b>"})
    with ResultStore(tmp_path / "r.db") as store:
        run = store.register_run(hostile.store_fields())
        store.mark_running(run.id, {"hostname": "h</li><script>x()</script>", "cpu": "[c](http://evil)"},
                           {"torch": '"><svg onload=alert(1)>'})
        for frames in (250, 500, 750, 1000):
            store.record_evaluation(run.id, frames, 1.0, [1.0], 1.0, None, finished=frames == 1000)
    write_report(tmp_path / "r.db", tmp_path / "out")
    text = (tmp_path / "out" / "index.html").read_text()
    assert "&lt;img src=x onerror=alert(1)&gt;" in text and "&lt;script&gt;x()&lt;/script&gt;" in text
    assert not re.search(r"<img|<script>x|<svg onload|<b>|href=\"http|k<script", text)
    assert text.count("<script>") == 1


def test_claims_tables_are_rendered_generically():
    """Columns the claims module adds (here a 95 % interval) come through; links out of the page do not."""
    table = Table("Paper claims", "Verdicts are *judged* on **intervals**.",
                  ("claim", "final return", "95 % CI", "p(improvement)", "figure"),
                  (("A beats B | strictly", "refuted at a reduced budget", "[1.0, 2.0]", "0.97", "../x/g1.png"),
                   ("C", "not run", "—", "—", "http://evil/g1.png.html")),
                  link_column="figure", emphasis_column="final return")
    page = claims_section([table], {"g1.png": "g1-curves"}, {"g1.png": "<b>G1 budget</b>"})
    dom = Dom(page)
    (table,) = dom.tables
    assert table["header"] == ["claim", "final return", "95 % CI", "p(improvement)", "figure"]
    assert table["rows"] == [["A beats B | strictly", "refuted at a reduced budget", "[1.0, 2.0]", "0.97", "plot"],
                             ["C", "not run", "—", "—", "plot"]]
    assert '<td class="verdict refuted"><strong>refuted</strong> at a reduced budget</td>' in page
    assert '<a href="#g1-curves">plot</a>' in page and "http://evil" not in page
    assert page.index("<b>G1 budget</b>") < page.index("<table")  # provenance of the linked plots first
    assert "<p>Verdicts are <em>judged</em> on <strong>intervals</strong>.</p>" in page


def test_inline_markdown_escapes_everything_but_its_own_markup():
    assert inline_html(r"a \<b\> \*x\* `` <i>`code`</i> `` **bold *em* too** <u>") == (
        "a &lt;b&gt; *x* <code>&lt;i&gt;`code`&lt;/i&gt;</code> <strong>bold <em>em</em> too</strong> &lt;u&gt;")
    assert inline_html("[text](javascript:alert(1))") == "text)"  # not a link: its text only
    assert inline_html("**REDUCED BUDGET** (paper: 1,500,000)") == "<strong>REDUCED BUDGET</strong> (paper: 1,500,000)"


# -- in a real browser -------------------------------------------------------------------------------

CHROMIUM = next((path for path in (os.environ.get("CHROMIUM"), shutil.which("chromium"),
                                   shutil.which("chromium-browser"), shutil.which("google-chrome")) if path), None)


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium with a throw-away profile; as root (CI containers) it needs --no-sandbox."""
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
               f"--user-data-dir={profile}", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


# Clicks "agent" in the first ranked table once (A→Z) and "final return" in the second once (low→high).
CLICKS = """
var tables = document.getElementById("group-MetaTMaze-v0__frames1.5M").querySelectorAll("table.sortable");
function header(table, name) {
  return Array.prototype.find.call(table.tHead.rows[0].cells, function (cell) { return cell.textContent === name; });
}
header(tables[0], "agent").click();
header(tables[1], "final return").click();
"""


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium; "
                                              "CI installs it); set CHROMIUM=/path/to/chromium to use another")
def test_page_in_headless_chromium(page, tmp_path):
    url = page.resolve().as_uri()
    dom_text = chromium(tmp_path / "profile", "--dump-dom", url).stdout
    dom = Dom(dom_text)
    claims = claims_rows(dom)
    assert list(claims) == [claim.text for claim in CLAIMS]
    assert claims[RNN_FAILS]["verdict"] == "reproduced (68 %); holds at 95 %"
    assert claims[HIGHEST]["verdict"] == "not run"
    assert dom.figures == dom.svgs_in_figures == 2
    assert len(dom.tables) == 1 + 2 * 3
    # the page's script ran under its Content-Security-Policy: every header was made sortable
    assert all(attrs.get("tabindex") == "0" for table in dom.tables for attrs in table["header_attrs"])

    # Click headers: a copy of the page with a second script, allowed by adding its hash to the policy.
    digest = base64.b64encode(hashlib.sha256(CLICKS.encode()).digest()).decode()
    text = page.read_text().replace("script-src '", f"script-src 'sha256-{digest}' '", 1)
    clicked = page.with_name("clicked.html")
    clicked.write_text(text.replace("</body>", f"<script>{CLICKS}</script>\n</body>"))
    sorted_dom = Dom(chromium(tmp_path / "profile", "--dump-dom", clicked.resolve().as_uri()).stdout)
    by_agent = sorted_dom.table("group-MetaTMaze-v0__frames1.5M", 0)
    by_final = sorted_dom.table("group-MetaTMaze-v0__frames1.5M", 1)
    assert [row[1] for row in by_agent["rows"]] == ["AMRL", "RNN", "SplAgger"]
    assert by_agent["header_attrs"][1].get("aria-sort") == "ascending"
    assert [row[1] for row in by_final["rows"]] == ["RNN", "AMRL", "SplAgger"]
    assert [row[0] for row in by_final["rows"]] == ["3", "2", "1"]  # whole rows move, ranks with them

    shot = Path(os.environ.get("METARL_PAGE_SCREENSHOT", tmp_path / "page.png"))
    chromium(tmp_path / "profile", "--hide-scrollbars", "--window-size=1280,2000", f"--screenshot={shot}", url)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
