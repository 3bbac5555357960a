"""python -m wasp."""

import sys

from wasp.cli import main

sys.exit(main())
