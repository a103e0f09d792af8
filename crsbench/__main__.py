"""`python -m crsbench` runs the command-line interface."""
from crsbench.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
