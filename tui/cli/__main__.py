"""`python -m tui.cli`: the same as the `tokentop` console script (tests and `tokentop serve` run it so)."""

import sys

from tui.cli import main

sys.exit(main())
