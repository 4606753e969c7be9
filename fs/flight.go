package fs

import (
	"context"
	"sync"
)

// flight is one platform call shared by every caller that needs its answer. It runs under the mount's
// own context, not a caller's: a request context is cancelled when its process is interrupted, and one
// impatient `ls` must not fail the listing another is waiting for (nor waste the work done so far).
type flight[T any] struct {
	done    chan struct{}
	val     T
	err     error
	callers int // callers that started or joined it; guarded by the owning flights' mu (fsys.listMu for the jobs list)
}

// flightGroup is the mount's shared calls: they run under its context (the tree's), and the mount's
// shutdown cancels that context and then waits for every call still running, so none (neither its
// goroutine nor its request) outlives the mount. The wait is as short as the cancellation: every call
// is made of platform calls under that context, which the network policy ends as soon as it is
// cancelled, however frozen the platform.
type flightGroup struct {
	ctx context.Context
	wg  sync.WaitGroup // one per call started and not finished

	mu     sync.Mutex // guards closed, and orders every wg.Add before close's wg.Wait
	closed bool
}

// add counts a call about to start; false once the group is closed.
func (g *flightGroup) add() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	return true
}

// close waits for the calls running, which its caller has cancelled first (the tree's context);
// calls started later fail at once.
func (g *flightGroup) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.wg.Wait()
}

// startFlight runs fn in a goroutine under g's context; finish runs when fn returns, before waiters
// wake (it stores the result where the next caller finds it). Once g is closed (the mount is gone)
// the flight fails at once with context.Canceled, fn and finish not run: callers hold their lock
// while starting a flight, and finish takes it; the failed flight left in their slot fails every
// later caller at once, as it should.
func startFlight[T any](g *flightGroup, fn func(context.Context) (T, error), finish func(T, error)) *flight[T] {
	f := &flight[T]{done: make(chan struct{})}
	if !g.add() {
		f.err = context.Canceled
		close(f.done)
		return f
	}
	go func() {
		defer g.wg.Done()
		f.val, f.err = fn(g.ctx)
		if finish != nil {
			finish(f.val, f.err)
		}
		close(f.done)
	}()
	return f
}

// wait returns the flight's result, or ctx's error when the caller gives up first.
func (f *flight[T]) wait(ctx context.Context) (T, error) {
	select {
	case <-f.done:
		return f.val, f.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// flights shares one call per key among concurrent callers (a job's statuses, a job looked up by
// id): N processes that stat one job at once cost one request, not N.
type flights[T any] struct {
	mu sync.Mutex // guards m
	m  map[string]*flight[T]
}

// do joins the call in flight for key or starts fn in g (the mount's), and waits for it under ctx
// (the caller's).
func (fs *flights[T]) do(ctx context.Context, g *flightGroup, key string, fn func(context.Context) (T, error)) (T, error) {
	fs.mu.Lock()
	fl := fs.m[key]
	if fl == nil {
		if fs.m == nil {
			fs.m = map[string]*flight[T]{}
		}
		fl = startFlight(g, fn, func(T, error) {
			fs.mu.Lock()
			delete(fs.m, key)
			fs.mu.Unlock()
		})
		fs.m[key] = fl
	}
	fl.callers++
	fs.mu.Unlock()
	return fl.wait(ctx)
}

// callers returns how many callers the call in flight for key has (0: none in flight), so a test can
// hold the platform's answer until every caller has joined.
func (fs *flights[T]) callers(key string) int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fl := fs.m[key]; fl != nil {
		return fl.callers
	}
	return 0
}
