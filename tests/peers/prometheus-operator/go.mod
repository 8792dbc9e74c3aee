// Pins the Prometheus Operator whose CRDs (ServiceMonitor, PrometheusRule) the cluster tests
// install, so the API server checks deploy/monitoring's and the chart's objects against their
// real schemas. Nothing is built: tests/peers/build copies the files listed in `files`.
module sealant.test/peers/prometheus-operator

go 1.26

require github.com/prometheus-operator/prometheus-operator v0.94.0
