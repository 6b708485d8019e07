"""``python -m flowmetal``: the same as the ``flowmetal`` command."""

import sys

from .cli import main

sys.exit(main())
