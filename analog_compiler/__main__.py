"""``python -m analog_compiler``."""

import sys

from .cli import main

sys.exit(main())
