"""Make the gateway test helpers (gateway_fakes, gateway_harness) importable by name."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
