package broker

import (
	"net"
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// newHTTPHandler serves the operational endpoints:
//   - /healthz: 200 while the process is serving at all (liveness);
//   - /readyz: 200 once every listener is up, 503 before and while shutting down;
//   - /metrics: Prometheus text format;
//   - /v1/admin/: user management, admins only (admin.go);
//   - /v1/groups, /v1/me/: groups, blocks and settings, for every user (api.go);
//   - /debug/pprof/: Go profiles, only with --pprof.
func (b *Broker) newHTTPHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !b.ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(b.metrics.registry, promhttp.HandlerOpts{}))
	b.registerAdminAPI(mux)
	b.registerAPI(mux)
	if b.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// serveHTTP runs the operational HTTP server on ln until Shutdown.
func (b *Broker) serveHTTP(ln net.Listener) {
	defer close(b.httpDone)
	if err := b.httpSrv.Serve(ln); err != nil && err != http.ErrServerClosed {
		b.log.Error().Err(err).Msg("http listener stopped")
	}
}
