package fs

import "context"

// flight is one platform call shared by every caller that needs its answer. It runs under the mount's
// own context, not a caller's: a request context is cancelled when its process is interrupted, and one
// impatient `ls` must not fail the listing another is waiting for (nor waste the work done so far).
type flight[T any] struct {
	done chan struct{}
	val  T
	err  error
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
