"""Sources, named after their transport: stdin (`pipe`), files, a child process, HTTP push.

Each source frames its bytes into lines (`llm_exporter.framing`) and hands them to the `Worker`.
"""
