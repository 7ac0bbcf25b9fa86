"""`python scripts/stack <command>` (or `python -m stack` with scripts/ on the path): the CLI."""

import sys
from pathlib import Path

if not __package__:
    # Run as a folder: Python put scripts/stack itself first on the path; the package's parent
    # must be there instead (and the package's modules must not shadow top-level ones).
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from stack.cli import main  # noqa: E402

sys.exit(main())
