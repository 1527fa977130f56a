"""Flows: the loaded flows, a reload from the folder, and one flow's stats (read from the
counters each commit keeps in step -- bot/engine/stats.py -- so no contact is walked).

The work is done by service functions (:func:`reload`, :func:`stats`, :func:`check`,
:func:`node_templates`) that the JSON handlers here and the Studio pages both call."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from aiohttp import web

from bot.api import models as m
from bot.api.context import runtime, store
from bot.api.routes import Op
from bot.core.errors import ApiError
from bot.engine import stats as flowstats
from bot.flow.files import Flow, Parsed, Problem, flow_files, load_folder, version_of
from bot.flow.nodes.base import Node
from bot.store import Store
from bot.work.flowcheck import (
    flow_template_problems,
    stop_word_warnings,
    synced_channels,
    template_problem,
    window_warnings,
)
from bot.work.runtime import Runtime, opt_out_of
from channels.protocol import Channel


async def reload(rt: Runtime, store: Store) -> m.ReloadReport:
    """Reload the flows folder; also the loaded flows' templates the synced ones refuse."""
    report = rt.load_flows()
    checked = await synced_channels(store, rt.channels.values())
    templates = [
        m.TemplateProblem(flow=flow.id, node=node.id, **asdict(why))
        for flow in rt.registry.flows.values()
        for node, why in flow_template_problems(flow, checked)
    ]
    return m.ReloadReport(
        loaded=report.loaded,
        unchanged=report.unchanged,
        kept=report.kept,
        removed=report.removed,
        problems=[str(p) for p in report.problems],
        template_problems=templates,
    )


async def stats(rt: Runtime, store: Store, flow_id: str) -> m.FlowStats:
    """Contacts waiting at each node now, counts through each exit, results by category, and
    run totals; also for a flow whose file is gone (from its counters alone)."""
    flow = rt.registry.flows.get(flow_id)
    counters, open_runs = await store.flow_counters(flow_id)
    if flow is None and not counters:
        raise ApiError(404, "unknown_flow", f"no flow {flow_id!r}")
    return m.FlowStats.model_validate(flowstats.present(flow_id, flow, counters, open_runs))


# What each version of a flow file gave when parsed, for check(): a page that checks the folder
# on every view parses a changed or invalid file once, not each time (ruamel: ~10 ms a file).
_PARSED: Parsed = {}
PARSED_MOST = 1000


@dataclass
class FlowFile:
    """A flow as ``chasqui check`` would judge its file now, beside the version running."""

    id: str
    live: Flow | None  # the version running (None: not loaded)
    file_version: str | None = None  # None: its file is gone
    problems: list[Problem] = field(default_factory=list)  # the file's, then its templates'
    warnings: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return self.file_version is not None and not self.problems

    @property
    def changed(self) -> bool:
        """The file differs from the version running: a reload would load it (if valid)."""
        return self.live is None or self.file_version != self.live.version


async def check(rt: Runtime, store: Store) -> list[FlowFile]:
    """Every flow file of the folder checked as ``chasqui check`` does (the same problems, in
    the same words; a file unchanged since it was loaded is not parsed again), and every flow
    running whose file is gone; by id."""
    folder = rt.registry.folder
    if len(_PARSED) > PARSED_MOST:  # files edited many times: forget the old versions
        _PARSED.clear()
    flows, problems = load_folder(folder, rt.registry.channels, rt.registry.flows, _PARSED)
    checked = await synced_channels(store, rt.channels.values())
    problems += [
        template_problem(flow, node, why)
        for flow in flows.values()
        for node, why in flow_template_problems(flow, checked)
    ]
    opt_out = opt_out_of(rt.config)
    files: dict[str, FlowFile] = {}
    for path in flow_files(folder):
        flow = flows.get(path.stem)
        files[path.stem] = FlowFile(
            path.stem,
            rt.registry.flows.get(path.stem),
            flow.version if flow else version_of(path.read_bytes()),
            [p for p in problems if p.file == str(path)],
            window_warnings({path.stem: flow}, rt.config)
            + stop_word_warnings({path.stem: flow}, opt_out)
            if flow
            else [],
        )
    for flow_id, live in rt.registry.flows.items():
        files.setdefault(flow_id, FlowFile(flow_id, live))
    return sorted(files.values(), key=lambda f: f.id)


def check_document(files: list[FlowFile]) -> m.FlowCheckList:
    """The check as the JSON API answers it (``GET /api/v1/flows/check``)."""
    return m.FlowCheckList(
        flows=[
            m.FlowFileCheck(
                id=f.id,
                valid=f.valid,
                live_version=f.live.version if f.live else None,
                file_version=f.file_version,
                changed=f.changed,
                problems=[
                    m.FlowProblem(
                        file=p.file,
                        line=p.line,
                        node=p.node,
                        field=p.field,
                        message=p.message,
                        text=str(p),
                    )
                    for p in f.problems
                ],
                warnings=f.warnings,
            )
            for f in files
        ]
    )


@dataclass(frozen=True)
class NodeTemplate:
    """A template node's template as the synced templates have it."""

    node: str
    name: str
    language: str
    status: str  # the provider's status, "" where no channel has it synced
    problems: list[str]  # why a send would be refused: "channel: code: words"


async def node_templates(rt: Runtime, store: Store, flow: Flow) -> dict[str, NodeTemplate]:
    """By node id, the template each template node sends, with its status and problems."""
    checked = await synced_channels(store, rt.channels.values())
    troubles: dict[str, list[str]] = {}
    for node, why in flow_template_problems(flow, checked):
        troubles.setdefault(node.id, []).append(f"{why.channel}: {why.code}: {why.message}")
    found: dict[str, NodeTemplate] = {}
    for node in flow.nodes.values():
        template = getattr(node.body, "template", None)
        if template is None:
            continue
        language = template.language or flow.language
        status = await _status(store, checked, template.name, language)
        found[node.id] = NodeTemplate(
            node.id, template.name, language, status, troubles.get(node.id, [])
        )
    return found


async def _status(store: Store, channels: list[Channel], name: str, language: str) -> str:
    for channel in channels:
        item = await store.template(channel.name, name, language)
        if item is not None:
            return str(item.get("status") or "")
    return ""


def template_nodes(flows: dict[str, Flow], name: str) -> list[tuple[Flow, Node]]:
    """The nodes of these flows that send the template ``name``."""
    return [
        (flow, node)
        for flow in flows.values()
        for node in flow.nodes.values()
        if getattr(getattr(node.body, "template", None), "name", None) == name
    ]


# -- the JSON handlers ---------------------------------------------------------------------------
async def list_flows(request: web.Request) -> web.Response:
    flows = runtime(request).registry.flows
    return web.json_response(
        {
            "flows": [
                {
                    "id": f.id,
                    "name": f.name,
                    "language": f.language,
                    "version": f.version,
                    "nodes": len(f.nodes),
                    "expire_after": f.expire_after,
                }
                for f in flows.values()
            ]
        }
    )


async def reload_flows(request: web.Request) -> web.Response:
    """Reload; also the loaded flows' templates that the synced templates refuse."""
    report = await reload(runtime(request), store(request))
    return web.json_response(report.model_dump(mode="json"))


async def check_flows(request: web.Request) -> web.Response:
    files = await check(runtime(request), store(request))
    return web.json_response(check_document(files).model_dump(mode="json"))


async def flow_stats(request: web.Request) -> web.Response:
    found = await stats(runtime(request), store(request), request.match_info["id"])
    return web.json_response(found.model_dump(mode="json"))


OPS = [
    Op("GET", "/api/v1/flows", list_flows, "The loaded flows", m.FlowList),
    Op(
        "POST",
        "/api/v1/flows/reload",
        reload_flows,
        "Reload the flows folder (an invalid file keeps its previous version live)",
        m.ReloadReport,
    ),
    Op(
        "GET",
        "/api/v1/flows/check",
        check_flows,
        "Every flow file judged as `chasqui check` judges it now, beside the version running",
        m.FlowCheckList,
    ),
    Op(
        "GET",
        "/api/v1/flows/{id}/stats",
        flow_stats,
        "A flow's stats: waiting per node, counts per exit, results, run totals",
        m.FlowStats,
        errors=("unknown_flow",),
    ),
]
