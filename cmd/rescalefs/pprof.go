package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// pprofEnv names a loopback address on which a mount serves Go's profiles (heap, CPU, goroutines), for
// measuring memory and CPU use without rebuilding: RESCALEFS_PPROF=127.0.0.1:6060 rescalefs mount ...
const pprofEnv = "RESCALEFS_PPROF"

// servePprof serves the profiles on addr and returns what stops the server (nil when it did not start:
// a profiling address is a diagnostic, so a bad one is logged and the mount goes on). The mount's owner
// (mountLife) calls stop; the server must not outlive the mount it profiles.
func servePprof(addr string, logger *slog.Logger) (stop func()) {
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		logger.Warn("profiling not started: the address must be a loopback ip:port", "env", pprofEnv, "addr", addr)
		return nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		logger.Warn("profiling not started", "addr", addr, "err", err)
		return nil
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Warn("profiling server stopped", "err", err)
		}
	}()
	logger.Info("serving profiles", "url", "http://"+ln.Addr().String()+"/debug/pprof/")
	return func() {
		// A heap or goroutine profile in progress gets the metrics' short grace; a CPU profile or trace
		// asked for longer than that is cut off: a diagnostic must not hold the unmount.
		ctx, cancel := context.WithTimeout(context.Background(), metricsStopWait)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
		}
		<-served
	}
}
