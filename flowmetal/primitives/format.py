"""``format``: Java's format specifiers, as Clojure's ``format`` takes them.

A specifier is ``%[index$][flags][width][.precision]conversion``.  Conversions: ``s S``
(a value as ``str`` prints it; nil as ``nil``), ``d`` (integers), ``o x X`` (integers in
octal and hex; a negative one with a sign), ``f e E g G`` (numbers: integers and ratios
too), ``b B`` (truth), ``c`` (a one-character string, or a code point), ``%`` and ``n``.
Flags: ``-`` left-justify, ``0`` pad with zeros, ``+`` and space for the sign of a
positive number, ``,`` group digits, ``(`` negative numbers in parentheses, ``#`` the
alternate form (``0x``, ``0``).  ``%<s`` takes the previous argument again.  Decimal
rounding is half up on the shortest decimal text of a float, as Java's is.
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

from .. import limits
from ..printer import display_string, shown
from ..procedures import define
from ..structs import dataclass
from ..values import FlowmetalError, Regex, is_number, truthy

_SPEC = re.compile(r"%(?:(\d+)\$|(<))?([-#+ 0,(]*)(\d+)?(?:\.(\d+))?([a-zA-Z%])")

# What each conversion takes and which flags it allows.
_FLAGS = {"s": "-", "S": "-", "b": "-", "B": "-", "c": "-", "C": "-", "d": "-+ 0,(",
          "o": "-#0", "x": "-#0", "X": "-#0", "f": "-#+ 0,(", "e": "-#+ 0(", "E": "-#+ 0(",
          "g": "-+ 0,(", "G": "-+ 0,(", "%": "-", "n": ""}

# Beyond this width or precision a specifier is refused rather than built.
MAX_WIDTH = 100_000


def _error(message: str) -> FlowmetalError:
    return FlowmetalError(f"format: {message}", "format-error")


@dataclass(frozen=True)
class Spec:
    """One parsed specifier."""

    text: str
    index: int | None  # 1-based argument index, 0 for "the previous one", None: the next
    flags: str
    width: int | None
    precision: int | None
    conversion: str


def _parse(m: re.Match) -> Spec:
    index = int(m.group(1)) if m.group(1) else (0 if m.group(2) else None)
    flags, conversion = m.group(3), m.group(6)
    width = int(m.group(4)) if m.group(4) else None
    precision = int(m.group(5)) if m.group(5) is not None else None
    spec = Spec(m.group(), index, flags, width, precision, conversion)
    allowed = _FLAGS.get(conversion)
    if allowed is None:
        raise _error(f"unknown conversion `{conversion}` in `{spec.text}`")
    for flag in flags:
        if flag not in allowed:
            raise _error(f"the flag `{flag}` does not go with `%{conversion}` in `{spec.text}`")
    if len(set(flags)) != len(flags) or ("-" in flags and "0" in flags) or \
            ("+" in flags and " " in flags):
        raise _error(f"conflicting flags in `{spec.text}`")
    if ("-" in flags or "0" in flags) and width is None:
        raise _error(f"`{spec.text}` needs a width for its flags")
    if max(width or 0, precision or 0) > MAX_WIDTH:
        raise _error(f"the width or precision of `{spec.text}` is over {MAX_WIDTH:,}")
    if precision is not None and conversion in "dcCoxX%n":
        raise _error(f"`%{conversion}` takes no precision, in `{spec.text}`")
    if conversion == "n" and width is not None:
        raise _error(f"`%n` takes no width, in `{spec.text}`")
    return spec


def _pad(spec: Spec, body: str) -> str:
    width = spec.width or 0
    if len(body) >= width:
        return body
    return body.ljust(width) if "-" in spec.flags else body.rjust(width)


def _group(digits: str) -> str:
    """Integer digits with a comma every three."""
    head = len(digits) % 3 or 3
    return ",".join([digits[:head]] + [digits[i:i + 3] for i in range(head, len(digits), 3)])


def _signed(spec: Spec, negative: bool, digits: str, prefix: str = "") -> str:
    """A number's text with its sign, prefix and zero padding as the flags ask."""
    flags = spec.flags
    if negative:
        lead, trail = ("(", ")") if "(" in flags else ("-", "")
    else:
        lead, trail = ("+" if "+" in flags else " " if " " in flags else ""), ""
    lead += prefix
    if "0" in flags and spec.width:
        digits = digits.rjust(spec.width - len(lead) - len(trail), "0")
    return _pad(spec, lead + digits + trail)


def _integer(spec: Spec, x: Any) -> str:
    if type(x) is not int:
        raise FlowmetalError(f"format: `{spec.text}` needs an integer, got {shown(x)}",
                             "type-error")
    c = spec.conversion
    if c == "d":
        digits = str(abs(x))
        return _signed(spec, x < 0, _group(digits) if "," in spec.flags else digits)
    digits = format(abs(x), {"o": "o", "x": "x", "X": "X"}[c])
    prefix = "" if "#" not in spec.flags else "0" if c == "o" else "0" + c
    return _signed(spec, x < 0, digits, prefix)


def _decimal(x: Any) -> Decimal:
    """A number as a Decimal: a float by its shortest text (so 0.125 and 2.675 round half
    up as they read), an integer exactly, a ratio to 60 significant digits."""
    if type(x) is float:
        return Decimal(repr(x))
    if type(x) is int:
        return Decimal(x)
    with localcontext() as ctx:
        ctx.prec = 60
        return Decimal(x.numerator) / Decimal(x.denominator)


def _fixed(d: Decimal, precision: int) -> str:
    with localcontext() as ctx:
        ctx.prec = max(60, d.adjusted() + precision + 2)
        return format(d.quantize(Decimal(1).scaleb(-precision), rounding=ROUND_HALF_UP), "f")


def _scientific(d: Decimal, precision: int, upper: bool) -> str:
    if d.is_zero():
        mantissa, exponent = "0" + ("." + "0" * precision if precision else ""), 0
    else:
        with localcontext() as ctx:
            ctx.prec, ctx.rounding = precision + 1, ROUND_HALF_UP
            rounded = +d
        exponent = rounded.adjusted()
        mantissa = _fixed(rounded.scaleb(-exponent), precision)
    text = f"{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    return text.upper() if upper else text


def _general(d: Decimal, precision: int, upper: bool) -> str:
    """``%g``: rounded to ``precision`` significant digits, written out in full from
    10^-4 up to 10^precision and in scientific notation beyond."""
    if d.is_zero():
        return _fixed(d, precision - 1)
    rounded = Decimal(_scientific(d, precision - 1, False))
    if Decimal("0.0001") <= rounded < Decimal(10) ** precision:
        return _fixed(d, precision - 1 - rounded.adjusted())
    return _scientific(d, precision - 1, upper)


def _floating(spec: Spec, x: Any) -> str:
    if not is_number(x):
        raise FlowmetalError(f"format: `{spec.text}` needs a number, got {shown(x)}",
                             "type-error")
    c = spec.conversion
    if type(x) is float and not math.isfinite(x):
        body = "NaN" if math.isnan(x) else "Infinity"
        negative = x < 0
        if "(" in spec.flags and negative:
            return _pad(spec, f"({body})")
        sign = "-" if negative else "+" if "+" in spec.flags and body != "NaN" else ""
        return _pad(spec, sign + body)
    d = _decimal(x)
    negative = d.is_signed()
    d = abs(d)
    precision = 6 if spec.precision is None else spec.precision
    if c == "f":
        text = _fixed(d, precision)
        if "#" in spec.flags and precision == 0:
            text += "."
    elif c in "eE":
        text = _scientific(d, precision, c == "E")
    else:
        text = _general(d, precision or 1, c == "G")
    if "," in spec.flags and c in "fgG" and "e" not in text.lower():
        whole, dot, frac = text.partition(".")
        text = _group(whole) + dot + frac
    return _signed(spec, negative, text)


def _char(spec: Spec, x: Any) -> str:
    if type(x) is str and len(x) == 1:
        text = x
    elif type(x) is int and 0 <= x <= 0x10FFFF and not 0xD800 <= x <= 0xDFFF:
        text = chr(x)  # (a surrogate is no character: no text can hold one)
    else:
        raise FlowmetalError(f"format: `{spec.text}` needs a one-character string or a "
                             f"code point, got {shown(x)}", "type-error")
    return _pad(spec, text.upper() if spec.conversion == "C" else text)


def _text(spec: Spec, x: Any) -> str:
    if spec.conversion in "bB":
        text = "true" if truthy(x) else "false"
    elif x is None:
        text = "nil"
    elif type(x) is Regex:
        text = x.pattern
    else:
        text = display_string(x)
    if spec.precision is not None:
        text = text[:spec.precision]
    return _pad(spec, text.upper() if spec.conversion.isupper() else text)


def _convert(spec: Spec, x: Any) -> str:
    c = spec.conversion
    if c in "sSbB":
        return _text(spec, x)
    if c in "doxX":
        return _integer(spec, x)
    if c in "cC":
        return _char(spec, x)
    return _floating(spec, x)


@define("format", min_args=1, max_args=None)
def format_(fmt: Any, *args: Any) -> str:
    """(format fmt & args): fmt with each %-specifier replaced by the next argument,
    formatted as Java's String.format (and Clojure's format) does."""
    if type(fmt) is not str:
        raise FlowmetalError(f"format: expected a format string, got {shown(fmt)}",
                             "type-error")
    out, pos, next_arg, last, size = [], 0, 0, None, 0
    for m in _SPEC.finditer(fmt):
        if "%" in fmt[pos:m.start()]:
            bad = fmt.index("%", pos)
            raise _error(f"malformed specifier at `{fmt[bad:bad + 8]}`")
        out.append(fmt[pos:m.start()])
        pos = m.end()
        spec = _parse(m)
        if spec.conversion == "%":
            out.append(_pad(spec, "%"))
            continue
        if spec.conversion == "n":
            out.append("\n")
            continue
        if spec.index is None:
            at = next_arg
            next_arg += 1
        elif spec.index == 0:
            if last is None:
                raise _error(f"`{spec.text}` refers to a previous argument, but there is none")
            at = last
        else:
            at = spec.index - 1
        if at >= len(args):
            raise _error(f"no argument for `{spec.text}` (given {len(args)})")
        last = at
        out.append(_convert(spec, args[at]))
        size += len(out[-1]) + len(out[-2])
        limits.check_chars("format", size)
    if "%" in fmt[pos:]:
        bad = fmt.index("%", pos)
        raise _error(f"malformed specifier at `{fmt[bad:bad + 8]}`")
    out.append(fmt[pos:])
    return "".join(out)

