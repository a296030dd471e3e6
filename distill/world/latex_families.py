"""World families whose gold answer is LaTeX, in the style of MATH: a probability as a common
fraction (`marbles`), a diagonal in simplest radical form (`diagonal`), the crossing point of two
lines as an ordered pair (`crossing`; EoT does not apply). Not in the default world (`FAMILIES`):
a data set names them, `world:train?families=rates+marbles+crossing`. See latex_problem.py.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from math import isqrt

from distill.world.builder import Builder
from distill.world.latex_problem import LatexProblem, LatexStep, tex
from distill.world.problem import Fact

COLOURS = ["red", "blue", "green", "yellow", "white", "black"]
THINGS = [("bag", "marbles"), ("jar", "buttons"), ("box", "crayons"), ("bowl", "beads")]
PLACES = [("garden", "meters"), ("field", "meters"), ("poster", "inches"), ("tabletop", "feet"), ("screen", "inches")]


class _Draft:
    """Facts and steps of a LaTeX problem, written with a Builder's context and draws."""

    def __init__(self, b: Builder):
        self.b = b
        self.facts: list[Fact] = []
        self.steps: list[LatexStep] = []

    def fact(self, wordings: str | Sequence[str], **givens: int) -> None:
        text = self.b.pick(wordings) if not isinstance(wordings, str) else wordings
        self.facts.append(Fact(text.format(**self.b.ctx, **givens), tuple(givens.items())))

    def step(self, name: str, expr: str, says: Sequence[str], note: str) -> None:
        fill = self.b.ctx
        self.steps.append(LatexStep(name, expr, tuple(s.format(calc="{calc}", **fill) for s in says),
                                    note.format(**fill)))

    def ask(self, name: str, wordings: Sequence[str], exact: bool = True) -> LatexProblem:
        problem = LatexProblem(self.b.family, tuple(self.facts), tuple(self.steps),
                               self.b.pick(wordings).format(**self.b.ctx), name, "", exact)
        return replace(problem, answer=tex(problem.value))


def marbles(b: Builder) -> LatexProblem:
    d = _Draft(b)
    b.people()
    container, things = b.pick(THINGS)
    first, second, third = b.rng.sample(COLOURS, 3)
    counts = {first: b.int(1, 12), second: b.int(1, 12), third: b.int(1, 12)}
    b.context(container=container, things=things, first=first, second=second, third=third,
              **{f"n{i}": str(n) for i, n in enumerate(counts.values())})
    d.fact(["A {container} holds {n0} {first} {things}, {n1} {second} {things} and {n2} {third} {things}.",
            "In a {container} there are {n0} {first}, {n1} {second} and {n2} {third} {things}."], **counts)
    d.fact(["{who} takes one of them at random.", "{who} draws a single one without looking."])
    d.step("favourable", f"{first} + {second}", ["{calc} of them are {first} or {second}.", "There are {calc} {first} or {second} {things}."],
           "{things} that are {first} or {second}")
    d.step("total", f"favourable + {third}", ["The {container} holds {calc} {things} in all.", "In total there are {calc}."],
           "{things} in the {container}")
    d.step("probability", "Rational(favourable, total)", ["The probability is {calc}.", "So the chance is {calc}."],
           "Probability of {first} or {second}")
    exact = b.rng.random() < 0.5
    return d.ask("probability", ["What is the probability that it is {first} or {second}? Express your answer as a "
                                 "common fraction."] if exact else
                 ["What is the probability that it is {first} or {second}?",
                  "How likely is it that the one drawn is {first} or {second}?"], exact)


def diagonal(b: Builder) -> LatexProblem:
    d = _Draft(b)
    place, unit = b.pick(PLACES)
    width, length = b.int(1, 12), b.int(2, 15)
    b.require(width != length and isqrt(width**2 + length**2) ** 2 != width**2 + length**2)
    b.context(place=place, unit=unit)
    d.fact(["A rectangular {place} is {width} {unit} wide and {length} {unit} long.",
            "A {place} has the shape of a rectangle, {width} by {length} {unit}."], width=width, length=length)
    d.step("squares", "width ** 2 + length ** 2", ["By Pythagoras the diagonal squared is {calc}.",
                                                   "The squares of the sides add up to {calc}."],
           "Square of the diagonal")
    d.step("diagonal", "sqrt(squares)", ["The diagonal is {calc} {unit}.", "So the diagonal measures {calc}."],
           "Diagonal")
    return d.ask("diagonal", ["How long is its diagonal? Express your answer in simplest radical form.",
                              "What is the length of a diagonal, in simplest radical form?"])


def _line(slope: int, intercept: int) -> str:
    x = {1: "x", -1: "-x"}.get(slope, f"{slope}x")
    return f"$y = {x}" + (f" + {intercept}$" if intercept > 0 else f" - {-intercept}$" if intercept else "$")


def crossing(b: Builder) -> LatexProblem:
    d = _Draft(b)
    slope1, slope2 = b.int(-4, 5), b.int(-4, 5)
    b.require(slope1 != slope2 and slope1 != 0)
    intercept1, intercept2 = b.int(-9, 9), b.int(-9, 9)
    b.require(intercept1 != intercept2)
    b.context(first=_line(slope1, intercept1), second=_line(slope2, intercept2))
    d.fact(["One line is {first}.", "The first line has equation {first}."], slope1=slope1, intercept1=intercept1)
    d.fact(["Another is {second}.", "A second line is {second}."], slope2=slope2, intercept2=intercept2)
    d.step("x", "Rational(intercept2 - intercept1, slope1 - slope2)",
           ["Setting the two equal, the $x$-coordinate is {calc}.", "Equal heights need $x$ to be {calc}."],
           "Where the lines meet")
    d.step("y", "slope1 * x + intercept1", ["Then the $y$-coordinate is {calc}.", "On the first line, $y$ is {calc} there."],
           "The height there")
    d.step("point", "Tuple(x, y)", ["The lines cross at {calc}.", "They meet at {calc}."], "The crossing point")
    return d.ask("point", ["Where do the two lines intersect? Give your answer as an ordered pair.",
                           "At what point $(x, y)$ do the lines cross?"])


LATEX_FAMILIES: dict[str, Callable[[Builder], LatexProblem]] = {f.__name__: f for f in (marbles, diagonal, crossing)}
