"""``python -m brain_mtl``: the command line (see :mod:`brain_mtl.commands.main`)."""

import sys

from brain_mtl.commands.main import main

sys.exit(main())
