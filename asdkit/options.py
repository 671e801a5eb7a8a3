"""Declared options: every config field and every defense option is declared once, here or in its defense.

An :class:`Option` carries its name, what it accepts (type and range or choices, as a
predicate and the words for it), its default at paper scale, the defaults of the other
scales where they differ, and a one-line doc naming the paper's section. Validation is one
function with one message format, after scikit-learn's parameter validation::

    The 'gamma' option of asd must be a float in (0, 1). Got 1.5 instead.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

__all__ = ["Option", "Options", "SCALE_PARENTS", "scale_chain", "integer", "real", "choice", "text", "flag", "any_of", "check_value",
           "resolve", "format_table"]

# A scale that sets no default of its own for an option takes its parent's: "lab" is the classroom's data
# and network with bigger budgets, so it names only what it changes.
SCALE_PARENTS: dict[str, str] = {"lab": "classroom"}


def scale_chain(scale: str) -> tuple[str, ...]:
    """``scale`` and its ancestors, the most general first: ``("classroom", "lab")`` for lab."""
    chain = [scale]
    while chain[-1] in SCALE_PARENTS:
        chain.append(SCALE_PARENTS[chain[-1]])
    return tuple(reversed(chain))


@dataclass(frozen=True)
class Option:
    """One declared option: name, what it accepts, default (paper scale), per-scale defaults, doc."""

    name: str
    default: Any
    accepts: Callable[[Any], bool]
    want: str  # the accepted values in words: "a float in (0, 1)"
    doc: str = ""
    scales: Mapping[str, Any] = field(default_factory=dict)  # scale -> default where it differs from ``default``

    def default_at(self, scale: str) -> Any:
        """The default of this option at ``scale`` (or at its parent scale, when it sets none)."""
        for s in reversed(scale_chain(scale)):
            if s in self.scales:
                return self.scales[s]
        return self.default


class Options(dict):
    """A defense's resolved options: a dict that also reads as attributes (``o.gamma``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no option {name!r}; options: {sorted(self)}") from None


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _interval(low: float | None, high: float | None, closed: str) -> tuple[str, Callable[[float], bool]]:
    lo_c, hi_c = closed in ("both", "left"), closed in ("both", "right")
    text = f"{'[' if lo_c else '('}{'-inf' if low is None else low}, {'inf' if high is None else high}{']' if hi_c and high is not None else ')'}"

    def inside(v: float) -> bool:
        if low is not None and (v < low or (v == low and not lo_c)):
            return False
        return high is None or v < high or (v == high and hi_c)

    return text, inside


def integer(name: str, default: int, *, low: int | None = None, high: int | None = None, doc: str = "", scales=None) -> Option:
    """An int option in [low, high]."""
    text, inside = _interval(low, high, "both")
    return Option(name, default, lambda v: _is_int(v) and inside(v), f"an int in {text}", doc, scales or {})


def real(name: str, default: float, *, low: float | None = None, high: float | None = None, closed: str = "both",
         doc: str = "", scales=None) -> Option:
    """A float option in an interval; ``closed`` is "both", "left", "right" or "neither"; ints are accepted."""
    text, inside = _interval(low, high, closed)
    return Option(name, default, lambda v: _is_real(v) and inside(v), f"a float in {text}", doc, scales or {})


def choice(name: str, default: Any, choices: Iterable[Any], *, doc: str = "", scales=None) -> Option:
    """An option that is one of ``choices``."""
    allowed = tuple(choices)
    return Option(name, default, lambda v: isinstance(v, (str, int)) and not isinstance(v, bool) and v in allowed,
                  f"one of {list(allowed)}", doc, scales or {})


def text(name: str, default: str = "", *, want: str = "a string", doc: str = "", scales=None) -> Option:
    """A free string option (a path, a name)."""
    return Option(name, default, lambda v: isinstance(v, str), want, doc, scales or {})


def flag(name: str, default: bool, *, doc: str = "", scales=None) -> Option:
    """A bool option."""
    return Option(name, default, lambda v: isinstance(v, bool), "True or False", doc, scales or {})


def any_of(name: str, default: Any, *parts: Option, doc: str = "", scales=None) -> Option:
    """An option accepting what any of ``parts`` accepts (e.g. an int, or a fraction)."""
    return Option(name, default, lambda v: any(p.accepts(v) for p in parts), " or ".join(p.want for p in parts), doc, scales or {})


def check_value(option: Option, value: Any, owner: str) -> None:
    """Raise the one ValueError of asdkit's validation when ``value`` is not accepted by ``option``.

    ``owner`` reads after the name: "option of asd", "field of the config".
    """
    try:
        ok = bool(option.accepts(value))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"The {option.name!r} {owner} must be {option.want}. Got {value!r} instead.")


def resolve(table: Iterable[Option], given: Mapping[str, Any], *, scale: str, owner: str, what: str) -> Options:
    """Every option of ``table`` at ``scale``, updated by ``given``; unknown names and bad values raise ValueError."""
    table = tuple(table)
    names = [o.name for o in table]
    unknown = sorted(set(given) - set(names))
    if unknown:
        import difflib

        close = [m for u in unknown for m in difflib.get_close_matches(u, names, n=1)]
        hint = f" Did you mean {close}?" if close else ""
        offered = f"its options: {names}" if names else "it takes no options"
        raise ValueError(f"Unknown {what} {unknown} for {owner!r}; {offered}.{hint}")
    out = Options()
    for opt in table:
        value = given.get(opt.name, opt.default_at(scale))
        check_value(opt, value, f"option of {owner}")
        out[opt.name] = value
    return out


def format_table(table: Iterable[Option], scales: Iterable[str], *, title: str = "") -> str:
    """The options as plain text, two lines each: name, accepted values, default per scale; then what it is."""
    scales = tuple(scales)
    table = tuple(table)
    width = max((len(o.name) for o in table), default=4) + 2
    lines = [title] if title else []
    for opt in table:
        defaults = [opt.default_at(s) for s in scales]
        shown = repr(defaults[0]) if all(d == defaults[0] for d in defaults) else " · ".join(f"{s} {d!r}" for s, d in zip(scales, defaults))
        lines.append(f"  {opt.name.ljust(width)}{opt.want}; default {shown}")
        if opt.doc:
            lines.append(f"  {'':{width}}{opt.doc}")
    return "\n".join(lines)
