"""The request metrics: django-prometheus' middleware, recording the few series a dashboard of a
web service needs.

django-prometheus' pair of middlewares records about twenty series per request (by transport, by
charset, body size histograms, AJAX, template names, and everything twice: around the whole chain
and around the view). Measured (bench/bench_metrics.py): 95 µs per request in one process and 227 µs
in the multiprocess mode the production server uses (each update is a locked write to a shared
file), several percent of a bars request. This records three, under django-prometheus' own names,
so that dashboards made for it show them:
- `django_http_responses_total_by_status_view_method_total{status, view, method}`: request rates,
  error rates;
- `django_http_requests_latency_seconds_by_view_method{view, method}`: the latency histogram;
- `django_http_exceptions_total_by_type{type}` and `..._by_view{view}`: views that raised.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponseBase
from django_prometheus.middleware import PrometheusAfterMiddleware
from django_prometheus.utils import Time, TimeSince

UNNAMED = "<unnamed view>"


class RequestMetricsMiddleware(PrometheusAfterMiddleware):
    """Last in MIDDLEWARE: the latency is the view's and the middleware's after it (the response
    passes through the rest after this records it)."""

    def process_request(self, request: HttpRequest) -> None:
        request.prometheus_after_middleware_event = Time()  # type: ignore[attr-defined]

    def process_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> None:
        return None

    def process_template_response(self, request: HttpRequest, response: Any) -> Any:
        return response

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        method = self._method(request)
        view = self._get_view_name(request)
        metrics = self.metrics
        metrics.responses_by_status_view_method.labels(str(response.status_code), view, method).inc()
        self._observe_latency(request, view, method)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        metrics = self.metrics
        metrics.exceptions_by_type.labels(type(exception).__name__).inc()
        view = self._get_view_name(request)
        metrics.exceptions_by_view.labels(view).inc()

    def _observe_latency(self, request: HttpRequest, view: str, method: str) -> None:
        started = getattr(request, "prometheus_after_middleware_event", None)
        if started is not None:
            self.metrics.requests_latency_by_view_method.labels(view, method).observe(TimeSince(started))
