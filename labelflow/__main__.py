"""``python -m labelflow COMMAND ...``: the ``labelflow`` command without its console script."""

import sys

from labelflow.cli import main

sys.exit(main())
