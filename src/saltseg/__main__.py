"""``python -m saltseg``: the same command line as the ``saltseg`` script."""

import sys

from saltseg.cli import main

sys.exit(main())
