"""The demo's report: Markdown, and a self-contained HTML page with a timeline of the
attempts of every pull (one bar per source tried, its length the time it took)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .demo import StepResult
    from .lab import LabState
    from .scenario import Scenario

COLOURS = {"served": "#2e7d32", "blocked": "#6a1b9a", "denied": "#6a1b9a",
           "cooldown": "#9e9e9e", "not_found": "#ef6c00"}


def _markdown(scenario: Scenario, state: LabState, results: list[StepResult]) -> str:
    passed = sum(r.passed for r in results)
    lines = [f"# mirrorlab demo: {scenario.name}", "", scenario.description, "",
             f"Registries ran as {state.backend_plural} ({state.backend_reason}). "
             f"{passed} of {len(results)} steps behaved as expected.", "",
             "| # | step | result | served by | time | check |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in results:
        if r.kind != "pull":
            lines.append(f"| {r.number} | {r.title} | | | | |")
            continue
        outcome = "pulled" if r.ok else "refused"
        check = "as expected" if r.passed else "**" + "; ".join(r.failures) + "**"
        if r.rescued:
            check += f"; **a node in {' or '.join(r.rescued)} mode fails here**"
        lines.append(f"| {r.number} | {r.title} | {outcome} | {r.served_by or '-'} | "
                     f"{r.seconds:.2f}s | {check} |")
    for r in results:
        if r.kind != "pull":
            continue
        lines += ["", f"## {r.number}. {r.title}", "", f"`podman pull {r.ref}`", ""]
        if r.error:
            lines += [f"podman: `{r.error}`", ""]
        lines += ["| request | source | outcome | ms | why |", "| --- | --- | --- | --- | --- |"]
        for a in r.attempts:
            extra = " (mirrorlab fallback)" if a.fallback else ""
            if a.rescued:
                extra += f"; a node in {' or '.join(a.rescued)} mode fails here"
            lines.append(f"| {a.kind} {a.logical.rsplit('@', 1)[-1][:19]} | {a.source} | "
                         f"{a.outcome}{extra} | {a.ms:.1f} | {a.detail.replace('|', '/')} |")
        contacted = ", ".join(f"{k}: {v}" for k, v in sorted(r.contacted.items())) or "none"
        lines += ["", f"Registries contacted (requests): {contacted}."]
    return "\n".join(lines) + "\n"


def _html(scenario: Scenario, state: LabState, results: list[StepResult]) -> str:
    e = html.escape
    rows = []
    for r in results:
        if r.kind != "pull":
            rows.append(f'<tr class="action"><td>{r.number}</td><td colspan="4">{e(r.title)}'
                        "</td></tr>")
            continue
        total = sum(a.ms for a in r.attempts) or 1.0
        bars = "".join(
            f'<span class="bar" style="flex:{max(a.ms, total / 60):.2f};background:'
            f'{COLOURS.get(a.outcome, "#c62828")}" title="{e(a.kind)} {e(a.source)}: '
            f'{e(a.outcome)}, {a.ms:.1f} ms: {e(a.detail)}">{e(a.source.split("/", 1)[0])}'
            "</span>" for a in r.attempts if a.kind == "manifest")
        check = ("as expected" if r.passed else
                 '<b class="bad">' + e("; ".join(r.failures)) + "</b>")
        if r.rescued:
            check += ('<br><b class="bad">' + e(f"a node in {' or '.join(r.rescued)} mode "
                                                 "fails here") + "</b>")
        rows.append(f"<tr><td>{r.number}</td><td>{e(r.title)}<br><code>{e(r.ref)}</code></td>"
                    f"<td>{e(r.served_by or ('refused' if not r.ok else '-'))}<br>"
                    f"{r.seconds:.2f}s</td><td><div class=\"timeline\">{bars}</div>"
                    f"<small>{e(r.error)}</small></td><td>{check}</td></tr>")
    legend = " ".join(f'<span class="bar" style="background:{c}">{e(k)}</span>'
                      for k, c in [*COLOURS.items(), ("failed", "#c62828")])
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>mirrorlab demo: {e(scenario.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ border-bottom: 1px solid #ddd; padding: .5em; vertical-align: top; }}
tr.action td {{ color: #8d6e00; font-style: italic; }}
.timeline {{ display: flex; gap: 2px; min-width: 20em; }}
.bar {{ color: white; padding: .2em .4em; border-radius: 3px; font-size: .8em;
        white-space: nowrap; overflow: hidden; display: inline-block; }}
.bad {{ color: #c62828; }}
</style></head><body>
<h1>mirrorlab demo: {e(scenario.name)}</h1><p>{e(scenario.description)}</p>
<p>Registries ran as {e(state.backend_plural)} ({e(state.backend_reason)}).
{sum(r.passed for r in results)} of {len(results)} steps behaved as expected.</p>
<p>Manifest attempts per pull, in order (hover for details): {legend}</p>
<table><tr><th>#</th><th>step</th><th>served by</th><th>attempts</th><th>check</th></tr>
{"".join(rows)}
</table></body></html>
"""


def write_reports(scenario: Scenario, state: LabState, results: list[StepResult],
                  base: Path) -> Path:
    """`base.md` and `base.html`; returns `base`."""
    base.parent.mkdir(parents=True, exist_ok=True)
    base.with_suffix(".md").write_text(_markdown(scenario, state, results))
    base.with_suffix(".html").write_text(_html(scenario, state, results))
    return base
