"""Sources, named after their transport: stdin (`pipe`), files, a child process, HTTP push.

Each source frames its bytes into lines (`exporter.framing`) and hands them to the `Worker`.
"""
