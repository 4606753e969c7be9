package main

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
)

// pprofEnv names a loopback address on which a mount serves Go's profiles (heap, CPU, goroutines), for
// measuring memory and CPU use without rebuilding: RESCALEFS_PPROF=127.0.0.1:6060 rescalefs mount ...
const pprofEnv = "RESCALEFS_PPROF"

func servePprof(addr string, logger *slog.Logger) {
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		logger.Warn("profiling not started: the address must be a loopback ip:port", "env", pprofEnv, "addr", addr)
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		logger.Warn("profiling not started", "addr", addr, "err", err)
		return
	}
	logger.Info("serving profiles", "url", "http://"+ln.Addr().String()+"/debug/pprof/")
	go func() { _ = http.Serve(ln, mux) }()
}
