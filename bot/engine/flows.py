"""The flows a process runs: loaded from the flows folder, compiled once per version, reloadable.

Reloading never makes things worse: a flow whose new file is invalid keeps its previous version
(and the reload reports why); a valid one replaces it, and waiting contacts resume on it. A new
or changed flow that claims a trigger another flow holds (the same keyword on a shared channel)
is invalid in that sense: the flows already live keep their claims. The triggers of the flows
loaded are indexed once per reload (bot/engine/triggers.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bot.engine.apply import Engine
from bot.engine.sprint import Limits, Route
from bot.engine.triggers import TriggerIndex
from bot.flow.files import (
    Flow,
    FlowError,
    Problem,
    check_references,
    flow_files,
    parse_flow,
    trigger_conflicts,
)
from bot.flow.machine import compile_flow


@dataclass
class ReloadReport:
    loaded: list[str] = field(default_factory=list)  # new or changed, now live
    unchanged: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # invalid new file: previous version still live
    removed: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


class FlowRegistry:
    def __init__(
        self, folder: Path, routes: list[Route], limits: Limits, channels: set[str] | None = None
    ) -> None:
        self.folder = folder
        self.routes = routes
        self.limits = limits
        self.channels = channels if channels is not None else {r.name for r in routes}
        self.flows: dict[str, Flow] = {}
        self.engine = Engine({}, routes, limits)

    def reload(self) -> ReloadReport:
        report = ReloadReport()
        fresh: dict[str, Flow] = {}
        for path in flow_files(self.folder):
            old = self.flows.get(path.stem)
            try:
                data = path.read_bytes()
                flow = parse_flow(path, data, self.channels)
            except FlowError as exc:
                report.problems.extend(exc.problems)
                if old is not None:
                    fresh[old.id] = old
                    report.kept.append(old.id)
                continue
            except OSError as exc:
                report.problems.append(Problem(str(path), None, f"cannot read: {exc}"))
                continue
            if old is not None and old.version == flow.version:
                fresh[flow.id] = old
                report.unchanged.append(flow.id)
            else:
                compile_flow(flow)
                fresh[flow.id] = flow
                report.loaded.append(flow.id)
        fresh = self._refuse_clashes(fresh, report)
        report.removed = sorted(set(self.flows) - set(fresh))
        report.problems.extend(check_references(fresh))
        self.flows = fresh
        self.engine = Engine(fresh, self.routes, self.limits, TriggerIndex(fresh.values()))
        return report

    def _refuse_clashes(self, fresh: dict[str, Flow], report: ReloadReport) -> dict[str, Flow]:
        """Flows that claim what another holds are refused like invalid ones: the flows that
        were live before keep their claims (they claim first), then new ones in file order."""
        live = {k: f for k, f in fresh.items() if self.flows.get(k) is f}
        ordered = {**live, **{k: f for k, f in fresh.items() if k not in live}}
        for flow_id, _, problem in trigger_conflicts(ordered):
            report.problems.append(problem)
            report.loaded.remove(flow_id)
            old = self.flows.get(flow_id)
            del ordered[flow_id]
            if old is not None and not any(
                c[0] == flow_id for c in trigger_conflicts({**ordered, flow_id: old})
            ):
                ordered[flow_id] = old
                report.kept.append(flow_id)
        return {k: ordered[k] for k in fresh if k in ordered}
