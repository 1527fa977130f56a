"""Parser for RapidPro-style flow text, producing Jinja2 AST nodes (never Jinja source).

Flow text is split into literal pieces and ``@`` references. Literal pieces stay Python
strings, references become :mod:`jinja2.nodes` trees built here from a small, closed grammar.
Because no Jinja source text is ever produced, there is nothing for flow text or contact data
to inject into: ``{{ 7*7 }}`` in a message is just nine characters of literal text.

Grammar inside ``@( ... )`` (lowest precedence first)::

    expr     := concat [("=" | "!=" | "<>" | "<" | "<=" | ">" | ">=") concat]
    concat   := additive ("&" additive)*
    additive := term (("+" | "-") term)*
    term     := unary (("*" | "/") unary)*
    unary    := "-" unary | atom
    atom     := NUMBER | STRING | "true" | "false" | "(" expr ")"
              | FUNC "(" [expr ("," expr)*] ")" | path
    path     := TOP ("." SEGMENT)*

Every operator and function becomes a call to an ``fn_*`` global that the renderer in
:mod:`bot.flow.expressions` supplies; path segments become ``Getitem`` nodes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from jinja2 import nodes

from bot.flow.casetests import WORD_CHAR

TOP_NAMES = frozenset({"contact", "fields", "results", "input", "trigger", "webhook", "run"})

# name -> (min args, max args); implementations live in bot.flow.expressions as fn_<name>.
FUNCTIONS: dict[str, tuple[int, int]] = {
    "upper": (1, 1),
    "lower": (1, 1),
    "title": (1, 1),
    "default": (2, 2),
    "if": (3, 3),
    "length": (1, 1),
    "format_date": (1, 2),
    "now": (0, 0),
}

OPERATORS = {
    "=": "eq",
    "!=": "ne",
    "<>": "ne",
    "<": "lt",
    "<=": "le",
    ">": "gt",
    ">=": "ge",
    "&": "concat",
    "+": "add",
    "-": "sub",
    "*": "mul",
    "/": "div",
}
_COMPARISONS = frozenset({"=", "!=", "<>", "<", "<=", ">", ">="})

# format_date's tokens. Letters are never copied: a run of one letter that is not a token
# ("YYYYYYY", "M", the "de" of "DD de MM") is an error, reported at load for a literal format.
DATE_TOKENS = ("YYYY", "YY", "MM", "DD", "hh", "mm", "ss")
DATE_FORMAT = re.compile(r"([A-Za-z])\1*")


def date_format_problem(fmt: str) -> str | None:
    """None when every letter of ``fmt`` belongs to a format_date token, else why not."""
    for m in DATE_FORMAT.finditer(fmt):
        if m.group() not in DATE_TOKENS:
            return (
                f"format_date(): unknown token {m.group()!r} in {fmt!r} "
                f"(tokens: {' '.join(DATE_TOKENS)})"
            )
    return None


# A reference after a bare "@": a name, then ".segment"s. A "." not followed by a word
# character is not consumed, so "Hola @contact.name." keeps its full stop. Names are words
# of any script ("año", "नाम"): letters, digits, "_" and combining marks, not starting with a
# digit.
_NAME = rf"[^\W\d]{WORD_CHAR}*"
_REFERENCE = re.compile(rf"({_NAME})((?:\.{WORD_CHAR}+)*)")
_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d+)?)"
    rf"|(?P<path>{_NAME}(?:\.{WORD_CHAR}+)*)"
    r"|(?P<op><=|>=|!=|<>|[-+*/&=<>(),\"])"
    r"|(?P<bad>\S))"
)


class ExpressionError(ValueError):
    """A flow text that cannot be compiled; ``position`` is a 0-based offset into the text."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} (at position {position})")
        self.message = message
        self.position = position


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "num", "str", "path", "op" or "end"
    value: str
    pos: int


@dataclass(frozen=True, slots=True)
class ParsedText:
    """Literal strings and Jinja expression nodes, in order, plus the references used."""

    parts: tuple[str | nodes.Expr, ...]
    names: frozenset[str]


def parse_text(text: str) -> ParsedText:
    """Split flow text into literals and expression nodes; raise ExpressionError if malformed."""
    parts: list[str | nodes.Expr] = []
    names: set[str] = set()
    literal: list[str] = []
    i = 0
    while (at := text.find("@", i)) >= 0:
        literal.append(text[i:at])
        following = text[at + 1 : at + 2]
        node: nodes.Expr | None = None
        if following == "@":
            literal.append("@")
            i = at + 2
        elif following == "(":
            tokens, i = _tokenize(text, at)
            node = _Parser(tokens, names).parse()
        elif (m := _REFERENCE.match(text, at + 1)) and m.group(1) in TOP_NAMES:
            node = _path_node(m.group(0), m.start(), names)
            i = m.end()
        else:
            literal.append("@")
            i = at + 1
        if node is not None:
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(node)
    literal.append(text[i:])
    if "".join(literal):
        parts.append("".join(literal))
    return ParsedText(tuple(parts), frozenset(names))


def _tokenize(text: str, at: int) -> tuple[list[Token], int]:
    """Tokens of the ``@(...)`` starting at ``at`` up to its matching ")", and the end offset."""
    tokens: list[Token] = []
    depth = 1  # the "(" of "@(" is already open
    pos = at + 2
    while True:
        m = _TOKEN.match(text, pos)
        if m is None:  # only whitespace left
            raise ExpressionError("unterminated @( expression", at)
        kind = m.lastgroup or "bad"
        value, start = m.group(kind), m.start(kind)
        if kind == "bad":
            raise ExpressionError(f"unexpected character {value!r}", start)
        pos = m.end()
        if value == '"':
            value, pos = _read_string(text, start)
            kind = "str"
        elif value == "(":
            depth += 1
        elif value == ")":
            depth -= 1
            if depth == 0:
                tokens.append(Token("end", ")", start))
                return tokens, pos
        tokens.append(Token(kind, value, start))


def _read_string(text: str, start: int) -> tuple[str, int]:
    """Read a double-quoted literal at ``start`` where ``""`` stands for one quote."""
    chunks: list[str] = []
    pos = start + 1
    while True:
        close = text.find('"', pos)
        if close < 0:
            raise ExpressionError("unterminated string", start)
        chunks.append(text[pos:close])
        if text.startswith('"', close + 1):
            chunks.append('"')
            pos = close + 2
        else:
            return "".join(chunks), close + 1


def _path_node(path: str, pos: int, names: set[str]) -> nodes.Expr:
    """Item lookups for ``root.a.b``; ``results.x`` means its value, ``contact`` the name."""
    root, *segments = path.split(".")
    offset = pos + len(root) + 1
    for segment in segments:
        if segment.startswith("_"):
            raise ExpressionError(f"names may not start with '_': {segment!r}", offset)
        offset += len(segment) + 1
    names.add(path)
    if root == "results" and len(segments) == 1:
        segments.append("value")
    elif not segments and root in ("contact", "input"):
        segments.append("name" if root == "contact" else "text")
    node: nodes.Expr = nodes.Name(root, "load")
    for segment in segments:
        node = nodes.Getitem(node, nodes.Const(segment), "load")
    return node


def _call(name: str, *args: nodes.Expr) -> nodes.Expr:
    return nodes.Call(nodes.Name(f"fn_{name}", "load"), list(args), [], None, None)


class _Parser:
    """Recursive descent over the tokens of one ``@(...)``; see the module grammar."""

    def __init__(self, tokens: list[Token], names: set[str]) -> None:
        self.tokens = tokens
        self.names = names
        self.i = 0

    def parse(self) -> nodes.Expr:
        node = self.expr()
        token = self.tokens[self.i]
        if token.kind != "end":
            raise ExpressionError(f"unexpected {token.value!r}", token.pos)
        return node

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self, *ops: str) -> Token | None:
        token = self.tokens[self.i]
        if token.kind == "op" and token.value in ops:
            self.i += 1
            return token
        return None

    def expect(self, op: str) -> None:
        if self.take(op) is None:
            token = self.peek()
            found = "end of expression" if token.kind == "end" else repr(token.value)
            raise ExpressionError(f"expected {op!r} but found {found}", token.pos)

    def expr(self) -> nodes.Expr:
        left = self.binary(0)
        if op := self.take(*_COMPARISONS):
            left = _call(OPERATORS[op.value], left, self.binary(0))
        return left

    _LEVELS = (("&",), ("+", "-"), ("*", "/"))

    def binary(self, level: int) -> nodes.Expr:
        if level == len(self._LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while op := self.take(*self._LEVELS[level]):
            left = _call(OPERATORS[op.value], left, self.binary(level + 1))
        return left

    def unary(self) -> nodes.Expr:
        if self.take("-"):
            return _call("neg", self.unary())
        return self.atom()

    def atom(self) -> nodes.Expr:
        token = self.peek()
        self.i += 1
        if token.kind == "num":
            return nodes.Const(format(Decimal(token.value).normalize(), "f"))
        if token.kind == "str":
            return nodes.Const(token.value)
        if token.kind == "op" and token.value == "(":
            node = self.expr()
            self.expect(")")
            return node
        if token.kind == "path":
            if self.take("("):
                return self.call(token)
            if token.value.lower() in ("true", "false"):
                return nodes.Const(token.value.lower() == "true")
            root = token.value.split(".")[0]
            if token.value.lower() in FUNCTIONS:
                raise ExpressionError(f"{token.value}() must be called with parentheses", token.pos)
            if root not in TOP_NAMES:
                raise ExpressionError(f"unknown name {root!r}", token.pos)
            return _path_node(token.value, token.pos, self.names)
        found = "end of expression" if token.kind == "end" else repr(token.value)
        raise ExpressionError(f"expected a value but found {found}", token.pos)

    def call(self, name: Token) -> nodes.Expr:
        function = name.value.lower()
        if function not in FUNCTIONS:
            raise ExpressionError(f"unknown function {name.value!r}", name.pos)
        args: list[nodes.Expr] = []
        starts: list[int] = []
        if not self.take(")"):
            starts.append(self.peek().pos)
            args.append(self.expr())
            while self.take(","):
                starts.append(self.peek().pos)
                args.append(self.expr())
            self.expect(")")
        low, high = FUNCTIONS[function]
        if not low <= len(args) <= high:
            wanted = str(low) if low == high else f"{low} to {high}"
            raise ExpressionError(
                f"{function}() takes {wanted} argument(s), got {len(args)}", name.pos
            )
        fmt = args[1] if function == "format_date" and len(args) == 2 else None
        if isinstance(fmt, nodes.Const) and (problem := date_format_problem(str(fmt.value))):
            raise ExpressionError(problem, starts[1])
        return _call(function, *args)
