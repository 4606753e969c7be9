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
	callers int // callers that started or joined it; guarded by the owning flights' mu
}

// startFlight runs fn in a goroutine under ctx; finish runs when fn returns, before waiters wake (it
// stores the result where the next caller finds it).
func startFlight[T any](ctx context.Context, fn func(context.Context) (T, error), finish func(T, error)) *flight[T] {
	f := &flight[T]{done: make(chan struct{})}
	go func() {
		f.val, f.err = fn(ctx)
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

// do joins the call in flight for key or starts fn under runCtx (the mount's), and waits for it
// under ctx (the caller's).
func (fs *flights[T]) do(ctx, runCtx context.Context, key string, fn func(context.Context) (T, error)) (T, error) {
	fs.mu.Lock()
	fl := fs.m[key]
	if fl == nil {
		if fs.m == nil {
			fs.m = map[string]*flight[T]{}
		}
		fl = startFlight(runCtx, fn, func(T, error) {
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
