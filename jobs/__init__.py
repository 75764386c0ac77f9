"""The refit pipeline, its scheduler and the command line. Holds no model maths."""
