"""`mirrorlab demo`: play a scenario's steps on a running lab and show what happened.

Each pull is a real `podman pull` through the proxy. The proxy's attempt log says which
source served it and why the others were skipped or failed; the fault proxies' counters say
which registries were contacted at all. Each step is checked against its expectation.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from .clients import PodmanClient
from .faults import Fault, FaultControl
from .lab import Lab, LabState
from .report import write_reports
from .scenario import Scenario, Step


@dataclass
class AttemptRecord:
    kind: str
    logical: str
    source: str
    outcome: str
    detail: str
    ms: float
    fallback: bool
    rescued: tuple[str, ...] = ()
    """Node modes that fail this request (resilient mode rescued it)."""


@dataclass
class StepResult:
    number: int
    title: str
    kind: str
    ref: str = ""
    ok: bool = True
    seconds: float = 0.0
    served_by: str | None = None
    digest: str | None = None
    error: str = ""
    attempts: list[AttemptRecord] = field(default_factory=list)
    contacted: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    """Expectations that did not hold; empty when the step behaved as expected."""

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def rescued(self) -> list[str]:
        """The node modes that fail this pull where resilient mode served it."""
        found = {mode for a in self.attempts for mode in a.rescued}
        return [mode for mode in ("sticky", "blob") if mode in found]


def _expand(text: str, digests: dict[str, str]) -> str:
    return re.sub(r"\{([^}]*)\}", lambda m: digests[m.group(1)], text)


class Player:
    """Runs the steps of a scenario against a lab that is up."""

    def __init__(self, scenario: Scenario, state: LabState, console: Console) -> None:
        self.scenario, self.state, self.console = scenario, state, console
        self.workdir = Path(state.workdir)
        self.podman = PodmanClient(self.workdir / "client")
        self.log_path = self.workdir / "logs" / "proxy.log"

    def _requests(self) -> dict[str, int]:
        return {r.name: len(FaultControl(r.control_port).requests())
                for r in self.state.registries}

    def _events(self, offset: int) -> list[AttemptRecord]:
        records = []
        with open(self.log_path, "rb") as handle:
            handle.seek(offset)
            for line in handle.read().decode(errors="replace").splitlines():
                if not line.startswith("{"):
                    continue
                event = json.loads(line)
                if event.get("event") == "attempt":
                    records.append(AttemptRecord(event["kind"], event["logical"],
                                                 event["source"], event["outcome"],
                                                 event["detail"], event["ms"],
                                                 event["fallback"],
                                                 tuple(event.get("rescued", ()))))
                elif event.get("event") == "denied":
                    records.append(AttemptRecord(event.get("kind", "manifest"),
                                                 event["logical"], "(policy.json)", "denied",
                                                 f"{event['reason']} (scope "
                                                 f"{event['scope']!r})", 0.0, False))
        return records

    def run_step(self, number: int, step: Step, progress: Progress) -> StepResult:
        result = StepResult(number, step.title, "pull" if step.pull else "action")
        if step.stop:
            Lab.stop_registry(self.state, step.stop)
            return result
        if step.fault:
            name, fault = step.fault
            FaultControl(self.state.registry(name).control_port).set(fault)
            return result
        assert step.pull is not None
        ref = _expand(step.pull, self.state.digests)
        result.ref = ref
        before = self._requests()
        offset = self.log_path.stat().st_size
        task = progress.add_task(f"podman pull {ref[:70]}", total=None)
        blobs = 0

        def on_line(line: str) -> None:
            nonlocal blobs
            if line.startswith("Copying blob") or line.startswith("Copying config"):
                blobs += 1
                progress.update(task, description=f"podman pull {ref[:60]}  ({blobs} blobs)")

        started = time.monotonic()
        pulled = self.podman.pull(f"127.0.0.1:{self.state.proxy_port}/{ref}", on_line)
        result.seconds = time.monotonic() - started
        progress.remove_task(task)
        result.ok = pulled.returncode == 0
        if not result.ok:
            errors = [line for line in pulled.stdout.splitlines() if line.startswith("Error")]
            result.error = errors[-1] if errors else pulled.stdout.strip()[-300:]
        result.attempts = self._events(offset)
        after = self._requests()
        result.contacted = {name: after[name] - before[name] for name in after
                            if after[name] != before[name]}
        served = [a for a in result.attempts if a.kind == "manifest" and a.outcome == "served"]
        if served:
            result.served_by = served[0].source.split("/", 1)[0]
        if result.ok:
            result.digest = self.podman.digest(f"127.0.0.1:{self.state.proxy_port}/{ref}")
        result.failures = self._check(step, ref, result)
        return result

    def _check(self, step: Step, ref: str, result: StepResult) -> list[str]:
        expect, failures = step.expect, []
        if result.ok != expect.ok:
            failures.append(f"expected the pull to {'succeed' if expect.ok else 'fail'}")
        if expect.served_by and result.served_by != expect.served_by:
            failures.append(f"expected {expect.served_by} to serve, got {result.served_by}")
        wanted = (self.state.digests[expect.digest] if expect.digest
                  else ref.split("@", 1)[1] if "@" in ref else None)
        if result.ok and wanted and result.digest != wanted:
            failures.append(f"podman has {result.digest}, expected {wanted}")
        for name in expect.not_contacted:
            if result.contacted.get(name):
                failures.append(f"{name} was contacted ({result.contacted[name]} requests)")
        return failures


def _table(results: list[StepResult], total: int) -> Table:
    table = Table(title=f"steps ({len(results)}/{total})", expand=True)
    for column in ("#", "step", "served by", "time", "sources tried", "check"):
        table.add_column(column, overflow="fold")
    for result in results:
        if result.kind != "pull":
            table.add_row(str(result.number), f"[yellow]{result.title}", "", "", "", "")
            continue
        tried = ", ".join(f"{a.source.split('/', 1)[0]}:{a.outcome}"
                          for a in result.attempts if a.kind == "manifest")
        check = "[green]as expected" if result.passed else "[red]" + "; ".join(result.failures)
        if result.rescued:
            check += f" [red](a node in {' or '.join(result.rescued)} mode fails here)"
        served = result.served_by or ("[red]refused" if not result.ok else "")
        table.add_row(str(result.number), result.title, served, f"{result.seconds:.2f}s",
                      tried, check)
    return table


def run_demo(scenario: Scenario, workdir: Path, *, backend: str = "auto", keep: bool = False,
             console: Console | None = None) -> tuple[list[StepResult], Path]:
    """Bring the lab up, play every step, write the reports; the lab goes down unless `keep`."""
    console = console or Console()
    console.print(f"[bold]mirrorlab demo: {scenario.name}[/bold]\n{scenario.description}\n")
    console.print("starting the lab: registries, fault proxies, images, rendered node files, "
                  "the proxy ...")
    state = Lab(scenario, workdir, backend).up()
    console.print(f"lab up in {state.workdir}: registries run as [bold]"
                  f"{state.backend_plural}[/bold] ({state.backend_reason}); proxy on "
                  f"127.0.0.1:{state.proxy_port}\n")
    player = Player(scenario, state, console)
    results: list[StepResult] = []
    try:
        progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                            TimeElapsedColumn(), console=console, transient=True)
        with Live(console=console, refresh_per_second=8, transient=False) as live:
            for number, step in enumerate(scenario.steps, start=1):
                grid = Table.grid()
                grid.add_row(_table(results, len(scenario.steps)))
                grid.add_row(progress)
                live.update(grid)
                results.append(player.run_step(number, step, progress))
            live.update(_table(results, len(scenario.steps)))
        report = write_reports(scenario, state, results, Path(state.workdir) / "report")
    finally:
        for registry in state.registries:
            if not registry.stopped:
                FaultControl(registry.control_port).set(Fault())
        player.podman.close()
        if not keep:
            Lab.down(Path(state.workdir))
    passed = sum(r.passed for r in results)
    console.print(f"\n{passed}/{len(results)} steps as expected. Report: {report}.md and "
                  f"{report}.html")
    if keep:
        console.print(f"the lab is still up: mirrorlab lab status --workdir {workdir}")
    return results, report
