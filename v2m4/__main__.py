"""`python -m v2m4 ...` is the `v2m4` command (for environments without the console script on PATH)."""

import sys

from .cli import main

sys.exit(main())
