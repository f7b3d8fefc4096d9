"""`python -m mirrorlab` is the `mirrorlab` command."""

import sys

from mirrorlab.cli import main

sys.exit(main())
