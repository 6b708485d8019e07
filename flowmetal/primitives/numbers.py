"""Arithmetic and numeric comparison over int, float and ratio."""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Any

from .. import limits
from ..printer import shown
from ..procedures import binary, define
from ..values import FALSE, TRUE, FlowmetalError, boolean

NUMS = (int, float, Fraction)


def _bad(op: str, x: Any) -> FlowmetalError:
    return FlowmetalError(f"{op}: expected a number, got {shown(x)}", "type-error")


def num(op: str, x: Any) -> Any:
    """``x`` if it is a number, else a type error naming ``op``."""
    t = type(x)
    if t is int or t is float or t is Fraction:
        return x
    raise _bad(op, x)


def integer(op: str, x: Any) -> int:
    """``x`` if it is an integer, else a type error naming ``op``."""
    if type(x) is int:
        return x
    raise FlowmetalError(f"{op}: expected an integer, got {shown(x)}", "type-error")


def norm(x: Any) -> Any:
    """A ratio with denominator 1 becomes an int."""
    if type(x) is Fraction and x.denominator == 1:
        return x.numerator
    return x


@define("+", min_args=0, max_args=None)
def add(*xs: Any) -> Any:
    """Sum of the arguments."""
    if len(xs) == 2:
        a, b = xs
        if type(a) is int and type(b) is int:
            return a + b
    total = 0
    for x in xs:
        total += num("+", x)
    return norm(total)


@define("-", min_args=1, max_args=None)
def sub(*xs: Any) -> Any:
    """Difference; with one argument, its negation."""
    if len(xs) == 2:
        a, b = xs
        if type(a) is int and type(b) is int:
            return a - b
    if len(xs) == 1:
        return -num("-", xs[0])
    total = num("-", xs[0])
    for x in xs[1:]:
        total -= num("-", x)
    return norm(total)


@define("*", min_args=0, max_args=None)
def mul(*xs: Any) -> Any:
    """Product of the arguments."""
    total = 1
    for x in xs:
        limits.check_product("*", total, num("*", x))
        total *= x
    return norm(total)


def _div2(a: Any, b: Any) -> Any:
    a, b = num("/", a), num("/", b)
    inexact = type(a) is float or type(b) is float
    if b == 0:
        if not inexact:
            raise FlowmetalError("division by zero", "arithmetic-error")
        if a == 0 or a != a:
            return math.nan
        # IEEE 754: the sign of the infinity is the product of the signs (of -0.0 too).
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    if inexact:
        return a / b
    return norm(Fraction(a) / b)


@define("/", min_args=1, max_args=None)
def div(*xs: Any) -> Any:
    """Division; exact on integers and ratios (``(/ 1 3)`` is the ratio 1/3).  An exact
    division by zero is an error; with a float it gives ##Inf, ##-Inf or ##NaN."""
    if len(xs) == 1:
        return _div2(1, xs[0])
    total = xs[0]
    for x in xs[1:]:
        total = _div2(total, x)
    return total


def _divisor(op: str, a: Any, b: Any) -> tuple[Any, Any]:
    a, b = num(op, a), num(op, b)
    if b == 0:
        raise FlowmetalError(f"{op}: division by zero", "arithmetic-error")
    return a, b


@define("quot", min_args=2)
def quot(a: Any, b: Any) -> Any:
    """The quotient truncated toward zero, as Clojure's: exact for integers and ratios,
    a float when either is a float (``(quot 7.5 2)`` is 3.0)."""
    a, b = _divisor("quot", a, b)
    if type(a) is int and type(b) is int:
        q = abs(a) // abs(b)
        return q if (a < 0) == (b < 0) else -q
    if type(a) is float or type(b) is float:
        q = a / b
        if not math.isfinite(q):
            raise FlowmetalError(f"quot: {shown(a)} / {shown(b)} has no finite quotient",
                                 "arithmetic-error")
        return float(math.trunc(q))
    return math.trunc(Fraction(a) / Fraction(b))


@define("rem", min_args=2)
def rem(a: Any, b: Any) -> Any:
    """The remainder of ``quot``: it has the sign of the dividend."""
    a, b = _divisor("rem", a, b)
    if type(a) is float or type(b) is float:
        return math.fmod(a, b)
    return a - b * quot(a, b)


@define("mod", min_args=2)
def mod(a: Any, b: Any) -> Any:
    """The modulus: it has the sign of the divisor (Clojure's ``mod``, from ``rem``)."""
    a, b = _divisor("mod", a, b)
    m = rem(a, b)
    return m if m == 0 or (a > 0) == (b > 0) else m + b


@define("inc", min_args=1)
def inc(x: Any) -> Any:
    """x + 1."""
    if type(x) is int:
        return x + 1
    return norm(num("inc", x) + 1)


@define("dec", min_args=1)
def dec(x: Any) -> Any:
    """x - 1."""
    if type(x) is int:
        return x - 1
    return norm(num("dec", x) - 1)


def _compare_chain(op: str, xs: tuple, test) -> Any:
    for x in xs:
        num(op, x)
    for a, b in zip(xs, xs[1:]):
        if not test(a, b):
            return FALSE
    return TRUE


@define("<", min_args=1, max_args=None)
def lt(*xs: Any) -> Any:
    """True if the numbers increase strictly."""
    if len(xs) == 2:
        a, b = xs
        if type(a) is int and type(b) is int:
            return TRUE if a < b else FALSE
    return _compare_chain("<", xs, lambda a, b: a < b)


@define(">", min_args=1, max_args=None)
def gt(*xs: Any) -> Any:
    """True if the numbers decrease strictly."""
    if len(xs) == 2:
        a, b = xs
        if type(a) is int and type(b) is int:
            return TRUE if a > b else FALSE
    return _compare_chain(">", xs, lambda a, b: a > b)


@define("<=", min_args=1, max_args=None)
def le(*xs: Any) -> Any:
    """True if the numbers never decrease."""
    return _compare_chain("<=", xs, lambda a, b: a <= b)


@define(">=", min_args=1, max_args=None)
def ge(*xs: Any) -> Any:
    """True if the numbers never increase."""
    return _compare_chain(">=", xs, lambda a, b: a >= b)


@define("==", min_args=1, max_args=None)
def num_eq(*xs: Any) -> Any:
    """Numeric equality: true if all the numbers are equal in value."""
    return _compare_chain("==", xs, lambda a, b: a == b)


@define("zero?", min_args=1)
def is_zero(x: Any) -> Any:
    """True for 0, 0.0 and 0/1."""
    return boolean(num("zero?", x) == 0)


@define("pos?", min_args=1)
def is_pos(x: Any) -> Any:
    """True for numbers above zero."""
    return boolean(num("pos?", x) > 0)


@define("neg?", min_args=1)
def is_neg(x: Any) -> Any:
    """True for numbers below zero."""
    return boolean(num("neg?", x) < 0)


@define("even?", min_args=1)
def is_even(x: Any) -> Any:
    """True for even integers."""
    return boolean(integer("even?", x) % 2 == 0)


@define("odd?", min_args=1)
def is_odd(x: Any) -> Any:
    """True for odd integers."""
    return boolean(integer("odd?", x) % 2 == 1)


@define("max", min_args=1, max_args=None)
def max_(*xs: Any) -> Any:
    """The largest argument (##NaN if one is, wherever it is)."""
    xs = tuple(num("max", x) for x in xs)
    nan = next((x for x in xs if x != x), None)
    return max(xs) if nan is None else nan


@define("min", min_args=1, max_args=None)
def min_(*xs: Any) -> Any:
    """The smallest argument (##NaN if one is, wherever it is)."""
    xs = tuple(num("min", x) for x in xs)
    nan = next((x for x in xs if x != x), None)
    return min(xs) if nan is None else nan


@define("abs", min_args=1)
def abs_(x: Any) -> Any:
    """Absolute value."""
    return abs(num("abs", x))


@define("number?", min_args=1)
def is_number(x: Any) -> Any:
    """True for ints, floats and ratios."""
    return boolean(type(x) in NUMS)


@define("integer?", min_args=1)
def is_integer(x: Any) -> Any:
    """True for integers."""
    return boolean(type(x) is int)


@define("float?", min_args=1)
def is_float(x: Any) -> Any:
    """True for floats."""
    return boolean(type(x) is float)


@define("NaN?", min_args=1)
def is_nan(x: Any) -> Any:
    """True for ##NaN."""
    return boolean(type(num("NaN?", x)) is float and math.isnan(x))


@define("infinite?", min_args=1)
def is_infinite(x: Any) -> Any:
    """True for ##Inf and ##-Inf."""
    return boolean(type(num("infinite?", x)) is float and math.isinf(x))


@define("ratio?", min_args=1)
def is_ratio(x: Any) -> Any:
    """True for ratios such as 1/3."""
    return boolean(type(x) is Fraction)


@define("numerator", min_args=1)
def numerator(x: Any) -> int:
    """The numerator of a ratio or integer."""
    return Fraction(num("numerator", x)).numerator


@define("denominator", min_args=1)
def denominator(x: Any) -> int:
    """The denominator of a ratio or integer."""
    return Fraction(num("denominator", x)).denominator


@define("float", min_args=1)
def to_float(x: Any) -> float:
    """The number as a float."""
    return float(num("float", x))


@define("int", min_args=1)
def to_int(x: Any) -> int:
    """The number truncated toward zero to an integer."""
    x = num("int", x)
    if type(x) is float and not math.isfinite(x):
        raise FlowmetalError(f"int: cannot convert {shown(x)}", "arithmetic-error")
    return int(x)


def _finite(op: str, x: Any) -> Any:
    """``x`` if it is a finite number (##Inf and ##NaN have no integer part)."""
    x = num(op, x)
    if type(x) is float and not math.isfinite(x):
        raise FlowmetalError(f"{op}: cannot convert {shown(x)}", "arithmetic-error")
    return x


@define("floor", min_args=1)
def floor(x: Any) -> int:
    """Largest integer not above x."""
    return math.floor(_finite("floor", x))


@define("ceil", min_args=1)
def ceil(x: Any) -> int:
    """Smallest integer not below x."""
    return math.ceil(_finite("ceil", x))


@define("round", min_args=1)
def round_(x: Any) -> int:
    """Nearest integer, halves away from zero."""
    x = Fraction(_finite("round", x))  # exact: float arithmetic would round the half
    return int(math.floor(abs(x) + Fraction(1, 2))) * (1 if x >= 0 else -1)


@define("sqrt", min_args=1)
def sqrt(x: Any) -> Any:
    """Square root (exact for perfect squares of integers)."""
    x = num("sqrt", x)
    if x < 0:
        raise FlowmetalError("sqrt: negative argument", "arithmetic-error")
    if type(x) is int:
        r = math.isqrt(x)
        if r * r == x:
            return r
    return math.sqrt(x)


@define("expt", min_args=2)
def expt(base: Any, power: Any) -> Any:
    """base raised to power (exact for integer powers of exact numbers)."""
    base, power = num("expt", base), num("expt", power)
    if type(power) is int and type(base) is not float:
        limits.check_power("expt", base, abs(power))
        if power < 0:
            if base == 0:
                raise FlowmetalError("division by zero", "arithmetic-error")
            return norm(Fraction(1) / Fraction(base) ** -power)
        return norm(Fraction(base) ** power) if type(base) is Fraction else base ** power
    return float(base) ** float(power)


@define("bit-and", min_args=2)
def bit_and(a: Any, b: Any) -> int:
    """Bitwise and."""
    return integer("bit-and", a) & integer("bit-and", b)


@define("bit-or", min_args=2)
def bit_or(a: Any, b: Any) -> int:
    """Bitwise or."""
    return integer("bit-or", a) | integer("bit-or", b)


@define("bit-xor", min_args=2)
def bit_xor(a: Any, b: Any) -> int:
    """Bitwise exclusive or."""
    return integer("bit-xor", a) ^ integer("bit-xor", b)


@define("bit-shift-left", min_args=2)
def shl(a: Any, n: Any) -> int:
    """a shifted left by n bits."""
    a, n = integer("bit-shift-left", a), integer("bit-shift-left", n)
    limits.check_shift("bit-shift-left", a, n)
    return a << n


@define("bit-shift-right", min_args=2)
def shr(a: Any, n: Any) -> int:
    """a shifted right by n bits."""
    return integer("bit-shift-right", a) >> integer("bit-shift-right", n)


@binary("+")
def add2(a: Any, b: Any) -> Any:
    return a + b if type(a) is int and type(b) is int else add(a, b)


@binary("-")
def sub2(a: Any, b: Any) -> Any:
    return a - b if type(a) is int and type(b) is int else sub(a, b)


@binary("*")
def mul2(a: Any, b: Any) -> Any:
    if type(a) is int and type(b) is int and \
            a.bit_length() + b.bit_length() <= limits.MAX_INT_BITS:
        return a * b
    return mul(a, b)


@binary("<")
def lt2(a: Any, b: Any) -> Any:
    if type(a) is int and type(b) is int:
        return TRUE if a < b else FALSE
    return lt(a, b)


@binary(">")
def gt2(a: Any, b: Any) -> Any:
    if type(a) is int and type(b) is int:
        return TRUE if a > b else FALSE
    return gt(a, b)


@binary("<=")
def le2(a: Any, b: Any) -> Any:
    if type(a) is int and type(b) is int:
        return TRUE if a <= b else FALSE
    return le(a, b)


@binary(">=")
def ge2(a: Any, b: Any) -> Any:
    if type(a) is int and type(b) is int:
        return TRUE if a >= b else FALSE
    return ge(a, b)


@define("gcd", min_args=0, max_args=None)
def gcd(*xs: Any) -> int:
    """The greatest common divisor of the integers, >= 0; (gcd) is 0."""
    return math.gcd(*(integer("gcd", x) for x in xs))


@define("lcm", min_args=0, max_args=None)
def lcm(*xs: Any) -> int:
    """The least common multiple of the integers, >= 0; (lcm) is 1."""
    return math.lcm(*(integer("lcm", x) for x in xs))


def _float(op: str, x: Any) -> float:
    """The number as a float; an integer too large for one is an infinity."""
    x = num(op, x)
    try:
        return float(x)
    except OverflowError:
        return math.inf if x > 0 else -math.inf


def _float_fn(name: str, fn, doc: str) -> None:
    """Define ``name`` as ``fn`` on floats, with IEEE results where Python raises: NaN
    outside the domain (as Java's Math does), an infinity on overflow."""

    def apply(x: Any) -> float:
        x = _float(name, x)
        try:
            return fn(x)
        except OverflowError:
            return math.inf
        except ValueError:
            return math.nan

    define(name, min_args=1, doc=doc)(apply)


_float_fn("exp", math.exp, "e raised to the power x.")
_float_fn("sin", math.sin, "The sine of x (radians).")
_float_fn("cos", math.cos, "The cosine of x (radians).")
_float_fn("tan", math.tan, "The tangent of x (radians).")
_float_fn("asin", math.asin, "The arc sine of x, in radians.")
_float_fn("acos", math.acos, "The arc cosine of x, in radians.")


def _ln(x: Any, fn=math.log, op: str = "log") -> float:
    """A logarithm with IEEE results: ##-Inf at 0, ##NaN below."""
    x = num(op, x)
    if x == 0:
        return -math.inf
    try:
        # math.log takes integers of any size exactly, so (log (expt 10 400)) is finite.
        return fn(x if type(x) is int else _float(op, x))
    except ValueError:
        return math.nan


@define("log", min_args=1, max_args=2)
def log(x: Any, base: Any = None) -> float:
    """(log x): the natural logarithm of x; (log x b): the logarithm of x in base b.
    (log 0) is ##-Inf, the log of a negative number ##NaN."""
    if base is None:
        return _ln(x)
    return _div2(_ln(x), _ln(base))


@define("log10", min_args=1)
def log10(x: Any) -> float:
    """The base-10 logarithm of x."""
    return _ln(x, math.log10, "log10")


@define("atan", min_args=1, max_args=2)
def atan(y: Any, x: Any = None) -> float:
    """(atan x): the arc tangent of x; (atan y x): the angle of the point (x, y), as
    atan2 (R7RS)."""
    if x is None:
        return math.atan(_float("atan", y))
    return math.atan2(_float("atan", y), _float("atan", x))


@define("atan2", min_args=2)
def atan2(y: Any, x: Any) -> float:
    """The angle in radians of the point (x, y), from -pi to pi."""
    return math.atan2(_float("atan2", y), _float("atan2", x))


@define("pow", min_args=2)
def pow_(base: Any, power: Any) -> float:
    """base raised to power, as floats (Math/pow); expt is exact for exact numbers."""
    base, power = _float("pow", base), _float("pow", power)
    try:
        return math.pow(base, power)
    except OverflowError:
        return math.inf if base > 0 or power % 2 != 1 else -math.inf
    except ValueError:  # a negative base to a fraction; zero to a negative power
        return math.inf if base == 0 else math.nan


# ---------------------------------------------------------------------------------------
# Numbers written as text


_SIGNED_DIGITS = re.compile(r"([+-]?)([0-9a-zA-Z]+)")


def parse_integer(text: str, radix: int = 10) -> int | None:
    """The integer ``text`` writes in ``radix`` (an optional sign, then digits, of any
    length), or None."""
    m = _SIGNED_DIGITS.fullmatch(text)
    # Checked here, not by int(): it would also take a prefix such as 0x or 0b.
    if m is None or not m.group(2).isascii() or any(
            int(c, 36) >= radix for c in m.group(2)):
        return None
    from ..reader import _parse_int as parse_digits  # (digit strings of any length; the
    # reader is imported where text is read: most starts read none)

    value = parse_digits(m.group(2), radix)
    return -value if m.group(1) == "-" else value


_NUMBER_TOKEN = re.compile(r"[^\s,()\[\]{}\";`~'@^\\]+")


@define("string->number", min_args=1, max_args=2)
def string_to_number(s: Any, radix: Any = 10) -> Any:
    """(string->number s) or (string->number s radix): the number s writes, or nil.
    In radix 10, s is read as a number literal (ints, ratios, floats, 0x1F, 2r1010,
    ##Inf); in another radix (2 to 36) it is an integer or a ratio of integers."""
    if type(s) is not str:
        raise FlowmetalError(f"string->number: expected a string, got {shown(s)}",
                             "type-error")
    if type(radix) is not int or not 2 <= radix <= 36:
        raise FlowmetalError(f"string->number: a radix must be an integer from 2 to 36, "
                             f"got {shown(radix)}", "type-error")
    if radix == 10:
        return _read_number(s)
    numerator, slash, denominator = s.partition("/")
    top = parse_integer(numerator, radix)
    if not slash:
        return top
    bottom = parse_integer(denominator, radix)
    if top is None or bottom is None or bottom <= 0 or denominator[:1] in "+-":
        return None
    return norm(Fraction(top, bottom))


def _read_number(s: str) -> Any:
    if not _NUMBER_TOKEN.fullmatch(s):
        return None
    from ..reader import read_all

    try:
        forms = read_all(s, "<string->number>")
    except FlowmetalError:
        return None
    if len(forms) == 1 and type(forms[0]) in NUMS:
        return forms[0]
    return None
