"""``python -m magi`` (and ``torchrun -m magi``): the same command line as ``magi``."""

import sys

from magi.cli import main

sys.exit(main())
