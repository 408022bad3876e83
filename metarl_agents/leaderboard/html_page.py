"""The leaderboard as one self-contained HTML page: what a researcher opens in a browser.

Everything the page shows travels inside it: the styles, the sorting script (``page.css`` and ``page.js``
beside this module) and the learning curves (inline SVG), so it opens from a mail attachment or a copied
folder with no network. A Content-Security-Policy in the page forbids fetching anything (images only as data
URIs) and lets only the page's own script run.

Store contents (agent names, machines, versions, env kwargs) are untrusted: every piece of text is passed
through :func:`html.escape`, and the only markup the page holds is the markup this module writes. The claims
section is rendered from the claims module's tables (their intros and cells as the markdown report has them,
with bold, emphasis, code and links), so columns it adds appear here without a change to this module; links in
it become anchors to the plots on this page, never links out of it.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from metarl_agents.leaderboard.claims import VERDICTS, Table
from metarl_agents.leaderboard.groups import Entry, Group
from metarl_agents.leaderboard.markdown import (
    EVERY_LR_HEADER,
    RANKED_HEADER,
    RANKINGS,
    entry_cells,
    group_title,
    provenance_markdown,
)
from metarl_agents.leaderboard.stats import BOOTSTRAP_SEED
from metarl_agents.leaderboard.stats import PAPER_CONFIDENCE as CONFIDENCE
from metarl_agents.leaderboard.stats import PAPER_RESAMPLES as N_RESAMPLES

#: verdict words of the claims table -> the CSS class that colours them (other text is shown plainly)
VERDICT_CLASSES = {verdict: verdict.replace(" ", "-") for verdict in VERDICTS}


def _page_asset(name: str) -> str:
    """A file beside this module (the page's stylesheet or script) as the page inlines it, on lines of its own."""
    return "\n" + (Path(__file__).parent / name).read_text(encoding="utf-8")


STYLE = _page_asset("page.css")
# Sorts a table by the clicked header (again: the other way). A cell's data-sort value, else its text, is the
# key; numbers sort as numbers, empty cells and dashes last in either direction.
SCRIPT = _page_asset("page.js")


def _script_hash(script: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()


CSP = (f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src '{_script_hash(SCRIPT)}'; "
       "base-uri 'none'; form-action 'none'")

# -- the report's inline markdown, to HTML ---------------------------------------------------------

_INLINE = re.compile(
    r"\\(?P<escaped>[^\sA-Za-z0-9])"  # a backslash escape: the character itself
    r"|(?P<fence>`+)(?P<code>.+?)(?<!`)(?P=fence)(?!`)"  # a code span, fenced by a run of backticks
    r"|\*\*(?P<strong>.+?)\*\*"
    r"|\*(?P<em>[^*\s](?:[^*]*?[^*\s\\])?)\*"
    r"|\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]*)\)"
)


def inline_html(text: str, anchors: Mapping[str, str] | None = None, linked: set[str] | None = None) -> str:
    """One line of the report's markdown as HTML: every character escaped, bold/emphasis/code kept.

    A link whose target's file name is a key of ``anchors`` (a plot's file name) becomes a link to that
    anchor on the page, and the file name is added to ``linked``; any other link keeps its text only.
    """
    anchors = anchors or {}
    out, position = [], 0
    for match in _INLINE.finditer(text):
        out.append(html.escape(text[position:match.start()]))
        position = match.end()
        if match["escaped"] is not None:
            out.append(html.escape(match["escaped"]))
        elif match["code"] is not None:
            code = match["code"]
            if len(code) > 2 and code[0] == code[-1] == " ":
                code = code[1:-1]
            out.append(f"<code>{html.escape(code)}</code>")
        elif match["strong"] is not None:
            out.append(f"<strong>{inline_html(match['strong'], anchors, linked)}</strong>")
        elif match["em"] is not None:
            out.append(f"<em>{inline_html(match['em'], anchors, linked)}</em>")
        else:
            label = inline_html(match["text"], anchors, linked)
            name = match["target"].rsplit("/", 1)[-1]
            if name in anchors:
                if linked is not None:
                    linked.add(name)
                out.append(f'<a href="#{html.escape(anchors[name])}">{label}</a>')
            else:
                out.append(label)
    out.append(html.escape(text[position:]))
    return "".join(out)


def _claims_cell(markdown: str, anchors: Mapping[str, str], linked: set[str]) -> str:
    markdown = markdown.strip()
    verdict = next((css for word, css in VERDICT_CLASSES.items()
                    if re.match(rf"\*\*{re.escape(word)}\*\*", markdown)), None)
    classes = f' class="verdict {verdict}"' if verdict else ""
    return f"<td{classes}>{inline_html(markdown, anchors, linked)}</td>"


def _table_html(header: Iterable[str], rows: Iterable[str], caption: str = "", kind: str = "ranking") -> str:
    """A sortable table from header texts (markdown) and ready-made ``<tr>`` rows."""
    heads = "".join(f'<th scope="col">{inline_html(text)}</th>' for text in header)
    before = f'<p class="caption">{caption}</p>\n' if caption else ""
    return (f'{before}<table class="sortable {kind}">\n<thead><tr>{heads}</tr></thead>\n<tbody>\n'
            + "\n".join(rows) + "\n</tbody>\n</table>")


def claims_section(tables: Sequence[Table], anchors: Mapping[str, str], provenance: Mapping[str, str]) -> str:
    """The claims module's tables under the first one's title, each with its intro and, before the table, the
    provenance (plot file name -> HTML) of every plot its rows link to, so the budget, machine and versions of
    the runs a table is built from are stated above it. Cells are the rows' markdown (bold verdicts, plot
    links, which become links to the curves on this page), so columns the claims module adds appear here."""
    blocks = [f'<section id="claims"><h2>{html.escape(tables[0].title)}'
              '<a class="up" href="#contents">&uarr; contents</a></h2>']
    for index, table in enumerate(tables):
        if index:
            blocks.append(f"<h2>{inline_html(table.title, anchors)}</h2>")
        blocks.append(f"<p>{inline_html(table.intro, anchors)}</p>")
        linked: set[str] = set()
        rows = ["<tr>" + "".join(_claims_cell(cell, anchors, linked) for cell in table.markdown_cells(row)) + "</tr>"
                for row in table.rows]
        sources = [provenance[name] for name in sorted(linked, key=list(anchors).index) if name in provenance]
        if sources:
            blocks.append('<div class="provenance"><strong>Runs behind this table</strong> (budget, machine, versions):'
                          f'<ul>{"".join(f"<li>{source}</li>" for source in sources)}</ul></div>')
        blocks.append(_table_html(table.header, rows, kind="generic"))
    return "\n".join(blocks) + "\n</section>"


# -- a group's section, from its data --------------------------------------------------------------


def _ids(group: Group) -> dict[str, str]:
    """Anchor ids of a group's parts; slugs are file-safe ([A-Za-z0-9._-]), so they are valid ids."""
    return {"section": f"group-{group.slug}", "final": f"{group.slug}-final", "over_run": f"{group.slug}-over-run",
            "every": f"{group.slug}-every-lr", "curves": f"{group.slug}-curves"}


def _budget_and_machines(group: Group) -> str:
    """The budget of a group's runs and the machines and package versions they trained with."""
    machines = "; ".join(group.machines()) or "none recorded"
    versions = "; ".join(group.versions()) or "none recorded"
    return f"{inline_html(group.budget_text())}; machine: {html.escape(machines)}; versions: {html.escape(versions)}"


def _caption(group: Group) -> str:
    """The line above each of a group's tables: what was run, on what budget, machine and versions."""
    return f"{group.label(html.escape)}, {_budget_and_machines(group)}"


def _number(value: float, text: str) -> str:
    return f'<td class="number" data-sort="{value!r}">{html.escape(text)}</td>'


def _text(text: str) -> str:
    return f"<td>{html.escape(text)}</td>"


def _entry_row(entry: Entry, rank: int | None = None, best: bool = False) -> str:
    """A ranking's row (``rank``: the seeds counted) or the every-learning-rate table's (the seeds listed)."""
    cells = entry_cells(entry, rank, best)
    return "<tr>" + "".join(_text(text) if value is None else _number(value, text) for text, value in cells) + "</tr>"


def inline_svg(markup: str, prefix: str) -> str:
    """Matplotlib's SVG document ready to sit inside HTML: without its XML prolog and doctype, and with every
    element id (and every reference to one) prefixed, since ids must be unique across the whole page and
    matplotlib numbers the groups of each figure from 1 ("figure_1", "axes_1")."""
    start = markup.find("<svg")
    if start < 0:
        raise ValueError("figure markup holds no <svg> element")
    markup = markup[start:].strip()
    ids = set(re.findall(r'\bid="([^"]+)"', markup))
    if not ids:
        return markup

    def rename(match: re.Match) -> str:
        head, name, tail = match.groups()
        return f"{head}{prefix}{name}{tail}" if name in ids else match.group(0)

    return re.sub(r'(\bid="|href="#|url\(#)([^")]+)([")])', rename, markup)


def group_section(group: Group, svg: str | None) -> str:
    """A group's heading, provenance, ranked tables, every-learning-rate table and learning curves."""
    ids = _ids(group)
    title = html.escape(group_title(group))
    parts = [f'<section id="{ids["section"]}">',
             f'<h2>{title}<a class="up" href="#contents">&uarr; contents</a></h2>',
             '<ul class="provenance">'
             + "".join(f"<li>{inline_html(line[2:])}</li>" for line in provenance_markdown(group)) + "</ul>"]
    if not group.entries:
        return "\n".join([*parts, "<p>No finished runs yet.</p>", "</section>"])
    for statistic, name in RANKINGS:
        rows = [_entry_row(entry, rank) for rank, entry in enumerate(group.ranked(statistic), 1)]
        parts += [f'<h3 id="{ids[statistic]}">Ranked by {name} meta-episode return</h3>',
                  _table_html(RANKED_HEADER, rows, _caption(group))]
    best = {id(entry) for entry in group.best_entries()}
    rows = [_entry_row(entry, best=id(entry) in best) for entry in group.entries]
    parts += [f'<h3 id="{ids["every"]}">Every learning rate</h3>', _table_html(EVERY_LR_HEADER, rows, _caption(group))]
    if svg is not None:
        parts += [f'<h3 id="{ids["curves"]}">Learning curves</h3>',
                  f'<figure class="curves">{inline_svg(svg, ids["curves"] + "-")}<figcaption>{group.label(html.escape)}: mean over seeds '
                  f"with a {CONFIDENCE:.0%} bootstrap band, each agent at its best learning rate; hollow markers "
                  f"where a seed's value is carried after it stopped early. {_caption(group)}</figcaption></figure>"]
    return "\n".join([*parts, "</section>"])


# -- the page --------------------------------------------------------------------------------------


def _contents(groups: Sequence[Group], claims_title: str | None) -> str:
    items = []
    if claims_title is not None:
        items.append(f'<li><a href="#claims">{html.escape(claims_title)}</a></li>')
    for group in groups:
        ids = _ids(group)
        parts = ""
        if group.entries:
            links = [(ids["final"], "ranked by final"), (ids["over_run"], "ranked by mean over run"),
                     (ids["every"], "every learning rate"), (ids["curves"], "learning curves")]
            parts = ' <span class="parts">— ' + " · ".join(f'<a href="#{i}">{t}</a>' for i, t in links) + "</span>"
        items.append(f'<li><a href="#{ids["section"]}">{html.escape(group_title(group))}</a>{parts}</li>')
    if not items:
        return ""
    return f'<nav id="contents"><h2>Contents</h2><ol>{"".join(items)}</ol></nav>'


def render_page(groups: Sequence[Group], claims: Sequence[Table], svgs: Mapping[str, str], source: str,
                generated: str) -> str:
    """The whole page: contents, the claims section (when ``claims`` holds a table), every group's section.

    ``claims`` are the claims module's tables (:func:`~.claims.claims_tables`) with plot paths relative to
    the page's folder; ``svgs`` maps a group's slug to its learning-curve SVG.
    """
    anchors = {f"{group.slug}.png": _ids(group)["curves"] for group in groups if group.entries}
    provenance = {f"{group.slug}.png": f'<a href="#{_ids(group)["section"]}">{html.escape(group_title(group))}</a>: '
                                       + _budget_and_machines(group) for group in groups if group.entries}
    claims_html = claims_section(claims, anchors, provenance) if claims else ""
    sections = "\n".join(group_section(group, svgs.get(group.slug)) for group in groups)
    empty = "" if groups else "<p>The store holds no runs yet.</p>"
    downloads = " · ".join(f'<a href="{name}">{name}</a>' for name in
                           ("leaderboard.csv", "evaluations.csv", "leaderboard.json"))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>metarl leaderboard</title>
<style>{STYLE}</style>
</head>
<body>
<h1>metarl leaderboard</h1>
<p class="meta">Generated {html.escape(generated)} from <code>{html.escape(source)}</code> by
<code>metarl-bench report</code>. Every number is the mean over seeds with a {CONFIDENCE:.0%} bootstrap interval
({N_RESAMPLES:,} resamples, seed {BOOTSTRAP_SEED}). Click a column header to sort a table. The same numbers:
{downloads} (beside this page).</p>
{_contents(groups, claims[0].title if claims else None)}
{empty}
{claims_html}
{sections}
<script>{SCRIPT}</script>
</body>
</html>
"""
