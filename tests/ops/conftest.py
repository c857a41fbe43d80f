"""The operations tests import the shared helpers (mapclient) from tests/support."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
