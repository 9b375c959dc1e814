"""``hashsdk-export``: placeholder until the export issue lands."""

import sys


def main() -> None:
    print("hashsdk-export: not built yet", file=sys.stderr)
    sys.exit(2)
