"""``python -m finetune finetune ...`` / ``python -m finetune predict ...``: the two commands without ``labelflow``."""

import sys

from finetune.cli import main

sys.exit(main())
