"""The /metrics text format (0.0.4), written straight from the histograms' bucket arrays.

prometheus-client's `generate_latest` builds a `Sample` (a dict of labels) for every bucket of every
series and escapes and validates every label of every sample: at 10,000 series that is most of a
scrape. Here a request histogram is an `ArrayHistogram` family that keeps its `Hist` objects, and
`generate_text` renders each series' labels once and writes its buckets from the counts. Every
other family goes through the same format rules with the label names and values escaped once per
distinct string. The output is byte for byte what `generate_latest` writes for the same families
(the tests compare the two on generated metric states); families stay ordinary prometheus-client
`Metric`s, so OpenMetrics and any other reader of `.samples` see the same samples as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from prometheus_client.core import Metric
from prometheus_client.openmetrics.exposition import UNDERSCORES, escape_label_name, escape_metric_name
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString as _go

from llm_exporter.metrics.hist import ArrayHistogram, bound_text

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def floatToGoString(v: float) -> str:
    return str(_go(v))  # type: ignore[no-untyped-call]


class _Registry(Protocol):
    def collect(self) -> Iterable[Metric]: ...


def _count(n: float) -> str:
    if type(n) is int and 0 <= n < 1_000_000:  # what floatToGoString gives, without the float dance
        return f"{n}.0"
    return floatToGoString(n)


class _Escapes:
    """Label names and values escaped once per distinct string (as prometheus-client does)."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, str] = {}

    def name(self, k: str) -> str:
        e = self.names.get(k)
        if e is None:
            e = self.names[k] = escape_label_name(k, UNDERSCORES)
        return e

    def value(self, v: str) -> str:
        e = self.values.get(v)
        if e is None:
            e = self.values[v] = v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
        return e

    def labels(self, labels: dict[str, str]) -> str:
        if not labels:
            return ""
        return "{" + ",".join(f'{self.name(k)}="{self.value(v)}"' for k, v in sorted(labels.items())) + "}"


def _help(name: str, doc: str) -> str:
    return "# HELP {} {}\n".format(escape_metric_name(name, UNDERSCORES),
                                   doc.replace("\\", r"\\").replace("\n", r"\n"))


def _array_histogram(m: ArrayHistogram, esc: _Escapes, out: list[str]) -> None:
    names = m.label_names
    name = escape_metric_name(m.name, UNDERSCORES)
    bucket, count_name, sum_name = name + "_bucket", name + "_count", name + "_sum"
    # `le` sorts among the other label names; render what goes before and after it once
    order = sorted((*names, "le"))
    at = order.index("le")
    index = {k: i for i, k in enumerate(names)}
    les: dict[tuple[float, ...], list[str]] = {}
    for values, h in m._pending:
        pairs = [f'{esc.name(k)}="{esc.value(values[index[k]])}"' for k in order if k != "le"]
        before = ",".join(pairs[:at])
        after = ",".join(pairs[at:])
        head = bucket + "{" + before + ("," if before else "") + 'le="'
        tail = '"' + ("," + after if after else "") + "} "
        bounds = tuple(h.bounds)
        le = les.get(bounds)
        if le is None:
            le = les[bounds] = [esc.value(bound_text(b)) for b in bounds] + ["+Inf"]
        acc = 0
        for text, c in zip(le, h.counts, strict=True):
            acc += c
            out.append(f"{head}{text}{tail}{_count(acc)}\n")
        if bounds and float(bound_text(bounds[0])) < 0:
            continue  # as prometheus-client: no _count/_sum when a bucket bound is negative
        plain = ",".join(f'{esc.name(k)}="{esc.value(values[index[k]])}"' for k in sorted(names))
        lab = "{" + plain + "}" if plain else ""
        out.append(f"{count_name}{lab} {_count(acc)}\n")
        out.append(f"{sum_name}{lab} {floatToGoString(h.sum)}\n")


_OM_SUFFIXES = ("_created", "_gsum", "_gcount")


def generate_text(registry: _Registry) -> bytes:
    """The text format 0.0.4 exposition of `registry`, as `prometheus_client.generate_latest`."""
    out: list[str] = []
    esc = _Escapes()
    metric_names: dict[str, str] = {}

    def sample_line(s: Sample) -> str:
        n = metric_names.get(s.name)
        if n is None:
            n = metric_names[s.name] = escape_metric_name(s.name, UNDERSCORES)
        ts = "" if s.timestamp is None else f" {int(float(s.timestamp) * 1000):d}"
        return f"{n}{esc.labels(s.labels)} {floatToGoString(s.value)}{ts}\n"

    for metric in registry.collect():
        mname, mtype = metric.name, metric.type
        if mtype == "counter":
            mname += "_total"
        elif mtype == "info":
            mname += "_info"
            mtype = "gauge"
        elif mtype == "stateset":
            mtype = "gauge"
        elif mtype == "gaugehistogram":
            mtype = "histogram"
        elif mtype == "unknown":
            mtype = "untyped"
        out.append(_help(mname, metric.documentation))
        out.append(f"# TYPE {escape_metric_name(mname, UNDERSCORES)} {mtype}\n")
        if isinstance(metric, ArrayHistogram) and not metric._built:
            _array_histogram(metric, esc, out)
            continue
        om: dict[str, list[str]] = {}
        special = {metric.name + s: s for s in _OM_SUFFIXES}
        for s in metric.samples:
            suffix = special.get(s.name)
            if suffix is not None:
                om.setdefault(suffix, []).append(sample_line(s))
            else:
                out.append(sample_line(s))
        for suffix, lines in sorted(om.items()):
            out.append(_help(metric.name + suffix, metric.documentation))
            out.append(f"# TYPE {escape_metric_name(metric.name + suffix, UNDERSCORES)} gauge\n")
            out.extend(lines)
    return "".join(out).encode("utf-8")


def encoder_for(accept: str) -> tuple[Any, str]:
    """prometheus-client's content negotiation, with our writer for the text format."""
    from prometheus_client.exposition import choose_encoder

    encoder, content_type = choose_encoder(accept)
    if content_type == CONTENT_TYPE:
        return generate_text, content_type
    return encoder, content_type
