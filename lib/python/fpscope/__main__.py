"""`python -m fpscope ARGS` runs the fpscope command (fpscope/_cli.py)."""
from ._cli import main

main()
