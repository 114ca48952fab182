"""Shared test set-up: make the test helpers in this folder (``analog_oracle``, ``pcm_formulas``,
``cli_helpers``) importable."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
