"""`python -m llm_exporter`: the same as the `llm-exporter` command."""

from llm_exporter.cli import main

raise SystemExit(main())
