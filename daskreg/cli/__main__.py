"""``python -m daskreg.cli``: the ``daskreg`` command."""

import sys

from daskreg.cli.run import main

sys.exit(main())
