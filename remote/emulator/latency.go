package emulator

import (
	"io"
	"net/http"
	"time"
)

// readAheadLimit is how much of a request body is read while a request is held (holdUntil): less
// than a loopback connection's receive buffer (128 KiB by default on Linux), so the client sees its
// body accepted no sooner than it would be anyway.
const readAheadLimit = 64 << 10

// Delaying is the number of requests waiting out the latency now: tests wait on it instead of
// sleeping.
func (e *Emulator) Delaying() int64 { return e.faults.delaying.Load() }

// delay holds r for the latency d; false when the client went away first.
func (fi *faultInjector) delay(r *http.Request, d time.Duration) bool {
	fi.delaying.Add(1)
	defer fi.delaying.Add(-1)
	t := time.NewTimer(d)
	defer t.Stop()
	return holdUntil(r, t.C)
}

// holdUntil holds r until wake delivers (true) or r's client goes away (false); with a nil wake only
// the client ends the wait. Every wait that holds a request unanswered (latency, freeze, stall) is
// this one, so each ends when its client leaves.
//
// net/http notices a departed client (and cancels r's context) only by reading the connection, which
// it does not do while r's body remains unread: a client that sends a body and cancels would leave
// the request held to the end of the wait, then served. So the body's first readAheadLimit bytes
// are read during the wait. A body that ends within them lets net/http watch the connection; a body
// cut short ends the wait at once. A longer body's departure sits behind the bytes not yet sent and is
// noticed when the handler reads them, as on a real server. A request that asks "Expect:
// 100-continue" is not read ahead: reading would send the "100 Continue" before the wait is over.
//
// Neither gap can be closed from here. A client that leaves with a body larger than the socket
// buffers queues its FIN behind bytes our full receive window refuses: no server sees it before
// reading them. A smaller body's FIN (or an Expect request's, when the client leaves before sending
// its body) does arrive, but net/http only learns of it by reading, and offers no way to watch
// instead: ResponseController has no such method and ConnState changes only on its own reads. Only
// poll(POLLRDHUP) on the socket sees it, which needs the net.Conn from a ConnContext hook on every
// server the emulator is served by.
func holdUntil[T any](r *http.Request, wake <-chan T) bool {
	var bodyDone <-chan struct{}
	ra := readAhead(r)
	if ra != nil {
		bodyDone = ra.done
	}
	for {
		select {
		case <-wake:
			return true
		case <-r.Context().Done():
			return false
		case <-bodyDone:
			if ra.err != nil && ra.err != io.EOF {
				return false // the client left mid-body
			}
			bodyDone = nil // the body is all here: net/http now watches the connection
		}
	}
}

// readAhead starts reading r's body ahead (see holdUntil), once per request: a request held by a
// freeze and then by the latency reads ahead once. nil when r has no body to read ahead.
func readAhead(r *http.Request) *readAheadBody {
	if ra, ok := r.Body.(*readAheadBody); ok {
		return ra
	}
	if r.ContentLength == 0 || r.Header.Get("Expect") != "" {
		return nil
	}
	ra := startReadAhead(r.Body, readAheadLimit)
	r.Body = ra
	return ra
}

// readAheadBody is a request body whose first bytes a goroutine reads during a wait (see holdUntil).
// The handler's reads wait for that goroutine, take what it read, then read on from the body itself.
type readAheadBody struct {
	io.ReadCloser               // the body: the goroutine's until done is closed, then the handler's
	done          chan struct{} // closed when the goroutine stops
	buf           []byte        // read by the goroutine; the handler's once done is closed
	err           error         // the goroutine's read error (io.EOF at the body's end); set before done closes
}

func startReadAhead(body io.ReadCloser, limit int) *readAheadBody {
	b := &readAheadBody{ReadCloser: body, done: make(chan struct{})}
	go func() {
		defer close(b.done)
		buf := make([]byte, limit)
		n := 0
		var err error
		for n < limit && err == nil {
			var m int
			m, err = body.Read(buf[n:])
			n += m
		}
		b.buf, b.err = buf[:n], err
	}()
	return b
}

func (b *readAheadBody) Read(p []byte) (int, error) {
	<-b.done
	if len(b.buf) > 0 {
		n := copy(p, b.buf)
		b.buf = b.buf[n:]
		return n, nil
	}
	if b.err != nil {
		return 0, b.err
	}
	return b.ReadCloser.Read(p)
}
