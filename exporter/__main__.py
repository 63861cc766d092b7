"""`python -m exporter`: the same as the `llm-exporter` command."""

from exporter.cli import main

raise SystemExit(main())
