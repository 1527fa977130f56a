"""YAML that remembers where things were written, so errors can name the line.

We parse with ruamel.yaml's round-trip loader (YAML 1.2: ``no`` and ``si`` stay strings, which
matters for word lists) and hand pydantic plain Python values; the round-trip tree is kept only
to look up the line of a path such as ``nodes[3].wait_for_reply.cases[0]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError


class YamlError(ValueError):
    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def load_documents(text: str) -> list[Any]:
    """Every document of a YAML stream, as round-trip trees; raises YamlError with a line."""
    yaml = YAML(typ="rt")
    try:
        return list(yaml.load_all(text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = exc.problem or exc.context
        if exc.problem and exc.context and exc.context_mark is not None:
            # "found unexpected end of stream" alone hides where the unclosed thing began
            message = f"{exc.problem} ({exc.context} at line {exc.context_mark.line + 1})"
            if "end of stream" in exc.problem:
                mark = exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise YamlError(f"invalid YAML: {message}", line) from exc
    except YAMLError as exc:
        raise YamlError(f"invalid YAML: {exc}", None) from exc


def plain(value: Any) -> Any:
    """The tree as dicts, lists, str, int, float, bool and None (no ruamel subclasses)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)


def line_of(tree: Any, path: Sequence[str | int]) -> int | None:
    """1-based line of the deepest element of ``path`` that exists in ``tree``."""
    line: int | None = None
    node = tree
    for part in path:
        if isinstance(node, CommentedMap) and isinstance(part, str) and part in node:
            line = node.lc.key(part)[0] + 1
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line = node.lc.item(part)[0] + 1
        else:
            break
        node = node[part]
    if line is None and isinstance(tree, CommentedMap | CommentedSeq):
        line = tree.lc.line + 1
    return line
