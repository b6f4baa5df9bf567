"""``python -m nectar.cli``: the ``nectar`` command."""

from __future__ import annotations

import sys

from nectar.cli import main

sys.exit(main())
