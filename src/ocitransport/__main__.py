"""``python -m ocitransport``: the command line (see ``ocitransport.cli``)."""

import sys

from .cli import main

sys.exit(main())
