"""`python -m wmrl.compare ...`, the same as `wmrl compare ...`."""
import sys

from wmrl.compare.cli import main

sys.exit(main(sys.argv[1:]))
