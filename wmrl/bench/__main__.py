"""`python -m wmrl.bench ...`, the same as `wmrl bench ...`."""
import sys

from wmrl.bench.cli import main

sys.exit(main(sys.argv[1:]))
