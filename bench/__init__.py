"""The benchmark: llm-exporter against mtail, a hand-written exporter and reference limits."""
