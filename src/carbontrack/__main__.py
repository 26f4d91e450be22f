"""``python -m carbontrack`` runs the command line."""

from carbontrack.cli import main

raise SystemExit(main())
