package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// oneLineHandler keeps every log record on one readable line: errors that carry a program's output
// (fusermount3 says "...\n (code exit status 1)\n") would otherwise show as quoted strings full of
// literal \n. Runs of white space, line breaks included, become one space.
type oneLineHandler struct{ slog.Handler }

func (h oneLineHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, oneLine(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(oneLineAttr(a))
		return true
	})
	return h.Handler.Handle(ctx, out)
}

func (h oneLineHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	clean := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		clean[i] = oneLineAttr(a)
	}
	return oneLineHandler{h.Handler.WithAttrs(clean)}
}

func (h oneLineHandler) WithGroup(name string) slog.Handler {
	return oneLineHandler{h.Handler.WithGroup(name)}
}

func oneLineAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, oneLine(v.String()))
	case slog.KindGroup:
		g := v.Group()
		clean := make([]any, len(g))
		for i, ga := range g {
			clean[i] = oneLineAttr(ga)
		}
		return slog.Group(a.Key, clean...)
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return slog.String(a.Key, oneLine(err.Error()))
		}
		if s, ok := v.Any().(fmt.Stringer); ok {
			return slog.String(a.Key, oneLine(s.String()))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

// oneLine joins the lines of s with single spaces.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n\t") && !strings.Contains(s, "  ") {
		return s
	}
	return strings.Join(strings.Fields(s), " ")
}
