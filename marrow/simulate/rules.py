"""Decision rules over posterior quantities: a small grammar, parsed, never evaluated as Python.

    rule     := or
    or       := and ("or" and)*
    and      := atom ("and" atom)*
    atom     := "(" or ")" | term OP number
    term     := "P" "(" NAME OP number ")" | ("mean" | "median") "(" NAME ")"
    OP       := ">" | ">=" | "<" | "<="
    number   := ["-"] digits ["." digits] [exponent]

`P(response_rate > 0.15) > 0.95` is the posterior probability that the quantity exceeds 0.15, compared
with 0.95; `mean(q)` and `median(q)` are the posterior mean and median. Names are checked against the
quantities the caller gives (the model's reported quantities). Errors are `UsageError`s naming the rule
and the column. A parsed rule is a tree of frozen dataclasses; `evaluate` walks it with numpy, so the
same rule decides one replicate (floats) or many at once (arrays).

`DecisionRules` holds a design's rules (interim futility/efficacy, final go and no-go), and
`interim_outcome`/`final_outcome` apply them: the one place where the order of the checks is fixed.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from marrow.errors import UsageError

OPS = (">=", "<=", ">", "<")
STATS = ("mean", "median")
_TOKEN = re.compile(
    r"\s*(?:(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>>=|<=|>|<)"
    r"|(?P<paren>[()])|(?P<minus>-))"
)


def fmt_threshold(value: float) -> str:
    """A threshold as written in term keys: shortest exact-looking form (0.15, 12, 1e-05)."""
    return f"{float(value):.12g}"


def term_key(quantity: str, op: str, threshold: float) -> str:
    """The normalised text of a probability term, e.g. `P(response_rate > 0.15)` (record column suffix)."""
    return f"P({quantity} {op} {fmt_threshold(threshold)})"


@dataclass(frozen=True)
class Prob:
    """P(quantity op threshold): a posterior probability."""

    quantity: str
    op: str
    threshold: float

    @property
    def key(self) -> str:
        return term_key(self.quantity, self.op, self.threshold)


@dataclass(frozen=True)
class Stat:
    """mean(quantity) or median(quantity): a posterior summary."""

    stat: str
    quantity: str

    @property
    def key(self) -> str:
        return f"{self.stat}({self.quantity})"


Term = Prob | Stat


@dataclass(frozen=True)
class Compare:
    """term op value."""

    term: Term
    op: str
    value: float

    def __str__(self) -> str:
        return f"{self.term.key} {self.op} {fmt_threshold(self.value)}"


@dataclass(frozen=True)
class BoolOp:
    """`and` / `or` of two or more parts."""

    op: str
    parts: tuple[Node, ...]

    def __str__(self) -> str:
        return f" {self.op} ".join(f"({p})" if isinstance(p, BoolOp) else str(p) for p in self.parts)


Node = Compare | BoolOp


@dataclass(frozen=True)
class Rule:
    """A parsed rule: the user's text and its tree; `str(rule)` is the normalised text."""

    text: str
    node: Node

    def __str__(self) -> str:
        return str(self.node)


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    column: int  # 1-based


def _error(text: str, column: int, message: str) -> UsageError:
    pointer = " " * (column - 1) + "^"
    return UsageError(f"rule {text!r}, column {column}: {message}\n    {text}\n    {pointer}")


def tokenize(text: str) -> list[_Token]:
    """Numbers, names, comparison operators and parentheses; anything else is an error at its column."""
    tokens = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.lastgroup is None:
            start = pos + len(text[pos:]) - len(text[pos:].lstrip())
            raise _error(text, start + 1, f"unexpected character {text[start]!r}")
        kind = match.lastgroup
        tokens.append(_Token(kind, match.group(kind), match.start(kind) + 1))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str, quantities: Sequence[str]):
        self.text = text
        self.quantities = list(quantities)
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def fail(self, message: str, token: _Token | None = None) -> UsageError:
        token = token or self.peek()
        column = token.column if token else len(self.text.rstrip()) + 1
        return _error(self.text, column, message)

    def take(self, kind: str, text: str | None = None, what: str = "") -> _Token:
        token = self.peek()
        if token is None or token.kind != kind or (text is not None and token.text.lower() != text):
            found = "the end of the rule" if token is None else repr(token.text)
            raise self.fail(f"expected {what or text or kind}, found {found}")
        self.i += 1
        return token

    def parse(self) -> Node:
        if not self.tokens:
            raise self.fail("the rule is empty")
        node = self.or_()
        if self.peek() is not None:
            raise self.fail(f"expected 'and', 'or' or the end of the rule, found {self.peek().text!r}")  # type: ignore[union-attr]
        return node

    def _chain(self, op: str, part: Callable[[], Node]) -> Node:
        parts = [part()]
        while (token := self.peek()) is not None and token.kind == "name" and token.text.lower() == op:
            self.i += 1
            parts.append(part())
        return parts[0] if len(parts) == 1 else BoolOp(op, tuple(parts))

    def or_(self) -> Node:
        return self._chain("or", self.and_)

    def and_(self) -> Node:
        return self._chain("and", self.atom)

    def atom(self) -> Node:
        token = self.peek()
        if token is not None and token.kind == "paren" and token.text == "(":
            self.i += 1
            node = self.or_()
            self.take("paren", ")", "')'")
            return node
        term = self.term()
        op = self.take("op", what="a comparison (>, >=, <, <=)").text
        value = self.number()
        if isinstance(term, Prob) and not 0.0 <= value <= 1.0:
            raise self.fail(f"a probability is compared with {value:g}, outside 0..1", self.tokens[self.i - 1])
        return Compare(term, op, value)

    def number(self) -> float:
        sign = 1.0
        token = self.peek()
        if token is not None and token.kind == "minus":
            self.i += 1
            sign = -1.0
        token = self.take("number", what="a number")
        value = sign * float(token.text)
        if not math.isfinite(value):
            raise self.fail("the number is not finite", token)
        return value

    def quantity(self) -> str:
        token = self.take("name", what="a quantity name")
        if token.text not in self.quantities:
            close = difflib.get_close_matches(token.text, self.quantities, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            known = ", ".join(self.quantities) or "none"
            raise self.fail(f"unknown quantity {token.text!r}{hint} (known: {known})", token)
        return token.text

    def term(self) -> Term:
        token = self.take("name", what="P(...), mean(...), median(...) or '('")
        name = token.text
        if name == "P":
            self.take("paren", "(", "'(' after P")
            quantity = self.quantity()
            op = self.take("op", what="a comparison (>, >=, <, <=)").text
            threshold = self.number()
            self.take("paren", ")", "')'")
            return Prob(quantity, op, threshold)
        if name.lower() in STATS:
            self.take("paren", "(", f"'(' after {name}")
            quantity = self.quantity()
            self.take("paren", ")", "')'")
            return Stat(name.lower(), quantity)
        raise self.fail(f"expected P(...), mean(...) or median(...), found {name!r}", token)


def parse(text: str, quantities: Sequence[str]) -> Rule:
    """Parse a rule's text; every quantity must be one of `quantities`. Raises UsageError."""
    if not isinstance(text, str):
        raise UsageError(f"a rule must be text, got {type(text).__name__}")
    return Rule(text, _Parser(text, quantities).parse())


def _walk(node: Node) -> list[Term]:
    if isinstance(node, Compare):
        return [node.term]
    return [t for part in node.parts for t in _walk(part)]


def all_terms(rule: Rule | None) -> list[Term]:
    """The distinct terms of a rule, in order of appearance (P terms and mean/median)."""
    if rule is None:
        return []
    seen: dict[str, Term] = {}
    for term in _walk(rule.node):
        seen.setdefault(term.key, term)
    return list(seen.values())


def terms(rule: Rule | None) -> list[Prob]:
    """The distinct P(...) terms of a rule, in order: those a study stores exactly as `a{k}:rule:{key}`
    (mean and median are read from the stored summaries)."""
    return [t for t in all_terms(rule) if isinstance(t, Prob)]


Lookup = Mapping[str, object] | Callable[[Term], object]

_COMPARE = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal}


def _value(lookup: Lookup, term: Term):
    if callable(lookup) and not isinstance(lookup, Mapping):
        return lookup(term)
    try:
        return lookup[term.key]
    except KeyError:
        raise UsageError(f"no value for {term.key}") from None


def evaluate_array(node: Rule | Node, lookup: Lookup):
    """The rule's truth for the values `lookup` gives (floats or numpy arrays, broadcast)."""
    if isinstance(node, Rule):
        node = node.node
    if isinstance(node, Compare):
        return _COMPARE[node.op](np.asarray(_value(lookup, node.term), dtype=np.float64), node.value)
    results = [evaluate_array(part, lookup) for part in node.parts]
    combine = np.logical_and if node.op == "and" else np.logical_or
    out = results[0]
    for result in results[1:]:
        out = combine(out, result)
    return out


def evaluate(rule: Rule | Node, lookup: Lookup) -> bool:
    """True when the rule holds; `lookup` maps a term key (or term) to its value. NaN compares False."""
    return bool(evaluate_array(rule, lookup))


def replace_cutoff(rule: Rule, key: str, value: float) -> Rule:
    """The rule with every comparison of term `key` moved to cut-off `value` (calibration); its text is
    the normalised text of the new rule."""

    def swap(node: Node) -> Node:
        if isinstance(node, Compare):
            return Compare(node.term, node.op, value) if node.term.key == key else node
        return BoolOp(node.op, tuple(swap(p) for p in node.parts))

    node = swap(rule.node)
    return Rule(str(node), node)


def comparisons(rule: Rule | None) -> list[Compare]:
    """Every comparison in the rule, in order."""
    if rule is None:
        return []

    def walk(node: Node) -> list[Compare]:
        return [node] if isinstance(node, Compare) else [c for p in node.parts for c in walk(p)]

    return walk(rule.node)


# Decisions ------------------------------------------------------------------------------------------

GO, NO_GO, GRAY = "go", "no-go", "gray"


@dataclass(frozen=True)
class Interim:
    """The stopping rules at one interim analysis (either may be absent)."""

    futility: Rule | None = None
    efficacy: Rule | None = None


@dataclass(frozen=True)
class DecisionRules:
    """A design's rules: one `Interim` per interim analysis (analyses 1..K-1), then the final go rule
    and an optional no-go rule (without it every final that is not go is no-go)."""

    interims: tuple[Interim, ...]
    go: Rule
    no_go: Rule | None = None

    @property
    def n_analyses(self) -> int:
        return len(self.interims) + 1

    def rules_at(self, k: int) -> list[Rule]:
        """The rules applied at analysis k (1-based)."""
        if k < self.n_analyses:
            interim = self.interims[k - 1]
            return [r for r in (interim.futility, interim.efficacy) if r is not None]
        return [r for r in (self.go, self.no_go) if r is not None]

    def terms_at(self, k: int) -> list[Term]:
        """The distinct terms analysis k needs (P terms go into `a{k}:rule:...`)."""
        seen: dict[str, Term] = {}
        for rule in self.rules_at(k):
            for term in all_terms(rule):
                seen.setdefault(term.key, term)
        return list(seen.values())

    def described(self) -> list[tuple[str, str]]:
        """(when, rule text) pairs for display."""
        rows = []
        for k, interim in enumerate(self.interims, start=1):
            if interim.futility is not None:
                rows.append((f"interim {k}: stop for futility", interim.futility.text))
            if interim.efficacy is not None:
                rows.append((f"interim {k}: stop for efficacy", interim.efficacy.text))
        rows.append(("final: go", self.go.text))
        if self.no_go is not None:
            rows.append(("final: no-go", self.no_go.text))
        return rows


def decision_rules(
    go: str,
    quantities: Sequence[str],
    no_go: str | None = None,
    interims: Sequence[tuple[str | None, str | None]] = (),
) -> DecisionRules:
    """Parse a design's rule texts: `interims` is one (futility, efficacy) pair of texts per interim."""
    return DecisionRules(
        tuple(
            Interim(
                parse(fut, quantities) if fut else None,
                parse(eff, quantities) if eff else None,
            )
            for fut, eff in interims
        ),
        parse(go, quantities),
        parse(no_go, quantities) if no_go else None,
    )


def as_rules(design: object, quantities: Sequence[str]) -> DecisionRules:
    """`design` itself when it is a DecisionRules, else parsed from a design-like object with rule texts
    (`.interims`, each with `.futility`/`.efficacy`, then `.go` and `.no_go`), such as a design file's."""
    if isinstance(design, DecisionRules):
        return design
    try:
        interims = [(i.futility, i.efficacy) for i in design.interims]  # type: ignore[attr-defined]
        go, no_go = design.go, design.no_go  # type: ignore[attr-defined]
    except AttributeError:
        raise UsageError(f"cannot read decision rules from a {type(design).__name__}") from None
    return decision_rules(go, quantities, no_go=no_go, interims=interims)


def interim_outcome(interim: Interim, lookup: Lookup):
    """(stop for futility, stop for efficacy) as boolean arrays. Futility is checked first: a trial
    meeting both stops for futility (the conservative choice for the type I error)."""
    futility = np.asarray(evaluate_array(interim.futility, lookup)) if interim.futility else np.asarray(False)
    efficacy = np.asarray(evaluate_array(interim.efficacy, lookup)) if interim.efficacy else np.asarray(False)
    return futility, np.logical_and(efficacy, np.logical_not(futility))


def final_outcome(rules: DecisionRules, lookup: Lookup):
    """(go, no-go) boolean arrays at the final analysis; gray is neither. Go is checked first."""
    go = np.asarray(evaluate_array(rules.go, lookup))
    if rules.no_go is None:
        return go, np.logical_not(go)
    return go, np.logical_and(np.asarray(evaluate_array(rules.no_go, lookup)), np.logical_not(go))
