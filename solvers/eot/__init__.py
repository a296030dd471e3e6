"""Parts of the Equation-of-Thought solver; the entry point is `solvers.equations.solve_eot`."""
