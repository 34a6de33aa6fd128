from .errors import ProblemError, SambiasError, SimulationError
from .problem import Init, Problem, load_problem
