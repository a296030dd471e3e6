"""A built-in procedural world of multi-step word problems, and a simulated teacher for it.

`generate_problems("train", 100)` draws problems whose gold programs render correct CoT, PoT and
EoT rationales (`Problem.render(thought)`); `load_world("world:test?n=200")` makes a data set of
them (`LATEX_FAMILIES`, named in a spec, have LaTeX golds: fractions, radicals, ordered pairs);
`WorldTeacher` answers them like a chat model, with injected errors. See docs/world.md.
"""
from distill.world.families import EOT_NATURAL, FAMILIES
from distill.world.generate import ALL_FAMILIES, find, generate_problems, load_world
from distill.world.latex_families import LATEX_FAMILIES
from distill.world.latex_problem import LatexProblem
from distill.world.problem import Problem

__all__ = ["ALL_FAMILIES", "EOT_NATURAL", "FAMILIES", "LATEX_FAMILIES", "LatexProblem", "Problem", "find",
           "generate_problems", "load_world"]
