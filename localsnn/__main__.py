"""``python -m localsnn``: the ``localsnn`` command."""

import sys

from localsnn.cli import main

sys.exit(main())
