"""One-shot subcommands: `replay FILE...`, `check-config FILE`, `schema`, `healthcheck`."""

from __future__ import annotations

import sys

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from llm_exporter.exposition import generate_text
from llm_exporter.flags import Parser, add_settings_flags, settings_from_args
from llm_exporter.hints import text as hint_text
from llm_exporter.metrics import LLMMetrics
from llm_exporter.pipeline import REJECT_KEEP, Pipeline
from llm_exporter.problems import ConfigError, StartupError
from llm_exporter.records import json_schema
from llm_exporter.sources.base import LineFeed

READ = 1 << 20
#: the daemon flags `replay` takes
REPLAY_FLAGS = ("format", "label_limit", "max_line_bytes", "config", "config_max_bytes")


def replay(argv: list[str]) -> int:
    p = Parser(prog="llm-exporter replay",
               description="Read files to EOF, print the exposition the daemon would serve, exit.")
    p.add_argument("files", nargs="+", metavar="FILE", help="log files ('-' for stdin)")
    # the daemon's own flags (defaults, checks and LLM_EXPORTER_<NAME> included)
    add_settings_flags(p, REPLAY_FLAGS)
    p.add_argument("--openmetrics", action="store_true", help="OpenMetrics output (with exemplars)")
    p.add_argument("--rejects", type=int, default=5, help="rejected lines to show on stderr (5)")
    ns = p.parse_args(argv)
    s = settings_from_args(ns)
    config = None
    if s.config is not None:
        from llm_exporter.config import load_config

        config = load_config(s.config, max_bytes=s.config_max_bytes)
    metrics = LLMMetrics(label_limit=s.label_limit)
    pipeline = Pipeline(metrics, fmt=s.format, config=config)
    for path in ns.files:
        source = "stdin" if path == "-" else "file"
        try:
            fh = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
        except OSError as e:
            raise StartupError(f"{path}: {e.strerror}") from None
        with fh:
            feed = LineFeed(metrics.source(source), s.max_line_bytes)
            while chunk := fh.read(READ):
                pipeline.process(source, feed.feed(chunk))
            pipeline.process(source, feed.finish())
            pipeline.flush(source)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    out = generate_openmetrics(registry) if ns.openmetrics else generate_text(registry)  # type: ignore[no-untyped-call]
    sys.stdout.buffer.write(out)
    sys.stdout.buffer.flush()
    _summary(metrics, pipeline, ns.rejects)
    return 0


def _summary(metrics: LLMMetrics, pipeline: Pipeline, show: int) -> None:
    totals = metrics.internal.line_totals()
    err = sys.stderr
    print("lines: " + ", ".join(f"{k}={v}" for k, v in totals.items()) + f" (total {sum(totals.values())})",
          file=err)
    if getattr(pipeline.config, "rules", None):
        from llm_exporter.adapters.rules import rule_set

        for name, n in rule_set(pipeline.config).hits().items():
            print(f"rule {name}: {n} lines matched", file=err)
    for key, provider in metrics.hints.seen.items():
        print(f"note ({provider or 'server'}): {hint_text(key)}", file=err)
    rejects = list(pipeline.rejects)[:show]
    if rejects:
        more = " (first kept)" if len(pipeline.rejects) == REJECT_KEEP else ""
        print(f"first rejected lines{more}:", file=err)
        for r in rejects:
            text = r.line.decode("utf-8", "backslashreplace")
            text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)[:120]
            print(f"  {r.source}:{r.lineno}: {r.outcome}/{r.reason}: {text}", file=err)


def schema(argv: list[str]) -> int:
    p = Parser(prog="llm-exporter schema",
                description="Print the JSON Schema of an application's JSON request line: every field name "
                            "llm-exporter reads, what it feeds and its unit.")
    p.add_argument("--record", action="store_true",
                   help="print the internal request record instead (what adapters hand to the metrics)")
    ns = p.parse_args(argv)
    from llm_exporter.adapters.app_json import line_schema

    out = json_schema() if ns.record else line_schema()
    sys.stdout.buffer.write(orjson.dumps(out, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


def check_config(argv: list[str]) -> int:
    p = Parser(prog="llm-exporter check-config",
               description="Validate a --config file and print what it defines (exit 1 on an error).")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--sample", metavar="LOG", action="append",
                   help="a log file: report the config's field paths that no JSON line of it has (exit 1)")
    add_settings_flags(p, ("config_max_bytes",))  # the daemon's limit: what passes here loads there
    ns = p.parse_args(argv)
    s = settings_from_args(ns)
    from llm_exporter.config import load_config

    try:
        cfg = load_config(ns.file, max_bytes=s.config_max_bytes)
    except ConfigError as e:  # the file is this command's argument: no flag in front
        print(f"llm-exporter: error: {e}", file=sys.stderr)
        return 1
    print(f"{ns.file}: OK")
    for line in cfg.describe():
        print(line)
    if not ns.sample:
        return 0
    wanted = cfg.field_paths()
    found, lines = _paths_in_samples(ns.sample, {p for _, p in wanted})
    missing = [(where, path) for where, path in wanted if path not in found]
    print(f"sample: {lines} JSON lines read")
    for where, path in missing:
        print(f"never found in the sample: {where}: {path}")
    return 1 if missing else 0


def _paths_in_samples(files: list[str], paths: set[str]) -> tuple[set[str], int]:
    """Which of `paths` hold a value on at least one JSON line of the files, and how many JSON
    lines there were (a line behind a text prefix, e.g. a container name, counts from its `{`)."""
    from llm_exporter.accounting import get_path
    from llm_exporter.adapters.base import json_object

    found: set[str] = set()
    n = 0
    for path in files:
        try:
            fh = open(path, "rb")  # noqa: SIM115
        except OSError as e:
            raise StartupError(f"--sample {path}: {e.strerror}") from None
        with fh:
            for raw in fh:
                i = raw.find(b"{")
                obj = json_object(raw[i:]) if i >= 0 else None
                if obj is None:
                    continue
                n += 1
                for p in paths - found:
                    if get_path(obj, p) is not None:
                        found.add(p)
    return found, n


def healthcheck(argv: list[str]) -> int:
    from llm_exporter.healthcheck import healthcheck as run_check

    return run_check(argv)


COMMANDS = {"replay": replay, "schema": schema, "check-config": check_config, "healthcheck": healthcheck}


def run(name: str, argv: list[str]) -> int:
    if name not in COMMANDS:
        raise StartupError(f"{name}: not available in this build")
    return COMMANDS[name](argv)
