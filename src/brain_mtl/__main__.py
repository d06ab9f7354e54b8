"""``python -m brain_mtl``: the command line (see :mod:`brain_mtl.cli`)."""

import sys

from brain_mtl.cli import main

sys.exit(main())
